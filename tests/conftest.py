"""Test setup: a throw-away Airflow home, the repo's dags/ and plugins/, sandboxes and state databases.

Airflow reads its configuration at import time, so the environment is set here, before anything
imports airflow.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HOME = Path(tempfile.mkdtemp(prefix="zoho-sync-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "ZOHO_SYNC_STAGING_URL": f"file://{_HOME}/staging",
        "ZOHO_SYNC_INCLUDE_DIR": str(REPO / "include"),
    }
)
os.environ.pop("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", None)
for path in (REPO / "plugins", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

POSTGRES_ADMIN_URL = os.environ.get(
    "ZOHO_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB (SQLite in the temp home): needed by dag.test() only."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _HOME


@pytest.fixture
def sqlite_state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@contextlib.contextmanager
def throwaway_postgres_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards; skipped (a failure on CI) when no server answers."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server here"
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required on CI but unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}); "
            "set ZOHO_SYNC_TEST_POSTGRES_URL to run these tests"
        )
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        sa.create_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def migrated_state_database(kind: str, tmp_path: Path, prefix: str) -> Iterator[str]:
    """An empty state database of ``kind`` ("sqlite" or "postgres") migrated to head, for one test."""
    from zoho_store_sync.state_migrations import migrate

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        migrate(url)
        yield url
        return
    with throwaway_postgres_database(prefix) as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
def postgres_state_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session; skipped (never on CI) when no server answers."""
    with throwaway_postgres_database("zoho_sync_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each state-table test runs on SQLite and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("postgres_state_url")


@pytest.fixture
def zoho_sandbox():
    """A fresh Zoho org. Its own refresh token: the session's PostgreSQL state database keeps each token's refresh
    history (Zoho allows 10 refreshes in 10 minutes), which tests sharing one token would exhaust between them."""
    import uuid

    from sandboxes.zoho_crm import ZohoSandbox

    with ZohoSandbox(refresh_token=f"1000.sandbox-refresh-token-{uuid.uuid4().hex}") as sandbox:
        yield sandbox


@pytest.fixture
def magento_store():
    """Start Magento sandboxes of a chosen size: ``magento_store(n_customers, seed)``; all stopped after."""
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store

    started = []

    def start(n_customers: int, seed: int):  # type: ignore[no-untyped-def]
        started.append(MagentoSandbox(generate_store(n_customers, seed=seed)).start())
        return started[-1]

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def magento_sandbox():
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store

    with MagentoSandbox(generate_store(400, seed=11)) as sandbox:
        yield sandbox


def connection_env(conn_id: str, **fields) -> tuple[str, str]:
    """An AIRFLOW_CONN_<ID> env var in JSON form."""
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields)


def sqlite_conn_fields(url: str) -> dict:
    return {"conn_type": "sqlite", "host": url.removeprefix("sqlite:///")}


def postgres_conn_fields(url: str) -> dict:
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return {
        "conn_type": "postgres",
        "host": parsed.host,
        "port": parsed.port,
        "login": parsed.username,
        "password": parsed.password,
        "schema": parsed.database,
    }


@pytest.fixture
def configure_tenant(monkeypatch: pytest.MonkeyPatch):
    """Install Connections for the sandboxes and the state DB, and the tenants Variable, as env vars."""

    def _configure(
        tenants: list[dict],
        *,
        zoho=None,
        magento=None,
        state_url: str | None = None,
        zoho_conn_id: str = "zoho_test",
        magento_conn_id: str = "magento_test",
    ) -> None:
        if zoho is not None:
            monkeypatch.setenv(
                *connection_env(
                    zoho_conn_id,
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
        if magento is not None:
            monkeypatch.setenv(
                *connection_env(
                    magento_conn_id,
                    conn_type="http",
                    host=magento.url,
                    password=magento.integration_token,
                    extra={"auth": "integration_token"},
                )
            )
        if state_url is not None:
            fields = (
                sqlite_conn_fields(state_url) if state_url.startswith("sqlite") else postgres_conn_fields(state_url)
            )
            monkeypatch.setenv(*connection_env("zoho_sync_state_db", **fields))
        monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps(tenants))

    return _configure
