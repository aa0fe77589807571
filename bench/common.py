"""Shared plumbing: result records, timing, memory, worker subprocesses, Airflow env, sandboxes, PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import REPO

RESULT_PREFIX = "BENCH_RESULT "
POSTGRES_ADMIN_URL = os.environ.get(
    "ZOHO_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Figure:
    """One row of bench/results.json."""

    name: str
    value: float | None  # the product's measurement
    unit: str
    baseline: str  # what the product is compared with
    baseline_value: float | None
    ratio: float | None  # baseline_value / value (how many times better), or value / floor
    target: str
    met: bool
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


# --- memory: the peak resident set since a reset, from /proc (Linux) -------------------------------------
def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> float:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); returns the current RSS, MiB."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    current = _status_mib("VmRSS")
    return current if current is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss() -> float:
    """The highest RSS since the last ``reset_peak_rss`` (or since start where /proc is missing), MiB."""
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- workers: each measurement in a fresh process -------------------------------------------------------
def emit(result: Any) -> None:
    """A worker's answer: one JSON line on stdout, after whatever else it printed."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(module: str, args: dict[str, Any], *, env: dict[str, str] | None = None, timeout: float = 1800) -> Any:
    """Run ``python -m <module> '<json args>'`` and return what it ``emit``-ted."""
    completed = subprocess.run(
        [sys.executable, "-m", module, json.dumps(args)],
        cwd=REPO,
        env=env or base_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(
        f"{module} failed (exit {completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-5000:]}"
    )


def worker_args() -> dict[str, Any]:
    return json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}


# --- environment: what tests/conftest.py sets, before anything imports airflow ---------------------------
def base_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """A throw-away Airflow home, the repo's dags/ and plugins/, quiet logs; no tenants unless given."""
    home = home or Path(tempfile.mkdtemp(prefix="zoho-sync-bench-"))
    env = dict(os.environ)
    env.pop("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "ZOHO_SYNC_STAGING_URL": f"file://{home}/staging",
            "ZOHO_SYNC_INCLUDE_DIR": str(REPO / "include"),
            "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), str(REPO)]),
        }
    )
    env.update(extra)
    return env


def connection_env(conn_id: str, **fields: Any) -> tuple[str, str]:
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields)


def zoho_connection(conn_id: str, ready: dict[str, Any]) -> tuple[str, str]:
    """A Connection for a Zoho sandbox, from its ready file (client id/secret, refresh token, url)."""
    return connection_env(
        conn_id,
        conn_type="http",
        login=ready["client_id"],
        password=ready["client_secret"],
        extra={
            "refresh_token": ready["refresh_token"],
            "accounts_url": ready["url"],
            "api_domain": ready["url"],
            "allow_custom_hosts": True,
        },
    )


def magento_connection(conn_id: str, url: str, token: str = "sandbox-integration-token-0123456789") -> tuple[str, str]:
    return connection_env(conn_id, conn_type="http", host=url, password=token, extra={"auth": "integration_token"})


def state_connection(url: str) -> tuple[str, str]:
    """The state database Connection (sqlite:///path or a postgresql URL)."""
    if url.startswith("sqlite"):
        return connection_env("zoho_sync_state_db", conn_type="sqlite", host=url.removeprefix("sqlite:///"))
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return connection_env(
        "zoho_sync_state_db",
        conn_type="postgres",
        host=parsed.host,
        port=parsed.port,
        login=parsed.username,
        password=parsed.password,
        schema=parsed.database,
    )


# --- sandboxes in their own processes -------------------------------------------------------------------
@contextlib.contextmanager
def sandbox_process(module: str, *args: str, timeout: float = 900) -> Iterator[dict[str, Any]]:
    """Start ``python -m sandboxes.<module> --port 0 --ready-file F ...``; yields its ready file's JSON."""
    ready_file = Path(tempfile.mkdtemp(prefix="bench-sandbox-")) / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", f"sandboxes.{module}", "--port", "0", "--ready-file", str(ready_file), *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready_file.exists():
            if process.poll() is not None:
                raise RuntimeError(f"sandboxes.{module} exited: {process.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sandboxes.{module} not ready after {timeout:.0f} s")
            time.sleep(0.2)
        ready = json.loads(ready_file.read_text())
        ready["pid"] = process.pid
        yield ready
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- PostgreSQL: a scratch database per measurement -----------------------------------------------------
def postgres_available() -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no server here"
        return False


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """CREATE DATABASE for the duration, DROP ... WITH (FORCE) after; yields its URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"zoho_sync_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
