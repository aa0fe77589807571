"""Idempotent DDL the revisions share: IF [NOT] EXISTS everywhere, PostgreSQL indexes built CONCURRENTLY."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def create_table(name: str, *columns: Any, **kw: Any) -> None:
    """CREATE TABLE IF NOT EXISTS: a table an earlier release created is kept as it is."""
    op.create_table(name, *columns, if_not_exists=True, **kw)


def add_column(table: str, column: sa.Column) -> None:
    """ADD COLUMN unless the table has it. Give a NOT NULL column a constant server default: PostgreSQL 11+ then
    adds it without rewriting the table, and SQLite accepts it."""
    if column.name not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        op.add_column(table, column)


def create_index(
    name: str,
    table: str,
    columns: Sequence[str],
    *,
    unique: bool = False,
    concurrently: bool = True,
    where: str | None = None,
) -> None:
    """CREATE INDEX IF NOT EXISTS. PostgreSQL: CONCURRENTLY (writes go on while it builds; it waits for the
    transactions already writing), outside the revision's transaction, after dropping the invalid leftover of an
    interrupted build. ``columns`` may carry a collation: ``'tenant_id COLLATE "C"'``; ``where`` makes it partial."""
    predicate = f" WHERE {where}" if where else ""
    kind = "UNIQUE INDEX" if unique else "INDEX"
    if not is_postgres() or not concurrently:
        op.execute(f"CREATE {kind} IF NOT EXISTS {name} ON {table} ({', '.join(columns)}){predicate}")
        return
    with op.get_context().autocommit_block():
        if index_state(name) == "invalid":
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        op.execute(f"CREATE {kind} CONCURRENTLY IF NOT EXISTS {name} ON {table} ({', '.join(columns)}){predicate}")


def drop_index(name: str) -> None:
    """DROP INDEX IF EXISTS; PostgreSQL: CONCURRENTLY, so writes to its table are not blocked."""
    if not is_postgres():
        op.execute(f"DROP INDEX IF EXISTS {name}")
        return
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def index_state(name: str) -> str | None:
    """PostgreSQL: "valid", "invalid" (an interrupted CONCURRENTLY build) or None (no such index)."""
    valid = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"name": name},
        )
        .scalar()
    )
    return None if valid is None else "valid" if valid else "invalid"
