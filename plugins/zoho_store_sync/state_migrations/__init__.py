"""Versioned migrations of the state database (Alembic, driven from code), run under a lock by ``cli db migrate``.

Tasks never create or alter the schema: ``ensure_current`` checks the revision once per engine per process
and raises ``StateSchemaError`` naming the command to run (SQLite, the embedded default, is migrated there,
by the same ``migrate`` under the same lock). ``migrate`` recognises a database created before versioned
migrations (tables but no version table) and stamps it at the baseline; every later revision is idempotent,
so databases of every earlier release end at the same schema.

Adding a revision (a table, a column, an index):

1. change the tables in ``zoho_store_sync/state/tables.py`` (``state.metadata``);
2. copy the newest file of ``versions/`` to ``versions/NNNN_what_it_does.py`` (the next number), set
   ``revision = "NNNN"`` and ``down_revision`` to the previous number, and write ``upgrade()``: idempotent
   (``ops.create_table``, ``ops.create_index``, ``ops.drop_index``, or SQL with IF [NOT] EXISTS), and on
   PostgreSQL never a long lock on a table that may be large (``ops.create_index`` builds CONCURRENTLY);
3. run ``tests/zoho_store_sync/test_state_migrations.py``: its compare test (``alembic check``) fails until the
   revisions and ``state.metadata`` agree, and its upgrade tests migrate filled databases of every revision;
4. add the change to CHANGELOG.md and to the README's *Upgrading* table.

Revisions go forward only: to go back, restore the backup taken before ``db migrate``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import weakref
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory

from zoho_store_sync.errors import StateSchemaError

log = logging.getLogger(__name__)

VERSION_TABLE = "zoho_sync_alembic_version"  # not alembic_version: the database may also hold another app's
BASELINE = "0001"  # the first release's schema
STATE_TABLE = "zoho_sync_state"
# pg_advisory_lock key of every migration of every release ("zoho_mig"): never change it.
LOCK_KEY = 0x7A6F686F5F6D6967
LOCK_POLL_S = 0.25
MIGRATE_COMMAND = "python -m zoho_store_sync.cli db migrate"


@functools.cache
def alembic_config() -> Config:
    """No alembic.ini and no env.py: the plugins manager imports every .py under plugins/, so the environment
    is this module's code, and the Config points at this package's versions/ folder."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    return config


@functools.cache
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    return script().get_current_head() or BASELINE


def revisions() -> list[str]:
    """Every revision id of this code, oldest first."""
    return [rev.revision for rev in reversed(list(script().walk_revisions()))]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands against this code's revisions."""

    current: str | None  # None: no version table (an empty database, or one created before migrations)
    head: str

    @property
    def state(self) -> str:
        if self.current == self.head:
            return "current"
        return "behind" if self.current is None or self.current in revisions() else "ahead"

    def message(self, target: str = "--conn-id <state connection id>") -> str:
        if self.state == "current":
            return f"the state database is at revision {self.head} (head)"
        command = f"`{MIGRATE_COMMAND} {target}`"
        if self.state == "ahead":
            return (
                f"the state database is at revision {self.current}, which this code does not know (its newest "
                f"is {self.head}): a newer release migrated it. Deploy that release on every worker, or restore "
                "the backup taken before that migration"
            )
        where = (
            "has no schema version (empty, or created by a release before versioned migrations)"
            if self.current is None
            else f"is at revision {self.current}"
        )
        return (
            f"the state database {where}; this code needs revision {self.head}. Back the database up, then run "
            f"{command} (README: Upgrading); tasks never change the schema themselves"
        )


@dataclass
class MigrationResult:
    before: str | None
    after: str | None
    stamped: bool = False  # tables without a version: recognised as an earlier release's and stamped BASELINE
    steps: list[tuple[str, float]] = field(default_factory=list)  # (revision, seconds) applied, in order
    seconds: float = 0.0


def _engine(target: sa.Engine | str) -> tuple[sa.Engine, bool]:
    """(engine, owned): a URL gets a private engine, disposed by the caller."""
    if isinstance(target, sa.Engine):
        return target, False
    from zoho_store_sync.state import make_engine

    return make_engine(target), True


def _missing_table(error: sa.exc.DBAPIError) -> bool:
    return getattr(error.orig, "pgcode", None) == "42P01" or "no such table" in str(error.orig)


def check(target: sa.Engine | str) -> SchemaStatus:
    """The database's revision against this code's head: one query."""
    engine, owned = _engine(target)
    try:
        with engine.connect() as conn:
            try:
                rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
            except sa.exc.DBAPIError as error:
                if not _missing_table(error):
                    raise
                rows = []
        return SchemaStatus(",".join(sorted(rows)) or None, head())
    finally:
        if owned:
            engine.dispose()


_verified: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
_verified_guard = threading.Lock()


def ensure_current(engine: sa.Engine, conn_id: str | None = None) -> None:
    """Raise StateSchemaError unless the database is at this code's head; checked once per engine per process.

    SQLite (the embedded default) behind head is migrated here, through ``migrate`` and its lock.
    """
    if engine in _verified:
        return
    status = check(engine)
    if status.state == "behind" and engine.dialect.name == "sqlite":
        migrate(engine)
        status = check(engine)
    if status.state != "current":
        raise StateSchemaError(status.message(f"--conn-id {conn_id}" if conn_id else "--conn-id <state connection id>"))
    with _verified_guard:
        _verified.add(engine)


