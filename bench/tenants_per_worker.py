"""Figure tenants_per_worker (issue 17): CPU and task processes of a no-op tenant run under a real scheduler.

A real deployment, as tests/deploy/test_real_deployment.py starts one: ``airflow api-server`` (the tasks' execution
API), ``scheduler`` (LocalExecutor) and ``dag-processor`` in their own sessions, AIRFLOW_HOME in a temporary
folder, a scratch PostgreSQL metadata database, the state database on a second scratch database migrated with
``python -m zoho_store_sync.cli db migrate``. The dags folder is a temporary copy holding dags/zoho_sync.py as it
is when the bench runs (the product, ``zoho_sync__<tenant>``) and bench/six_task_sync_dag.py (the baseline, today's
six tasks frozen, ``six_task__<tenant>``): both variants are served by the same deployment and sync the same
tenants, so they are measured under the same conditions. The stores are the sandboxes, each in its own process
and not counted (they stand for remote servers): one generated Magento store every tenant's Connection points at,
and one Zoho org. Connections and the tenants Variable come from ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*``.

Every tenant is first synced once through the product DAG (the first sync, which inserts). Then, with nothing
changed, rounds of one run per tenant are triggered at once through the REST API, alternating the variants
(product, baseline; the full run adds baseline, product). For each round:

* task processes per run: the round's task instances whose task process started (the execution API sets ``pid``
  when a task process announces itself), read from the metadata database after the round, against those
  finished without ever starting (skipped by the scheduler);
* CPU seconds per run: the whole deployment's CPU during the round divided by the runs. Each component is the
  root of a process tree (the scheduler with its LocalExecutor workers and their forked task processes, the
  DAG processor with its parsing processes, the api-server with its workers). A sample sums, over every live
  process of the trees, its own user+system time plus its reaped children's (``cutime``/``cstime``, which include
  their own reaped descendants). A process that exits during the round is reaped by its parent (the supervisor
  waits for its task process; the executor and the DAG processor for theirs), so its whole CPU moves into the
  parent's children times: ``after - before`` counts it exactly once, including what a process alive at the
  first sample spent before it. Only a process reaped between reading it and reading its parent is missed or
  doubled, at most one short-lived process per sample, with the deployment idle at both samples;
* the share of one 2-core machine that 500 tenants every 30 minutes take: ``cpu_per_run * 500 / (1800 s * 2)``.

What is not counted: PostgreSQL's own CPU (a shared server here), the sandboxes, and this process (it triggers the
runs and polls the metadata database directly, so polling costs the api-server nothing). The deployment's idle
CPU (scheduler loop, the DAG file re-parsed every 30 s) is measured in a quiet window before each round and
reported beside the gross figure as ``net`` (gross minus idle rate x round time); the headline is the gross.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO, common

TENANTS, QUICK_TENANTS = 20, 2
CUSTOMERS = 60  # per store (all tenants read the same store): a small shop
PARALLELISM = 8  # LocalExecutor task processes at once: what a 2-core worker is given
IDLE_SECONDS, QUICK_IDLE_SECONDS = 20.0, 5.0
SCHEDULE_TENANTS, EVERY_SECONDS, MACHINE_CORES = 500, 1800, 2
TARGET_PROCESSES, TARGET_SHARE = 2, 50.0
RUN_TIMEOUT = 900.0  # a round of runs, on a loaded 2-core machine
PRODUCT_DAG = REPO / "dags" / "zoho_sync.py"
BASELINE_DAG = Path(__file__).with_name("six_task_sync_dag.py")
PRODUCT_PREFIX, BASELINE_PREFIX = "zoho_sync__", "six_task__"
ADMIN = "admin"
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
COMPONENTS = (
    ("api-server", ("api-server", "--workers", "1")),
    ("scheduler", ("scheduler",)),
    ("dag-processor", ("dag-processor",)),
)
ZOHO_WRITES = ("insert", "update", "upsert", "delete", "convert", "upload", "bulk_write")


def tenant_ids(n: int) -> list[str]:
    return [f"t{i:03d}" for i in range(n)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- CPU of process trees ----------------------------------------------------------------------------------
def tree_cpu_seconds(pid: int) -> float:
    """CPU the tree under ``pid`` has used so far: each live process's own time plus its reaped children's."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


