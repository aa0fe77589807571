"""A real Airflow deployment, set up as the README says, syncing the sandbox store into the sandbox Zoho org.

``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` (and, for CeleryExecutor, ``airflow
celery worker`` on the local Redis) run as separate processes on a new PostgreSQL metadata database (created
for the run, dropped after), AIRFLOW_HOME in a temporary folder, the repo's dags/ and plugins/ folders and the
distribution installed from its wheel (``installed_distribution``). The tenant is configured with the commands
of the README's *Adding a real tenant*: ``airflow connections add`` (the provider's connection types),
``airflow variables set``, ``airflow pools set`` and the project CLI's ``db migrate``; the stores are the
sandboxes, served from this test process. Everything else goes through the public REST API (/api/v2, a JWT from
/auth/token of the simple auth manager, with a configured admin user and password file): the DAGs are
unpaused, a sync and a confirmed reset triggered and awaited, and the run summaries read from the state
database (``zoho_sync_runs``).

On a lock without asyncpg the first command (``airflow db migrate``) already fails: Airflow 3 opens the
metadata database through an async engine too.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.deploy.conftest import ROOT, InstalledDistribution
from zoho_store_sync.zoho.client import RECOMMENDED_SCOPES

pytestmark = pytest.mark.deployment

POSTGRES: dict[str, str] = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}
REDIS_URL = os.environ.get("ZOHO_SYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
TENANT_ID = "acme"
SYNC_DAG = f"zoho_sync__{TENANT_ID}"
CUSTOMERS = 300
RUN_TIMEOUT = 240  # seconds a DAG run may take on a loaded 2-core machine
# A sync not done this long after it was queued misses its Airflow deadline (a run slower than this only shows a
# harmless "Missed" badge); the pool test waits for it.
STUCK_RUN_ALERT_SECONDS = 30


# --- servers the deployment needs -------------------------------------------------------------------------


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _require(service: str, host: str, port: int) -> None:
    if not _reachable(host, port):
        message = f"{service} is needed on {host}:{port} for the real-deployment test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


# --- the deployment -----------------------------------------------------------------------------------------


@dataclass
class Deployment:
    home: Path
    env: dict[str, str]
    url: str
    executor: str
    state_url: str
    password: str
    zoho: Any  # the sandboxes, served from this process
    magento: Any
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    token: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # commands, as an operator types them
    def run(
        self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            list(args), env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{' '.join(args)}` exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
            )
        return result

    def airflow(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "airflow", *args, **kwargs)

    def project_cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "zoho_store_sync.cli", *args, **kwargs)

    # components
    def start(self, name: str, *args: str) -> None:
        log = open(self.home / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            cwd=self.home,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10  # nothing runs any more: no need for a long warm shutdown
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def component_logs(self, lines: int = 40) -> str:
        out = []
        for path in sorted((self.home / "logs").glob("*.log")):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(out)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = RUN_TIMEOUT, every: float = 1.0) -> Any:
        started = time.monotonic()
        last: Any = None
        while time.monotonic() - started < timeout:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(
                        f"{name} exited with {process.returncode} while waiting for {what}\n" + self.component_logs()
                    )
            try:
                last = probe()
            except (requests.RequestException, AssertionError) as exc:
                last = exc
            else:
                if last:
                    self.timings[what] = round(time.monotonic() - started, 1)
                    return last
            time.sleep(every)
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what} (last: {last!r})\n" + self.component_logs()
        )

    # the REST API
    def api(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        headers = {**({"Authorization": f"Bearer {self.token}"} if self.token else {}), **kwargs.pop("headers", {})}
        response = requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)
        assert response.status_code in expect, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json() if response.content else None

    def login(self) -> None:
        self.token = None
        self.token = self.api(
            "POST", "/auth/token", json={"username": ADMIN, "password": self.password}, expect=(200, 201)
        )["access_token"]

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, expect: str = "success") -> dict[str, Any]:
        quoted = requests.utils.quote(run_id, safe="")

        def finished() -> dict[str, Any] | None:
            run = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
            return run if run["state"] in ("success", "failed") else None

        run = self.wait(f"{dag_id} run", finished)
        if run["state"] != expect:
            raise AssertionError(f"{dag_id} run {run_id} {run['state']}:\n{self.failed_task_logs(dag_id, quoted)}")
        return run

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        quoted = requests.utils.quote(run_id, safe="")
        log = self.api(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/logs/{try_number}?full_content=true",
            headers={"Accept": "application/json"},
        )
        return json.dumps(log)

    def failed_task_logs(self, dag_id: str, quoted_run: str) -> str:
        out = []
        tasks = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted_run}/taskInstances")["task_instances"]
        for ti in tasks:
            out.append(f"{ti['task_id']}[{ti.get('map_index', -1)}]: {ti['state']}")
            if ti["state"] in ("failed", "up_for_retry", "upstream_failed") and ti.get("try_number"):
                path = (
                    f"/api/v2/dags/{dag_id}/dagRuns/{quoted_run}/taskInstances/{ti['task_id']}/logs/"
                    f"{ti['try_number']}?full_content=true&map_index={ti.get('map_index', -1)}"
                )
                try:
                    log = self.api("GET", path, headers={"Accept": "application/json"})
                    out.append(json.dumps(log)[-4000:])
                except AssertionError as exc:
                    out.append(str(exc))
        return "\n".join(out) + "\n" + self.component_logs(20)

    # the state database
    def runs(self, kind: str) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.state_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT run_id, kind, summary FROM zoho_sync_runs WHERE tenant_id = :t "
                        "AND kind = :k ORDER BY id"
                    ),
                    {"t": TENANT_ID, "k": kind},
                ).mappings()
                return [
                    {
                        **row,
                        "summary": row["summary"] if isinstance(row["summary"], dict) else json.loads(row["summary"]),
                    }
                    for row in rows
                ]
        finally:
            engine.dispose()


def _base_env(
    home: Path, dist: InstalledDistribution, meta_url: str, executor: str, port: int, queue: str
) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ZOHO_SYNC", "_AIRFLOW"))}
    env = dist.env(env)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # Other runs on this machine may serve logs too: no fixed ports.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            # A test's patience, not production's: look for new DAG files and runs often.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,  # this run's own Celery queue on the shared Redis
            "ZOHO_SYNC_INCLUDE_DIR": str(ROOT / "include"),
            "ZOHO_SYNC_STAGING_URL": f"file://{home / 'staging'}",
            # A sync not done this long after it was queued misses its deadline (3600 in docker-compose.yaml).
            "ZOHO_SYNC_STUCK_RUN_ALERT_SECONDS": str(STUCK_RUN_ALERT_SECONDS),
        }
    )
    return env


@pytest.fixture(scope="module", params=["LocalExecutor", "CeleryExecutor"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    installed_distribution: InstalledDistribution,
) -> Deployment:
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store
    from sandboxes.zoho_crm import ZohoSandbox

    executor = request.param
    _require("PostgreSQL", POSTGRES["host"], int(POSTGRES["port"]))
    if executor == "CeleryExecutor":
        from urllib.parse import urlsplit

        broker = urlsplit(REDIS_URL)
        _require("Redis", broker.hostname or "127.0.0.1", broker.port or 6379)
    suffix = uuid.uuid4().hex[:10]
    meta_db, state_db = f"zss_airflow_{suffix}", f"zss_state_{suffix}"
    _admin_sql(f'CREATE DATABASE "{meta_db}"', f'CREATE DATABASE "{state_db}"')
    home = tmp_path_factory.mktemp(f"airflow-{executor}")
    (home / "logs").mkdir()
    port = _free_port()
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({ADMIN: password}))
    meta_url = f"postgresql+psycopg2://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{meta_db}"
    state_url = f"postgresql+psycopg2://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{state_db}"
    deployment = Deployment(
        home=home,
        env=_base_env(home, installed_distribution, meta_url, executor, port, f"zss_{suffix}"),
        url=f"http://127.0.0.1:{port}",
        executor=executor,
        state_url=state_url,
        password=password,
        zoho=ZohoSandbox().start(),
        magento=MagentoSandbox(generate_store(CUSTOMERS, seed=14)).start(),
    )
    try:
        started = time.monotonic()
        deployment.airflow("db", "migrate")  # needs asyncpg: Airflow 3 builds an async engine as well
        deployment.timings["airflow db migrate"] = round(time.monotonic() - started, 1)
        deployment.start("api-server", "api-server", "--workers", "1")
        deployment.start("scheduler", "scheduler")
        deployment.start("dag-processor", "dag-processor")
        deployment.start("triggerer", "triggerer")
        if executor == "CeleryExecutor":
            deployment.start(
                "celery-worker",
                "celery",
                "worker",
                "--queues",
                f"zss_{suffix}",
                "--concurrency",
                "4",
                "--skip-serve-logs",
            )
        started = time.monotonic()  # while the components start (the DAG processor parses again every 5 s)
        _configure_tenant_as_the_readme_says(deployment, state_db)
        deployment.timings["tenant configured"] = round(time.monotonic() - started, 1)
        deployment.wait(
            "the API server", lambda: requests.get(deployment.url + "/api/v2/monitor/health", timeout=5).ok, timeout=120
        )
        deployment.login()
        yield deployment
    finally:
        deployment.stop()
        deployment.zoho.stop()
        deployment.magento.stop()
        _admin_sql(
            f'DROP DATABASE IF EXISTS "{meta_db}" WITH (FORCE)', f'DROP DATABASE IF EXISTS "{state_db}" WITH (FORCE)'
        )
        if executor == "CeleryExecutor":  # this run's queue and its bindings on the shared Redis
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for key in list(client.scan_iter(match=f"*zss_{suffix}*")):
                client.delete(key)
            client.close()
        print(f"\n{executor} timings (s): {json.dumps(deployment.timings)}")


def _configure_tenant_as_the_readme_says(deployment: Deployment, state_db: str) -> None:
    """README, *Adding a real tenant*, steps 1 to 4, and *Operations*' pool."""
    from concurrent.futures import ThreadPoolExecutor

    zoho, magento = deployment.zoho, deployment.magento
    commands: list[tuple[str, ...]] = []
    # 1. the Zoho connection (a local sandbox: the advanced custom-hosts fields instead of a data centre), with
    #    no refresh token: *Connecting a Zoho org* stores it (test_the_cli_connects_...)
    commands.append(
        (
            "connections",
            "add",
            "zoho_acme",
            "--conn-type",
            "zoho_crm",
            "--conn-login",
            zoho.client_id,
            "--conn-password",
            zoho.client_secret,
            "--conn-extra",
            json.dumps({"allow_custom_hosts": True, "accounts_url": zoho.url, "api_domain": zoho.url}),
        )
    )
    # 2. the store connection: Magento, OAuth 1.0a (README: the four credentials of the integration)
    commands.append(
        (
            "connections",
            "add",
            "magento_acme",
            "--conn-type",
            "magento",
            "--conn-host",
            magento.url,
            "--conn-password",
            json.dumps(
                {"consumer_secret": magento.consumer_secret, "access_token_secret": magento.access_token_secret}
            ),
            "--conn-extra",
            json.dumps(
                {"auth": "oauth1", "consumer_key": magento.consumer_key, "access_token": magento.integration_token}
            ),
        )
    )
    # 3. the state database (type postgres, from the Postgres provider), then its tables
    commands.append(
        (
            "connections",
            "add",
            "zoho_sync_state_db",
            "--conn-type",
            "postgres",
            "--conn-host",
            POSTGRES["host"],
            "--conn-port",
            str(POSTGRES["port"]),
            "--conn-login",
            POSTGRES["user"],
            "--conn-schema",
            state_db,
        )
    )
    # 4. the Variable (manual schedule: the test triggers the runs)
    commands.append(
        (
            "variables",
            "set",
            "zoho_sync_tenants",
            json.dumps(
                [
                    {
                        "tenant_id": TENANT_ID,
                        "source": "magento",
                        "store_conn_id": "magento_acme",
                        "zoho_conn_id": "zoho_acme",
                        "schedule": None,
                    }
                ]
            ),
        )
    )
    # Operations: the pool every tenant's upload task takes (default zoho_max_concurrency 10)
    commands.append(("pools", "set", "zoho_api", "10", "Zoho CRM API calls per org"))
    with ThreadPoolExecutor(len(commands)) as pool:  # independent commands: at once, to save the test's time
        list(pool.map(lambda command: deployment.airflow(*command), commands))
    # 3. (continued) the state database's tables, with the project CLI, once its Connection exists
    migrated = deployment.project_cli("db", "migrate")
    assert "(head)" in migrated.stdout, migrated.stdout
    listed = {
        c["conn_id"]: c["conn_type"]
        for c in json.loads(deployment.airflow("connections", "list", "-o", "json").stdout.splitlines()[-1])
    }
    assert listed == {"zoho_acme": "zoho_crm", "magento_acme": "magento", "zoho_sync_state_db": "postgres"}


