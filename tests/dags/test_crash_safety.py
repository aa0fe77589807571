"""Crash safety: SIGKILL the load at several points, run again: one Zoho record per valid email, current values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO, connection_env, sqlite_conn_fields

TENANT = {
    "tenant_id": "crashy",
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "zoho_max_concurrency": 1,
}


@pytest.fixture
def env(zoho_sandbox, tmp_path):
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store

    with MagentoSandbox(generate_store(900, seed=21)) as magento:
        variables = dict(os.environ)
        variables.update(
            dict(
                [
                    connection_env(
                        "zoho_test",
                        conn_type="http",
                        login=zoho_sandbox.client_id,
                        password=zoho_sandbox.client_secret,
                        extra={
                            "refresh_token": zoho_sandbox.refresh_token,
                            "accounts_url": zoho_sandbox.url,
                            "api_domain": zoho_sandbox.url,
                            "allow_custom_hosts": True,
                        },
                    ),
                    connection_env(
                        "magento_test",
                        conn_type="http",
                        host=magento.url,
                        password=magento.integration_token,
                        extra={"auth": "integration_token"},
                    ),
                    connection_env("zoho_sync_state_db", **sqlite_conn_fields(f"sqlite:///{tmp_path / 'state.db'}")),
                ]
            )
        )
        variables["AIRFLOW_VAR_ZOHO_SYNC_TENANTS"] = json.dumps([TENANT])
        yield variables, magento


def _start(variables: dict, run_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "dags" / "crash_runner.py"), "crashy", run_id],
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _hold_after_apply(zoho, after_upserts: int) -> threading.Event:
    """Make the sandbox apply the n-th upsert, signal, then hang before answering (the client is killed)."""
    applied = threading.Event()
    original = zoho._authorised_call
    seen = {"n": 0}

    def apply_then_hold(req, route, info):  # type: ignore[no-untyped-def]
        response = original(req, route, info)
        if route.operation == "upsert":
            seen["n"] += 1
            if seen["n"] == after_upserts:
                applied.set()
                time.sleep(20)
        return response

    zoho._authorised_call = apply_then_hold
    return applied


def _assert_zoho_matches_store(zoho, magento) -> None:
    import pandas as pd

    from tests.reference import classify
    from zoho_store_sync.customers import prepare
    from zoho_store_sync.sources.magento import customer_rows, order_aggregates

    frame = pd.DataFrame(customer_rows(magento.customers(), magento.url))
    frame = frame.merge(order_aggregates(magento.orders()), on="customer_key", how="left")
    valid = prepare(frame).valid
    valid["module"] = classify(valid)
    for module in ("Contacts", "Leads"):
        held = zoho.records(module)
        emails = [r["Email"] for r in held]
        assert len(emails) == len(set(emails)), f"duplicates in {module}"
        expected = valid[valid["module"] == module].set_index("email")
        assert set(emails) == set(expected.index)
        for record in held:
            first = expected.loc[record["Email"], "firstname"]
            assert record["First_Name"] == ((first or "").strip()[:40] or None)


@pytest.mark.parametrize(
    "kill_point", ["after_first_batch_answered", "after_zoho_applied_a_batch_unanswered", "mid_run"]
)
def test_killed_load_then_rerun_gives_one_record_per_email_with_current_values(env, zoho_sandbox, kill_point):
    variables, magento = env
    if kill_point == "after_zoho_applied_a_batch_unanswered":
        trigger = _hold_after_apply(zoho_sandbox, after_upserts=3)
    else:
        trigger = threading.Event()
        wanted = 1 if kill_point == "after_first_batch_answered" else 5

        def watch() -> None:
            while not trigger.is_set():
                if sum(1 for c in zoho_sandbox.calls() if c["operation"] == "upsert" and c["status"]) >= wanted:
                    trigger.set()
                time.sleep(0.005)

        threading.Thread(target=watch, daemon=True).start()
    process = _start(variables, "run-1")
    assert trigger.wait(60), process.communicate()[0]
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    zoho_sandbox._authorised_call = type(zoho_sandbox)._authorised_call.__get__(zoho_sandbox)

    # the store moves on while the sync is down
    for customer in sorted(magento.customers(), key=lambda c: c["id"])[:5]:
        magento.update_customer(customer["id"], firstname=f"After{customer['id']}")

    rerun = _start(variables, "run-2")
    output = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, output
    _assert_zoho_matches_store(zoho_sandbox, magento)
