"""The Zoho sync page's app (ui/app.py) and plugin (ui/plugin.py): auth through Airflow's auth manager, the JSON
API over SQLite and PostgreSQL state, broken tenants beside working ones, and nothing migrated by a request.

Users and tokens are Airflow's own: a SimpleAuthManager with one user per role issues real JWTs, and the app
resolves them with Airflow's ``get_user`` (the revoked-token check reads the test's metadata DB).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, migrated_state_database

ROLES = ("admin", "op", "user", "viewer")
# One secret for the session: Airflow caches the token validator per auth manager class, with the first secret.
JWT_SECRET = secrets.token_hex(32)
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
NORTH = {"tenant_id": "north", "source": "magento", "store_conn_id": "m_north", "zoho_conn_id": "z_north"}
SOUTH = {"tenant_id": "south", "source": "deconetwork", "store_conn_id": "d_south", "zoho_conn_id": "z_south"}
UNMIGRATED = {**NORTH, "tenant_id": "behind", "state_conn_id": "unmigrated_db"}
NO_CONNECTION = {**NORTH, "tenant_id": "nowhere", "state_conn_id": "missing_db"}
BAD_SCHEDULE = {**NORTH, "tenant_id": "typo", "schedule": "every hour"}
ROUTES = (
    "/",
    "/static/app.js",
    "/static/app.css",
    "/api/tenants",
    "/api/tenants/north",
    "/api/tenants/north/runs",
    "/api/tenants/north/errors",
    "/api/tenants/north/errors.csv",
    "/api/tenants/north/deleted",
    "/api/tenants/north/reset",
)


# --- Airflow's auth manager, with a user of each role ----------------------------------------------------------


@pytest.fixture
def tokens(airflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A JWT per SimpleAuthManager role, issued by the auth manager the app resolves users with."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE_AUTH_MANAGER)
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{r}:{r}" for r in ROLES))
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", JWT_SECRET)
    airflow_app._AuthManagerState.instance = None
    manager = airflow_app.create_auth_manager()
    manager.init()
    yield {role: manager.generate_jwt(SimpleAuthManagerUser(username=role, role=role)) for role in ROLES}
    airflow_app._AuthManagerState.instance = None


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- state: what runs, errors and a reset leave behind, written through the project's StateStore ---------------


def _summary(**figures: Any) -> dict[str, Any]:
    return {"ok": True, "invalid": 0, "duration_s": 2.5, "org_key": "org-1", **figures}


def fill_state(url: str) -> None:
    """North: a sync, a dry run, a red sync, errors (one a formula), a deleted-in-Zoho record, a reset running.
    South: one sync. Both written as the pipeline writes them (StateStore), the counts in summary["state"]."""
    import pandas as pd

    from zoho_store_sync.state import StateStore, make_engine
    from zoho_store_sync.state.health import record_reset_progress
    from zoho_store_sync.state_migrations import migrate

    engine = make_engine(url)
    migrate(engine)
    north, south = StateStore(engine, "north"), StateStore(engine, "south")
    state = {"in_zoho": {"Contacts": 7, "Leads": 3}, "deleted_in_zoho": 1, "failed": 2}
    north.record_run(
        "sync_1",
        "sync",
        _summary(extracted=12, sent=12, inserted=10, updated=0, failed=2, credits=4, state=state),
        datetime.now(UTC) - timedelta(minutes=30),
    )
    north.record_run(
        "dry_1", "dry_run", _summary(extracted=12, sent=0, inserted=0, updated=0, failed=0, credits=0), None
    )
    north.record_run(
        "sync_2",
        "sync",
        _summary(extracted=12, sent=3, inserted=1, updated=1, failed=1, credits=2, ok=False, invalid=1, state=state),
        None,
    )
    north.record_errors(
        "sync_2",
        [
            {
                "customer_key": "41",
                "email": '=HYPERLINK("x")@evil.example',
                "module": "Leads",
                "code": "INVALID_DATA",
                "message": "<img src=x onerror=alert(1)>",
                "retryable": False,
            },
            {
                "customer_key": "42",
                "email": "ann@shop.example",
                "module": "Contacts",
                "code": "DUPLICATE_DATA",
                "message": "duplicate",
                "retryable": False,
            },
        ],
    )
    north.record_invalid(
        "sync_2", pd.DataFrame({"customer_key": ["43"], "email": ["not-an-email"], "reason": ["email invalid"]}), None
    )
    north.save_outcomes(
        [
            {
                "customer_key": "44",
                "email": "gone@shop.example",
                "module": "Leads",
                "zoho_id": "9001",
                "payload_hash": 1,
                "status": "deleted_in_zoho",
                "error_code": None,
                "error_message": None,
                "retryable": None,
                "attempts": 0,
            }
        ]
    )
    north.begin_reset(["Contacts"], "reset_1")  # forgets the Contacts rows: the deleted record is a Lead
    record_reset_progress(engine, "north", total=40, done=10)
    south.record_run(
        "sync_1",
        "sync",
        _summary(
            extracted=5,
            sent=5,
            inserted=5,
            updated=0,
            failed=0,
            credits=1,
            state={"in_zoho": {"Contacts": 5}, "deleted_in_zoho": 0, "failed": 0},
        ),
        None,
    )
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def ui_state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new state database per test, migrated (SQLite, or a throw-away PostgreSQL database)."""
    with migrated_state_database(request.param, tmp_path, "zoho_sync_ui") as url:
        yield url


