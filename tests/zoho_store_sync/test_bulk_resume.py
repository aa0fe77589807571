"""A Bulk Write job is paid once: a retried load resumes the job it bought (sandbox over HTTP, real state DB)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pandas as pd
import pytest

from sandboxes.zoho import bulk as sandbox_bulk
from sandboxes.zoho_crm import ZohoSandbox
from tests.conftest import connection_env
from zoho_store_sync.errors import ZohoError
from zoho_store_sync.hooks.zoho_crm import MemoryTokenCache, ZohoCrmHook
from zoho_store_sync.loader import apply_plan, choose_write_paths
from zoho_store_sync.state import BulkJobStore, StateStore, make_engine
from zoho_store_sync.state_migrations import migrate

CONN_ID = "zoho_bulk_resume"
RUN_ID = "manual__2026-01-01T00:00:00+00:00"


@pytest.fixture
def sandbox(zoho_sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch) -> ZohoSandbox:
    zoho_sandbox.bulk_step_seconds = 0.01
    extra = {
        "refresh_token": zoho_sandbox.refresh_token,
        "accounts_url": zoho_sandbox.url,
        "api_domain": zoho_sandbox.url,
        "allow_custom_hosts": True,
    }
    monkeypatch.setenv(
        *connection_env(
            CONN_ID, conn_type="http", login=zoho_sandbox.client_id, password=zoho_sandbox.client_secret, extra=extra
        )
    )
    return zoho_sandbox


@pytest.fixture
def store(state_url: str) -> StateStore:
    migrate(state_url)
    return StateStore(make_engine(state_url), f"shop-{uuid.uuid4().hex[:8]}")  # PostgreSQL is shared by tests


def _hook() -> ZohoCrmHook:
    hook = ZohoCrmHook(CONN_ID, token_cache=MemoryTokenCache(), max_retries=1, backoff_base=0.002, backoff_cap=0.01)
    hook.sleep = lambda seconds: time.sleep(min(seconds, 0.02))  # bulk polls every 2 s in production
    return hook


def _changes(n: int) -> pd.DataFrame:
    keys = [f"c{i:04d}" for i in range(n)]
    return pd.DataFrame(
        {
            "customer_key": keys,
            "email": [f"{k}@example.com" for k in keys],
            "module": "Contacts",
            "action": "new",
            "payload": [json.dumps({"Email": f"{k}@example.com", "Last_Name": f"Person {k}"}) for k in keys],
            "zoho_id": None,
            "payload_hash": [i * 31 + 7 for i in range(n)],
            "attempts": 0,
        }
    )


def _load(store: StateStore, changes: pd.DataFrame) -> Any:
    return apply_plan(
        _hook(), store, changes, concurrency=2, write_paths={"Contacts": "bulk"}, run_id=RUN_ID, trigger=[]
    )


def _jobs_created(sandbox: ZohoSandbox) -> list[dict]:
    return [c for c in sandbox.calls() if c["operation"] == "bulk_write" and c["status"] == 201]


def test_a_retried_load_resumes_the_bulk_job_it_paid_for_instead_of_buying_another(
    sandbox: ZohoSandbox, store: StateStore
) -> None:
    changes = _changes(30)
    sandbox.inject_fault("500", operation="bulk_download", times=2)  # the attempt dies after the job was bought
    with pytest.raises(ZohoError):
        _load(store, changes)
    [paid] = BulkJobStore(store.engine, store.tenant_id).jobs(RUN_ID)
    assert paid["status"] == "created" and paid["job_id"] and paid["records"] == 30
    assert set(store.load()["status"]) == {"unconfirmed"}  # written ahead, no outcome yet

    result = _load(store, changes)  # Airflow's retry of the task: same run, same records

    assert len(_jobs_created(sandbox)) == 1
    assert result.inserted == 30 and result.failed == 0
    state = store.load()
    assert len(state) == 30 and set(state["status"]) == {"synced"} and state["zoho_id"].notna().all()
    assert sorted(r["Email"] for r in sandbox.records("Contacts")) == sorted(changes["email"])
    assert BulkJobStore(store.engine, store.tenant_id).get(paid["job_key"])["status"] == "read"
    # the result comes from Zoho's real path (https://download-accl.zoho.<tld>/v2/crm/{org}/bulk-write/{job}/...)
    downloads = {c["path"] for c in sandbox.calls() if c["operation"] == "bulk_download"}
    job_id = paid["job_id"]
    assert downloads == {f"/v2/crm/{_hook().get_org()['zgid']}/bulk-write/{job_id}/{job_id}.zip"}


def test_a_job_whose_result_expired_is_bought_again_and_every_outcome_is_kept(
    sandbox: ZohoSandbox, store: StateStore
) -> None:
    changes = _changes(12)
    sandbox.inject_fault("500", operation="bulk_download", times=2)
    with pytest.raises(ZohoError):
        _load(store, changes)
    sandbox_bulk.expire_bulk_results(sandbox)  # the retry comes after Zoho's link expired

    result = _load(store, changes)

    assert len(_jobs_created(sandbox)) == 2
    assert (result.inserted + result.updated, result.failed) == (12, 0)
    assert set(store.load()["status"]) == {"synced"}
    assert len(sandbox.records("Contacts")) == 12  # matched on Email: the second job made no twin
    statuses = sorted(j["status"] for j in BulkJobStore(store.engine, store.tenant_id).jobs(RUN_ID))
    assert statuses == ["read"]  # one key: the abandoned job's row now describes the new one


def test_another_run_with_the_same_records_buys_its_own_job(sandbox: ZohoSandbox, store: StateStore) -> None:
    changes = _changes(5)
    _load(store, changes)
    apply_plan(_hook(), store, changes, concurrency=2, write_paths={"Contacts": "bulk"}, run_id="another run")
    assert len(_jobs_created(sandbox)) == 2


def test_a_bulk_job_holds_one_module_and_write_ahead_still_happens(sandbox: ZohoSandbox, store: StateStore) -> None:
    leads = _changes(4).assign(module="Leads")
    leads["customer_key"] = "l" + leads["customer_key"]
    leads["payload"] = [
        json.dumps({"Email": f"lead{i}@example.com", "Last_Name": "Lead", "Company": "Acme"}) for i in range(4)
    ]
    changes = pd.concat([_changes(6), leads], ignore_index=True)
    _load_paths = {"Contacts": "bulk", "Leads": "bulk"}
    apply_plan(_hook(), store, changes, concurrency=2, write_paths=_load_paths, run_id=RUN_ID)
    jobs = sandbox_bulk.bulk_jobs_created(sandbox)
    assert sorted((j["module"], j["records"]) for j in jobs) == [("Contacts", 6), ("Leads", 4)]
    assert len(store.load()) == 10


def test_the_sync_takes_bulk_for_a_module_only_above_the_break_even() -> None:
    big = _changes(6_000)
    small = _changes(300).assign(module="Leads")
    assert choose_write_paths(pd.concat([big, small], ignore_index=True)) == {"Contacts": "bulk", "Leads": "upsert"}
    assert choose_write_paths(big.assign(action="delete")) == {}  # deletions never go through Bulk Write
