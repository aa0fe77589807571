"""The pandas part of a run: email rules, duplicates, last names, classification, hashing and the diff."""

from __future__ import annotations

import pandas as pd
import pytest

from bench import data
from tests.reference import classify, payload_hashes
from zoho_store_sync.config import TenantConfig
from zoho_store_sync.customers import prepare, record_types
from zoho_store_sync.diff import plan_changes
from zoho_store_sync.mapping import MappingError, build_payloads, load_mapping, payload_hashes_by_module
from zoho_store_sync.state import STATE_COLUMNS

TENANT = TenantConfig(tenant_id="t1", source="magento", store_conn_id="m", zoho_conn_id="z")


def customers(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "customer_key": [str(i + 1) for i in range(n)],
        "firstname": ["Ann"] * n,
        "lastname": ["Lee"] * n,
        "registered": [True] * n,
        "order_count": [0] * n,
    }
    base.update(columns)
    return pd.DataFrame(base)


def empty_state() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="object") for c in STATE_COLUMNS})
    frame["payload_hash"] = frame["payload_hash"].astype("int64")
    return frame


def state_from(plan_frame: pd.DataFrame, **overrides) -> pd.DataFrame:
    state = plan_frame.assign(
        status="synced", zoho_id="1", error_code=None, error_message=None, retryable=None, attempts=0
    )[STATE_COLUMNS]
    for name, value in overrides.items():
        state[name] = value
    return state


def test_emails_are_trimmed_and_lower_cased():
    prepared = prepare(customers(email=["  Ann.Lee@Example.COM "]))
    assert prepared.valid["email"].tolist() == ["ann.lee@example.com"]


@pytest.mark.parametrize(
    "email, reason",
    [
        (None, "missing email"),
        ("", "missing email"),
        ("no-at-sign.example.com", "malformed email"),
        ("two@@example.com", "malformed email"),
        ("a@b", "malformed email"),
        ("a@example..com", "malformed email"),
        (".a@example.com", "malformed email"),
        ("a b@example.com", "malformed email"),
        ("x" * 95 + "@example.com", "email longer than 100 characters"),
    ],
)
def test_invalid_emails_are_set_aside_with_their_reason(email, reason):
    prepared = prepare(customers(email=[email]))
    assert prepared.valid.empty
    assert prepared.invalid["reason"].tolist() == [reason]


def test_duplicate_email_keeps_the_customer_with_most_orders_then_latest_then_smallest_id():
    prepared = prepare(
        customers(
            email=["a@x.io", "A@x.io ", "a@x.io", "b@x.io", "b@x.io"],
            order_count=[0, 2, 2, 0, 0],
            source_updated_at=["2024-01-01", "2024-01-01", "2024-02-01", "2024-01-01", "2024-01-01"],
        )
    )
    assert prepared.valid.set_index("email")["customer_key"].to_dict() == {"a@x.io": "3", "b@x.io": "4"}
    assert prepared.duplicates == 3


def test_last_name_falls_back_to_full_name_then_first_name_then_email():
    prepared = prepare(
        customers(
            email=["a@x.io", "b@x.io", "c@x.io"],
            lastname=[None, " ", None],
            full_name=["Jean de la Fontaine", None, None],
            firstname=["Jean", "Bea", None],
        )
    )
    assert prepared.valid["lastname"].tolist() == ["Fontaine", "Bea", "c"]


def test_buyers_are_contacts_registered_or_subscribed_are_leads():
    frame = customers(
        email=["a@x.io", "b@x.io", "c@x.io"],
        order_count=[3, 0, 0],
        registered=[True, True, False],
        newsletter=[False, False, True],
    )
    assert classify(prepare(frame).valid).tolist() == ["Contacts", "Leads", "Leads"]


def test_text_is_cut_to_the_zoho_field_length():
    mapping = load_mapping(TENANT)
    prepared = prepare(customers(email=["a@x.io"], firstname=["F" * 60]))
    assert build_payloads(prepared.valid, mapping, "Leads")["First_Name"].iloc[0] == "F" * 40