@pytest.fixture
def page(tokens: dict[str, str], ui_state_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The app over ``ui_state_url`` (SQLite or PostgreSQL) with north and south, and three broken tenants: one the
    Variable's parser refuses, one whose Connection is missing, one whose database was never migrated."""
    from fastapi.testclient import TestClient

    from zoho_store_sync.config import parse_tenants
    from zoho_store_sync.state import make_engine
    from zoho_store_sync.ui.app import PageSources, create_app, schema_problem, server_auth_manager

    fill_state(ui_state_url)
    engines = {
        "zoho_sync_state_db": make_engine(ui_state_url),
        "unmigrated_db": make_engine(f"sqlite:///{tmp_path / 'empty.db'}"),
    }
    dag_run_calls: list[list[str]] = []

    def engine_for(conn_id: str):  # type: ignore[no-untyped-def]
        if conn_id not in engines:
            raise LookupError(f"The conn_id `{conn_id}` isn't defined")
        return engines[conn_id]

    def last_dag_runs(dag_ids):  # type: ignore[no-untyped-def]
        dag_run_calls.append(list(dag_ids))
        return {"zoho_sync__north": {"run_id": "manual__1", "state": "running", "start_date": None, "end_date": None}}

    sources = PageSources(
        load_tenants=lambda: parse_tenants([NORTH, SOUTH, UNMIGRATED, NO_CONNECTION, BAD_SCHEDULE]),
        engine_for=engine_for,
        schema_problem=schema_problem,
        last_dag_runs=last_dag_runs,
        auth_manager=server_auth_manager,
    )

    class Page:
        client = TestClient(create_app(sources))
        admin = bearer(tokens["admin"])
        dag_runs = dag_run_calls
        unmigrated = engines["unmigrated_db"]

        def get(self, path: str, **kwargs: Any) -> Any:
            response = self.client.get(path, headers=self.admin, **kwargs)
            assert response.status_code == 200, response.text
            return response.json()

    yield Page()
    for engine in engines.values():
        engine.dispose()


# --- auth -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ui_state_url", ["sqlite"], indirect=True)
def test_every_route_refuses_a_request_without_a_user_with_401(page):
    for route in ROUTES:
        response = page.client.get(route)
        assert response.status_code == 401, route
    assert "Log in to Airflow" in page.client.get("/").text  # the page says it in words


@pytest.mark.parametrize("ui_state_url", ["sqlite"], indirect=True)
def test_viewer_and_user_roles_are_refused_with_403_and_op_and_admin_admitted(page, tokens):
    for route in ROUTES:
        for role in ("viewer", "user"):
            assert page.client.get(route, headers=bearer(tokens[role])).status_code == 403, (route, role)
        for role in ("op", "admin"):
            assert page.client.get(route, headers=bearer(tokens[role])).status_code == 200, (route, role)


@pytest.mark.parametrize("ui_state_url", ["sqlite"], indirect=True)
def test_the_airflow_ui_cookie_admits_its_user_and_a_forged_token_does_not(page, tokens):
    import jwt

    page.client.cookies.set("_token", tokens["op"])
    assert page.client.get("/api/tenants").status_code == 200
    page.client.cookies.clear()
    claims = jwt.decode(tokens["admin"], options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-server-secret" * 4, algorithm="HS512")
    assert page.client.get("/api/tenants", headers=bearer(forged)).status_code in (401, 403)


# --- the page -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ui_state_url", ["sqlite"], indirect=True)
def test_the_page_and_its_assets_are_served_same_origin_only(page):
    html = page.client.get("/", headers=page.admin)
    assert html.headers["content-type"].startswith("text/html")
    policy = html.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "frame-ancestors 'self'" in policy
    assert 'src="static/app.js"' in html.text and "http" not in html.text.replace("http://www.w3.org", "")
    assert page.client.get("/static/app.js", headers=page.admin).headers["content-type"].startswith("text/javascript")
    assert page.client.get("/static/../app.py", headers=page.admin).status_code == 404
    assert page.client.get("/static/index.py", headers=page.admin).status_code == 404


def test_the_page_script_puts_data_in_the_page_as_text_only():
    source = (REPO / "plugins/zoho_store_sync/ui/static/app.js").read_text()
    script = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))  # code only
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    for asset in ("app.js", "app.css", "index.html"):
        assert "//cdn" not in (REPO / "plugins/zoho_store_sync/ui/static" / asset).read_text()


