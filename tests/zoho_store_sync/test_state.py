"""The state table on SQLite and on the real PostgreSQL: idempotent schema, upserts, tenant isolation."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from zoho_store_sync.hooks.zoho_tokens import AccessToken, cache_key, cipher_for
from zoho_store_sync.state import DatabaseTokenCache, StateStore, make_engine
from zoho_store_sync.state_migrations import migrate


def _row(key: str, **overrides) -> dict:
    row = {
        "customer_key": key,
        "email": f"{key}@example.com",
        "module": "Contacts",
        "zoho_id": f"900{key}",
        "payload_hash": int(key) * 7919,
        "status": "synced",
        "error_code": None,
        "error_message": None,
        "retryable": None,
        "attempts": 0,
    }
    row.update(overrides)
    return row


@pytest.fixture
def store(state_url):
    engine = make_engine(state_url)
    migrate(engine)
    s = StateStore(engine, "tenant_a")
    s.forget()
    yield s
    StateStore(engine, "tenant_b").forget()
    engine.dispose()


def test_migrating_again_is_idempotent_and_the_schema_check_passes(store):
    assert migrate(store.engine).steps == []
    assert migrate(store.engine).steps == []
    store.check_schema()
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
    store.record_errors(
        "run-1",
        [
            {
                "customer_key": "1",
                "email": "a@b.co",
                "module": "Leads",
                "code": "INVALID_DATA",
                "message": "too long",
                "retryable": False,
            }
        ],
    )
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
    cache.refresh_exclusively(
        key, cipher, lambda t: False, lambda h: AccessToken("1000.plain-token", "https://x", time.time() + 60)
    )
    with store.engine.connect() as conn:
        blob = conn.execute(sa.text("SELECT sealed_token FROM zoho_sync_access_tokens")).scalar()
    assert b"1000.plain-token" not in bytes(blob)
    assert cache.get(key, cipher_for("other-secret", "refresh")) is None
    assert cache.get(key, cipher).value == "1000.plain-token"


def _updated_at(store, key: str):
    import sqlalchemy as sa

    from zoho_store_sync.state import customers_state

    with store.engine.connect() as conn:
        return conn.execute(
            sa.select(customers_state.c.updated_at).where(
                customers_state.c.tenant_id == store.tenant_id, customers_state.c.customer_key == key
            )
        ).scalar()


def test_a_small_batch_sets_every_column_and_the_update_time(store):
    store.save_outcomes(
        [_row("1", status="failed", error_code="INVALID_DATA", error_message="bad phone", retryable=True, attempts=2)]
    )
    first = _updated_at(store, "1")
    store.save_outcomes([_row("1", email="new@example.com", module="Leads", zoho_id="777", payload_hash=-1)])
    row = store.load().iloc[0]
    assert (row["email"], row["module"], row["zoho_id"], row["payload_hash"], row["status"]) == (
        "new@example.com",
        "Leads",
        "777",
        -1,
        "synced",
    )
    assert pd.isna(row["error_code"]) and pd.isna(row["error_message"]) and pd.isna(row["retryable"])
    assert row["attempts"] == 0
    assert _updated_at(store, "1") > first


@pytest.mark.parametrize("size", [3, 5000], ids=["batch", "bulk"])
@pytest.mark.parametrize("as_frame", [False, True], ids=["dicts", "frame"])
def test_a_key_given_twice_in_one_write_keeps_its_last_row(store, size, as_frame):
    rows = [_row(str(i)) for i in range(1, size + 1)] + [_row("2", status="failed", error_code="X", attempts=1)]
    for existing in (False, True):  # into a tenant without rows, then over its rows
        written = store.save_outcomes(pd.DataFrame(rows) if as_frame else rows)
        assert written == size
        state = store.load().set_index("customer_key")
        assert len(state) == size
        assert (state.loc["2", "status"], state.loc["2", "attempts"]) == ("failed", 1), existing


def test_a_bulk_write_over_some_existing_rows_updates_them_and_adds_the_others(store):
    other = StateStore(store.engine, "tenant_b")
    other.save_outcomes([_row("1", zoho_id="theirs")])
    store.save_outcomes(pd.DataFrame([_row(str(i)) for i in range(1, 3001)]))
    store.save_outcomes(pd.DataFrame([_row(str(i), payload_hash=-i, status="failed") for i in range(2001, 6001)]))
    state = store.load().set_index("customer_key")
    assert len(state) == 6000
    assert state.loc["2000", "status"] == "synced" and state.loc["2000", "payload_hash"] == 2000 * 7919
    assert state.loc["2001", "status"] == "failed" and state.loc["2001", "payload_hash"] == -2001
    assert state.loc["6000", "payload_hash"] == -6000
    assert other.load().iloc[0]["zoho_id"] == "theirs"


def test_the_state_table_leaves_room_for_in_page_updates_and_indexes_zoho_ids_and_emails(store):
    import sqlalchemy as sa

    indexes = {
        index["name"]: index["column_names"] for index in sa.inspect(store.engine).get_indexes("zoho_sync_state")
    }
    assert indexes == {
        "ix_zoho_sync_state_zoho_id_any": ["zoho_id"],
        "ix_zoho_sync_state_tenant_email": ["tenant_id", "email"],
        # partial: only the rows a person deleted in Zoho (the tenant page's list), nothing for synced rows
        "ix_zoho_sync_state_deleted_in_zoho": ["tenant_id", "updated_at"],
    }
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            options = conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'zoho_sync_state'").scalar()
        assert "fillfactor=50" in options
    query = (
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_zoho_sync_state_deleted_in_zoho'"
        if store.engine.dialect.name == "postgresql"
        else "SELECT sql FROM sqlite_master WHERE name = 'ix_zoho_sync_state_deleted_in_zoho'"
    )
    with store.engine.connect() as conn:
        definition = conn.exec_driver_sql(query).scalar()
    assert "WHERE" in definition.upper() and "deleted_in_zoho" in definition


def test_a_reset_s_progress_counts_the_confirmed_rows_of_its_record_types(store):
    store.save_outcomes(
        [_row("1"), _row("2", status="failed"), _row("3", module="Leads"), _row("4", status="deleted_in_zoho")]
    )
    StateStore(store.engine, "tenant_b").save_outcomes([_row("5")])
    assert store.count_confirmed(["Contacts"]) == 2
    assert store.count_confirmed(["Contacts", "Leads"]) == 3


def _some_rows() -> list[dict]:
    return [
        _row("1"),
        _row(
            "2",
            module="Leads",
            status="failed",
            error_code="INVALID_DATA",
            error_message="bad",
            retryable=False,
            attempts=3,
        ),
        _row("3", zoho_id=None),
        _row("4"),
    ]


def test_loading_some_keys_gives_those_rows_as_the_full_load_does(store):
    store.save_outcomes(_some_rows())
    StateStore(store.engine, "tenant_b").save_outcomes([_row("1", zoho_id="theirs"), _row("5")])
    full = store.load()
    some = store.load(["2", "3", "3", "9"])  # a repeated key, a key without a row
    expected = full.loc[full["customer_key"].isin(["2", "3"])]
    pd.testing.assert_frame_equal(
        some.sort_values("customer_key").reset_index(drop=True),
        expected.sort_values("customer_key").reset_index(drop=True),
    )
    assert store.load(["5"]).empty  # tenant_b's row


def test_loading_no_key_or_unknown_keys_gives_the_empty_state_frame(store):
    empty = store.load()
    assert store.load([]).dtypes.to_dict() == empty.dtypes.to_dict()
    store.save_outcomes(_some_rows())
    unknown = store.load([str(k) for k in range(100_000, 140_000)])  # more keys than SQLite has bound variables
    assert unknown.empty and unknown.dtypes.to_dict() == empty.dtypes.to_dict()
    assert list(unknown.columns) == list(store.load().columns)


def test_marking_deleted_in_zoho_reports_then_applies_only_not_yet_marked_rows(store):
    other = StateStore(store.engine, "tenant_b")
    store.save_outcomes(_some_rows() + [_row("5", status="deleted_in_zoho")])
    other.save_outcomes([_row("1")])  # the same Zoho id in another tenant's state
    before = _updated_at(store, "1")
    ids = ["9001", "9002", "9005", "unknown"]

    dry = store.mark_deleted_in_zoho(ids, apply=False)
    assert sorted(dry["customer_key"]) == ["1", "2"]
    assert set(dry["status"]) == {"deleted_in_zoho"}
    assert list(dry.columns) == list(store.load().columns)
    assert set(store.load()["status"]) == {"synced", "failed", "deleted_in_zoho"}  # nothing written

    applied = store.mark_deleted_in_zoho(iter(ids), apply=True)
    pd.testing.assert_frame_equal(
        applied.sort_values("customer_key").reset_index(drop=True),
        dry.sort_values("customer_key").reset_index(drop=True),
    )
    state = store.load().set_index("customer_key")
    assert list(state["status"].sort_index()) == [
        "deleted_in_zoho",
        "deleted_in_zoho",
        "synced",
        "synced",
        "deleted_in_zoho",
    ]
    assert state.loc["2", "error_code"] == "INVALID_DATA"  # the rest of the row is kept
    assert _updated_at(store, "1") > before
    assert other.load().iloc[0]["status"] == "synced"
    assert store.mark_deleted_in_zoho(ids, apply=True).empty  # already marked
    assert store.mark_deleted_in_zoho([], apply=True).empty


@pytest.mark.parametrize("size", [1, 2500], ids=["batch", "bulk"])
def test_text_with_quotes_backslashes_and_braces_is_stored_as_given(store, size):
    awkward = ['say "hi"', "back\\slash", "{braces},comma", "NULL", "", "tab\tnew\nline", "ünï €", "it's"]
    rows = [
        _row(str(i), error_message=awkward[i % len(awkward)], email=awkward[(i + 1) % len(awkward)])
        for i in range(1, size + 1)
    ]
    store.save_outcomes(rows)
    state = store.load().set_index("customer_key")
    for row in rows:
        assert state.loc[row["customer_key"], "error_message"] == row["error_message"]
        assert state.loc[row["customer_key"], "email"] == row["email"]


def test_a_too_long_value_fails_the_batch_instead_of_being_cut(store):
    import sqlalchemy as sa

    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    with pytest.raises(sa.exc.DataError, match="too long"):
        store.save_outcomes([_row("1", module="M" * 21)])
    assert store.load().empty