# --- the tests, in order, on each executor ---------------------------------------------------------------------


def test_the_api_server_serves_the_connection_forms(deployment: Deployment):
    from tests.deploy.test_provider import check_hook_meta

    meta = {m["connection_type"]: m for m in deployment.api("GET", "/ui/connections/hook_meta")}
    check_hook_meta(meta)
    assert "postgres" in meta


def test_the_tenant_dag_appears_paused_without_import_errors(deployment: Deployment):
    dag = deployment.wait("the tenant DAG", lambda: deployment.api("GET", f"/api/v2/dags/{SYNC_DAG}"))
    assert dag["is_paused"] is True  # new DAGs start paused: the README says to unpause them
    assert deployment.api("GET", "/api/v2/importErrors")["total_entries"] == 0
    for manual in ("zoho_reset", "zoho_connect"):
        assert deployment.api("GET", f"/api/v2/dags/{manual}")["is_paused"] is True


def _record_token_forms(zoho) -> list[dict[str, str]]:
    """Every form posted to the sandbox's OAuth server from now on."""
    from sandboxes.zoho.oauth import oauth_form

    forms: list[dict[str, str]] = []
    handle = type(zoho)._handle_oauth

    def recording(req, info):
        forms.append(dict(oauth_form(req)))
        return handle(zoho, req, info)

    zoho._handle_oauth = recording
    return forms


