"""The state table (what Zoho confirmed per customer), run history, errors and the shared token cache.

SQLAlchemy Core on a SQLite file (the embedded default) or PostgreSQL, reached through an Airflow
Connection (default id ``zoho_sync_state_db``). Every row is keyed by tenant: a tenant never reads or
writes another tenant's rows. The schema is created by a task (``create_schema``), never at parse time.
"""

from __future__ import annotations

import functools
import io
import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from cryptography.fernet import Fernet
from sqlalchemy.dialects import postgresql

from zoho_store_sync.hooks.zoho_tokens import AccessToken, seal, unseal

metadata = sa.MetaData()


def _indexed_text(length: int) -> sa.String:
    """PostgreSQL: byte-order collation for the indexed keys (only equality is asked of them), ~15% less CPU
    per row in a large write than the database's locale. Tables created before keep theirs: same answers."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


customers_state = sa.Table(
    "zoho_sync_state",
    metadata,
    sa.Column("tenant_id", _indexed_text(100), primary_key=True),
    sa.Column("customer_key", _indexed_text(100), primary_key=True),
    sa.Column("email", _indexed_text(320)),
    sa.Column("module", sa.String(20), nullable=False),
    sa.Column("zoho_id", _indexed_text(40)),
    sa.Column("payload_hash", sa.BigInteger, nullable=False),
    # synced: Zoho confirmed this payload; failed: Zoho rejected it; deleted_in_zoho: not resent until reset
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error_code", sa.String(60)),
    sa.Column("error_message", sa.Text),
    sa.Column("retryable", sa.Boolean),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # PostgreSQL: half of every page left free, so when all of a tenant's rows are rewritten (a mapping change
    # re-sends everything) each new row version fits on its page (a HOT update: no new index entries), ~2x faster.
    # Tables created before keep their layout; to give one this, between two syncs (VACUUM FULL locks the table):
    #   ALTER TABLE zoho_sync_state SET (fillfactor = 50); VACUUM FULL zoho_sync_state;
    postgresql_with={"fillfactor": 50},
)
# No index on email: nothing looks rows up by email, and each index costs every write (~1 s per million new
# rows). Tables created before have ix_zoho_sync_state_email; it is safe to drop: DROP INDEX ix_zoho_sync_state_email.
# mark_deleted_in_zoho looks rows up by Zoho id. Tables created before get it with (no lock on writes):
#   CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_zoho_sync_state_zoho_id ON zoho_sync_state (tenant_id, zoho_id);
sa.Index("ix_zoho_sync_state_zoho_id", customers_state.c.tenant_id, customers_state.c.zoho_id)

runs = sa.Table(
    "zoho_sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(100), nullable=False, index=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # sync, dry_run, reset
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("extracted", sa.Integer),
    sa.Column("inserted", sa.Integer),
    sa.Column("updated", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("failed", sa.Integer),
    sa.Column("api_calls", sa.Integer),
    sa.Column("credits", sa.Integer),
    sa.Column("summary", sa.Text, nullable=False),  # the full JSON summary
    sa.UniqueConstraint("tenant_id", "run_id", "kind", name="uq_zoho_sync_runs_run"),
)

record_errors = sa.Table(
    "zoho_sync_errors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(100), nullable=False, index=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("customer_key", sa.String(100)),
    sa.Column("email", sa.String(320)),
    sa.Column("module", sa.String(20)),
    sa.Column("code", sa.String(60), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("retryable", sa.Boolean),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)

access_tokens = sa.Table(
    "zoho_sync_access_tokens",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("sealed_token", sa.LargeBinary),  # Fernet-encrypted with a key derived from the connection
    sa.Column("refreshed_at", sa.Text, nullable=False, default="[]"),  # recent refresh times (JSON list)
)

cursors = sa.Table(
    "zoho_sync_cursors",
    metadata,
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("stream", sa.String(60), primary_key=True),  # e.g. magento.customers, deconetwork.orders
    sa.Column("value", sa.Text, nullable=False),  # JSON: a high-water mark, a last full pass time, ...
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

refresh_tokens = sa.Table(
    "zoho_sync_refresh_tokens",
    metadata,
    # Written by the zoho_connect DAG (tasks cannot write Connections); read by the tenant's hook.
    sa.Column("zoho_conn_id", sa.String(250), primary_key=True),
    sa.Column("sealed_token", sa.LargeBinary, nullable=False),  # Fernet, key derived from the client secret
    sa.Column("scope", sa.Text),
    sa.Column("api_domain", sa.String(250)),
    sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
)

tenant_locks = sa.Table(
    "zoho_sync_locks",
    metadata,
    # One holder per tenant: the scheduled sync and the reset never run at the same time.
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(40), nullable=False),  # "sync" or "reset"
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),  # a crashed holder's lease ends
)

resets = sa.Table(
    "zoho_sync_resets",
    metadata,
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("modules", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # in_progress (resumable) or done
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

STATE_COLUMNS = ["customer_key", "email", "module", "zoho_id", "payload_hash", "status", "error_code",
                 "error_message", "retryable", "attempts"]
DELETED_IN_ZOHO = "deleted_in_zoho"

# PostgreSQL: larger writes go through COPY, smaller ones are one INSERT ... SELECT FROM unnest(arrays).
COPY_ABOVE_ROWS = 2000
STATE_TABLE = customers_state.name
INCOMING_TABLE = "zoho_sync_state_in"  # the COPY's temporary table
_ALL_COLUMNS = ", ".join(["tenant_id", *STATE_COLUMNS, "updated_at"])
_SET_FROM_EXCLUDED = ", ".join(f"{name} = EXCLUDED.{name}" for name in STATE_COLUMNS[1:] + ["updated_at"])
_SET_FROM_INCOMING = ", ".join(f"{name} = i.{name}" for name in STATE_COLUMNS[1:] + ["updated_at"])


def _array_type(column: sa.Column) -> str:
    # text, not varchar(n): a too-long value fails the insert as before (a cast to varchar(n) would cut it)
    return {sa.BigInteger: "bigint", sa.Integer: "integer", sa.Boolean: "boolean"}.get(type(column.type), "text")


_ARRAY_TYPES = [_array_type(customers_state.c[name]) for name in STATE_COLUMNS]
_UNNEST_UPSERT = (
    f"INSERT INTO {STATE_TABLE} ({_ALL_COLUMNS}) SELECT %s, {', '.join(STATE_COLUMNS)}, %s "
    f"FROM unnest({', '.join(f'%s::{kind}[]' for kind in _ARRAY_TYPES)}) "
    f"AS outcome({', '.join(STATE_COLUMNS)}) "
    f"ON CONFLICT (tenant_id, customer_key) DO UPDATE SET {_SET_FROM_EXCLUDED}"
)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def engine_url_from_connection(conn: Any) -> str:
    """SQLAlchemy URL of an Airflow Connection of type sqlite or postgres."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        return f"sqlite:///{path}" if path else "sqlite://"
    if conn_type in ("postgres", "postgresql"):
        url = sa.engine.URL.create(
            "postgresql+psycopg2", username=conn.login or None, password=conn.password or None,
            host=conn.host or "127.0.0.1", port=conn.port or 5432, database=conn.schema or "postgres",
        )
        return url.render_as_string(hide_password=False)
    raise ValueError(f"state connection type {conn_type!r} is not supported: use sqlite or postgres")


