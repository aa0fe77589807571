"""The Zoho sync page on a real ``airflow api-server``, seen by Airflow's users and by a real browser.

The api-server runs on a new PostgreSQL metadata database with the repo's plugins folder and SimpleAuthManager
users of each role; the tenants Variable is created through Airflow's REST API (so the page reads it from the
metadata DB, the server way) and the state database's Connection is an ``AIRFLOW_CONN_`` variable. The state is
produced beforehand by the project's real pipeline in this test process: two tenants' DAGs run with
``dag.test()`` against the Zoho and Magento sandboxes (syncs, a dry run, a confirmed reset), writing to the
PostgreSQL state database the api-server reads. A second reset runs in a thread with the same steps as the
``zoho_reset`` DAG's tasks and stops between two chunks while the browser looks at its progress bar.

The browser is Debian's headless Chromium, driven through the DevTools protocol (``websockets``): it logs in
with the ``_token`` cookie from ``POST /auth/token``, and the figures it shows are compared with SQL on the state
database. ``ZOHO_SYNC_SCREENSHOTS=docs`` saves the screenshots the README shows (docs/ui-*.png). Without Chromium
the browser tests skip, saying so (on CI, CI=true, they fail).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import REPO, connection_env, postgres_conn_fields

pytestmark = pytest.mark.deployment

POSTGRES = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ROLES = ("admin", "op", "user", "viewer")
PAGE = "/zoho-sync/"
ACME = {
    "tenant_id": "acme",
    "source": "magento",
    "store_conn_id": "magento_acme",
    "zoho_conn_id": "zoho_acme",
    "schedule": None,
    "retries": 0,
}
BOLT = {**ACME, "tenant_id": "bolt", "store_conn_id": "magento_bolt", "zoho_conn_id": "zoho_bolt"}
BOLT_CHUNK_RECORDS = 40  # the running reset's chunks: several, so it can stop between two of them
STOP_AFTER_CHUNKS = 2
SERVER_TIMEOUT = 180  # seconds: `airflow db migrate` and the api-server's start on a loaded 2-core machine
BROWSER_TIMEOUT = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin_sql(*statements: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", **POSTGRES)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _wait(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (requests.RequestException, AssertionError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


# --- the api-server ---------------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    home: Path
    passwords: dict[str, str]
    state_url: str
    process: subprocess.Popen | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    stores: Any = None  # the sandboxes, served from this test process

    def token(self, role: str) -> str:
        if role not in self.tokens:
            response = requests.post(
                self.url + "/auth/token", json={"username": role, "password": self.passwords[role]}, timeout=30
            )
            assert response.status_code in (200, 201), response.text
            self.tokens[role] = response.json()["access_token"]
        return self.tokens[role]

    def get(self, path: str, role: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(role)}"} if role else {}
        return requests.get(self.url + path, headers=headers, timeout=30)

    def log(self) -> str:
        return (self.home / "api-server.log").read_text(errors="replace")

    def sql(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.state_url)
        try:
            with engine.connect() as conn:
                return [dict(row) for row in conn.execute(sa.text(statement), params).mappings()]
        finally:
            engine.dispose()


def _server_env(home: Path, meta_url: str, state_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ZOHO_SYNC", "_AIRFLOW"))}
    env.update(
        {
            "PYTHONPATH": str(REPO / "plugins"),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{role}:{role}" for role in ROLES),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "ZOHO_SYNC_INCLUDE_DIR": str(REPO / "include"),
        }
    )
    env[connection_env("zoho_sync_state_db")[0]] = json.dumps(postgres_conn_fields(state_url))
    return env


# --- the state: real runs of the pipeline in this process ---------------------------------------------------------


@dataclass
class Stores:
    zoho: dict[str, Any]
    magento: dict[str, Any]


def _configure_tenants(monkeypatch: pytest.MonkeyPatch, stores: Stores, state_url: str) -> None:
    for tenant_id in ("acme", "bolt"):
        zoho, magento = stores.zoho[tenant_id], stores.magento[tenant_id]
        monkeypatch.setenv(
            *connection_env(
                f"zoho_{tenant_id}",
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
        monkeypatch.setenv(
            *connection_env(
                f"magento_{tenant_id}",
                conn_type="http",
                host=magento.url,
                password=magento.integration_token,
                extra={"auth": "integration_token"},
            )
        )
    monkeypatch.setenv(*connection_env("zoho_sync_state_db", **postgres_conn_fields(state_url)))
    monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps([ACME, BOLT]))


def _run_history(stores: Stores) -> None:
    """acme: a sync, three customers renamed and synced again, a dry run, a confirmed reset; bolt: a sync."""
    from airflow.models import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}, bag.import_errors

    def run(dag_id: str, conf: dict[str, Any] | None = None) -> None:
        dag_run = bag.dags[dag_id].test(run_conf=conf or {})
        assert str(getattr(dag_run.state, "value", dag_run.state)) == "success", dag_id

    run("zoho_sync__acme")
    for customer in stores.magento["acme"].customers()[:3]:
        stores.magento["acme"].update_customer(int(customer["id"]), firstname="Renamed")
    run("zoho_sync__acme")
    run("zoho_sync__acme", {"dry_run": True})
    run(
        "zoho_reset",
        {"tenant": "acme", "record_types": ["Contacts", "Leads"], "confirm": "acme", "wait_for_sync_minutes": 0},
    )
    run("zoho_sync__bolt")


class PausedReset(threading.Thread):
    """bolt's reset, step by step as the zoho_reset DAG's tasks run it, stopping after ``STOP_AFTER_CHUNKS`` chunks
    (as a reset does between two mapped send tasks) until ``go_on`` is set."""

    def __init__(self) -> None:
        super().__init__(name="bolt-reset", daemon=True)
        self.paused = threading.Event()
        self.go_on = threading.Event()
        self.chunks = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from zoho_store_sync import pipeline, reset

        tenant, run_id = "bolt", f"manual__bolt_reset_{uuid.uuid4().hex[:6]}"
        try:
            modules = reset.check_request(tenant, ["Contacts", "Leads"], tenant)
            reset.wait_for_lock(tenant, run_id, minutes=0)
            started = reset.begin(tenant, run_id, modules, dry_run=False)
            extracted = pipeline.extract(tenant, run_id, full=True)
            planned = pipeline.plan(tenant, run_id, extracted, dry_run=False, modules=modules, forget=False)
            chunks = reset.split(tenant, run_id, planned, chunk_records=BOLT_CHUNK_RECORDS)
            self.chunks = len(chunks)
            sent = []
            for index, chunk in enumerate(chunks):
                if index == STOP_AFTER_CHUNKS:
                    self.paused.set()
                    self.go_on.wait(timeout=300)
                sent.append(reset.send_chunk(tenant, run_id, chunk, dry_run=False))
            reset.finish(tenant, run_id, extracted, planned, chunks, sent, dry_run=False)
            assert started["dry_run"] is False
        except BaseException as exc:  # noqa: BLE001 - reported by the test that waits for the thread
            self.error = exc
            self.paused.set()
        finally:
            pipeline.release_tenant_lock(tenant, run_id, "reset")


@pytest.fixture(scope="module")
def server(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store
    from sandboxes.zoho_crm import ZohoSandbox
    from zoho_store_sync.state_migrations import migrate

    try:
        _admin_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - no server here
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed for the page's deployment test: {exc}")
        pytest.skip(f"PostgreSQL is needed on {POSTGRES['host']}:{POSTGRES['port']} for the page's deployment test")
    suffix = uuid.uuid4().hex[:10]
    meta_db, state_db = f"zss_ui_airflow_{suffix}", f"zss_ui_state_{suffix}"
    _admin_sql(f'CREATE DATABASE "{meta_db}"', f'CREATE DATABASE "{state_db}"')
    base = f"postgresql+psycopg2://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}"
    home = tmp_path_factory.mktemp("ui-airflow")
    port = _free_port()
    passwords = {role: secrets.token_urlsafe(12) for role in ROLES}
    (home / "passwords.json").write_text(json.dumps(passwords))
    server = Server(url=f"http://127.0.0.1:{port}", home=home, passwords=passwords, state_url=f"{base}/{state_db}")
    env = _server_env(home, f"{base}/{meta_db}", server.state_url, port)
    stores = Stores(zoho={}, magento={})
    monkeypatch = pytest.MonkeyPatch()
    migrating: subprocess.Popen | None = None
    try:
        # The metadata DB migrates in its own process while this one produces the state.
        migrating = subprocess.Popen(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tenant_id, seed in (("acme", 31), ("bolt", 32)):
            stores.zoho[tenant_id] = ZohoSandbox(refresh_token=f"1000.ui-{tenant_id}-{uuid.uuid4().hex}").start()
            stores.magento[tenant_id] = MagentoSandbox(generate_store(160, seed=seed)).start()
        migrate(server.state_url)
        _configure_tenants(monkeypatch, stores, server.state_url)
        _run_history(stores)
        out, err = migrating.communicate(timeout=SERVER_TIMEOUT)
        assert migrating.returncode == 0, f"airflow db migrate failed:\n{out[-2000:]}\n{err[-4000:]}"
        with open(home / "api-server.log", "wb") as log:
            server.process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "api-server", "--workers", "1"],
                env=env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait(
            "the api-server", lambda: requests.get(server.url + "/api/v2/monitor/health", timeout=5).ok, SERVER_TIMEOUT
        )
        created = requests.post(
            server.url + "/api/v2/variables",
            headers={"Authorization": f"Bearer {server.token('admin')}"},
            json={"key": "zoho_sync_tenants", "value": json.dumps([ACME, BOLT])},
            timeout=30,
        )
        assert created.status_code in (200, 201), created.text
        server.stores = stores
        yield server
    finally:
        monkeypatch.undo()
        if migrating is not None and migrating.poll() is None:
            migrating.kill()
            migrating.communicate(timeout=15)
        if server.process is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
        for sandbox in [*stores.zoho.values(), *stores.magento.values()]:
            sandbox.stop()
        _admin_sql(
            f'DROP DATABASE IF EXISTS "{meta_db}" WITH (FORCE)', f'DROP DATABASE IF EXISTS "{state_db}" WITH (FORCE)'
        )


# --- Airflow's users ----------------------------------------------------------------------------------------------


def test_the_page_and_its_api_answer_only_users_allowed_to_read_the_tenants(server: Server):
    for path in (PAGE, PAGE + "api/tenants", PAGE + "api/tenants/acme/errors.csv", PAGE + "static/app.js"):
        assert server.get(path).status_code == 401, path
        assert server.get(path, "viewer").status_code == 403, path
        assert server.get(path, "user").status_code == 403, path
        assert server.get(path, "op").status_code == 200, path
        assert server.get(path, "admin").status_code == 200, path
    assert "Log in to Airflow" in server.get(PAGE).text


def test_the_page_is_in_airflows_menu_and_the_plugin_loads_without_errors(server: Server):
    plugins = server.get("/api/v2/plugins", "admin").json()["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "zoho_sync"]
    (view,) = plugin["external_views"]
    assert (view["href"], view["url_route"], view["destination"]) == (PAGE, "zoho-sync", "nav")
    assert server.get("/api/v2/plugins/importErrors", "admin").json()["total_entries"] == 0


def test_the_api_reads_the_variable_from_the_metadata_db_and_the_dag_runs_without_error(server: Server):
    data = server.get(PAGE + "api/tenants", "admin").json()
    assert [row["tenant_id"] for row in data["tenants"]] == ["acme", "bolt"] and data["broken"] == []
    assert "could not be read from the metadata DB" not in server.log()


# --- the browser --------------------------------------------------------------------------------------------------


class Browser:
    """Headless Chromium over the DevTools protocol: one page, commands answered in order."""

    def __init__(self, process: subprocess.Popen, websocket: Any, session: str) -> None:
        self.process, self.ws, self.session = process, websocket, session
        self.ids = itertools.count(1)

    @classmethod
    @contextlib.contextmanager
    def launch(cls) -> Iterator[Browser]:
        from websockets.sync.client import connect

        binary = shutil.which("chromium")
        if binary is None:
            message = "Debian's chromium is not installed (apt-get install chromium; `make test` does it on CI)"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        profile = Path(tempfile.mkdtemp(prefix="zoho-sync-chromium-"))
        process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            active = profile / "DevToolsActivePort"
            lines = _wait(
                "Chromium's DevTools port", lambda: active.is_file() and active.read_text().split(), BROWSER_TIMEOUT
            )
            with connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=None, open_timeout=BROWSER_TIMEOUT) as ws:
                browser = cls(process, ws, "")
                target = browser.send("Target.createTarget", url="about:blank")["targetId"]
                browser.session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
                browser.send("Page.enable")
                yield browser
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            shutil.rmtree(profile, ignore_errors=True)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.recv(timeout=BROWSER_TIMEOUT))
            if answer.get("id") == message_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return dict(answer.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def open(self, url: str, loaded: str, width: int = 1500, height: int = 1000) -> None:
        """Load ``url`` and wait until the page says it drew ``loaded`` (body[data-loaded])."""
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        _wait(
            f"{url} to show {loaded}",
            lambda: self.evaluate("document.body && document.body.dataset.loaded") == loaded,
            BROWSER_TIMEOUT,
            0.2,
        )

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("ZOHO_SYNC_SCREENSHOTS")
        if not folder:
            return
        height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        width = self.evaluate("Math.ceil(document.documentElement.scrollWidth)")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.send("Page.captureScreenshot", format="png")
        target = (REPO / folder) if not Path(folder).is_absolute() else Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    with Browser.launch() as browser:
        browser.send("Network.setCookie", name="_token", value=server.token("admin"), url=server.url + "/")
        yield browser


def _digits(text: str) -> int:
    return int(text.replace(",", "").strip())


OVERVIEW_CELLS = """
Object.fromEntries([...document.querySelectorAll('#overview tbody tr')].map(tr => [tr.dataset.tenant,
  Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.col, td.textContent.trim()]))]))