def migrate(target: sa.Engine | str, revision: str = "head", *, wait_seconds: float = 3600.0) -> MigrationResult:
    """Upgrade the database to ``revision`` (default: head) under the migration lock; idempotent.

    Any number of concurrent callers is safe: one migrates, the others wait for the lock, then find nothing to do.
    ``target`` is an engine or a SQLAlchemy URL.
    """
    engine, owned = _engine(target)
    started = time.perf_counter()
    try:
        if engine.dialect.name == "postgresql":
            with _advisory_lock(engine, wait_seconds), engine.connect() as conn:
                result = _migrate_locked(conn, revision, external_transaction=False)
        else:
            with _sqlite_write_lock(engine, wait_seconds) as conn:
                result = _migrate_locked(conn, revision, external_transaction=True)
    finally:
        if owned:
            engine.dispose()
    result.seconds = time.perf_counter() - started
    if result.steps or result.stamped:
        log.info(
            "state database migrated %s -> %s in %.1f s (%s)",
            result.before,
            result.after,
            result.seconds,
            ", ".join(f"{rev} {seconds:.2f} s" for rev, seconds in result.steps),
        )
    return result


def _migrate_locked(conn: sa.Connection, revision: str, *, external_transaction: bool) -> MigrationResult:
    """The migration proper, the lock held. ``external_transaction``: SQLite's BEGIN IMMEDIATE spans it all."""
    inspector = sa.inspect(conn)
    before = None
    if inspector.has_table(VERSION_TABLE):
        before = ",".join(sorted(conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())) or None
    if before is not None and before not in revisions():
        raise StateSchemaError(SchemaStatus(before, head()).message())
    result = MigrationResult(before=before, after=before)
    if before is None and inspector.has_table(STATE_TABLE):
        # An earlier release's tables: keep them, record them as the baseline; the revisions after it are
        # idempotent, so whichever release created the tables, they end at the same schema.
        MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).stamp(script(), BASELINE)
        result.stamped, result.before = True, None
    if not external_transaction:
        conn.commit()  # the migration context must start outside a transaction (autocommit blocks)
    result.after = _upgrade(conn, revision, result.steps)
    if not external_transaction:
        conn.commit()
    return result


def _upgrade(conn: sa.Connection, revision: str, steps: list[tuple[str, float]]) -> str | None:
    """alembic's ``command.upgrade`` without env.py: one transaction per revision (PostgreSQL's CONCURRENTLY
    steps run between them); returns the revision reached."""
    scripts = script()
    clock = [time.perf_counter()]

    def upgrade_revs(rev: Any, _context: Any) -> Any:
        return scripts._upgrade_revs(revision, rev)

    def on_version_apply(
        ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
    ) -> None:
        now = time.perf_counter()
        assert step.up_revision_id is not None  # None only for a stamp, which an upgrade never is
        steps.append((step.up_revision_id, now - clock[0]))
        clock[0] = now

    from zoho_store_sync.state import metadata

    with EnvironmentContext(alembic_config(), scripts, fn=upgrade_revs, destination_rev=revision) as env:
        env.configure(
            connection=conn,
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            transaction_per_migration=True,
            transactional_ddl=True,
            on_version_apply=on_version_apply,
        )
        with env.begin_transaction():
            env.run_migrations()
        return env.get_context().get_current_revision()


@contextlib.contextmanager
def _advisory_lock(engine: sa.Engine, wait_seconds: float) -> Iterator[None]:
    """PostgreSQL: the session advisory lock LOCK_KEY on a connection of its own, held for the whole upgrade.

    Polled with pg_try_advisory_lock, never waited for in pg_advisory_lock: a waiting session keeps a snapshot
    open, and the holder's CREATE INDEX CONCURRENTLY would wait for that snapshot while the waiter waits for
    the lock (a deadlock PostgreSQL cannot see, the lock being held by another session).
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        deadline = time.monotonic() + wait_seconds
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY}).scalar():
            if time.monotonic() > deadline:
                raise TimeoutError(f"another migration of the state database held the lock for {wait_seconds:.0f} s")
            time.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})


@contextlib.contextmanager
def _sqlite_write_lock(engine: sa.Engine, wait_seconds: float) -> Iterator[sa.Connection]:
    """SQLite: one BEGIN IMMEDIATE transaction around the whole upgrade. It holds the database's write lock, so
    concurrent migrators queue, and the upgrade is all or nothing (SQLite's DDL is transactional)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        conn = engine.connect()
        conn.info["immediate"] = True  # state.make_engine's begin hook
        try:
            transaction = conn.begin()
            break
        except sa.exc.OperationalError as error:  # "database is locked" after the driver's own busy timeout
            conn.close()
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
    try:
        yield conn
        transaction.commit()
    except BaseException:
        transaction.rollback()
        raise
    finally:
        conn.close()


def schema_differences(engine: sa.Engine) -> list[Any]:
    """``alembic check``: what autogenerate finds between ``state.metadata`` and the database (empty: none)."""
    from alembic.autogenerate import compare_metadata

    from zoho_store_sync.state import metadata

    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True, "target_metadata": metadata}
        )
        return compare_metadata(context, metadata)
