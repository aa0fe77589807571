"""What the runs write for the sync page (ui/queries.py): the tenant's state counted by status, a reset's progress.

The page shows 500 tenants at once and must never count their state rows (a million each): each run counts its
own tenant's rows once, in its summary (``summary["state"]``), and each reset chunk writes done/total on the reset row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from zoho_store_sync.state.tables import DELETED_IN_ZOHO, FAILED, SYNCED, customers_state, resets
from zoho_store_sync.state.writes import now_utc


def state_counts(engine: sa.Engine, tenant_id: str, modules: Iterable[str]) -> dict[str, Any]:
    """``{"in_zoho": {module: n}, "deleted_in_zoho": n, "failed": n}``: the tenant's state rows by status, in one
    grouped query over its primary-key prefix (tenant_id). In Zoho = synced (Zoho confirmed the record)."""
    query = (
        sa.select(customers_state.c.module, customers_state.c.status, sa.func.count())
        .where(customers_state.c.tenant_id == tenant_id)
        .group_by(customers_state.c.module, customers_state.c.status)
    )
    in_zoho = dict.fromkeys(modules, 0)
    deleted = failed = 0
    with engine.connect() as conn:
        for module, status, count in conn.execute(query):
            if status == SYNCED:
                in_zoho[module] = in_zoho.get(module, 0) + int(count)
            elif status == DELETED_IN_ZOHO:
                deleted += int(count)
            elif status == FAILED:
                failed += int(count)
    return {"in_zoho": in_zoho, "deleted_in_zoho": deleted, "failed": failed}


def record_reset_progress(engine: sa.Engine, tenant_id: str, *, total: int, done: int | None = None) -> None:
    """Write the tenant's running reset's progress (``done`` None: the total only, before a chunk is sent).
    A reset that is not in progress (a dry run, one already finished) is left alone."""
    values: dict[str, Any] = {"records_total": int(total), "progress_at": now_utc()}
    if done is not None:
        values["records_done"] = int(done)
    with engine.begin() as conn:
        conn.execute(
            sa.update(resets).where(resets.c.tenant_id == tenant_id, resets.c.status == "in_progress").values(**values)
        )