"""
FIGURES = """
Object.fromEntries([...document.querySelectorAll('#tenant-figures [data-figure]')].map(d =>
  [d.dataset.figure, d.querySelector('dd').textContent.trim()]))
"""


def test_the_overview_shows_each_tenants_figures_as_the_state_database_holds_them(server: Server, browser: Browser):
    browser.open(server.url + PAGE, "overview")
    shown = browser.evaluate(OVERVIEW_CELLS)
    assert set(shown) == {"acme", "bolt"}
    for tenant_id, cells in shown.items():
        counts = {
            (r["module"], r["status"]): r["n"]
            for r in server.sql(
                "SELECT module, status, count(*) AS n FROM zoho_sync_state WHERE tenant_id = :t "
                "GROUP BY module, status",
                t=tenant_id,
            )
        }
        assert _digits(cells["in_zoho_contacts"]) == counts.get(("Contacts", "synced"), 0), tenant_id
        assert _digits(cells["in_zoho_leads"]) == counts.get(("Leads", "synced"), 0), tenant_id
        assert _digits(cells["deleted_in_zoho"]) == sum(n for (_, s), n in counts.items() if s == "deleted_in_zoho")
        assert _digits(cells["failed_records"]) == sum(n for (_, s), n in counts.items() if s == "failed")
        (last,) = server.sql(
            "SELECT kind, inserted, updated, failed, finished_at FROM zoho_sync_runs WHERE tenant_id = :t "
            "AND kind IN ('sync', 'dry_run', 'reset', 'dry_run_reset') ORDER BY finished_at DESC LIMIT 1",
            t=tenant_id,
        )
        assert _digits(cells["last_written"]) == (last["inserted"] or 0) + (last["updated"] or 0), tenant_id
        assert _digits(cells["last_rejected"]) == (last["failed"] or 0), tenant_id
        assert (
            last["finished_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") in cells["last_run"]
            and last["kind"] in cells["last_run"]
        )
        (day,) = server.sql(
            "SELECT count(*) AS runs FROM zoho_sync_runs WHERE tenant_id = :t "
            "AND finished_at > now() - interval '24 hours' AND kind IN ('sync', 'dry_run', 'reset', 'dry_run_reset')",
            t=tenant_id,
        )
        assert _digits(cells["day_runs"]) == day["runs"], tenant_id
    assert shown["acme"]["last_run"].startswith("ok")  # the reset went through: green
    assert _digits(shown["acme"]["day_runs"]) == 4  # two syncs, a dry run, a reset
    browser.screenshot("ui-overview.png")


def test_a_tenant_shows_its_runs_errors_and_last_reset_as_the_state_database_holds_them(
    server: Server, browser: Browser
):
    browser.open(server.url + PAGE + "#tenant/acme", "tenant:acme", height=1800)
    figures = browser.evaluate(FIGURES)
    synced = {
        r["module"]: r["n"]
        for r in server.sql(
            "SELECT module, count(*) AS n FROM zoho_sync_state WHERE tenant_id = 'acme' AND status = 'synced' "
            "GROUP BY module"
        )
    }
    assert _digits(figures["in_zoho_contacts"]) == synced.get("Contacts", 0)
    assert _digits(figures["in_zoho_leads"]) == synced.get("Leads", 0)
    runs = server.sql(
        "SELECT kind, inserted, updated, credits FROM zoho_sync_runs WHERE tenant_id = 'acme' "
        "AND kind IN ('sync', 'dry_run', 'reset', 'dry_run_reset') ORDER BY finished_at"
    )
    plot = browser.evaluate("({...document.getElementById('plot-sent').dataset})")
    assert int(plot["runs"]) == len(runs) == 4
    assert int(plot["total"]) == sum((r["inserted"] or 0) + (r["updated"] or 0) for r in runs)
    credits = browser.evaluate("({...document.getElementById('plot-credits').dataset})")
    assert int(credits["total"]) == sum(r["credits"] or 0 for r in runs)
    (errors,) = server.sql("SELECT count(*) AS n FROM zoho_sync_errors WHERE tenant_id = 'acme'")
    assert browser.evaluate("document.getElementById('errors-total').dataset.total") == str(errors["n"])
    shown_rows = browser.evaluate("document.querySelectorAll('#errors tbody tr').length")
    assert shown_rows == min(errors["n"], 50)
    last_resets = browser.evaluate("[...document.querySelectorAll('#last-resets tbody tr')].map(tr => tr.dataset.run)")
    assert last_resets == [
        r["run_id"] for r in server.sql("SELECT run_id FROM zoho_sync_runs WHERE tenant_id = 'acme' AND kind = 'reset'")
    ]
    assert browser.evaluate("document.getElementById('reset-progress').hidden") is True
    csv_link = browser.evaluate("document.getElementById('errors-csv').href")
    assert csv_link.startswith(server.url + PAGE + "api/tenants/acme/errors.csv")
    browser.screenshot("ui-tenant.png")


def test_a_running_reset_is_a_progress_bar_with_done_total_rate_and_time_left(server: Server, browser: Browser):
    resetting = PausedReset()
    resetting.start()
    try:
        assert resetting.paused.wait(timeout=240), "the reset did not reach its pause"
        assert resetting.error is None, resetting.error
        assert resetting.chunks > STOP_AFTER_CHUNKS
        (row,) = server.sql("SELECT status, records_done, records_total FROM zoho_sync_resets WHERE tenant_id = 'bolt'")
        assert row["status"] == "in_progress" and 0 < row["records_done"] < row["records_total"]
        browser.open(server.url + PAGE + "#tenant/bolt", "tenant:bolt", height=1100)
        text = browser.evaluate("document.querySelector('#reset-progress .reset-text').textContent")
        assert browser.evaluate("document.getElementById('reset-progress').hidden") is False
        assert f"{row['records_done']:,} / {row['records_total']:,} records" in text, text
        assert "records/s" in text and "left" in text, text
        width = browser.evaluate("document.querySelector('#reset-progress .fill').style.width")
        assert float(width.rstrip("%")) == pytest.approx(100 * row["records_done"] / row["records_total"], abs=0.1)
        browser.open(server.url + PAGE, "overview")
        overview = browser.evaluate(OVERVIEW_CELLS)
        assert overview["bolt"]["reset"] == f"{row['records_done']:,} / {row['records_total']:,}"
        browser.open(server.url + PAGE + "#tenant/bolt", "tenant:bolt", height=1100)
        browser.screenshot("ui-reset.png")
    finally:
        resetting.go_on.set()
        resetting.join(timeout=240)
    assert resetting.error is None, resetting.error
    (row,) = server.sql("SELECT status FROM zoho_sync_resets WHERE tenant_id = 'bolt'")
    assert row["status"] == "done"