def test_the_cli_reads_the_tenant_from_the_metadata_db_and_says_to_connect_first(deployment: Deployment):
    checked = deployment.project_cli("verify", TENANT_ID, check=False)
    assert checked.returncode == 1
    assert "not configured" not in checked.stderr, checked.stderr  # the Variable is found in the metadata DB
    assert "no refresh_token" in checked.stderr and "zoho_acme" in checked.stderr, checked.stderr


def test_the_cli_connects_the_org_with_a_grant_code_typed_at_a_hidden_prompt(deployment: Deployment):
    zoho = deployment.zoho
    code = zoho.issue_grant_code(zoho.client_id, RECOMMENDED_SCOPES)  # the README's scopes
    forms = _record_token_forms(zoho)
    connected = deployment.project_cli("connect", TENANT_ID, input=code + "\n")  # getpass reads stdin without a tty
    assert code not in connected.stdout + connected.stderr
    assert "[ok] access token" in connected.stdout and "FAILED" not in connected.stdout, connected.stdout
    (exchange,) = [form for form in forms if form.get("grant_type") == "authorization_code"]
    assert "redirect_uri" not in exchange, "no redirect URI given: none is sent to Zoho"
    verified = deployment.project_cli("verify", TENANT_ID)
    assert "[ok] Contacts mapping" in verified.stdout, verified.stdout