# --- the API on SQLite and PostgreSQL ---------------------------------------------------------------------------


def test_the_overview_shows_every_readable_tenant_and_says_why_the_others_are_not(page):
    data = page.get("/api/tenants")
    rows = {row["tenant_id"]: row for row in data["tenants"]}
    assert list(rows) == ["north", "south"]
    north = rows["north"]
    assert north["last_run"]["run_id"] == "sync_2" and north["last_run"]["ok"] is False
    assert north["in_zoho"] == {"Contacts": 7, "Leads": 3}
    assert (north["deleted_in_zoho"], north["failed_records"]) == (1, 2)
    assert north["last_24h"]["runs"] == 3 and north["last_24h"]["rejected"] == 3
    assert north["reset"]["done"] == 10 and north["reset"]["total"] == 40
    assert north["dag_run"]["state"] == "running" and rows["south"]["dag_run"] is None
    assert rows["south"]["in_zoho"] == {"Contacts": 5}
    broken = {b["tenant_id"]: b["error"] for b in data["broken"]}
    assert set(broken) == {"behind", "nowhere", "typo"}
    assert "python -m zoho_store_sync.cli db migrate" in broken["behind"]
    assert "missing_db" in broken["nowhere"]
    assert "schedule" in broken["typo"]
    assert page.dag_runs == [["zoho_sync__north", "zoho_sync__south"]]  # one metadata-DB query for all tenants


def test_a_request_never_migrates_a_state_database(page):
    from zoho_store_sync.state_migrations import check

    page.get("/api/tenants")
    assert page.client.get("/api/tenants/behind", headers=page.admin).status_code == 503
    assert check(page.unmigrated).state == "behind"


def test_an_unknown_tenant_is_404_and_a_broken_one_says_why(page):
    unknown = page.client.get("/api/tenants/nobody/runs", headers=page.admin)
    assert unknown.status_code == 404 and "not configured" in unknown.json()["detail"]
    typo = page.client.get("/api/tenants/typo", headers=page.admin)
    assert typo.status_code == 404 and "schedule" in typo.json()["detail"]
    nowhere = page.client.get("/api/tenants/nowhere/errors", headers=page.admin)
    assert nowhere.status_code == 503 and "missing_db" in nowhere.json()["detail"]


def test_one_tenant_shows_its_runs_reset_mapping_and_deleted_records(page):
    detail = page.get("/api/tenants/north")
    assert detail["tenant"]["last_run"]["run_id"] == "sync_2"
    assert detail["reset"]["status"] == "in_progress" and detail["reset"]["share"] == 0.25
    assert detail["mapping"]["file"] == "magento.yaml" and set(detail["mapping"]["modules"]) == {"Contacts", "Leads"}
    assert detail["last_verify"] is None
    runs = page.get("/api/tenants/north/runs")
    assert [r["run_id"] for r in runs] == ["sync_1", "dry_1", "sync_2"]  # oldest first: the plots' x axis
    assert [r["inserted"] for r in runs] == [10, 0, 1]
    assert page.get("/api/tenants/north/runs", params={"limit": 1})[0]["run_id"] == "sync_2"
    (deleted,) = page.get("/api/tenants/north/deleted")
    assert (deleted["email"], deleted["zoho_id"]) == ("gone@shop.example", "9001")
    assert page.get("/api/tenants/north/reset")["progress"]["done"] == 10