# --- the deployment ----------------------------------------------------------------------------------------
@dataclass
class Deployment:
    """Airflow's components on a scratch metadata database, driven through its REST API."""

    home: Path
    env: dict[str, str]
    url: str
    meta_url: str
    password: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    token: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def command(self, *args: str, timeout: float = 600) -> str:
        done = subprocess.run(
            [sys.executable, "-m", *args], env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise RuntimeError(
                f"`{' '.join(args)}` exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def start(self) -> None:
        for name, args in COMPONENTS:
            with open(self.home / "logs" / f"{name}.log", "wb") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "airflow", *args],
                    env=self.env,
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped as a whole
                )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def logs(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in sorted((self.home / "logs").glob("*.log"))
        )

    def cpu_seconds(self) -> dict[str, float]:
        return {name: tree_cpu_seconds(process.pid) for name, process in self.processes.items()}

    def scheduler_own_cpu_seconds(self) -> float:
        """The scheduler's own loop, without its executor workers and task processes."""
        import psutil

        times = psutil.Process(self.processes["scheduler"].pid).cpu_times()
        return times.user + times.system

    def wait(self, what: str, probe: Any, timeout: float, every: float = 1.0) -> Any:
        import requests

        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited {process.returncode} waiting for {what}\n{self.logs()}")
            try:
                last = probe()
            except requests.RequestException as exc:  # not listening yet
                last = exc
            else:
                if last:
                    return last
            time.sleep(every)
        raise TimeoutError(f"{what}: not after {timeout:.0f} s (last: {last!r})\n{self.logs()}")

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    def sql(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        engine = sa.create_engine(self.meta_url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return [dict(row) for row in conn.execute(sa.text(statement), params).mappings()]
        finally:
            engine.dispose()


def _env(home: Path, meta_url: str, port: int, tenants: str, connections: dict[str, str]) -> dict[str, str]:
    """The environment of every component and command: what test_real_deployment.py gives its deployment."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ZOHO_SYNC", "_AIRFLOW"))}
    env.update(connections)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW_VAR_ZOHO_SYNC_TENANTS": tenants,
            "ZOHO_SYNC_INCLUDE_DIR": str(REPO / "include"),
            "ZOHO_SYNC_STAGING_URL": f"file://{home / 'staging'}",
            "PYTHONPATH": str(REPO / "plugins"),
        }
    )
    return env


@contextlib.contextmanager
def deployment(n: int, zoho: dict[str, Any], magento_url: str, meta_url: str, state_url: str) -> Iterator[Deployment]:
    """The components started on a migrated metadata database, logged in, with the pool and every DAG parsed."""
    home = Path(tempfile.mkdtemp(prefix="bench-tenants-per-worker-"))
    (home / "logs").mkdir()
    (home / "dags").mkdir()
    shutil.copy(PRODUCT_DAG, home / "dags" / PRODUCT_DAG.name)  # the product as it is now
    shutil.copy(BASELINE_DAG, home / "dags" / BASELINE_DAG.name)
    password = secrets.token_urlsafe(12)
    (home / "passwords.json").write_text(json.dumps({ADMIN: password}))
    ids = tenant_ids(n)
    tenants = json.dumps(
        [
            {
                "tenant_id": tenant_id,
                "source": "magento",
                "store_conn_id": "magento_bench",
                "zoho_conn_id": "zoho_bench",
                "schedule": None,  # the bench triggers the runs
            }
            for tenant_id in ids
        ]
    )
    connections = dict(
        [
            common.zoho_connection("zoho_bench", zoho),
            common.magento_connection("magento_bench", magento_url),
            common.state_connection(state_url),
        ]
    )
    port = _free_port()
    env = _env(home, meta_url, port, tenants, connections)
    deployed = Deployment(home, env, f"http://127.0.0.1:{port}", meta_url, password)
    started = time.monotonic()
    try:
        deployed.command("airflow", "db", "migrate")
        deployed.timings["airflow db migrate"] = round(time.monotonic() - started, 1)
        deployed.start()
        deployed.command("zoho_store_sync.cli", "db", "migrate")  # while the components start
        deployed.wait("the API server", lambda: _healthy(deployed.url), timeout=180)
        deployed.token = deployed.api("POST", "/auth/token", json={"username": ADMIN, "password": password})[
            "access_token"
        ]
        # the upload task takes zoho_max_concurrency (10) slots: enough for every task that may run at once
        deployed.api("POST", "/api/v2/pools", json={"name": "zoho_api", "slots": 10 * PARALLELISM})
        wanted = {prefix + t for prefix in (PRODUCT_PREFIX, BASELINE_PREFIX) for t in ids}

        def parsed() -> bool:
            errors = deployed.sql("SELECT filename, stacktrace FROM import_error")
            if errors:
                raise RuntimeError(f"import errors: {errors}")
            found = {r["dag_id"] for r in deployed.sql("SELECT dag_id FROM serialized_dag")}
            return wanted <= found

        deployed.wait("every DAG parsed", parsed, timeout=300)
        deployed.timings["deployment ready"] = round(time.monotonic() - started, 1)
        yield deployed
    finally:
        deployed.stop()
        shutil.rmtree(home, ignore_errors=True)


def _healthy(url: str) -> bool:
    import requests

    return requests.get(url + "/api/v2/monitor/health", timeout=5).ok


# --- rounds of runs ----------------------------------------------------------------------------------------
def trigger_round(deployed: Deployment, prefix: str, ids: list[str], label: str) -> str:
    """One run per tenant, all at once; returns the run-id prefix the round's runs share."""
    run_prefix = f"bench_{label}_"
    for tenant_id in ids:
        deployed.api(
            "POST",
            f"/api/v2/dags/{prefix}{tenant_id}/dagRuns",
            json={"dag_run_id": run_prefix + tenant_id, "logical_date": None, "conf": {}},
        )
    return run_prefix


def wait_round(deployed: Deployment, run_prefix: str, runs: int) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        rows = deployed.sql(
            "SELECT dag_id, run_id, state, start_date, end_date FROM dag_run WHERE run_id LIKE :p",
            p=run_prefix + "%",
        )
        done = [r for r in rows if r["state"] in ("success", "failed")]
        return rows if len(done) == runs else None

    rows: list[dict[str, Any]] = deployed.wait(f"runs {run_prefix}*", finished, timeout=RUN_TIMEOUT, every=0.5)
    return rows


def quiet(deployed: Deployment) -> None:
    """Until no task instance is queued or running anywhere (the executor's processes are idle)."""
    deployed.wait(
        "a quiet deployment",
        lambda: not deployed.sql("SELECT 1 FROM task_instance WHERE state IN ('queued', 'running', 'scheduled')"),
        timeout=RUN_TIMEOUT,
    )


def measure_round(deployed: Deployment, prefix: str, ids: list[str], label: str, idle_seconds: float) -> dict[str, Any]:
    """Idle window, then the round: CPU by component, processes launched, run states and durations."""
    quiet(deployed)
    time.sleep(2)  # the last run's bookkeeping
    idle_before = deployed.cpu_seconds()
    idle_started = time.monotonic()
    time.sleep(idle_seconds)
    idle_after = deployed.cpu_seconds()
    idle_rate = sum(idle_after.values()) - sum(idle_before.values())
    idle_rate /= time.monotonic() - idle_started
    before, started = deployed.cpu_seconds(), time.monotonic()
    loop_before = deployed.scheduler_own_cpu_seconds()
    run_prefix = trigger_round(deployed, prefix, ids, label)
    runs = wait_round(deployed, run_prefix, len(ids))
    quiet(deployed)
    after, elapsed = deployed.cpu_seconds(), time.monotonic() - started
    by_component = {name: round(after[name] - before[name], 2) for name in after}
    by_component["of which scheduler loop"] = round(deployed.scheduler_own_cpu_seconds() - loop_before, 2)
    cpu = sum(by_component[name] for name in after)
    tis = deployed.sql(
        "SELECT task_id, state, pid, start_date FROM task_instance WHERE run_id LIKE :p", p=run_prefix + "%"
    )
    launched = [ti for ti in tis if ti["pid"] is not None]
    states: dict[str, int] = {}
    for ti in tis:
        key = f"{ti['task_id']}:{ti['state']}:{'started' if ti['pid'] is not None else 'never started'}"
        states[key] = states.get(key, 0) + 1
    durations = sorted((r["end_date"] - r["start_date"]).total_seconds() for r in runs if r["end_date"])
    n = len(ids)
    return {
        "runs": n,
        "runs_succeeded": sum(r["state"] == "success" for r in runs),
        "task_instances": len(tis),
        "task_processes": len(launched),
        "task_processes_per_run": round(len(launched) / n, 2),
        "never_started_per_run": round((len(tis) - len(launched)) / n, 2),
        "task_states": dict(sorted(states.items())),
        "cpu_s": round(cpu, 2),
        "cpu_s_by_component": by_component,
        "cpu_s_per_run": round(cpu / n, 3),
        "round_s": round(elapsed, 1),
        "idle_cpu_s_per_s": round(idle_rate, 3),
        "net_cpu_s_per_run": round((cpu - idle_rate * elapsed) / n, 3),
        "run_wall_s_median": round(common.median(durations), 2) if durations else None,
    }


def machine_share(cpu_per_run: float) -> float:
    """Percent of a 2-core machine that 500 tenants, one run each every 30 minutes, keep busy."""
    return 100.0 * cpu_per_run * SCHEDULE_TENANTS / (EVERY_SECONDS * MACHINE_CORES)


def _zoho_writes(zoho_url: str) -> int:
    import requests

    calls = requests.get(f"{zoho_url}/__sandbox__/calls", timeout=60).json()["calls"]
    requests.post(f"{zoho_url}/__sandbox__/reset_calls", timeout=60)
    return sum(c["operation"] in ZOHO_WRITES for c in calls)


def _combined(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A variant's rounds as one: totals over all its runs."""
    runs = sum(r["runs"] for r in rounds)
    cpu = sum(r["cpu_s"] for r in rounds)
    net = sum(r["net_cpu_s_per_run"] * r["runs"] for r in rounds)
    return {
        "runs": runs,
        "runs_succeeded": sum(r["runs_succeeded"] for r in rounds),
        "task_processes_per_run": round(sum(r["task_processes"] for r in rounds) / runs, 2),
        "never_started_per_run": round(sum(r["never_started_per_run"] * r["runs"] for r in rounds) / runs, 2),
        "cpu_s_per_run": round(cpu / runs, 3),
        "net_cpu_s_per_run": round(net / runs, 3),
        "share_of_2_cores_at_500_pct": round(machine_share(cpu / runs), 1),
        "net_share_of_2_cores_at_500_pct": round(machine_share(net / runs), 1),
        "zoho_writes": sum(r["zoho_writes"] for r in rounds),
        "rounds": rounds,
    }


def measure(n: int, idle_seconds: float, order: list[str]) -> dict[str, Any]:
    ids = tenant_ids(n)
    prefixes = {"product": PRODUCT_PREFIX, "baseline": BASELINE_PREFIX}
    with (
        common.sandbox_process("zoho_crm", "--daily-credits", "100000000") as zoho,
        common.sandbox_process("magento", "--customers", str(CUSTOMERS), "--seed", "17") as magento,
        common.scratch_postgres() as meta_url,
        common.scratch_postgres() as state_url,
        deployment(n, zoho, magento["url"], meta_url, state_url) as deployed,
    ):
        first_started = time.monotonic()
        first = wait_round(deployed, trigger_round(deployed, PRODUCT_PREFIX, ids, "first"), n)
        first_s = time.monotonic() - first_started
        first_writes = _zoho_writes(zoho["url"])
        rounds: dict[str, list[dict[str, Any]]] = {"product": [], "baseline": []}
        for index, variant in enumerate(order):
            measured = measure_round(deployed, prefixes[variant], ids, f"noop{index}_{variant}", idle_seconds)
            measured["zoho_writes"] = _zoho_writes(zoho["url"])
            rounds[variant].append(measured)
        return {
            "tenants": n,
            "timings_s": deployed.timings,
            "first_sync": {
                "runs_succeeded": sum(r["state"] == "success" for r in first),
                "round_s": round(first_s, 1),
                "zoho_writes": first_writes,
            },
            **{variant: _combined(rs) for variant, rs in rounds.items()},
        }


def run(quick: bool = False) -> list[common.Figure]:
    if not common.postgres_available():
        raise RuntimeError(f"PostgreSQL is needed at {common.POSTGRES_ADMIN_URL}")
    n, idle = (QUICK_TENANTS, QUICK_IDLE_SECONDS) if quick else (TENANTS, IDLE_SECONDS)
    order = ["product", "baseline"] if quick else ["product", "baseline", "baseline", "product"]
    result = common.run_worker(
        "bench.tenants_per_worker", {"n": n, "idle_seconds": idle, "order": order}, env=common.base_env(), timeout=3600
    )
    product, baseline = result["product"], result["baseline"]
    share, baseline_share = product["share_of_2_cores_at_500_pct"], baseline["share_of_2_cores_at_500_pct"]
    all_ok = (
        result["first_sync"]["runs_succeeded"] == n
        and product["runs_succeeded"] == product["runs"]
        and baseline["runs_succeeded"] == baseline["runs"]
        and product["zoho_writes"] == 0
        and baseline["zoho_writes"] == 0
    )
    for label, variant in (("product", product), ("baseline (six tasks)", baseline)):
        print(
            f"   {label}: {variant['task_processes_per_run']:g} task processes per no-op run "
            f"({variant['never_started_per_run']:g} never started), {variant['cpu_s_per_run']:.2f} CPU s per run "
            f"(net of idle {variant['net_cpu_s_per_run']:.2f}), 500 tenants / 30 min = "
            f"{variant['share_of_2_cores_at_500_pct']:.0f}% of 2 cores",
            flush=True,
        )
    return [
        common.Figure(
            name="tenants_per_worker",
            value=share,
            unit="% of 2 cores",
            baseline="today's six-task DAG (bench/six_task_sync_dag.py), same deployment, same tenants",
            baseline_value=baseline_share,
            ratio=round(baseline_share / share, 2) if share else None,
            target=(
                f"<= {TARGET_PROCESSES} task processes per no-op run and 500 tenants every 30 min "
                f"< {TARGET_SHARE:g}% of a 2-core machine"
            ),
            met=all_ok and product["task_processes_per_run"] <= TARGET_PROCESSES and share < TARGET_SHARE,
            details={
                **result,
                "task_processes_per_run": {
                    "product": product["task_processes_per_run"],
                    "baseline": baseline["task_processes_per_run"],
                },
                "cpu_s_per_run": {"product": product["cpu_s_per_run"], "baseline": baseline["cpu_s_per_run"]},
                "measure": (
                    f"{n} tenants (one {CUSTOMERS}-customer Magento sandbox store, one Zoho sandbox org), first sync "
                    "through the product DAG, then rounds of one no-op run per tenant triggered at once "
                    f"({' '.join(order)}), LocalExecutor parallelism {PARALLELISM}, PostgreSQL metadata and state "
                    "databases. CPU: scheduler, dag-processor and api-server process trees, incl. exited task "
                    "processes via their parents' child times, during the round / runs (net: minus the idle rate "
                    "measured just before). Share: cpu_s_per_run * 500 / (1800 s * 2 cores). Extrapolated from "
                    f"{n} tenants: the per-run task work does not grow with tenants; the scheduler's loop and the "
                    "DAG file parse do (parse_500_tenants measures the parse), and PostgreSQL's CPU is not counted."
                ),
            },
        )
    ]


if __name__ == "__main__":
    common.emit(measure(**common.worker_args()))