def test_hash_changes_with_any_sent_value():
    mapping = load_mapping(TENANT)
    prepared = prepare(customers(email=["a@x.io", "b@x.io"]))
    payloads = build_payloads(prepared.valid, mapping, "Leads")
    first = payload_hashes(payloads, "Leads")
    again = payload_hashes(payloads.copy(), "Leads")
    assert (first == again).all() and first[0] != first[1]
    edited = payloads.copy()
    edited.loc[0, "City"] = "Oslo"
    assert payload_hashes(edited, "Leads")[0] != first[0]
    assert payload_hashes(payloads, "Contacts")[0] != first[0]


def test_stored_hashes_stay_valid_across_releases():
    # Every tenant's state holds these numbers: a change here re-sends every customer of every tenant once.
    frame = customers(
        email=["ann@example.com", " Bob@Example.org ", "chloe.x@example.net", "dan@example.com"],
        firstname=["Ann", "Bob", "Chloé", None],
        lastname=["Lee", "  ", "Dubois", "Ng"],
        city=["Paris", " Paris ", "", None],
        phone_number=["+1 555", None, "", "+44 20"],
        order_count=[2, 0, 0, 1],
        total_order_value=[10.005, 0.0, 0.0, 99.9],
        newsletter=[False, True, False, False],
        store=["Default Store View"] * 4,
        store_url=["https://shop.example.com"] * 4,
    )
    valid = prepare(frame).valid
    hashes = payload_hashes_by_module(valid, load_mapping(TENANT), record_types(valid))
    assert dict(zip(valid["customer_key"], hashes.tolist())) == {
        "1": -5595990066954353357,
        "2": 3823337629107519226,
        "3": -8417787938049004318,
        "4": 8632164172956702783,
    }


def test_the_column_at_a_time_hash_equals_hashing_each_module_s_payloads():
    # payload_hashes_by_module takes shortcuts (a dictionary for repetitive text, one pass per shared column):
    # on messy text of both kinds it must give exactly payload_hashes(build_payloads(...)).
    frame = data.customers(12_000, seed=5)
    frame.loc[frame.index[::97], "city"] = "  "
    frame.loc[frame.index[::89], "address"] = "  " + "x" * 300 + " "
    frame.loc[frame.index[::83], "company"] = ""
    frame.loc[frame.index[::79], "store"] = None
    prepared = prepare(frame)
    valid = prepared.valid
    mapping, module = load_mapping(TENANT), record_types(valid)
    assert prepared.email_hashes is not None  # a large frame: prepare hashed the emails, the plan reuses them
    for fast in (
        payload_hashes_by_module(valid, mapping, module),
        payload_hashes_by_module(valid, mapping, module, prepared.email_hashes),
    ):
        for name in ("Contacts", "Leads"):
            rows = module == name
            assert rows.sum() > 4096  # past the sample size where the distinct/dictionary choice is made
            expected = payload_hashes(build_payloads(valid.loc[rows], mapping, name), name)
            assert (fast[rows] == expected).all(), name


def test_a_field_added_to_the_mapping_changes_only_rows_where_it_has_a_value():
    prepared = prepare(customers(email=["a@x.io", "b@x.io"], company=["ACME", None]))
    before = payload_hashes(build_payloads(prepared.valid, load_mapping(TENANT), "Contacts"), "Contacts")
    tenant = TENANT.model_copy(update={"mapping_overrides": {"Contacts": {"Description": "company"}}})
    after = payload_hashes(build_payloads(prepared.valid, load_mapping(tenant), "Contacts"), "Contacts")
    assert after[0] != before[0]
    assert after[1] == before[1]


