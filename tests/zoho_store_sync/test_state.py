"""The state table on SQLite and on the real PostgreSQL: idempotent schema, upserts, tenant isolation."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from zoho_store_sync.hooks.zoho_tokens import AccessToken, cache_key, cipher_for
from zoho_store_sync.state import DatabaseTokenCache, StateStore, make_engine


def _row(key: str, **overrides) -> dict:
    row = {"customer_key": key, "email": f"{key}@example.com", "module": "Contacts", "zoho_id": f"900{key}",
           "payload_hash": int(key) * 7919, "status": "synced", "error_code": None, "error_message": None,
           "retryable": None, "attempts": 0}
    row.update(overrides)
    return row


@pytest.fixture
def store(state_url):
    engine = make_engine(state_url)
    s = StateStore(engine, "tenant_a")
    s.create_schema()
    s.forget()
    yield s
    StateStore(engine, "tenant_b").forget()
    engine.dispose()


def test_schema_creation_is_idempotent(store):
    store.create_schema()
    store.create_schema()
    assert store.load().empty


def test_saved_outcomes_are_read_back_with_their_hashes(store):
    store.save_outcomes([_row("1"), _row("2", module="Leads", payload_hash=-5)])
    state = store.load().set_index("customer_key")
    assert state.loc["1", "zoho_id"] == "9001"
    assert state.loc["2", "module"] == "Leads"
    assert state.loc["2", "payload_hash"] == -5


def test_saving_again_updates_the_row_instead_of_adding_one(store):
    store.save_outcomes([_row("1")])
    store.save_outcomes([_row("1", status="failed", error_code="INVALID_DATA", retryable=False, attempts=1)])
    state = store.load()
    assert len(state) == 1
    assert state.iloc[0]["status"] == "failed"
    assert state.iloc[0]["error_code"] == "INVALID_DATA"


def test_tenants_never_see_each_others_rows(store):
    other = StateStore(store.engine, "tenant_b")
    store.save_outcomes([_row("1")])
    other.save_outcomes([_row("1", zoho_id="other")])
    assert store.load().iloc[0]["zoho_id"] == "9001"
    assert other.load().iloc[0]["zoho_id"] == "other"
    other.forget()
    assert len(store.load()) == 1


def test_large_writes_take_the_bulk_path_and_stay_correct(store):
    rows = pd.DataFrame([_row(str(i)) for i in range(1, 5001)])
    assert store.save_outcomes(rows) == 5000
    rows["status"] = "failed"
    store.save_outcomes(rows)
    state = store.load()
    assert len(state) == 5000
    assert set(state["status"]) == {"failed"}


def test_forget_can_be_limited_to_one_record_type(store):
    store.save_outcomes([_row("1"), _row("2", module="Leads")])
    assert store.forget(["Leads"]) == 1
    assert list(store.load()["customer_key"]) == ["1"]


def test_run_history_keeps_one_row_per_run(store):
    store.record_run("run-1", "sync", {"extracted": 3, "inserted": 3}, None)
    store.record_run("run-1", "sync", {"extracted": 3, "inserted": 2}, None)
    store.record_run("run-2", "sync", {"extracted": 3, "inserted": 0}, None)
    assert [s["inserted"] for s in store.run_summaries()] == [2, 0]


def test_rejected_records_are_queryable_by_tenant(store):
    store.record_errors("run-1", [{"customer_key": "1", "email": "a@b.co", "module": "Leads",
                                   "code": "INVALID_DATA", "message": "too long", "retryable": False}])
    assert store.errors()[0]["code"] == "INVALID_DATA"
    assert StateStore(store.engine, "tenant_b").errors() == []


def test_token_cache_refreshes_once_for_many_concurrent_callers(store):
    cache = DatabaseTokenCache(store.engine)
    key, cipher = cache_key("client", "refresh"), cipher_for("secret", "refresh")
    refreshes = []

    def refresh(history):
        refreshes.append(len(history))
        time.sleep(0.2)
        return AccessToken("1000.token-value", "https://www.zohoapis.eu", time.time() + 3600)

    results = []

    def worker():
        results.append(cache.refresh_exclusively(key, cipher, lambda t: t.valid_for(300), refresh))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refreshes) == 1
    assert {r.value for r in results} == {"1000.token-value"}


def test_token_cache_stores_tokens_encrypted(store):
    import sqlalchemy as sa

    cache = DatabaseTokenCache(store.engine)
    key, cipher = cache_key("client", "refresh"), cipher_for("secret", "refresh")
    cache.refresh_exclusively(key, cipher, lambda t: False,
                              lambda h: AccessToken("1000.plain-token", "https://x", time.time() + 60))
    with store.engine.connect() as conn:
        blob = conn.execute(sa.text("SELECT sealed_token FROM zoho_sync_access_tokens")).scalar()
    assert b"1000.plain-token" not in bytes(blob)
    assert cache.get(key, cipher_for("other-secret", "refresh")) is None
    assert cache.get(key, cipher).value == "1000.plain-token"