def engine_from_conn_id(conn_id: str) -> sa.Engine:
    from airflow.sdk import Connection

    return _shared_engine(engine_url_from_connection(Connection.get(conn_id)))


@functools.lru_cache(maxsize=32)
def _shared_engine(url: str) -> sa.Engine:
    """One engine (one connection pool) per database per process, however many steps ask for it."""
    return make_engine(url)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (BEGIN IMMEDIATE for the token lock)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


@dataclass
class StateStore:
    """All reads and writes of the sync's own tables for one tenant."""

    engine: sa.Engine
    tenant_id: str

    # --- schema ----------------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Idempotent: safe to run at the start of every run, by concurrent tasks."""
        metadata.create_all(self.engine, checkfirst=True)

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
        """This tenant's rows whose Zoho record is one of ``zoho_ids`` and not yet marked ``deleted_in_zoho``,
        as ``load()`` gives them but with that status; ``apply`` also marks them so in the table."""
        ids = list(dict.fromkeys(map(str, zoho_ids)))
        if not ids:
            return _state_frame(pd.DataFrame())
        hit = sa.and_(self._one_of(customers_state.c.zoho_id, ids), customers_state.c.status != DELETED_IN_ZOHO)
        query = self._select().where(hit)
        with self.engine.connect() as conn:
            if apply:
                conn.info["immediate"] = True  # SQLite: hold the write lock from the read on
            with conn.begin():
                frame = pd.read_sql(query.with_for_update() if apply else query, conn)
                if apply and len(frame):
                    conn.execute(sa.update(customers_state).where(customers_state.c.tenant_id == self.tenant_id, hit)
                                 .values(status=DELETED_IN_ZOHO, updated_at=now_utc()))
        frame = _state_frame(frame)
        frame["status"] = DELETED_IN_ZOHO
        return frame

    def _select(self) -> sa.Select:
        return sa.select(*[customers_state.c[name] for name in STATE_COLUMNS]).where(
            customers_state.c.tenant_id == self.tenant_id)

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
                self._copy_upsert_postgres(frame, now_utc())
                return len(frame)
            values = _python_columns(frame)
        if postgres:
            with self.engine.begin() as conn:
                arrays = [_array_literal(column, kind) for column, kind in zip(values, _ARRAY_TYPES)]
                conn.exec_driver_sql(_UNNEST_UPSERT, (self.tenant_id, now_utc(), *arrays))
        else:
            self._executemany_upsert_sqlite(values, now_utc())
        return len(values[0])

    def _executemany_upsert_sqlite(self, values: list[list[Any]], stamp: datetime) -> None:
        """``values``: one list per STATE_COLUMNS column, of Python values (None for missing)."""
        names = ["tenant_id", *STATE_COLUMNS, "updated_at"]
        count = len(values[0])
        columns = [[self.tenant_id] * count, *values, [stamp] * count]
        # No SQLAlchemy per-row parameter handling (3/4 of a large write's time): the statement is compiled
        # once, each column goes through its type's converter, the driver gets tuples.
        sql, order = _compiled_sqlite_upsert(self.engine.dialect)
        converted = {name: _bound(self.engine.dialect, name, values) for name, values in zip(names, columns)}
        with self.engine.begin() as conn:
            conn.exec_driver_sql(sql, list(zip(*(converted[key] for key in order))))

    def _copy_upsert_postgres(self, frame: pd.DataFrame, stamp: datetime) -> None:
        """COPY the rows in (~10x a row-by-row upsert), in one transaction. ``frame`` has one row per key."""
        payload, null = _csv(frame, self.tenant_id, stamp)
        copy_from_csv = f"FROM STDIN WITH (FORMAT csv, NULL '{null}')"
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(f"SELECT 1 FROM {STATE_TABLE} WHERE tenant_id = %s LIMIT 1", (self.tenant_id,))
            if cursor.fetchone() is None:
                # No row of this tenant yet (first sync, full reset): nothing to conflict with, so COPY straight
                # into the table, ~40% faster. A key written meanwhile fails the COPY (unique violation): then the
                # general path below decides.
                try:
                    cursor.copy_expert(f"COPY {STATE_TABLE} ({_ALL_COLUMNS}) {copy_from_csv}", io.BytesIO(payload))
                    raw.commit()
                    return
                except Exception as exc:  # noqa: BLE001 - only a unique violation falls through
                    raw.rollback()
                    if getattr(exc, "pgcode", None) != "23505":
                        raise
            cursor.execute(f"CREATE TEMP TABLE {INCOMING_TABLE} (LIKE {STATE_TABLE} INCLUDING DEFAULTS) ON COMMIT DROP")
            cursor.copy_expert(f"COPY {INCOMING_TABLE} ({_ALL_COLUMNS}) {copy_from_csv}", io.BytesIO(payload))
            # Rows the tenant has: an UPDATE (HOT, thanks to the fillfactor), ~1.5x faster than ON CONFLICT.
            cursor.execute(
                f"UPDATE {STATE_TABLE} s SET {_SET_FROM_INCOMING} FROM {INCOMING_TABLE} i "
                "WHERE s.tenant_id = %s AND s.customer_key = i.customer_key", (self.tenant_id,))
            if cursor.rowcount < len(frame):
                # The new keys; ON CONFLICT for a key another writer inserted since the UPDATE.
                cursor.execute(
                    f"INSERT INTO {STATE_TABLE} ({_ALL_COLUMNS}) SELECT {_ALL_COLUMNS} FROM {INCOMING_TABLE} i "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {STATE_TABLE} s WHERE s.tenant_id = %s "
                    "AND s.customer_key = i.customer_key) "
                    f"ON CONFLICT (tenant_id, customer_key) DO UPDATE SET {_SET_FROM_EXCLUDED}", (self.tenant_id,))
            raw.commit()
        except Exception:
            raw.rollback()
            raise
        finally:
            raw.close()

    def count_retryable_failures(self) -> int:
        return self._count(customers_state.c.status == "failed", customers_state.c.retryable.is_(True))

    def count_confirmed(self, modules: Iterable[str]) -> int:
        """Rows of ``modules`` whose last outcome is not a failure (a reset's progress, counted in the database)."""
        return self._count(customers_state.c.module.in_(list(modules)), customers_state.c.status != "failed")

    def _count(self, *conditions: sa.ColumnElement[bool]) -> int:
        query = sa.select(sa.func.count()).select_from(customers_state).where(
            customers_state.c.tenant_id == self.tenant_id, *conditions)
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
            index_elements=["tenant_id", "stream"], set_={"value": insert.excluded.value, "updated_at": insert.excluded.updated_at}
        )
        with self.engine.begin() as conn:
            conn.execute(statement, {"tenant_id": self.tenant_id, "stream": stream, "value": json.dumps(value),
                                     "updated_at": now_utc()})

    def forget_cursors(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(cursors).where(cursors.c.tenant_id == self.tenant_id))

    # --- tenant lock -----------------------------------------------------------------------------
    def acquire_lock(self, holder: str, run_id: str, ttl: timedelta) -> tuple[bool, dict[str, Any] | None]:
        """Take the tenant's lock for ``holder`` unless another holder's lease is still running.

        Returns (acquired, current holder row). The same holder kind may take over its own lease (a
        resumed reset, or the next sync run after a crashed one).
        """
        now = now_utc()
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            with conn.begin():
                if self.engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"lock:{self.tenant_id}"})
                row = conn.execute(sa.select(tenant_locks).where(tenant_locks.c.tenant_id == self.tenant_id)).first()
                if row is not None and row.holder != holder and _aware(row.expires_at) > now:
                    return False, dict(row._mapping)
                values = {"holder": holder, "run_id": run_id, "expires_at": now + ttl}
                if row is None:
                    conn.execute(sa.insert(tenant_locks).values(tenant_id=self.tenant_id, **values))
                else:
                    conn.execute(sa.update(tenant_locks).where(tenant_locks.c.tenant_id == self.tenant_id).values(**values))
                return True, None

    def release_lock(self, holder: str, run_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(tenant_locks).where(tenant_locks.c.tenant_id == self.tenant_id,
                                                       tenant_locks.c.holder == holder, tenant_locks.c.run_id == run_id))

    # --- resets ----------------------------------------------------------------------------------
    def reset_in_progress(self) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(resets).where(resets.c.tenant_id == self.tenant_id,
                                                       resets.c.status == "in_progress")).first()
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
            conn.execute(sa.delete(customers_state).where(customers_state.c.tenant_id == self.tenant_id,
                                                          customers_state.c.module.in_(sorted(modules))))
            conn.execute(sa.delete(cursors).where(cursors.c.tenant_id == self.tenant_id))
            conn.execute(sa.delete(resets).where(resets.c.tenant_id == self.tenant_id))
            conn.execute(sa.insert(resets).values(tenant_id=self.tenant_id, modules=key, status="in_progress",
                                                  run_id=run_id, started_at=now_utc()))
        return False

    def finish_reset(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(resets).where(resets.c.tenant_id == self.tenant_id)
                         .values(status="done", finished_at=now_utc()))

    # --- history ---------------------------------------------------------------------------------
    def record_run(self, run_id: str, kind: str, summary: dict[str, Any], started_at: datetime | None) -> None:
        values = {
            "tenant_id": self.tenant_id, "run_id": run_id, "kind": kind, "started_at": started_at,
            "finished_at": now_utc(), "summary": json.dumps(summary, ensure_ascii=False),
            **{k: summary.get(k) for k in ("extracted", "inserted", "updated", "unchanged", "failed", "api_calls",
                                           "credits")},
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
        rows = [{"tenant_id": self.tenant_id, "run_id": run_id, "at": stamp, **e} for e in errors]
        with self.engine.begin() as conn:
            conn.execute(sa.insert(record_errors), rows)

    def errors(self, run_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(record_errors).where(record_errors.c.tenant_id == self.tenant_id).order_by(record_errors.c.id)
        if run_id:
            query = query.where(record_errors.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]


def _state_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """What ``read_sql`` gave, with the dtypes every reader of the state gets (also when no row matched)."""
    if frame.empty:
        frame = pd.DataFrame({name: pd.Series(dtype="object") for name in STATE_COLUMNS})
    frame["payload_hash"] = frame["payload_hash"].astype("int64")
    frame["customer_key"] = frame["customer_key"].astype("string")
    return frame


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes: they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _python_columns(frame: pd.DataFrame) -> list[list[Any]]:
    """STATE_COLUMNS as lists of Python values, None for missing: what the database driver is given.

    Column at a time (a million rows in ~1 s, not ~20): hashes and attempts as int, retryable as bool.
    """
    out = []
    for name in STATE_COLUMNS:
        column = frame[name]
        missing = column.isna().to_numpy()
        values = column.to_numpy(dtype=object).tolist()
        if name in ("payload_hash", "attempts"):
            values = [None if gone else int(value) for value, gone in zip(values, missing)]
        elif name == "retryable":
            values = [None if gone else bool(value) for value, gone in zip(values, missing)]
        elif missing.any():
            values = [None if gone else value for value, gone in zip(values, missing)]
        out.append(values)
    return out


def _dict_columns(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """``_python_columns(pd.DataFrame(rows))`` straight from the dicts (a missing key is a missing value)."""
    out = []
    for name in STATE_COLUMNS:
        values = [None if is_missing(value) else value for value in (row.get(name) for row in rows)]
        if name == "attempts":
            values = [int(value or 0) for value in values]
        elif name == "payload_hash":
            values = [None if value is None else int(value) for value in values]
        elif name == "retryable":
            values = [None if value is None else bool(value) for value in values]
        out.append(values)
    return out


@functools.lru_cache(maxsize=8)
def _compiled_sqlite_upsert(dialect: sa.Dialect) -> tuple[str, tuple[str, ...]]:
    """The state upsert's SQL and the order of its parameters (compiling it costs ~0.4 ms a batch)."""
    from sqlalchemy.dialects.sqlite import insert

    statement = insert(customers_state)
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "customer_key"],
        set_={name: statement.excluded[name] for name in STATE_COLUMNS[1:] + ["updated_at"]},
    )
    compiled = statement.compile(dialect=dialect)
    return str(compiled), tuple(compiled.positiontup)


def _bound(dialect: sa.Dialect, name: str, values: list[Any]) -> list[Any]:
    """A state column's values as the driver takes them (SQLite: booleans as 0/1, datetimes as text)."""
    processor = customers_state.c[name].type.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return values
    if name in ("tenant_id", "updated_at"):  # one value for every row
        return [processor(values[0])] * len(values) if values else []
    return [processor(value) for value in values]


def _csv(frame: pd.DataFrame, tenant_id: str, stamp: datetime) -> tuple[bytes, str]:
    """The COPY input: (CSV bytes, the NULL marker). Arrow writes it ~10x faster than pandas' to_csv;
    columns Arrow cannot type (mixed Python objects) go through to_csv as before."""
    names = ["tenant_id", *STATE_COLUMNS, "updated_at"]
    retryable = [None if gone else bool(value) for value, gone in
                 zip(frame["retryable"].to_numpy(dtype=object).tolist(), frame["retryable"].isna().to_numpy())]
    out = frame.assign(tenant_id=tenant_id, updated_at=stamp.isoformat(),
                       retryable=pd.Series(retryable, index=frame.index, dtype="object"))[names]
    try:
        table = pa.Table.from_pandas(out, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        buffer = io.StringIO()
        out.to_csv(buffer, index=False, header=False, na_rep="\\N")
        return buffer.getvalue().encode("utf-8"), "\\N"
    sink = io.BytesIO()
    # Arrow quotes every string and leaves nulls unquoted and empty: PostgreSQL's CSV NULL ''.
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False))
    return sink.getvalue(), ""


