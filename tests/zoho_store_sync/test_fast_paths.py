"""Each fast path of the pandas part against the way it replaces, on the same messy customers.

customers.py and mapping.py work on Arrow text straight from pandas' default string columns, with a pandas
fallback for text held any other way (``mode.string_storage = "python"`` makes every column such text): both must
give the same customers, payloads and hashes, and the hashes must be tests/reference.py's plain recipe. diff.py
joins customers to their state rows through a hash lookup, and falls back to pandas' merge when state keys repeat:
on the rules both implement, they must plan the same calls.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import data
from tests.reference import classify, payload_hashes
from zoho_store_sync import diff
from zoho_store_sync.config import TenantConfig
from zoho_store_sync.customers import PreparedCustomers, is_arrow_string, prepare, record_types
from zoho_store_sync.diff import plan_changes
from zoho_store_sync.mapping import build_payloads, load_mapping, payload_hashes_by_module, payload_json
from zoho_store_sync.state import STATE_COLUMNS

TENANT = TenantConfig(tenant_id="t1", source="magento", store_conn_id="m", zoho_conn_id="z")
MODULES = ("Contacts", "Leads")


def messy_customers(n: int, seed: int) -> pd.DataFrame:
    """bench's generated store (some emails upper case, padded, invalid or shared) with blank and padded text."""
    frame = data.customers(n, seed=seed)
    frame.loc[frame.index[::7], "lastname"] = None
    frame.loc[frame.index[::11], "lastname"] = "  "
    frame.loc[frame.index[::13], "firstname"] = None
    frame.loc[frame.index[::17], "full_name"] = " Jean  de la Fontaine "
    frame.loc[frame.index[::97], "city"] = "  "
    frame.loc[frame.index[::89], "address"] = "  " + "x" * 300 + " "
    frame.loc[frame.index[::83], "company"] = ""
    frame.loc[frame.index[::79], "store"] = None
    return frame


@pytest.fixture(scope="module")
def on_arrow() -> PreparedCustomers:
    return prepare(messy_customers(12_000, seed=3))  # past 10,000 rows: prepare hashes the emails as well


@pytest.fixture(scope="module")
def on_python_text() -> PreparedCustomers:
    with pd.option_context("mode.string_storage", "python"):
        return prepare(messy_customers(12_000, seed=3))