def test_plan_sends_new_records_then_nothing_until_a_value_changes():
    mapping = load_mapping(TENANT)
    prepared = prepare(customers(email=["a@x.io", "b@x.io"], order_count=[1, 0]))
    first = plan_changes(prepared.valid, empty_state(), mapping, TENANT.modules)
    assert first.counts["new"] == 2 and len(first.changes) == 2
    state = state_from(first.changes)
    second = plan_changes(prepared.valid, state, mapping, TENANT.modules)
    assert second.counts["unchanged"] == 2 and second.changes.empty
    prepared.valid.loc[1, "city"] = "Lyon"
    third = plan_changes(prepared.valid, state, mapping, TENANT.modules)
    assert third.changes["customer_key"].tolist() == ["2"] and third.counts["changed"] == 1


def test_permanent_failures_wait_for_a_change_and_transient_ones_are_retried():
    mapping = load_mapping(TENANT)
    prepared = prepare(customers(email=["a@x.io", "b@x.io"]))
    first = plan_changes(prepared.valid, empty_state(), mapping, TENANT.modules)
    state = state_from(first.changes, status="failed")
    state["retryable"] = [False, True]
    plan = plan_changes(prepared.valid, state, mapping, TENANT.modules)
    assert plan.counts["skipped_failed"] == 1 and plan.counts["retry"] == 1
    assert plan.changes["customer_key"].tolist() == ["2"]


def test_records_deleted_in_zoho_are_not_sent_again():
    mapping = load_mapping(TENANT)
    prepared = prepare(customers(email=["a@x.io"]))
    first = plan_changes(prepared.valid, empty_state(), mapping, TENANT.modules)
    prepared.valid.loc[0, "city"] = "Lyon"
    plan = plan_changes(prepared.valid, state_from(first.changes, status="deleted_in_zoho"), mapping, TENANT.modules)
    assert plan.changes.empty and plan.counts["skipped_deleted"] == 1


def test_a_contact_never_becomes_a_lead_again():
    mapping = load_mapping(TENANT)
    buyer = prepare(customers(email=["a@x.io"], order_count=[1]))
    first = plan_changes(buyer.valid, empty_state(), mapping, TENANT.modules)
    refunded = prepare(customers(email=["a@x.io"], order_count=[0]))
    plan = plan_changes(refunded.valid, state_from(first.changes), mapping, TENANT.modules)
    assert plan.counts["contacts"] == 1 and plan.counts["leads"] == 0


def test_record_types_switched_off_are_skipped():
    tenant = TENANT.model_copy(update={"sync_leads": False})
    prepared = prepare(customers(email=["a@x.io", "b@x.io"], order_count=[1, 0]))
    plan = plan_changes(prepared.valid, empty_state(), load_mapping(tenant), tenant.modules)
    assert plan.changes["module"].tolist() == ["Contacts"] and plan.counts["skipped_record_type"] == 1


def test_mapping_overrides_add_change_and_delete_fields():
    tenant = TENANT.model_copy(update={"mapping_overrides": {"Leads": {"Description": "store_url", "Phone": None}}})
    fields = load_mapping(tenant).fields["Leads"]
    assert fields["Description"] == "store_url" and "Phone" not in fields


def test_mapping_to_an_unknown_customer_field_names_tenant_module_and_field():
    tenant = TENANT.model_copy(update={"mapping_overrides": {"Contacts": {"Title": "job_title"}}})
    with pytest.raises(MappingError, match=r"tenant 't1': mapping Contacts.Title: unknown customer field 'job_title'"):
        load_mapping(tenant)


def test_existing_customers_stay_unchanged_when_new_customers_appear_beside_them():
    mapping = load_mapping(TENANT)
    before = prepare(customers(email=[f"c{i}@x.io" for i in range(50)]))
    state = state_from(plan_changes(before.valid, empty_state(), mapping, TENANT.modules).changes)
    after = prepare(customers(email=[f"c{i}@x.io" for i in range(51)]))
    plan = plan_changes(after.valid, state, mapping, TENANT.modules)
    assert (plan.counts["unchanged"], plan.counts["new"], plan.counts["changed"]) == (50, 1, 0)