def is_missing(value: Any) -> bool:
    """None, NaN, pd.NA or NaT: what a dict made from a frame holds for a missing value (pd.isna is 5x slower)."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _array_literal(values: list[Any], kind: str) -> str:
    """A PostgreSQL array literal, ``{"a","b\\"c",NULL}``: the server reads it ~2x faster than the
    ``ARRAY['a', ...]`` psycopg2 makes of a list (one constant per element to parse and coerce)."""
    if kind == "text":
        items = ("NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    elif kind == "boolean":
        items = ("NULL" if v is None else "t" if v else "f" for v in values)
    else:
        items = ("NULL" if v is None else str(int(v)) for v in values)
    return "{" + ",".join(items) + "}"


def _dialect_insert(engine: sa.Engine) -> Callable[..., Any]:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


class DatabaseTokenCache:
    """Zoho access tokens in the state database, shared by every task and worker, encrypted.

    The refresh runs under a database lock (PostgreSQL: an advisory transaction lock; SQLite:
    ``BEGIN IMMEDIATE``), so many concurrent tasks cause one refresh, not a storm.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, key: str, cipher: Fernet) -> AccessToken | None:
        with self.engine.connect() as conn:
            blob = conn.execute(sa.select(access_tokens.c.sealed_token).where(access_tokens.c.cache_key == key)).scalar()
        return unseal(blob, cipher) if blob else None

    def refresh_exclusively(self, key, cipher, still_good, refresh):  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            with conn.begin():
                if self.engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
                row = conn.execute(
                    sa.select(access_tokens.c.sealed_token, access_tokens.c.refreshed_at)
                    .where(access_tokens.c.cache_key == key)
                ).first()
                current = unseal(row[0], cipher) if row and row[0] else None
                if current is not None and still_good(current):
                    return current
                history = json.loads(row[1]) if row else []
                history = [t for t in history if time.time() - t < 3600]
                token = refresh(history)
                history.append(time.time())
                values = {"sealed_token": seal(token, cipher), "refreshed_at": json.dumps(history)}
                if row:
                    conn.execute(sa.update(access_tokens).where(access_tokens.c.cache_key == key).values(**values))
                else:
                    conn.execute(sa.insert(access_tokens).values(cache_key=key, **values))
                return token