def same_values(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Equal cell by cell, whatever string storage holds the text."""
    pd.testing.assert_frame_equal(left.astype(object), right.astype(object), check_column_type=False)


def test_prepare_gives_the_same_customers_from_arrow_text_and_from_python_text(on_arrow, on_python_text):
    assert is_arrow_string(on_arrow.valid["email"]) and not is_arrow_string(on_python_text.valid["email"])
    same_values(on_arrow.valid, on_python_text.valid)
    same_values(on_arrow.invalid, on_python_text.invalid)
    assert on_arrow.duplicates == on_python_text.duplicates > 0
    assert len(on_arrow.invalid) > 0 and on_arrow.valid["lastname"].notna().all()
    # the emails' hashes, computed by prepare on Arrow text only, are what the plan would compute itself
    assert on_arrow.email_hashes is not None and on_python_text.email_hashes is None
    assert (on_arrow.email_hashes == pd.util.hash_pandas_object(on_arrow.valid["email"], index=False)).all()


def test_record_types_are_the_reference_classification(on_arrow):
    assert (record_types(on_arrow.valid) == classify(on_arrow.valid).to_numpy()).all()
    assert set(record_types(on_arrow.valid)) == {"Contacts", "Leads"}


def test_payloads_and_hashes_are_the_same_from_arrow_text_and_from_python_text_and_the_reference_s(
    on_arrow, on_python_text
):
    mapping = load_mapping(TENANT)
    module = record_types(on_arrow.valid)
    fast = payload_hashes_by_module(on_arrow.valid, mapping, module, on_arrow.email_hashes)
    with pd.option_context("mode.string_storage", "python"):
        fallback = payload_hashes_by_module(on_python_text.valid, mapping, module)
        valid = on_python_text.valid
        fallback_json = {m: payload_json(build_payloads(valid[module == m], mapping, m)) for m in MODULES}
    assert (fast == fallback).all()
    for name in MODULES:
        rows = module == name
        payloads = build_payloads(on_arrow.valid[rows], mapping, name)
        assert (fast[rows] == payload_hashes(payloads, name)).all(), name
        assert payload_json(payloads) == fallback_json[name], name


def _empty_state() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in STATE_COLUMNS}).astype({"payload_hash": "int64"})


def _forced_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    """plan_changes takes its pandas-merge branch, as it does when state keys repeat."""
    monkeypatch.setattr(diff, "_unique_state_rows", lambda keys, state_keys: None)


def test_the_fast_state_join_plans_what_the_pandas_merge_plans(monkeypatch):
    mapping = load_mapping(TENANT)
    before = messy_customers(3_000, seed=4)
    first = plan_changes(prepare(before).valid, _empty_state(), mapping, TENANT.modules).changes
    rng = np.random.default_rng(1)
    state = first.assign(
        status="synced",
        zoho_id=[f"z{i}" for i in range(len(first))],
        error_code=None,
        error_message=None,
        retryable=None,
        attempts=0,
    )[STATE_COLUMNS]
    kind = rng.integers(0, 6, len(state))
    state.loc[kind == 1, ["status", "retryable"]] = ["failed", True]
    state.loc[kind == 2, ["status", "retryable"]] = ["failed", False]
    state.loc[kind == 3, "status"] = "deleted_in_zoho"
    state.loc[kind == 4, "status"] = "deleted_in_source"
    # Edits (values, new orders: Leads become Contacts), moved emails, customers gone and new ones. A Lead that
    # buys *and* moves email is left out: only the fast path sends its conversion under the email Zoho knows.
    after, edited = data.change(before, 0.2, seed=5)
    moved = (rng.random(len(after)) < 0.03) & ~after["customer_key"].isin(edited).to_numpy()
    after.loc[moved, "email"] = "new." + after.loc[moved, "email"].astype(str)
    newcomers = data.customers(100, seed=9, invalid_share=0, duplicate_share=0)
    newcomers["customer_key"] = (10_000 + newcomers.index).astype(str)
    newcomers["email"] = "newcomer" + newcomers.index.astype(str) + "@example.com"
    prepared = prepare(pd.concat([after.iloc[50:], newcomers], ignore_index=True))
    for source_deletions, keys in (("ignore", None), ("delete", prepared.valid["customer_key"].tolist())):
        options = {"source_deletions": source_deletions, "all_customer_keys": keys}
        fast = plan_changes(prepared.valid, state, mapping, TENANT.modules, **options)
        with monkeypatch.context() as patch:
            _forced_merge(patch)
            merged = plan_changes(prepared.valid, state, mapping, TENANT.modules, **options)
        assert fast.counts == merged.counts
        pd.testing.assert_frame_equal(fast.changes, merged.changes)
        actions = set(fast.changes["action"])
        assert {"new", "changed", "retry", "convert", "email_changed"} <= actions, actions
    assert fast.counts["unchanged"] and fast.counts["skipped_failed"] and fast.counts["skipped_deleted"]
    assert fast.counts["source_deleted"]


def _synced_state(plan: pd.DataFrame) -> pd.DataFrame:
    return plan.assign(
        status="synced",
        zoho_id=[f"z{i}" for i in range(len(plan))],
        error_code=None,
        error_message=None,
        retryable=None,
        attempts=0,
    )[STATE_COLUMNS]


def test_a_plan_given_prepare_s_email_hashes_is_the_plan_without_them_also_when_deleted_customers_are_dropped():
    mapping = load_mapping(TENANT)
    frame = messy_customers(12_000, seed=6)
    first = prepare(frame)
    state = _synced_state(plan_changes(first.valid, _empty_state(), mapping, TENANT.modules).changes)
    frame["deleted"] = False
    frame.loc[frame.index[::50], "deleted"] = True  # flagged deleted in the store (DecoNetwork): deleted in Zoho
    frame.loc[frame.index[1::50], "city"] = "Springfield"
    prepared = prepare(frame)
    assert prepared.email_hashes is not None
    options = {"source_deletions": "delete", "all_customer_keys": prepared.valid["customer_key"].tolist()}
    fast = plan_changes(prepared.valid, state, mapping, TENANT.modules, email_hashes=prepared.email_hashes, **options)
    plain = plan_changes(prepared.valid, state, mapping, TENANT.modules, **options)
    assert fast.counts == plain.counts and fast.counts["source_deleted"] > 0 and fast.counts["changed"] > 0
    pd.testing.assert_frame_equal(fast.changes, plain.changes)


@pytest.mark.parametrize("prefix", ["c", "0"])  # text keys; integers not written canonically ("042")
def test_customer_keys_that_are_not_canonical_integers_are_planned_as_integer_keys_are(prefix):
    mapping = load_mapping(TENANT)

    def plans(keys: list[str]) -> tuple[diff.Plan, diff.Plan]:
        before = messy_customers(500, seed=8).assign(customer_key=keys)
        state = _synced_state(plan_changes(prepare(before).valid, _empty_state(), mapping, TENANT.modules).changes)
        after, _ = data.change(before, 0.3, seed=2)
        state.loc[state.index[::7], ["status", "retryable"]] = ["failed", True]
        valid = prepare(after.iloc[10:]).valid
        return plan_changes(valid, state, mapping, TENANT.modules), plan_changes(
            valid, state, mapping, TENANT.modules, source_deletions="delete", all_customer_keys=list(keys[20:])
        )

    numbers = [str(i) for i in range(1, 501)]
    for by_number, by_text in zip(plans(numbers), plans([prefix + key for key in numbers]), strict=True):
        assert by_number.counts == by_text.counts
        renamed = by_text.changes.assign(customer_key=by_text.changes["customer_key"].str.removeprefix(prefix))
        keyed = ["payload_hash", "payload"]  # the payload holds the key (Source_Customer_ID)
        pd.testing.assert_frame_equal(
            by_number.changes.drop(columns=keyed).sort_values("customer_key", ignore_index=True),
            renamed.drop(columns=keyed).sort_values("customer_key", ignore_index=True),
            check_dtype=False,
        )


def test_a_state_row_without_a_customer_key_takes_the_pandas_merge_and_changes_nothing_else():
    mapping = load_mapping(TENANT)
    before = prepare(messy_customers(300, seed=12)).valid
    state = _synced_state(plan_changes(before, _empty_state(), mapping, TENANT.modules).changes)
    after, _ = data.change(messy_customers(300, seed=12), 0.3, seed=4)
    valid = prepare(after).valid
    keyless = state.iloc[:1].assign(customer_key=None, email="nobody@example.com")
    with_keyless = pd.concat([state, keyless], ignore_index=True)
    assert diff._unique_state_rows(valid["customer_key"], with_keyless["customer_key"]) is None
    expected = plan_changes(valid, state, mapping, TENANT.modules)
    plan = plan_changes(valid, with_keyless, mapping, TENANT.modules)
    assert plan.counts == expected.counts and expected.counts["changed"] > 0
    pd.testing.assert_frame_equal(plan.changes, expected.changes, check_dtype=False)  # merged keys: object


def test_state_emails_that_are_not_all_text_are_compared_as_python_objects():
    rows = np.array([0, 1, -1, 1, 3, 2])  # the state row of each customer; -1: none
    emails = pd.Series(["a@x.io", "b@x.io", "c@x.io", None, "d@x.io", "e@x.io"], dtype="string")
    as_text = diff._email_moved(pd.Series(["a@x.io", "5", None, "d@x.io"], dtype=object), rows, emails)
    as_objects = diff._email_moved(pd.Series(["a@x.io", 5, None, "d@x.io"], dtype=object), rows, emails)
    # moved: the state row has an email, and it is not the customer's (a missing customer email differs)
    assert as_text.tolist() == as_objects.tolist() == [False, True, False, True, False, False]


def test_flagging_customers_deleted_in_the_store_needs_a_field_mapped_from_deleted():
    tenant = TENANT.model_copy(update={"source_deletions": "flag"})
    mapping = load_mapping(tenant)
    before = prepare(messy_customers(50, seed=1)).valid
    state = _synced_state(plan_changes(before, _empty_state(), mapping, tenant.modules).changes)
    keys = before["customer_key"].tolist()[5:]
    with pytest.raises(diff.MappingError, match=r"needs a (Contacts|Leads) field mapped from 'deleted'"):
        plan_changes(before, state, mapping, tenant.modules, source_deletions="flag", all_customer_keys=keys)


def test_customers_sharing_a_key_or_without_one_come_out_by_key_then_email():
    frame = pd.DataFrame(
        {
            "customer_key": ["7", "3", "7", None, "10", None],
            "email": ["b@x.io", "c@x.io", "a@x.io", "z@x.io", "d@x.io", "e@x.io"],
            "registered": True,
            "order_count": 0,
            "lastname": "Lee",
        }
    )
    valid = prepare(frame).valid[["customer_key", "email"]]
    expected = valid.sort_values(["customer_key", "email"], kind="mergesort", na_position="last", ignore_index=True)
    pd.testing.assert_frame_equal(valid, expected)
    assert valid["email"].tolist() == ["d@x.io", "c@x.io", "a@x.io", "b@x.io", "e@x.io", "z@x.io"]


def test_prepare_without_a_shared_email_finds_none_from_the_email_hashes():
    frame = data.customers(12_000, seed=2, duplicate_share=0, invalid_share=0)
    prepared = prepare(frame)
    assert prepared.email_hashes is not None and prepared.duplicates == 0 and len(prepared.valid) == 12_000


def test_an_arrow_memory_pool_chosen_in_the_environment_is_kept(monkeypatch):
    import pyarrow as pa

    from zoho_store_sync.customers import use_system_allocator

    chosen: list[object] = []
    monkeypatch.setattr(pa, "set_memory_pool", chosen.append)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    use_system_allocator()
    assert chosen == []
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    use_system_allocator()
    assert len(chosen) == 1


def test_payload_values_of_any_dtype_become_json_values_and_missing_ones_null():
    from zoho_store_sync.mapping import payload_records

    payloads = pd.DataFrame(
        {
            "Flag": pd.array([True, None, False], dtype="boolean"),
            "Count": pd.Series([1, 2, 3], dtype="int64"),
            "Mixed": pd.Series([np.int64(4), np.bool_(True), np.float64("nan")], dtype=object),
            "Other": pd.Series([np.float64(2.5), pd.NA, "text"], dtype=object),
        }
    )
    assert payload_records(payloads) == [
        {"Flag": True, "Count": 1, "Mixed": 4, "Other": 2.5},
        {"Flag": None, "Count": 2, "Mixed": True, "Other": None},
        {"Flag": False, "Count": 3, "Mixed": None, "Other": "text"},
    ]
    assert payload_json(payloads.iloc[1:2]) == ['{"Count": 2, "Flag": null, "Mixed": true, "Other": null}']


def test_a_mapping_is_checked_against_the_org_s_read_only_and_mandatory_fields():
    from zoho_store_sync.customers import CUSTOMER_COLUMNS
    from zoho_store_sync.mapping import check_against_org

    mapping = load_mapping(TENANT)
    zoho_type = {"string": "text", "int64": "integer", "float64": "currency", "boolean": "boolean"}
    org = [
        {"api_name": name, "data_type": zoho_type[CUSTOMER_COLUMNS[source]]}
        for name, source in mapping.fields["Leads"].items()
    ]
    org[0] = {**org[0], "read_only": True}
    org.append({"api_name": "Lead_Source", "data_type": "picklist", "system_mandatory": True})
    assert check_against_org(mapping, "Leads", org) == [
        f"Leads.{org[0]['api_name']}: read-only in Zoho, it cannot be written",
        "Leads.Lead_Source: mandatory in the Zoho org but not mapped",
    ]
