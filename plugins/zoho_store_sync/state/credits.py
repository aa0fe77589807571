"""The credit ledger (``zoho_sync_credits``): Zoho credits each task spent per org, read over the rolling 24 h."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from zoho_store_sync.state.tables import credit_ledger
from zoho_store_sync.state.writes import _aware, now_utc

# Rows older than this are deleted when a new one is written: the budget reads 48 h at most (a report of what
# remained, and the credits spent in the 24 h before it).
KEEP = timedelta(hours=72)


@dataclass(frozen=True)
class CreditEntry:
    """One task's credits on an org: when (the task's end), how many, and Zoho's last remaining count then."""

    tenant_id: str
    run_id: str
    used_at: datetime
    credits: int
    remaining: int | None


class CreditLedger:
    """Credits spent on Zoho orgs, one row per task that made calls; every tenant of an org writes to its key.

    ``clock``: the time rows are stamped with and windows end at (tests move it a day forward).
    """

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = now_utc) -> None:
        self.engine = engine
        self.clock = clock

    def record(
        self,
        org_key: str,
        tenant_id: str,
        run_id: str,
        credits: int,
        remaining: int | None,
        *,
        used_at: datetime | None = None,
    ) -> None:
        """A task's credits (and Zoho's last X-API-CREDITS-REMAINING, if it sent one); old rows are pruned."""
        at = used_at or self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(credit_ledger).values(
                    org_key=org_key,
                    tenant_id=tenant_id,
                    run_id=run_id,
                    used_at=at,
                    credits=int(credits),
                    remaining=None if remaining is None else int(remaining),
                )
            )
            conn.execute(
                sa.delete(credit_ledger).where(credit_ledger.c.org_key == org_key, credit_ledger.c.used_at < at - KEEP)
            )

    def entries(self, org_key: str, since: timedelta = timedelta(hours=48)) -> list[CreditEntry]:
        """The org's rows of the last ``since`` (up to the clock's now), oldest first."""
        now = self.clock()
        query = (
            sa.select(
                credit_ledger.c.tenant_id,
                credit_ledger.c.run_id,
                credit_ledger.c.used_at,
                credit_ledger.c.credits,
                credit_ledger.c.remaining,
            )
            .where(credit_ledger.c.org_key == org_key, credit_ledger.c.used_at > now - since)
            .order_by(credit_ledger.c.used_at, credit_ledger.c.id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        entries = [CreditEntry(r[0], r[1], _aware(r[2]), int(r[3]), r[4]) for r in rows]
        return [e for e in entries if e.used_at <= now]  # a clock moved back in a test sees no future rows

    def run_credits(self, tenant_id: str, run_id: str) -> int:
        """Credits recorded for one run of a tenant (every org)."""
        query = sa.select(sa.func.coalesce(sa.func.sum(credit_ledger.c.credits), 0)).where(
            credit_ledger.c.tenant_id == tenant_id, credit_ledger.c.run_id == run_id
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