class RefreshTokenStore:
    """Refresh tokens obtained by ``zoho_connect``, encrypted with a key derived from the client secret.

    Airflow tasks cannot write Connections, so the connect DAG stores the token here and the tenant's
    hook reads it when its Connection has no ``refresh_token`` extra. Only a holder of the Connection's
    client secret can decrypt it.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @staticmethod
    def _cipher(client_secret: str) -> Fernet:
        import base64
        import hashlib

        digest = hashlib.sha256(f"zoho-refresh-token\0{client_secret}".encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def save(self, zoho_conn_id: str, client_secret: str, refresh_token: str, *, scope: str = "",
             api_domain: str = "") -> None:
        values = {"zoho_conn_id": zoho_conn_id, "sealed_token": self._cipher(client_secret).encrypt(refresh_token.encode()),
                  "scope": scope, "api_domain": api_domain, "connected_at": now_utc()}
        insert = _dialect_insert(self.engine)(refresh_tokens)
        statement = insert.on_conflict_do_update(
            index_elements=["zoho_conn_id"], set_={k: insert.excluded[k] for k in values if k != "zoho_conn_id"})
        with self.engine.begin() as conn:
            conn.execute(statement, values)

    def load(self, zoho_conn_id: str, client_secret: str) -> str | None:
        from cryptography.fernet import InvalidToken

        query = sa.select(refresh_tokens.c.sealed_token).where(refresh_tokens.c.zoho_conn_id == zoho_conn_id)
        try:
            with self.engine.connect() as conn:
                blob = conn.execute(query).scalar()
        except sa.exc.OperationalError:
            return None  # schema not created yet: nothing connected
        except sa.exc.ProgrammingError:
            return None
        if blob is None:
            return None
        try:
            return self._cipher(client_secret).decrypt(bytes(blob)).decode()
        except InvalidToken:
            return None  # the client secret changed since connect: connect again