def test_zoho_connect_verifies_with_nothing_typed(deployment: Deployment):
    def params() -> dict[str, Any] | None:  # the tenant drop-down is filled when the file is parsed again
        found = deployment.api("GET", "/api/v2/dags/zoho_connect/details")["params"]
        return found if found["tenant"]["value"] == TENANT_ID else None

    found = deployment.wait("zoho_connect's tenant drop-down", params, timeout=90)
    assert set(found) == {"tenant"}, "no grant code, redirect URI or mode to type"
    assert found["tenant"]["schema"]["enum"] == [TENANT_ID]  # its default: the form is submittable as it opens
    run_id = deployment.trigger("zoho_connect", {"tenant": TENANT_ID})
    deployment.wait_for_run("zoho_connect", run_id)


def test_zoho_connect_refuses_a_grant_code_in_its_conf_without_using_it(deployment: Deployment):
    code = deployment.zoho.issue_grant_code(deployment.zoho.client_id, ("ZohoCRM.modules.ALL",))
    forms = _record_token_forms(deployment.zoho)
    run_id = deployment.trigger("zoho_connect", {"tenant": TENANT_ID, "grant_code": code})
    run = deployment.wait_for_run("zoho_connect", run_id, expect="failed")
    assert not [form for form in forms if form.get("grant_type") == "authorization_code"], "the code was not used"
    log = deployment.task_log("zoho_connect", run["dag_run_id"], "verify_tenant")
    assert "python -m zoho_store_sync.cli connect acme" in log and code not in log


def test_a_triggered_sync_puts_every_valid_customer_in_zoho_once(deployment: Deployment):
    run_id = deployment.trigger(SYNC_DAG, {})
    deployment.wait_for_run(SYNC_DAG, run_id)
    (run,) = [r for r in deployment.runs("sync") if r["run_id"] == run_id]
    summary = run["summary"]
    emails = [r["Email"] for m in ("Contacts", "Leads") for r in deployment.zoho.records(m)]
    assert len(emails) == len(set(emails)), "one Zoho record per email"
    assert summary["extracted"] == CUSTOMERS and summary["failed"] == 0, summary
    assert summary["inserted"] == summary["contacts"] + summary["leads"] == len(emails) > 0, summary


