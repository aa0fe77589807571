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
from typing import Any, Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from cryptography.fernet import Fernet

from zoho_store_sync.hooks.zoho_tokens import AccessToken, seal, unseal

metadata = sa.MetaData()

customers_state = sa.Table(
    "zoho_sync_state",
    metadata,
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("customer_key", sa.String(100), primary_key=True),
    sa.Column("email", sa.String(320)),
    sa.Column("module", sa.String(20), nullable=False),
    sa.Column("zoho_id", sa.String(40)),
    sa.Column("payload_hash", sa.BigInteger, nullable=False),
    # synced: Zoho confirmed this payload; failed: Zoho rejected it; deleted_in_zoho: not resent until reset
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error_code", sa.String(60)),
    sa.Column("error_message", sa.Text),
    sa.Column("retryable", sa.Boolean),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_zoho_sync_state_email", customers_state.c.tenant_id, customers_state.c.email)

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
    def load(self) -> pd.DataFrame:
        """This tenant's state rows as a frame (customer_key, module, payload_hash, status, ...)."""
        query = sa.select(*[customers_state.c[name] for name in STATE_COLUMNS]).where(
            customers_state.c.tenant_id == self.tenant_id
        )
        with self.engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        if frame.empty:
            frame = pd.DataFrame({name: pd.Series(dtype="object") for name in STATE_COLUMNS})
        frame["payload_hash"] = frame["payload_hash"].astype("int64")
        frame["customer_key"] = frame["customer_key"].astype("string")
        return frame

    def save_outcomes(self, rows: pd.DataFrame | list[dict[str, Any]]) -> int:
        """Upsert outcome rows (STATE_COLUMNS) for this tenant in one transaction; returns rows written."""
        frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
        if frame.empty:
            return 0
        frame = frame.reindex(columns=STATE_COLUMNS)
        frame["attempts"] = frame["attempts"].fillna(0).astype("int64")
        stamp = now_utc()
        if self.engine.dialect.name == "postgresql" and len(frame) > 2000:
            self._copy_upsert_postgres(frame, stamp)
        else:
            self._executemany_upsert(frame, stamp)
        return len(frame)

    def _executemany_upsert(self, frame: pd.DataFrame, stamp: datetime) -> None:
        names = ["tenant_id", *STATE_COLUMNS, "updated_at"]
        columns = [[self.tenant_id] * len(frame), *_python_columns(frame), [stamp] * len(frame)]
        insert = _dialect_insert(self.engine)(customers_state)
        statement = insert.on_conflict_do_update(
            index_elements=["tenant_id", "customer_key"],
            set_={name: insert.excluded[name] for name in STATE_COLUMNS[1:] + ["updated_at"]},
        )
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "sqlite" and len(frame) > 2000:
                # Large writes skip SQLAlchemy's per-row parameter handling (3/4 of the time): the statement
                # is compiled once, each column goes through its type's converter, the driver gets tuples.
                compiled = statement.compile(dialect=self.engine.dialect)
                converted = {name: _bound(self.engine.dialect, name, values) for name, values in zip(names, columns)}
                conn.exec_driver_sql(str(compiled), list(zip(*(converted[key] for key in compiled.positiontup))))
                return
            records = [dict(zip(names, row)) for row in zip(*columns)]
            for start in range(0, len(records), 10_000):
                conn.execute(statement, records[start:start + 10_000])

    def _copy_upsert_postgres(self, frame: pd.DataFrame, stamp: datetime) -> None:
        # COPY into a temporary table, then one INSERT ... ON CONFLICT: ~10x executemany for large writes.
        payload, null = _csv(frame, self.tenant_id, stamp)
        columns = ", ".join(["tenant_id", *STATE_COLUMNS, "updated_at"])
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in STATE_COLUMNS[1:] + ["updated_at"])
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("CREATE TEMP TABLE zoho_sync_state_in (LIKE zoho_sync_state INCLUDING DEFAULTS) ON COMMIT DROP")
            cursor.copy_expert(f"COPY zoho_sync_state_in ({columns}) FROM STDIN WITH (FORMAT csv, NULL '{null}')",
                               io.BytesIO(payload))
            cursor.execute(
                f"INSERT INTO zoho_sync_state ({columns}) SELECT {columns} FROM zoho_sync_state_in "
                f"ON CONFLICT (tenant_id, customer_key) DO UPDATE SET {updates}"
            )
            raw.commit()
        except Exception:
            raw.rollback()
            raise
        finally:
            raw.close()

    def count_retryable_failures(self) -> int:
        query = sa.select(sa.func.count()).select_from(customers_state).where(
            customers_state.c.tenant_id == self.tenant_id, customers_state.c.status == "failed",
            customers_state.c.retryable.is_(True))
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


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


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
