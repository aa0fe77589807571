"""Versioned state-database migrations: concurrent migrate, the tasks' schema check, upgrades that keep every row."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRES_ADMIN_URL, REPO, connection_env, postgres_conn_fields, sqlite_conn_fields
from zoho_store_sync import cli, state_migrations
from zoho_store_sync.errors import StateSchemaError
from zoho_store_sync.state import make_engine
from zoho_store_sync.state_migrations import VERSION_TABLE, migrate

TENANT = {
    "tenant_id": "upgraded_shop",
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
}
WRITES = {"insert", "update", "upsert", "delete", "convert", "upload", "bulk_write"}
# Each schema of a release before versioned migrations, and the revision whose schema it is.
LEGACY = {"890de3b": "0001", "695bf6d": "0002", "330cfa3": "0003", "dfa3ca1": "0007"}
NewDatabase = Callable[[str], str]  # new_database("sqlite" | "postgres") -> URL
RawRows = dict[str, tuple[list[str], list[tuple]]]  # table -> (columns, rows as stored)


# --- databases ---------------------------------------------------------------------------------------------
@pytest.fixture
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NewDatabase]:
    """``new_database("sqlite" | "postgres")``: the URL of a new, empty state database (dropped after)."""
    created: list[str] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / f'state_{uuid.uuid4().hex[:8]}.db'}"
        request.getfixturevalue("postgres_state_url")  # skips (or fails on CI) without a server
        name = f"zoho_sync_migr_{uuid.uuid4().hex[:10]}"
        with _admin().connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    if created:
        with _admin().connect() as conn:
            for name in created:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _admin() -> sa.Engine:
    return sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _conn_fields(url: str) -> dict[str, Any]:
    return sqlite_conn_fields(url) if url.startswith("sqlite") else postgres_conn_fields(url)


def _legacy(commit: str) -> Any:
    return importlib.import_module(f"tests.fixtures.state_schema_{commit}")


def schema_snapshot(url: str) -> dict[str, Any]:
    """Everything a schema is made of, as the database reports it: tables, columns, keys, indexes; on PostgreSQL
    also each column's collation, each relation's storage options and each index's definition (autogenerate
    compares none of these three)."""
    engine = make_engine(url)
    try:
        inspector = sa.inspect(engine)
        snapshot: dict[str, Any] = {}
        for table in sorted(set(inspector.get_table_names()) - {VERSION_TABLE}):
            key = inspector.get_pk_constraint(table)
            snapshot[table] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in inspector.get_columns(table)
                ],
                "primary_key": (key.get("name"), tuple(key["constrained_columns"])),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
                ),
                "unique": sorted(
                    (u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)
                ),
            }
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                snapshot["collations"] = conn.execute(
                    sa.text(
                        "SELECT c.relname, a.attname, l.collname FROM pg_attribute a "
                        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_collation l ON l.oid = a.attcollation "
                        "WHERE c.relnamespace = 'public'::regnamespace "
                        f"AND c.relkind = 'r' AND c.relname <> '{VERSION_TABLE}' "
                        "AND a.attnum > 0 AND NOT a.attisdropped "
                        "ORDER BY 1, 2"
                    )
                ).all()
                snapshot["storage"] = conn.execute(
                    sa.text(
                        "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                        "AND relkind IN ('r', 'i') AND reloptions IS NOT NULL ORDER BY 1"
                    )
                ).all()
                snapshot["index_definitions"] = conn.execute(
                    sa.text(
                        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                        f"AND tablename <> '{VERSION_TABLE}' ORDER BY 1"
                    )
                ).all()
                snapshot["invalid_indexes"] = conn.execute(
                    sa.text("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
                ).all()
        return snapshot
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    return state_migrations.check(url).current


# --- the chain -----------------------------------------------------------------------------------------------
def test_revisions_form_one_chain_numbered_in_order_one_file_each() -> None:
    ids = state_migrations.revisions()
    assert ids == [f"{n:04d}" for n in range(1, len(ids) + 1)]
    assert state_migrations.script().get_heads() == [ids[-1]] == [state_migrations.head()]
    files = sorted(p.name for p in (Path(state_migrations.__file__).parent / "versions").glob("*.py"))
    assert [name[:4] for name in files] == ids


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_migrated_schema_is_what_the_tables_declare_alembic_check(kind: str, new_database: NewDatabase) -> None:
    migrated, declared = new_database(kind), new_database(kind)
    assert cli.main(["db", "migrate", "--url", migrated]) == 0
    engine = make_engine(migrated)
    try:
        assert state_migrations.schema_differences(engine) == []  # `alembic check`: nothing to autogenerate
    finally:
        engine.dispose()
    # What autogenerate does not compare (collations, fillfactor, index definitions) must agree too.
    from zoho_store_sync.state import metadata

    engine = make_engine(declared)
    metadata.create_all(engine)
    engine.dispose()
    assert schema_snapshot(migrated) == schema_snapshot(declared)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("commit", list(LEGACY))
def test_each_earlier_release_schema_is_exactly_its_revision(kind: str, commit: str, new_database: NewDatabase) -> None:
    by_release, by_revision = new_database(kind), new_database(kind)
    engine = make_engine(by_release)
    _legacy(commit).create(engine)
    engine.dispose()
    migrate(by_revision, LEGACY[commit])
    assert schema_snapshot(by_revision) == schema_snapshot(by_release)


# --- concurrency and the tasks' check ---------------------------------------------------------------------
def _acquire_lock_in_another_process(n: int, env: dict[str, str], barrier: Any, results: Any) -> None:
    """The sync DAG's first task, in its own process: the schema check, then the tenant's lock."""
    os.environ.update(env)  # forkserver children do not see the parent's later environment
    try:
        from zoho_store_sync import pipeline

        barrier.wait(timeout=120)
        pipeline.acquire_tenant_lock(f"tenant_{n}", f"scheduled__{n}", "sync")
        results.put((n, "ok"))
    except BaseException as exc:  # noqa: BLE001 - the parent asserts on what it receives
        results.put((n, f"{type(exc).__name__}: {exc}"))


def _run_first_steps_at_once(env: dict[str, str], n: int, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    # forkserver: Airflow is imported once in the server, then each task process is a cheap fork of it;
    # Python 3.11's forkserver ignores the parent's sys.path, so it needs PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["zoho_store_sync.pipeline", __name__])
    barrier, results = context.Barrier(n), context.Queue()
    processes = [
        context.Process(target=_acquire_lock_in_another_process, args=(i, env, barrier, results)) for i in range(n)
    ]
    for process in processes:
        process.start()
    received = sorted(results.get(timeout=180) for _ in processes)
    for process in processes:
        process.join(timeout=30)
    return received


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_eight_first_runs_at_once_on_a_fresh_database_all_succeed(
    kind: str, new_database: NewDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue: two tenants' first runs on a fresh PostgreSQL database, one failing in create_all's race."""
    n = 8
    url = new_database(kind)
    env = dict([connection_env("zoho_sync_state_db", **_conn_fields(url))])
    tenants = [{**TENANT, "tenant_id": f"tenant_{i}"} for i in range(n)]
    env["AIRFLOW_VAR_ZOHO_SYNC_TENANTS"] = json.dumps(tenants)
    if kind == "postgres":
        # The documented command, from eight processes at once: one migrates, the others wait, then find it done.
        commands = [
            subprocess.Popen(
                [sys.executable, "-m", "zoho_store_sync.cli", "db", "migrate"],
                cwd=REPO,
                env={**os.environ, **env, "PYTHONPATH": str(REPO / "plugins")},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        outputs = [(command.wait(timeout=300), *command.communicate()) for command in commands]
        assert [rc for rc, _, _ in outputs] == [0] * n, outputs
        assert sum("(empty) -> " in out for _, out, _ in outputs) == 1, outputs
        assert sum("already at" in out for _, out, _ in outputs) == n - 1, outputs
        assert _revision(url) == state_migrations.head()
    # SQLite (the embedded default) is migrated by the first task that finds it behind, under the same lock.
    received = _run_first_steps_at_once(env, n, monkeypatch)
    assert received == [(i, "ok") for i in range(n)]
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM zoho_sync_locks")).scalar() == n
    engine.dispose()
    assert _revision(url) == state_migrations.head()


def test_a_task_on_an_unmigrated_postgres_database_fails_naming_the_command(
    new_database: NewDatabase, configure_tenant: Any
) -> None:
    from zoho_store_sync import pipeline

    url = new_database("postgres")
    configure_tenant([TENANT], state_url=url)
    with pytest.raises(StateSchemaError) as raised:
        pipeline.acquire_tenant_lock(TENANT["tenant_id"], "scheduled__1", "sync")
    message = str(raised.value)
    assert "python -m zoho_store_sync.cli db migrate --conn-id zoho_sync_state_db" in message
    assert "no schema version" in message
    engine = make_engine(url)
    assert sa.inspect(engine).get_table_names() == []  # the task created nothing
    engine.dispose()


def test_a_task_on_a_postgres_database_of_an_earlier_release_fails_until_migrated(
    new_database: NewDatabase, configure_tenant: Any
) -> None:
    from zoho_store_sync import pipeline

    url = new_database("postgres")
    engine = make_engine(url)
    _legacy("890de3b").create(engine)
    engine.dispose()
    configure_tenant([TENANT], state_url=url)
    with pytest.raises(StateSchemaError, match="db migrate"):
        pipeline.acquire_tenant_lock(TENANT["tenant_id"], "scheduled__1", "sync")
    assert cli.main(["db", "check", "--url", url]) == 2
    assert cli.main(["db", "migrate", "--url", url]) == 0
    assert cli.main(["db", "check", "--url", url]) == 0
    pipeline.acquire_tenant_lock(TENANT["tenant_id"], "scheduled__1", "sync")


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_database_ahead_of_the_code_fails_and_is_left_alone(
    kind: str, new_database: NewDatabase, configure_tenant: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoho_store_sync import pipeline

    url = new_database(kind)
    migrate(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    configure_tenant([TENANT], state_url=url)
    with pytest.raises(StateSchemaError) as raised:
        pipeline.acquire_tenant_lock(TENANT["tenant_id"], "scheduled__1", "sync")
    assert "revision 9999, which this code does not know" in str(raised.value)
    assert "restore the backup" in str(raised.value)
    assert cli.main(["db", "check", "--url", url]) == 3
    assert "current: 9999" in capsys.readouterr().out
    assert cli.main(["db", "migrate", "--url", url]) == 1  # refuses: it cannot know what 9999 did
    assert _revision(url) == "9999"


def test_the_check_costs_one_query_per_engine_per_process(new_database: NewDatabase) -> None:
    from zoho_store_sync.state import StateStore

    url = new_database("postgres")
    migrate(url)
    engine = make_engine(url)
    with engine.connect():
        pass  # the dialect's own first-connect queries are not the check's
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for _ in range(3):
        StateStore(engine, "a").check_schema()
        StateStore(engine, "b").check_schema()
    assert len(statements) == 1 and VERSION_TABLE in statements[0]
    engine.dispose()


def test_a_schema_error_fails_the_task_without_airflow_retries() -> None:
    from airflow.sdk import RetryAction

    from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY

    decision = SYNC_RETRY_POLICY.evaluate(StateSchemaError("behind"), try_number=1, max_tries=4)
    assert decision.action == RetryAction.FAIL


def test_an_index_build_interrupted_by_a_crash_is_built_again(new_database: NewDatabase) -> None:
    """CREATE INDEX CONCURRENTLY leaves an invalid index when interrupted; IF NOT EXISTS alone would keep it."""
    url = new_database("postgres")
    migrate(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:  # as a killed migration leaves it (the test user is a superuser)
        conn.execute(
            sa.text("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'ix_zoho_sync_state_zoho_id'::regclass")
        )
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0005'"))
    engine.dispose()
    migrate(url)
    assert schema_snapshot(url)["invalid_indexes"] == []


# --- upgrades keep every row, and the next sync sends nothing -------------------------------------------
@pytest.fixture(scope="module")
def sandboxes() -> Iterator[tuple[Any, Any]]:
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store
    from sandboxes.zoho_crm import ZohoSandbox

    with ZohoSandbox() as zoho, MagentoSandbox(generate_store(400, seed=11)) as magento:
        yield zoho, magento


def _sync(run_id: str, *, full: bool = False) -> dict[str, Any]:
    """One scheduled run in this process, task after task (as tests/dags/crash_runner.py runs it); ``full``
    forces a full pass (every customer compared with its state row)."""
    from zoho_store_sync import pipeline

    tenant_id = TENANT["tenant_id"]
    pipeline.acquire_tenant_lock(tenant_id, run_id, "sync")
    try:
        extracted = pipeline.extract(tenant_id, run_id, full=full)
        planned = pipeline.plan(tenant_id, run_id, extracted)
        loaded = pipeline.load(tenant_id, run_id, planned)
        return pipeline.report(tenant_id, run_id, extracted, planned, loaded)
    finally:
        pipeline.release_tenant_lock(tenant_id, run_id, "sync")


@pytest.fixture(scope="module")
def reference_rows(sandboxes: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """Every table's rows after a real first sync (state, runs, cursors, access token) plus a connected refresh
    token, recorded errors, a reset and another tenant's lock: what an upgraded database must keep."""
    from zoho_store_sync.state import RefreshTokenStore

    zoho, magento = sandboxes
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'state.db'}"
    migrate(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            *connection_env(
                "zoho_test",
                conn_type="http",
                login=zoho.client_id,
                password=zoho.client_secret,
                extra={
                    "refresh_token": zoho.refresh_token,
                    "accounts_url": zoho.url,
                    "api_domain": zoho.url,
                    "allow_custom_hosts": True,
                },
            )
        )
        patch.setenv(
            *connection_env(
                "magento_test",
                conn_type="http",
                host=magento.url,
                password=magento.integration_token,
                extra={"auth": "integration_token"},
            )
        )
        patch.setenv(*connection_env("zoho_sync_state_db", **sqlite_conn_fields(url)))
        patch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps([TENANT]))
        summary = _sync("scheduled__reference")
    assert summary["inserted"] > 300 and summary["failed"] == 0
    engine = make_engine(url)
    RefreshTokenStore(engine).save(
        "zoho_other",
        "other-secret",
        "1000.refresh.token",
        scope="ZohoCRM.modules.ALL",
        api_domain="https://www.zohoapis.eu",
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO zoho_sync_errors (tenant_id, run_id, customer_key, email, module, code, "
                "message, retryable, at) VALUES ('upgraded_shop', 'scheduled__old', '17', "
                "'x@example.com', 'Contacts', 'INVALID_DATA', 'invalid data ü', 0, :at)"
            ),
            {"at": "2024-05-01 10:00:00.000000"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO zoho_sync_resets (tenant_id, modules, status, run_id, started_at, "
                "finished_at) VALUES ('other_shop', 'Contacts,Leads', 'done', 'manual__1', :at, :at)"
            ),
            {"at": "2024-05-02 10:00:00.000000"},
        )
        conn.execute(
            sa.text(
                "INSERT INTO zoho_sync_locks (tenant_id, holder, run_id, expires_at) "
                "VALUES ('other_shop', 'reset', 'manual__2', :at)"
            ),
            {"at": "2099-01-01 00:00:00.000000"},
        )
    rows: dict[str, list[dict]] = {}
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            if name != VERSION_TABLE:
                rows[name] = [dict(row._mapping) for row in conn.execute(sa.select(table))]
    engine.dispose()
    assert {name for name, table_rows in rows.items() if table_rows} >= {
        "zoho_sync_state",
        "zoho_sync_runs",
        "zoho_sync_cursors",
        "zoho_sync_access_tokens",
        "zoho_sync_errors",
        "zoho_sync_refresh_tokens",
        "zoho_sync_resets",
        "zoho_sync_locks",
    }
    return rows


def _fill(url: str, rows: dict[str, list[dict]]) -> None:
    """Insert the reference rows into whichever tables and columns this (older) schema has; ids are the
    database's own (sequences advance as the old release's writes advanced them)."""
    engine = make_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.begin() as conn:
        for name, table in metadata.tables.items():
            if name in rows and rows[name]:
                keep = [c.name for c in table.columns if c.name != "id"]
                conn.execute(table.insert(), [{k: row[k] for k in keep if k in row} for row in rows[name]])
    engine.dispose()


def _raw_rows(url: str) -> RawRows:
    """Every table's rows as the database stores them (PostgreSQL: each value's text form; SQLite: the stored
    value), in key order: byte for byte comparable."""
    engine = make_engine(url)
    out = {}
    try:
        inspector = sa.inspect(engine)
        postgres = engine.dialect.name == "postgresql"
        with engine.connect() as conn:
            for table in sorted(set(inspector.get_table_names()) - {VERSION_TABLE}):
                columns = [c["name"] for c in inspector.get_columns(table)]
                keys = inspector.get_pk_constraint(table)["constrained_columns"]
                # byte order: migration 0005 changes the keys' collation, not their order here
                order = ", ".join(f'"{c}"::text COLLATE "C"' if postgres else f'"{c}"' for c in keys)
                values = ", ".join(f'"{c}"::text' if postgres else f'"{c}"' for c in columns)
                out[table] = (
                    columns,
                    [tuple(r) for r in conn.exec_driver_sql(f"SELECT {values} FROM {table} ORDER BY {order}")],
                )
    finally:
        engine.dispose()
    return out


def _assert_kept(before: RawRows, after: RawRows) -> None:
    for table, (columns, rows) in before.items():
        after_columns, after_rows = after[table]
        keep = [after_columns.index(c) for c in columns]
        assert [tuple(row[i] for i in keep) for row in after_rows] == rows, table


def _noop_sync_sends_nothing(url: str, sandboxes: tuple[Any, Any], configure_tenant: Any) -> None:
    zoho, magento = sandboxes
    configure_tenant([TENANT], zoho=zoho, magento=magento, state_url=url)
    zoho.reset_calls()
    scheduled = _sync(f"scheduled__{uuid.uuid4().hex[:8]}")  # incremental when the cursors were kept
    full = _sync(f"full__{uuid.uuid4().hex[:8]}", full=True)  # every customer against its kept state row
    assert [c for c in zoho.calls() if c["operation"] in WRITES] == []
    for summary in (scheduled, full):
        assert summary["write_calls"] == summary["inserted"] == summary["updated"] == summary["failed"] == 0
    assert full["unchanged"] > 300


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("commit", list(LEGACY))
def test_a_database_of_an_earlier_release_upgrades_keeping_every_row(
    kind: str,
    commit: str,
    new_database: NewDatabase,
    reference_rows: dict[str, list[dict]],
    sandboxes: tuple[Any, Any],
    configure_tenant: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = new_database(kind)
    engine = make_engine(url)
    _legacy(commit).create(engine)
    engine.dispose()
    _fill(url, reference_rows)
    before = _raw_rows(url)
    assert cli.main(["db", "migrate", "--url", url]) == 0  # the documented command
    output = capsys.readouterr().out
    assert f"stamped {state_migrations.BASELINE}" in output and "(head)" in output
    after = _raw_rows(url)
    _assert_kept(before, after)
    for table, (_, rows) in after.items():
        assert len(rows) == len(before.get(table, ([], []))[1]), table  # no row added or lost by the migration
    fresh = new_database(kind)
    migrate(fresh)
    assert schema_snapshot(url) == schema_snapshot(fresh)  # whichever release created it: the same schema
    _noop_sync_sends_nothing(url, sandboxes, configure_tenant)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("start", state_migrations.revisions()[:-1])
def test_a_database_at_each_revision_upgrades_step_by_step_keeping_every_row(
    kind: str,
    start: str,
    new_database: NewDatabase,
    reference_rows: dict[str, list[dict]],
    sandboxes: tuple[Any, Any],
    configure_tenant: Any,
) -> None:
    url = new_database(kind)
    migrate(url, start)
    _fill(url, reference_rows)
    chain = state_migrations.revisions()
    before = _raw_rows(url)
    for revision in chain[chain.index(start) + 1 :]:
        assert migrate(url, revision).after == revision
        _assert_kept(before, _raw_rows(url))
    fresh = new_database(kind)
    migrate(fresh)
    assert schema_snapshot(url) == schema_snapshot(fresh)
    _noop_sync_sends_nothing(url, sandboxes, configure_tenant)