def test_errors_are_searched_by_email_and_kind_and_paged(page):
    every = page.get("/api/tenants/north/errors")
    assert every["total"] == 3
    found = page.get("/api/tenants/north/errors", params={"email": "ANN@"})
    assert [r["email"] for r in found["rows"]] == ["ann@shop.example"]
    assert page.get("/api/tenants/north/errors", params={"kind": "invalid"})["rows"][0]["email"] == "not-an-email"
    assert page.get("/api/tenants/north/errors", params={"email": "%"})["total"] == 0  # a wildcard is a character
    paged = page.get("/api/tenants/north/errors", params={"limit": 2, "offset": 2})
    assert paged["total"] == 3 and len(paged["rows"]) == 1
    assert page.client.get("/api/tenants/north/errors?kind=other", headers=page.admin).status_code == 422
    assert page.client.get("/api/tenants/north/errors?limit=0", headers=page.admin).status_code == 422


def test_the_errors_download_is_csv_a_spreadsheet_will_not_run(page):
    response = page.client.get("/api/tenants/north/errors.csv", params={"kind": "rejected"}, headers=page.admin)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="north-rejected.csv"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(r["email"] for r in rows) == ['\'=HYPERLINK("x")@evil.example', "ann@shop.example"]


# --- the plugin ---------------------------------------------------------------------------------------------------


def test_importing_the_plugin_builds_no_app_and_imports_neither_fastapi_nor_pandas():
    probe = (
        "import sys; import zoho_store_sync.ui.plugin as p; "
        "print(sorted(m for m in ('fastapi', 'pandas', 'zoho_store_sync.ui.app') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_airflow_loads_the_plugin_from_the_plugins_folder_with_its_app_and_menu_entry():
    probe = """
import json
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
(plugin,) = [p for p in plugins if p.name == "zoho_sync"]
print(json.dumps({"errors": errors, "prefix": [a["url_prefix"] for a in plugin.fastapi_apps],
                  "views": plugin.external_views}))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env={**os.environ})
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["prefix"] == ["/zoho-sync"]
    (view,) = found["views"]
    assert (view["href"], view["url_route"], view["destination"]) == ("/zoho-sync/", "zoho-sync", "nav")


def test_the_folder_copy_of_the_plugin_steps_aside_when_its_entry_point_is_installed(monkeypatch):
    import importlib.machinery
    import importlib.metadata
    import importlib.util

    from airflow.plugins_manager import AirflowPlugin

    def load_as_the_folder_scan_does() -> Any:
        path = str(REPO / "plugins/zoho_store_sync/ui/plugin.py")
        loader = importlib.machinery.SourceFileLoader("plugin_probe", path)
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader("plugin_probe", loader))
        loader.exec_module(module)
        return [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, AirflowPlugin) and v is not AirflowPlugin
        ]

    assert len(load_as_the_folder_scan_does()) == 1
    entry = importlib.metadata.EntryPoint("zoho_sync", "zoho_store_sync.ui.plugin:ZohoSyncPlugin", "airflow.plugins")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: importlib.metadata.EntryPoints([entry]) if kw.get("group") == "airflow.plugins" else real(**kw),
    )
    assert load_as_the_folder_scan_does() == []


def test_the_mounted_plugin_app_is_built_on_its_first_request_and_refuses_strangers(tokens):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from zoho_store_sync.ui.plugin import URL_PREFIX, ZohoSyncPlugin

    (mounted,) = ZohoSyncPlugin.fastapi_apps
    root = FastAPI()
    root.mount(URL_PREFIX, mounted["app"])
    client = TestClient(root)
    refused = client.get(f"{URL_PREFIX}/")
    assert refused.status_code == 401 and "Log in to Airflow" in refused.text
    assert client.get(f"{URL_PREFIX}/api/tenants", headers=bearer(tokens["viewer"])).status_code == 403
