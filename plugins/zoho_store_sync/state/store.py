"""``StateStore``: every read and write of the sync's own tables for one tenant.

(Over 400 lines: one class, so every rule about a tenant's rows (statuses, locks, cursors, resets, run records)
is in one place; the schema is ``tables.py``, the bulk writes ``writes.py``, the token cache ``tokens.py``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from zoho_store_sync.state.tables import (
    ADOPTED,
    CONVERTING,
    DELETED_BY_OTHER_TENANT,
    DELETED_IN_SOURCE,
    DELETED_IN_ZOHO,
    FAILED,
    LIVE_STATUSES,
    STATE_COLUMNS,
    UNCONFIRMED,
    cursors,
    customers_state,
    own_deletions,
    record_errors,
    resets,
    runs,
    tenant_locks,
)
from zoho_store_sync.state.writes import (
    _ARRAY_TYPES,
    _UNNEST_UPSERT,
    COPY_ABOVE_ROWS,
    _array_literal,
    _aware,
    _dialect_insert,
    _dict_columns,
    _python_columns,
    _state_frame,
    copy_upsert_postgres,
    executemany_upsert_sqlite,
    is_missing,
    now_utc,
)


@dataclass
class StateStore:
    """All reads and writes of the sync's own tables for one tenant."""

    engine: sa.Engine
    tenant_id: str

    # --- schema ----------------------------------------------------------------------------------
    def check_schema(self) -> None:
        """Raise StateSchemaError (naming the migrate command) unless the database is at this code's revision;
        one query per engine per process. Never creates or alters the schema, except SQLite's (migrated here)."""
        from zoho_store_sync.state_migrations import ensure_current

        ensure_current(self.engine)

    # --- customer state --------------------------------------------------------------------------
    def load(self, customer_keys: Sequence[str] | None = None) -> pd.DataFrame:
        """This tenant's state rows as a frame (customer_key, module, payload_hash, status, ...); only the rows
        of ``customer_keys`` when given (a key without a row is left out)."""
        query = self._select()
        if customer_keys is not None:
            keys = list(dict.fromkeys(map(str, customer_keys)))
            if not keys:
                return _state_frame(pd.DataFrame())
            query = query.where(self._one_of(customers_state.c.customer_key, keys))
        with self.engine.connect() as conn:
            return _state_frame(pd.read_sql(query, conn))

    def mark_deleted_in_zoho(self, zoho_ids: Iterable[str], *, apply: bool) -> pd.DataFrame:
        """Take in Zoho's deleted-records list: this tenant's live rows whose Zoho record is one of ``zoho_ids``,
        with the status each now gets (``apply`` also writes it), as ``load()`` gives rows.

        * deleted by a person in Zoho → ``deleted_in_zoho`` (not resent until a reset);
        * deleted by this product for this tenant (``zoho_sync_deletions``, e.g. a crash after the delete) →
          ``deleted_in_source``: the customer comes back as new if it reappears in the store;
        * deleted by this product for another tenant of the same org → sent again as a new record (``failed``,
          retryable, no id): this tenant's store still has the customer.
        """
        ids = list(dict.fromkeys(map(str, zoho_ids)))
        if not ids:
            return _state_frame(pd.DataFrame())
        hit = sa.and_(self._one_of(customers_state.c.zoho_id, ids), customers_state.c.status.in_(LIVE_STATUSES))
        query = self._select().where(hit)
        ours = sa.select(own_deletions.c.zoho_id, own_deletions.c.tenant_id).where(
            self._one_of(own_deletions.c.zoho_id, ids)
        )
        with self.engine.connect() as conn:
            if apply:
                conn.info["immediate"] = True  # SQLite: hold the write lock from the read on
            with conn.begin():
                frame = _state_frame(pd.read_sql(query.with_for_update() if apply else query, conn))
                deleted_by = {str(row.zoho_id): row.tenant_id for row in conn.execute(ours)}
                by = frame["zoho_id"].astype("object").map(deleted_by)
                mine, other = (by == self.tenant_id).to_numpy(), (by.notna() & (by != self.tenant_id)).to_numpy()
                frame.loc[~(mine | other), "status"] = DELETED_IN_ZOHO
                frame.loc[mine, "status"] = DELETED_IN_SOURCE
                frame.loc[other, ["status", "retryable", "zoho_id", "error_code"]] = [
                    FAILED,
                    True,
                    None,
                    DELETED_BY_OTHER_TENANT,
                ]
                if apply:
                    for status in (DELETED_IN_ZOHO, DELETED_IN_SOURCE):
                        keys = frame.loc[frame["status"] == status, "customer_key"].tolist()
                        if keys:
                            conn.execute(
                                sa.update(customers_state)
                                .where(
                                    customers_state.c.tenant_id == self.tenant_id,
                                    self._one_of(customers_state.c.customer_key, keys),
                                )
                                .values(status=status, updated_at=now_utc())
                            )
                    keys = frame.loc[other, "customer_key"].tolist()
                    if keys:
                        conn.execute(
                            sa.update(customers_state)
                            .where(
                                customers_state.c.tenant_id == self.tenant_id,
                                self._one_of(customers_state.c.customer_key, keys),
                            )
                            .values(
                                status=FAILED,
                                retryable=True,
                                zoho_id=None,
                                error_code=DELETED_BY_OTHER_TENANT,
                                error_message="deleted in Zoho by this product for another tenant of the same org; "
                                "sent again because this tenant's store still has the customer",
                                updated_at=now_utc(),
                            )
                        )
        return frame

    def record_own_deletions(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Write ahead of a delete call: (zoho_id, customer_key, module) this tenant is about to delete."""
        values = [
            {
                "zoho_id": str(zoho_id),
                "tenant_id": self.tenant_id,
                "customer_key": str(key),
                "module": module,
                "deleted_at": now_utc(),
            }
            for zoho_id, key, module in rows
        ]
        if not values:
            return
        insert = _dialect_insert(self.engine)(own_deletions)
        statement = insert.on_conflict_do_update(
            index_elements=["zoho_id"],
            set_={k: insert.excluded[k] for k in ("tenant_id", "customer_key", "module", "deleted_at")},
        )
        with self.engine.begin() as conn:
            conn.execute(statement, values)

    def zoho_ids_synced_by_other_tenants(self, zoho_ids: Iterable[str]) -> set[str]:
        """The ``zoho_ids`` another tenant of this state database still syncs (shares an org and the person)."""
        ids = list(dict.fromkeys(map(str, zoho_ids)))
        if not ids:
            return set()
        query = (
            sa.select(customers_state.c.zoho_id)
            .where(
                self._one_of(customers_state.c.zoho_id, ids),
                customers_state.c.tenant_id != self.tenant_id,
                customers_state.c.status.in_(LIVE_STATUSES),
            )
            .distinct()
        )
        with self.engine.connect() as conn:
            return {str(value) for value in conn.execute(query).scalars()}

    def keys_with_emails(self, emails: Iterable[str]) -> pd.DataFrame:
        """This tenant's state rows (customer_key, email) whose email is one of ``emails``."""
        wanted = list(dict.fromkeys(e for e in emails if isinstance(e, str)))
        if not wanted:
            return pd.DataFrame({"customer_key": pd.Series(dtype="string"), "email": pd.Series(dtype="string")})
        query = sa.select(customers_state.c.customer_key, customers_state.c.email).where(
            customers_state.c.tenant_id == self.tenant_id, self._one_of(customers_state.c.email, wanted)
        )
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        return frame.astype({"customer_key": "string", "email": "string"})

    def _select(self) -> sa.Select:
        return sa.select(*[customers_state.c[name] for name in STATE_COLUMNS]).where(
            customers_state.c.tenant_id == self.tenant_id
        )

    def _one_of(self, column: sa.Column, values: list[str]) -> sa.ColumnElement[bool]:
        """``column IN values`` with one bound parameter however many values: an array on PostgreSQL, a JSON
        list on SQLite (no limit on the number of variables, one statement to compile and plan)."""
        if self.engine.dialect.name == "postgresql":
            return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(sa.Text)))
        listed = sa.func.json_each(json.dumps(values)).table_valued("value")
        return column.in_(sa.select(listed.c.value))

    def save_outcomes(self, rows: pd.DataFrame | list[dict[str, Any]]) -> int:
        """Upsert outcome rows (STATE_COLUMNS) for this tenant in one transaction; returns rows written.

        A customer key given more than once is written once, with its last row.
        """
        postgres = self.engine.dialect.name == "postgresql"
        if isinstance(rows, list) and not (postgres and len(rows) > COPY_ABOVE_ROWS):
            # The loader's batches (lists of dicts): no DataFrame in between, ~2x faster per batch.
            last_per_key = list({row["customer_key"]: row for row in rows}.values())
            if not last_per_key:
                return 0
            values = _dict_columns(last_per_key)
        else:
            frame = (pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows).reindex(columns=STATE_COLUMNS)
            repeated = frame["customer_key"].duplicated(keep="last")
            if repeated.any():
                frame = frame.loc[~repeated]
            if frame.empty:
                return 0
            frame["attempts"] = frame["attempts"].fillna(0).astype("int64")
            if postgres and len(frame) > COPY_ABOVE_ROWS:
                copy_upsert_postgres(self.engine, self.tenant_id, frame, now_utc())
                return len(frame)
            values = _python_columns(frame)
        if postgres:
            with self.engine.begin() as conn:
                arrays = [_array_literal(column, kind) for column, kind in zip(values, _ARRAY_TYPES)]
                conn.exec_driver_sql(_UNNEST_UPSERT, (self.tenant_id, now_utc(), *arrays))
        else:
            executemany_upsert_sqlite(self.engine, self.tenant_id, values, now_utc())
        return len(values[0])

    def write_ahead(self, rows: list[dict[str, Any]]) -> int:
        """Before a call: state rows saying what is about to happen (``UNCONFIRMED``/``CONVERTING``), written
        like outcomes; the call's outcome overwrites them."""
        return self.save_outcomes(rows)

    def count_retryable_failures(self) -> int:
        """Rows the next run must send again: retryable failures and writes a crash left unconfirmed."""
        return self._count(
            sa.or_(
                sa.and_(customers_state.c.status == FAILED, customers_state.c.retryable.is_(True)),
                customers_state.c.status.in_((UNCONFIRMED, CONVERTING)),
            )
        )

    def count_confirmed(self, modules: Iterable[str]) -> int:
        """Rows of ``modules`` whose last outcome Zoho confirmed (a reset's progress, counted in the database). An
        adopted row (linked to the org's record, ``error_code`` ADOPTED) is not: its fields are not written yet."""
        return self._count(
            customers_state.c.module.in_(list(modules)),
            customers_state.c.status.not_in((FAILED, UNCONFIRMED, CONVERTING)),
            sa.or_(customers_state.c.error_code.is_(None), customers_state.c.error_code != ADOPTED),
        )

    def count_live_in_zoho(self) -> int:
        """Rows of customers this tenant keeps in Zoho (a live status and a Zoho id): the base of the
        mass-deletion limit's share."""
        return self._count(customers_state.c.status.in_(LIVE_STATUSES), customers_state.c.zoho_id.is_not(None))

    def _count(self, *conditions: sa.ColumnElement[bool]) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(customers_state)
            .where(customers_state.c.tenant_id == self.tenant_id, *conditions)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def forget(self, modules: Iterable[str] | None = None) -> int:
        """Forget ids, hashes and deleted-in-Zoho marks of this tenant (optionally some modules) and its
        cursors, so the next run is a full pass."""
        statement = sa.delete(customers_state).where(customers_state.c.tenant_id == self.tenant_id)
        if modules is not None:
            statement = statement.where(customers_state.c.module.in_(list(modules)))
        with self.engine.begin() as conn:
            conn.execute(sa.delete(cursors).where(cursors.c.tenant_id == self.tenant_id))
            return conn.execute(statement).rowcount

    # --- cursors ---------------------------------------------------------------------------------
    def get_cursor(self, stream: str) -> Any:
        """The JSON value saved for ``stream``, or None before the first successful run."""
        query = sa.select(cursors.c.value).where(cursors.c.tenant_id == self.tenant_id, cursors.c.stream == stream)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return json.loads(value) if value is not None else None

    def set_cursor(self, stream: str, value: Any) -> None:
        """Save a cursor; call only once the data it covers is safely planned and sent."""
        insert = _dialect_insert(self.engine)(cursors)
        statement = insert.on_conflict_do_update(
            index_elements=["tenant_id", "stream"],
            set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at},
        )
        with self.engine.begin() as conn:
            conn.execute(
                statement,
                {"tenant_id": self.tenant_id, "stream": stream, "value": json.dumps(value), "updated_at": now_utc()},
            )

    # --- tenant lock -----------------------------------------------------------------------------
    def acquire_lock(self, holder: str, run_id: str, ttl: timedelta) -> tuple[bool, dict[str, Any] | None]:
        """Take the tenant's lock for ``holder`` unless another run's lease is still running.

        Returns (acquired, current holder row). One run per tenant, whatever its kind: only the run that
        holds the lease (a task retried) takes it again; any other run waits until the lease ends, which
        the holder's tasks keep pushing forward while they work (``renew_lock``).
        """
        now = now_utc()
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            with conn.begin():
                if self.engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"lock:{self.tenant_id}"})
                row = conn.execute(sa.select(tenant_locks).where(tenant_locks.c.tenant_id == self.tenant_id)).first()
                if row is not None and row.run_id != run_id and _aware(row.expires_at) > now:
                    return False, dict(row._mapping)
                values = {"holder": holder, "run_id": run_id, "expires_at": now + ttl}
                if row is None:
                    conn.execute(sa.insert(tenant_locks).values(tenant_id=self.tenant_id, **values))
                else:
                    conn.execute(
                        sa.update(tenant_locks).where(tenant_locks.c.tenant_id == self.tenant_id).values(**values)
                    )
                return True, None

    def renew_lock(self, holder: str, run_id: str, ttl: timedelta) -> bool:
        """Push the lease of the run that holds the lock to now + ``ttl``; False when it holds it no longer
        (its lease ended and another run took the tenant: this run must stop writing)."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                sa.update(tenant_locks)
                .where(
                    tenant_locks.c.tenant_id == self.tenant_id,
                    tenant_locks.c.holder == holder,
                    tenant_locks.c.run_id == run_id,
                )
                .values(expires_at=now_utc() + ttl)
            )
            return renewed.rowcount == 1

    def lock_holder(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(tenant_locks).where(tenant_locks.c.tenant_id == self.tenant_id)).first()
        return dict(row._mapping) if row else None

    def release_lock(self, holder: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(tenant_locks).where(
                    tenant_locks.c.tenant_id == self.tenant_id,
                    tenant_locks.c.holder == holder,
                    tenant_locks.c.run_id == run_id,
                )
            )

    # --- resets ----------------------------------------------------------------------------------
    def reset_in_progress(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(resets).where(resets.c.tenant_id == self.tenant_id, resets.c.status == "in_progress")
            ).first()
        return dict(row._mapping) if row else None

    def begin_reset(self, modules: Iterable[str], run_id: str) -> bool:
        """Forget the state of ``modules`` and record the reset, unless the same reset is to be resumed.

        Returns True when resuming (the state kept holds what Zoho already confirmed).
        """
        key = ",".join(sorted(modules))
        current = self.reset_in_progress()
        if current is not None and current["modules"] == key:
            return True
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(customers_state).where(
                    customers_state.c.tenant_id == self.tenant_id, customers_state.c.module.in_(sorted(modules))
                )
            )
            conn.execute(sa.delete(cursors).where(cursors.c.tenant_id == self.tenant_id))
            conn.execute(sa.delete(resets).where(resets.c.tenant_id == self.tenant_id))
            conn.execute(
                sa.insert(resets).values(
                    tenant_id=self.tenant_id, modules=key, status="in_progress", run_id=run_id, started_at=now_utc()
                )
            )
        return False

    def finish_reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(resets)
                .where(resets.c.tenant_id == self.tenant_id)
                .values(status="done", finished_at=now_utc())
            )

    # --- history ---------------------------------------------------------------------------------
    def record_run(self, run_id: str, kind: str, summary: dict[str, Any], started_at: datetime | None) -> None:
        values = {
            "tenant_id": self.tenant_id,
            "run_id": run_id,
            "kind": kind,
            "started_at": started_at,
            "finished_at": now_utc(),
            "summary": json.dumps(summary, ensure_ascii=False),
            **{
                k: summary.get(k)
                for k in ("extracted", "inserted", "updated", "unchanged", "failed", "api_calls", "credits", "sent")
            },
        }
        insert = _dialect_insert(self.engine)(runs)
        statement = insert.on_conflict_do_update(
            index_elements=["tenant_id", "run_id", "kind"],
            set_={k: insert.excluded[k] for k in values if k not in ("tenant_id", "run_id", "kind")},
        )
        with self.engine.begin() as conn:
            conn.execute(statement, values)

    def run_summaries(self, kind: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(runs.c.summary).where(runs.c.tenant_id == self.tenant_id).order_by(runs.c.id)
        if kind:
            query = query.where(runs.c.kind == kind)
        with self.engine.connect() as conn:
            return [json.loads(row[0]) for row in conn.execute(query)]

    def record_errors(self, run_id: str, errors: list[dict[str, Any]]) -> None:
        if not errors:
            return
        stamp = now_utc()
        rows = [{"tenant_id": self.tenant_id, "run_id": run_id, "at": stamp, "kind": "rejected", **e} for e in errors]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(record_errors), rows)

    def record_invalid(self, run_id: str, invalid: pd.DataFrame, read_keys: Sequence[str] | None) -> None:
        """Keep the tenant's list of customers never sent (``kind = 'invalid'``) current: after a full pass
        (``read_keys`` None) the list is replaced; otherwise the rows of the customers read (``read_keys``) are."""
        keys = invalid["customer_key"].astype("string").tolist()
        read = None if read_keys is None else list(dict.fromkeys([*map(str, read_keys), *keys]))
        rows = [
            {
                "tenant_id": self.tenant_id,
                "run_id": run_id,
                "at": now_utc(),
                "kind": "invalid",
                "customer_key": key,
                "email": None if is_missing(email) else str(email)[:320],
                "code": "INVALID_" + str(reason).split()[0].upper(),
                "message": str(reason),
                "retryable": False,
            }
            for key, email, reason in zip(keys, invalid["email"].tolist(), invalid["reason"].tolist())
        ]
        forget = sa.delete(record_errors).where(
            record_errors.c.tenant_id == self.tenant_id, record_errors.c.kind == "invalid"
        )
        with self.engine.begin() as conn:
            if read is None:
                conn.execute(forget)
            elif read:
                conn.execute(forget.where(self._one_of(record_errors.c.customer_key, read)))
            if rows:
                conn.execute(sa.insert(record_errors), rows)

    def errors(self, run_id: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(record_errors).where(record_errors.c.tenant_id == self.tenant_id).order_by(record_errors.c.id)
        if run_id:
            query = query.where(record_errors.c.run_id == run_id)
        if kind:
            query = query.where(record_errors.c.kind == kind)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