def test_a_confirmed_reset_resends_every_customer_without_duplicates(deployment: Deployment):
    before = sorted(r["Email"] for m in ("Contacts", "Leads") for r in deployment.zoho.records(m))
    deployment.zoho.reset_calls()
    run_id = deployment.trigger(
        "zoho_reset", {"tenant": TENANT_ID, "record_types": ["Contacts", "Leads"], "confirm": TENANT_ID}
    )
    deployment.wait_for_run("zoho_reset", run_id)
    (run,) = [r for r in deployment.runs("reset") if r["run_id"] == run_id]
    after = sorted(r["Email"] for m in ("Contacts", "Leads") for r in deployment.zoho.records(m))
    assert after == before, "a reset matches on email: nothing added, nothing lost"
    summary = run["summary"]
    assert summary["failed"] == 0 and summary["inserted"] + summary["updated"] == len(after), summary
    assert any(call["operation"] in ("upsert", "bulk_write", "upload") for call in deployment.zoho.calls())


def test_a_pool_smaller_than_the_tenants_concurrency_is_named_on_the_run_and_the_setup_fixes_it(
    deployment: Deployment,
):
    deployment.airflow("pools", "set", "zoho_api", "2", "Zoho CRM API calls per org")
    checked = deployment.project_cli("pools", "check", check=False)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "[FAILED] pool zoho_api has 2 slots; tenant acme takes up to 10" in checked.stdout, checked.stdout
    (alert,) = deployment.api("GET", f"/ui/dags/{SYNC_DAG}/deadlineAlerts")["deadline_alerts"]
    assert alert["reference_type"] == "DagRunQueuedAtDeadline" and alert["interval"] == STUCK_RUN_ALERT_SECONDS
    # A customer changes, so the run has something to write (a run with nothing to write ends in plan_changes).
    first = min(int(c["id"]) for c in deployment.magento.customers())
    deployment.magento.update_customer(first, firstname="Pooled")
    run_id = deployment.trigger(SYNC_DAG, {})
    quoted = requests.utils.quote(run_id, safe="")
    upload = f"/api/v2/dags/{SYNC_DAG}/dagRuns/{quoted}/taskInstances/upsert_to_zoho"

    def waiting_for_the_pool() -> str | None:
        if deployment.api("GET", upload)["state"] != "scheduled":
            return None
        reasons = [d["reason"] for d in deployment.api("GET", upload + "/dependencies")["dependencies"]]
        return next((r for r in reasons if "pool zoho_api" in r), None)

    reason = deployment.wait("upsert_to_zoho waiting for the pool", waiting_for_the_pool)
    assert "require 10 pool slots" in reason, reason  # what Airflow tells in the task's details

    def missed_deadline() -> dict[str, Any] | None:  # what the run's page shows: a red "Missed" badge and its name
        deadlines = deployment.api("GET", f"/ui/dags/{SYNC_DAG}/dagRuns/{quoted}/deadlines")["deadlines"]
        return next((d for d in deadlines if d["missed"]), None)

    deadline = deployment.wait("the run's missed deadline", missed_deadline, timeout=120)
    assert deadline["alert_name"] == (
        f"Sync not done {STUCK_RUN_ALERT_SECONDS} s after it was queued. If upsert_to_zoho is scheduled, it waits "
        "for 10 free slots of pool zoho_api: run `python -m zoho_store_sync.cli pools ensure`"
    ), deadline
    triggerer_log = deployment.home / "logs" / "triggerer.log"
    said = f"ZOHO_SYNC_STUCK tenant {TENANT_ID} run {run_id}: not done {STUCK_RUN_ALERT_SECONDS} s after it was queued;"
    line = deployment.wait(
        "the triggerer's report",
        lambda: next((ln for ln in triggerer_log.read_text(errors="replace").splitlines() if said in ln), None),
        timeout=120,
    )
    assert "upsert_to_zoho is scheduled, waiting for 10 free slots of pool zoho_api" in line, line
    assert "python -m zoho_store_sync.cli pools ensure" in line, line
    assert deployment.api("GET", upload)["state"] == "scheduled"  # still waiting: nothing else moved it

    ensured = deployment.project_cli("pools", "ensure")
    assert "[fixed] pool zoho_api has 2 slots: grown with 10 slots" in ensured.stdout, ensured.stdout
    deployment.wait_for_run(SYNC_DAG, run_id)  # the waiting run goes on by itself
    assert deployment.project_cli("pools", "check").returncode == 0
