"""Engines for the state database: from an Airflow Connection, one per database per process, revision checked."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from zoho_store_sync.errors import StateConnectionError


def engine_url_from_connection(conn: Any) -> str:
    """SQLAlchemy URL of an Airflow Connection of type sqlite or postgres."""
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        path = conn.host or conn.schema
        return f"sqlite:///{path}" if path else "sqlite://"
    if conn_type in ("postgres", "postgresql"):
        url = sa.engine.URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or "127.0.0.1",
            port=conn.port or 5432,
            database=conn.schema or "postgres",
        )
        return url.render_as_string(hide_password=False)
    raise StateConnectionError(f"state connection type {conn_type!r} is not supported: use sqlite or postgres")


def url_for_conn_id(conn_id: str) -> str:
    """SQLAlchemy URL of the state database an Airflow Connection id names."""
    from airflow.sdk import Connection

    return engine_url_from_connection(Connection.get(conn_id))


def engine_from_conn_id(conn_id: str) -> sa.Engine:
    """The shared engine of a task's state database, its schema revision checked (once per process)."""
    from zoho_store_sync.state_migrations import ensure_current

    engine = _shared_engine(url_for_conn_id(conn_id))
    ensure_current(engine, conn_id)
    return engine


@functools.lru_cache(maxsize=32)
def _shared_engine(url: str) -> sa.Engine:
    """One engine (one connection pool) per database per process, however many steps ask for it."""
    return make_engine(url)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (BEGIN IMMEDIATE for the token lock)
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers don't block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("immediate", False) else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)
