"""COQL: the queries the product builds, how it splits emails, what a lookup costs, the calls against the sandbox."""

from __future__ import annotations

import pytest

from sandboxes.zoho.records import create_in_ui
from sandboxes.zoho_crm import ZohoSandbox
from tests.zoho_store_sync.test_zoho_hook import conn_env, make_hook
from zoho_store_sync.zoho.query import (
    COQL_MAX_IN_VALUES,
    coql_credits,
    email_chunks,
    lookup_credits,
    quote,
    scan_credits,
    select_by_email,
)


def test_emails_are_split_into_in_lists_of_at_most_100_distinct_lower_cased_values() -> None:
    emails = [f"P{i}@X.example " for i in range(250)] + ["p0@x.example", None, "  "]
    chunks = email_chunks(emails)  # type: ignore[arg-type]
    assert [len(chunk) for chunk in chunks] == [100, 100, 50]
    assert chunks[0][0] == "p0@x.example" and sum(len(c) for c in chunks) == 250


def test_a_quote_in_an_email_is_doubled_as_coql_wants() -> None:
    assert quote("o'brien@x.example") == "'o''brien@x.example'"


def test_the_select_names_id_and_email_once_and_lists_the_emails() -> None:
    query = select_by_email("Leads", ["a@x.example", "b@x.example"], ["Email", "Company"], 200, 400)
    assert query == (
        "select id, Email, Company from Leads where Email in ('a@x.example', 'b@x.example') limit 200 offset 400"
    )


@pytest.mark.parametrize("count", [0, COQL_MAX_IN_VALUES + 1])
def test_an_in_list_zoho_would_refuse_is_never_built(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 100"):
        select_by_email("Leads", [f"p{i}@x.example" for i in range(count)], [], 200)


@pytest.mark.parametrize(("limit", "credits"), [(1, 1), (200, 1), (201, 2), (1000, 2), (1001, 3), (2000, 3)])
def test_coql_credits_follow_the_limit(limit: int, credits: int) -> None:
    assert coql_credits(limit) == credits


def test_a_lookup_costs_one_credit_per_100_emails() -> None:
    assert lookup_credits(1_675) == 17


def test_reading_a_module_whole_costs_three_credits_per_2000_records() -> None:
    assert (scan_credits(1), scan_credits(2_000), scan_credits(2_001)) == (3, 3, 6)


def test_the_record_count_and_a_whole_module_read_by_pages_of_2000(
    zoho_sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_env(zoho_sandbox))
    for i in range(2_003):
        create_in_ui(zoho_sandbox, "Contacts", {"Last_Name": f"P{i}", "Email": f"P{i}@x.example"})
    create_in_ui(zoho_sandbox, "Contacts", {"Last_Name": "No email"})
    zoho_sandbox.reset_calls()
    hook = make_hook()
    assert hook.count_records("Contacts") == 2_004 and hook.count_records("Leads") == 0
    whole = hook.all_by_email("Contacts", ["Last_Name"])
    assert whole is not None and len(whole) == 2_003 and whole["p2002@x.example"][0]["Last_Name"] == "P2002"
    calls = [c for c in zoho_sandbox.calls() if c["operation"] in ("count", "coql")]
    assert [(c["operation"], c["credits"]) for c in calls] == [("count", 1), ("count", 1), ("coql", 3), ("coql", 3)]


def test_find_by_email_returns_every_record_per_email_oldest_first_in_one_call_per_100_emails(
    zoho_sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_env(zoho_sandbox))
    older = create_in_ui(zoho_sandbox, "Leads", {"Last_Name": "A", "Email": "Twin@x.example"})["id"]
    newer = create_in_ui(zoho_sandbox, "Leads", {"Last_Name": "B", "Email": "twin@x.example"})["id"]
    other = create_in_ui(zoho_sandbox, "Leads", {"Last_Name": "C", "Email": "p150@x.example"})["id"]
    zoho_sandbox.reset_calls()
    hook = make_hook()
    found = hook.find_by_email("Leads", ["twin@x.example", *(f"p{i}@x.example" for i in range(199))])
    assert [row["id"] for row in found["twin@x.example"]] == [older, newer]
    assert [row["id"] for row in found["p150@x.example"]] == [other] and len(found) == 2
    coql = [c for c in zoho_sandbox.calls() if c["operation"] == "coql"]
    assert len(coql) == 2 and hook.stats.credits == sum(c["credits"] for c in coql) == 2
