"""The DecoNetwork hook and source against the sandbox over real HTTP; the export read through ObjectStoragePath."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sandboxes import deconetwork as sandbox_module
from sandboxes.deconetwork import FIND_PATH, DecoNetworkSandbox, DecoStoreData, generate_deconetwork_store
from tests.conftest import connection_env
from tests.reference import classify
from zoho_store_sync.config import DecoNetworkOptions
from zoho_store_sync.customers import prepare
from zoho_store_sync.hooks import deconetwork as hook_module
from zoho_store_sync.hooks.deconetwork import (
    DecoNetworkAuthError,
    DecoNetworkError,
    DecoNetworkHook,
    DecoNetworkHtmlError,
    DecoNetworkNotEnabledError,
    DecoNetworkRequestError,
)
from zoho_store_sync.sources import deconetwork as source_module
from zoho_store_sync.sources.deconetwork import (
    ALL_ORDERS_SINCE,
    EXPORT_COLUMNS,
    DecoNetworkExportError,
    extract,
    read_export,
)

CONN = "deco_test"
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def data() -> DecoStoreData:
    return generate_deconetwork_store(300, seed=5)


@pytest.fixture(autouse=True)
def no_backoff_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook_module, "_sleep", lambda seconds: None)


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch):
    """Point the DecoNetwork connection at a sandbox (or anywhere) and return a fresh hook."""

    def _connect(sb: DecoNetworkSandbox | None = None, **fields: Any) -> DecoNetworkHook:
        conn = {
            "conn_type": "http",
            "host": sb.url if sb else None,
            "login": sb.username if sb else None,
            "password": sb.password if sb else None,
        }
        monkeypatch.setenv(*connection_env(CONN, **{**conn, **fields}))
        return DecoNetworkHook(CONN)

    return _connect


@pytest.fixture
def sandbox(data: DecoStoreData) -> Iterator[DecoNetworkSandbox]:
    with DecoNetworkSandbox(data) as sb:
        yield sb


@pytest.fixture
def export(sandbox: DecoNetworkSandbox, tmp_path: Path) -> str:
    sandbox.write_export(tmp_path / "customers.csv")
    return f"file://{tmp_path / 'customers.csv'}"


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'state'}"


def find_calls(sb: DecoNetworkSandbox) -> list[dict]:
    return [c for c in sb.calls() if c["path"] == FIND_PATH]


def by_key(frame: pd.DataFrame) -> dict[str, dict]:
    return {r["customer_key"]: r for r in frame.to_dict("records")}


def full_then(sb: DecoNetworkSandbox, connect, options: DecoNetworkOptions, state_url: str):
    """A first (full) pass; returns it and a function running the next pass with a fresh hook."""
    first = extract(connect(sb), options, None, now=NOW, state_url=state_url)

    def again(cursor: dict, now: datetime = NOW + timedelta(minutes=30)):
        return extract(connect(sb), options, cursor, now=now, state_url=state_url)

    return first, again


# ---- paging ---------------------------------------------------------------------------------------------


def test_full_pass_pages_100_orders_a_call_with_offset_until_total(sandbox, connect, export, state_url) -> None:
    result = extract(
        connect(sandbox), DecoNetworkOptions(customers_export_url=export), None, now=NOW, state_url=state_url
    )
    calls = find_calls(sandbox)
    assert len(sandbox.orders()) > 200 and result.calls == len(calls) == 3
    assert [c["params"]["offset"] for c in calls] == ["0", "100", "200"]
    assert {c["params"]["limit"] for c in calls} == {"100"}
    assert calls[0]["params"]["conditions[1][field]"] == "8" and calls[0]["params"]["conditions[1][condition]"] == "6"
    assert calls[0]["params"]["conditions[1][date1]"] == ALL_ORDERS_SINCE
    assert result.full and sorted(result.all_customer_keys) == sorted(result.customers["customer_key"])


def test_hook_yields_each_order_once_across_pages(sandbox, connect) -> None:
    pages = list(connect(sandbox).find_orders([(8, 6, "2000-01-01T00:00:00", None, None)], limit=37))
    ids = [o["order_id"] for page in pages for o in page]
    assert len(pages) == -(-len(sandbox.orders()) // 37) and ids == sorted({o["order_id"] for o in sandbox.orders()})


def test_hook_refuses_a_limit_over_100_and_an_empty_condition_list(sandbox, connect) -> None:
    hook = connect(sandbox)
    with pytest.raises(ValueError, match="limit"):
        next(hook.find_orders([(8, 6, "2000-01-01", None, None)], limit=101))
    with pytest.raises(ValueError, match="condition"):
        next(hook.find_orders([]))


# ---- merging the two inputs -----------------------------------------------------------------------------


def test_full_pass_takes_orders_figures_from_the_api_and_the_rest_from_the_export(
    sandbox, connect, export, state_url
) -> None:
    customers = by_key(
        extract(
            connect(sandbox), DecoNetworkOptions(customers_export_url=export), None, now=NOW, state_url=state_url
        ).customers
    )
    totals = sandbox.order_totals()
    for row in sandbox.customers():
        got = customers[str(row["customer_id"])]
        count, value = totals.get(row["customer_id"], (0, 0.0))
        assert (got["order_count"], round(got["total_order_value"], 2)) == (count, value)
        assert (got["store"], got["store_url"], got["store_id"]) == (row["store"], row["store_url"], row["store_id"])
        assert got["store_is_mine"] == (row["store_owner"] == "me")
        assert (got["newsletter"], got["deleted"], got["registered"]) == (
            row["newsletter"],
            row["deleted"],
            bool(row["login"]),
        )
        assert got["balance"] == row["balance"]
        assert got["email"] == (row["email"].strip() or None)
        assert got["firstname"] == (row["firstname"] or None) and got["salutation"] == (row["salutation"] or None)
        name = f"{row['firstname']} {row['lastname']}".strip()
        assert got["full_name"] == (name or None)
        if row["address"]:
            assert (got["address"], got["city"], got["country_name"]) == (row["address"], row["city"], row["country"])


def test_cancelled_orders_and_quotes_do_not_count(sandbox, connect, export, state_url) -> None:
    customers = by_key(
        extract(
            connect(sandbox), DecoNetworkOptions(customers_export_url=export), None, now=NOW, state_url=state_url
        ).customers
    )
    orders = sandbox.orders()
    skipped = [o for o in orders if o["customer_id"] and (o["order_status_name"] in ("Cancelled", "Quote"))]
    assert skipped
    for o in skipped:
        own = [x for x in orders if x["customer_id"] == o["customer_id"]]
        counted = [x for x in own if x["date_ordered"] and x["order_status_name"] != "Cancelled"]
        assert customers[str(o["customer_id"])]["order_count"] == len(counted)
        assert round(customers[str(o["customer_id"])]["total_order_value"], 2) == round(
            sum(x["billable_amount"] for x in counted), 2
        )


def test_buyer_address_comes_from_the_export_else_from_the_latest_order(sandbox, connect, tmp_path, state_url) -> None:
    buyers = sorted({o["customer_id"] for o in sandbox.orders() if o["customer_id"]})
    with_address = next(c["customer_id"] for c in sandbox.customers() if c["customer_id"] in buyers and c["address"])
    without = next(b for b in buyers if b != with_address)
    sandbox.update_customer(without, address="", city="", state="", zip="", country="")
    sandbox.add_order(with_address, billing={"street": "1 New Road", "city": "Newtown"})
    latest = sandbox.add_order(
        without,
        billing={"street": "9 Latest Lane", "city": "Lastville", "postcode": "123", "country_code": "GB", "state": ""},
    )
    sandbox.write_export(tmp_path / "c.csv")
    customers = by_key(
        extract(
            connect(sandbox),
            DecoNetworkOptions(customers_export_url=f"file://{tmp_path}/c.csv"),
            None,
            now=NOW,
            state_url=state_url,
        ).customers
    )
    exported = next(c for c in sandbox.customers() if c["customer_id"] == with_address)
    assert (customers[str(with_address)]["address"], customers[str(with_address)]["city"]) == (
        exported["address"],
        exported["city"],
    )
    got = customers[str(without)]
    assert (got["address"], got["city"], got["zip"], got["country_name"], got["state"]) == (
        "9 Latest Lane",
        "Lastville",
        "123",
        "GB",
        None,
    )
    assert latest["billing_details"]["street"] == "9 Latest Lane"


def test_guest_checkouts_become_buyers_keyed_by_email_with_the_site_as_store(
    sandbox, connect, export, state_url
) -> None:
    customers = extract(
        connect(sandbox), DecoNetworkOptions(customers_export_url=export), None, now=NOW, state_url=state_url
    ).customers
    guests = customers[customers["customer_key"].str.startswith("email:")]
    assert len(guests) == len({o["billing_details"]["email"] for o in sandbox.orders() if o["customer_id"] is None})
    assert set(guests["store_url"]) == {sandbox.url} and guests["store_is_mine"].all()
    assert not guests["registered"].any() and guests["store_id"].isna().all()


def test_guest_order_with_a_registered_email_counts_for_that_customer(sandbox, connect, tmp_path, state_url) -> None:
    customer = sandbox.customers()[7]
    sandbox.add_order(None, billable_amount=11.0, billing={"email": customer["email"].upper(), "firstname": "X"})
    sandbox.write_export(tmp_path / "c.csv")
    customers = by_key(
        extract(
            connect(sandbox),
            DecoNetworkOptions(customers_export_url=f"file://{tmp_path}/c.csv"),
            None,
            now=NOW,
            state_url=state_url,
        ).customers
    )
    count, value = sandbox.order_totals().get(customer["customer_id"], (0, 0.0))
    assert customers[str(customer["customer_id"])]["order_count"] == count + 1
    assert not any(k == f"email:{customer['email'].lower()}" for k in customers)


def test_classification_gives_contacts_for_buyers_and_leads_for_registered_or_subscribed(
    sandbox, connect, export, state_url
) -> None:
    customers = extract(
        connect(sandbox), DecoNetworkOptions(customers_export_url=export), None, now=NOW, state_url=state_url
    ).customers
    valid = prepare(customers).valid
    modules = classify(valid)
    assert set(modules) == {"Contacts", "Leads", ""} or set(modules) == {"Contacts", "Leads"}
    newsletter_only = valid[~valid["registered"] & valid["newsletter"] & (valid["order_count"] == 0)]
    assert len(newsletter_only) and (classify(newsletter_only) == "Leads").all()
    assert (modules[valid["order_count"] > 0] == "Contacts").all()


# ---- incremental passes ---------------------------------------------------------------------------------


def test_incremental_pass_reads_orders_modified_since_the_last_seen_minus_the_overlap(
    sandbox, connect, export, state_url
) -> None:
    options = DecoNetworkOptions(customers_export_url=export, overlap_minutes=15)
    first, again = full_then(sandbox, connect, options, state_url)
    high_water = first.cursor["orders_modified_max"]
    assert high_water == max(o["date_modified"] for o in sandbox.orders())
    customer_id = int(first.customers[first.customers["order_count"] == 2]["customer_key"].iloc[0])
    before = by_key(first.customers)[str(customer_id)]
    order = sandbox.add_order(customer_id, billable_amount=25.0)
    calls_before = len(find_calls(sandbox))

    second = again(first.cursor)
    call = find_calls(sandbox)[calls_before]
    expected_since = (datetime.fromisoformat(high_water) - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S")
    assert call["params"]["conditions[1][date1]"] == expected_since
    assert (call["params"]["conditions[1][field]"], call["params"]["conditions[1][condition]"]) == ("8", "6")
    assert not second.full and second.all_customer_keys is None and second.calls == 1
    recent = {
        str(o["customer_id"]) if o["customer_id"] else f"email:{o['billing_details']['email']}"
        for o in sandbox.orders()
        if o["date_modified"] >= expected_since
    }
    assert set(second.customers["customer_key"]) == recent  # the customers of the orders read, no others
    got = by_key(second.customers)[str(customer_id)]
    assert got["order_count"] == before["order_count"] + 1  # complete, not just the new order
    assert round(got["total_order_value"], 2) == round(before["total_order_value"] + 25.0, 2)
    assert second.cursor["orders_modified_max"] == order["date_modified"]


def test_without_changes_an_incremental_pass_hands_on_only_the_customers_of_the_overlap(
    sandbox, connect, export, state_url
) -> None:
    options = DecoNetworkOptions(customers_export_url=export, overlap_minutes=0)
    first, again = full_then(sandbox, connect, options, state_url)
    second = again(first.cursor)
    newest = [o for o in sandbox.orders() if o["date_modified"] == first.cursor["orders_modified_max"]]
    assert set(second.customers["customer_key"]) == {str(o["customer_id"]) for o in newest}
    third = again(second.cursor)
    assert set(third.customers["customer_key"]) == set(second.customers["customer_key"])


def test_a_cancelled_order_lowers_the_count_on_the_next_incremental_pass(sandbox, connect, export, state_url) -> None:
    first, again = full_then(sandbox, connect, DecoNetworkOptions(customers_export_url=export), state_url)
    order = next(o for o in sandbox.orders() if o["customer_id"] and o["order_status_name"] == "Shipped")
    before = by_key(first.customers)[str(order["customer_id"])]
    sandbox.modify_order(order["order_id"], status=9)
    got = by_key(again(first.cursor).customers)[str(order["customer_id"])]
    assert got["order_count"] == before["order_count"] - 1
    assert round(got["total_order_value"], 2) == round(before["total_order_value"] - order["billable_amount"], 2)


def test_an_order_moved_to_another_customer_updates_both_customers(sandbox, connect, export, state_url) -> None:
    first, again = full_then(sandbox, connect, DecoNetworkOptions(customers_export_url=export), state_url)
    order = next(o for o in sandbox.orders() if o["customer_id"] and o["order_status_name"] == "Shipped")
    old, new = str(order["customer_id"]), "1003"
    before = by_key(first.customers)
    sandbox.modify_order(order["order_id"], customer_id=1003)
    got = by_key(again(first.cursor).customers)
    assert got[old]["order_count"] == before[old]["order_count"] - 1
    assert got[new]["order_count"] == before[new]["order_count"] + 1


def test_a_changed_export_hands_on_every_export_row_and_an_unchanged_one_none(
    sandbox, connect, tmp_path, state_url
) -> None:
    sandbox.write_export(tmp_path / "c.csv")
    options = DecoNetworkOptions(customers_export_url=f"file://{tmp_path}/c.csv", overlap_minutes=0)
    first, again = full_then(sandbox, connect, options, state_url)
    quiet = again(first.cursor)
    assert len(quiet.customers) < 5  # only the customers of the newest order (the overlap)
    sandbox.update_customer(1004, newsletter=True, balance=99.0)
    sandbox.write_export(tmp_path / "c.csv")
    changed = again(quiet.cursor)
    assert not changed.full and set(map(str, (c["customer_id"] for c in sandbox.customers()))) <= set(
        changed.customers["customer_key"]
    )
    row = by_key(changed.customers)["1004"]
    assert (row["newsletter"], row["balance"]) == (True, 99.0)
    assert changed.cursor["export_sha256"] != first.cursor["export_sha256"]


def test_a_full_pass_runs_again_after_full_every_hours(sandbox, connect, export, state_url) -> None:
    options = DecoNetworkOptions(customers_export_url=export)
    first = extract(connect(sandbox), options, None, now=NOW, state_url=state_url, full_every_hours=6)
    inc = extract(
        connect(sandbox), options, first.cursor, now=NOW + timedelta(hours=5), state_url=state_url, full_every_hours=6
    )
    full = extract(
        connect(sandbox), options, inc.cursor, now=NOW + timedelta(hours=6), state_url=state_url, full_every_hours=6
    )
    assert (first.full, inc.full, full.full) == (True, False, True)
    assert inc.cursor["last_full_at"] == first.cursor["last_full_at"] == NOW.isoformat()
    assert full.cursor["last_full_at"] == (NOW + timedelta(hours=6)).isoformat()
    assert len(full.customers) == len(first.customers)


@pytest.mark.parametrize("change", ["inputs", "copy", "version"])
def test_changed_inputs_a_lost_order_copy_or_an_old_cursor_force_a_full_pass(
    sandbox, connect, export, state_url, change: str
) -> None:
    options = DecoNetworkOptions(customers_export_url=export)
    first, again = full_then(sandbox, connect, options, state_url)
    cursor = dict(first.cursor)
    if change == "inputs":
        copy = Path(export.removeprefix("file://")).with_name("moved.csv")
        copy.write_bytes(Path(export.removeprefix("file://")).read_bytes())
        options = DecoNetworkOptions(customers_export_url=f"file://{copy}")
    elif change == "copy":
        Path(cursor["orders_copy"].removeprefix("file://")).unlink()
    else:
        cursor["version"] = 0
    result = extract(connect(sandbox), options, cursor, now=NOW + timedelta(minutes=30), state_url=state_url)
    assert result.full and len(result.customers) == len(first.customers)


def test_without_a_state_url_every_pass_is_full(sandbox, connect, export) -> None:
    options = DecoNetworkOptions(customers_export_url=export)
    first = extract(connect(sandbox), options, None, now=NOW)
    second = extract(connect(sandbox), options, first.cursor, now=NOW + timedelta(minutes=30))
    assert first.full and second.full and second.cursor["orders_copy"] is None


def test_only_the_copy_the_cursor_names_and_the_new_one_are_kept(sandbox, connect, export, state_url) -> None:
    options = DecoNetworkOptions(customers_export_url=export)
    cursor = None
    for minutes in range(4):
        cursor = extract(
            connect(sandbox), options, cursor, now=NOW + timedelta(minutes=30 * minutes), state_url=state_url
        ).cursor
    files = sorted(p.name for p in Path(state_url.removeprefix("file://")).iterdir())
    assert len(files) == 2 and cursor["orders_copy"].endswith(files[-1])


# ---- one input only -------------------------------------------------------------------------------------


def test_orders_only_tenant_gets_the_customers_of_orders_and_leads_only_from_quotes_or_cancellations(
    sandbox, connect
) -> None:
    result = extract(connect(sandbox), DecoNetworkOptions(), None, now=NOW)
    customers = result.customers
    buyer_ids = {str(o["customer_id"]) for o in sandbox.orders() if o["customer_id"]}
    assert buyer_ids <= set(customers["customer_key"])
    assert set(customers["customer_key"]) - buyer_ids <= {k for k in customers["customer_key"] if ":" in k}
    assert not customers["newsletter"].any() and not customers["deleted"].any()
    assert set(customers["store_url"]) == {sandbox.url} and customers["balance"].isna().all()
    valid = prepare(customers).valid
    leads = set(valid[classify(valid) == "Leads"]["customer_key"])
    uncounted = {
        str(o["customer_id"])
        for o in sandbox.orders()
        if o["customer_id"] and o["customer_id"] not in sandbox.order_totals()
    }
    assert leads == uncounted  # an account whose orders are all quotes or cancelled: registered, no purchase


def test_export_only_tenant_takes_order_figures_from_the_export_columns(sandbox, tmp_path) -> None:
    path = tmp_path / "with-totals.csv"
    path.write_text(sandbox.export_csv(include_order_totals=True), encoding="utf-8")
    options = DecoNetworkOptions(customers_export_url=str(path), use_order_api=False)  # a plain path works too
    result = extract(None, options, None, now=NOW)
    totals = sandbox.order_totals()
    for row in result.customers.to_dict("records"):
        count, value = totals.get(int(row["customer_key"]), (0, 0.0))
        assert (row["order_count"], round(row["total_order_value"], 2)) == (count, value)
    assert result.calls == 0 and len(result.customers) == len(sandbox.customers())
    unchanged = extract(None, options, result.cursor, now=NOW + timedelta(minutes=30))
    assert not unchanged.full and unchanged.customers.empty


def test_export_only_tenant_without_order_columns_has_no_contacts(sandbox, tmp_path) -> None:
    sandbox.write_export(tmp_path / "c.csv")
    result = extract(
        None, DecoNetworkOptions(customers_export_url=f"file://{tmp_path}/c.csv", use_order_api=False), None, now=NOW
    )
    assert (result.customers["order_count"] == 0).all()
    assert "Contacts" not in set(classify(prepare(result.customers).valid))


def test_a_tenant_must_read_something_and_the_order_api_needs_a_hook() -> None:
    with pytest.raises(ValueError, match="reads nothing"):
        extract(None, DecoNetworkOptions(use_order_api=False), None)
    with pytest.raises(ValueError, match="hook"):
        extract(None, DecoNetworkOptions(), None)


# ---- the export file ------------------------------------------------------------------------------------


def test_the_sandbox_writes_exactly_the_export_contract_the_source_reads() -> None:
    assert sandbox_module.EXPORT_COLUMNS + sandbox_module.EXPORT_TOTAL_COLUMNS == EXPORT_COLUMNS


def test_a_missing_export_file_fails_instead_of_dropping_every_customer(tmp_path) -> None:
    with pytest.raises(DecoNetworkExportError, match="not found"):
        read_export(f"file://{tmp_path}/nope.csv")


def test_an_export_without_an_email_column_names_the_columns_it_found(tmp_path) -> None:
    (tmp_path / "c.csv").write_text("customer_id,mail\n1,a@example.com\n", encoding="utf-8")
    with pytest.raises(DecoNetworkExportError, match="no 'email' column.*customer_id, mail"):
        read_export(f"file://{tmp_path}/c.csv")


def test_export_cells_are_text_flags_are_lenient_and_unknown_columns_are_ignored(tmp_path) -> None:
    (tmp_path / "c.csv").write_text(
        "Customer_ID,Email,Firstname,Lastname,Login,Newsletter,Deleted,Store_Owner,Balance,Shoe_Size\n"
        "7,na@example.com,NA,Null,na,Yes,no,Affiliate,1.50,44\n"
        "8,sub@example.com,,,,TRUE,1,,,\n"
        ",noid@example.com,Ann,Lee,ann,0,0,me,,\n",
        encoding="utf-8",
    )
    rows, checksum = read_export(f"file://{tmp_path}/c.csv")
    first, second, third = rows.to_dict("records")
    assert (first["firstname"], first["lastname"], first["newsletter"], first["deleted"]) == ("NA", "Null", True, False)
    assert (first["store_is_mine"], first["balance"], first["registered"]) == (False, 1.5, True)
    assert (second["registered"], second["newsletter"], second["deleted"], second["store_is_mine"]) == (
        False,
        True,
        True,
        True,
    )
    assert pd.isna(third["customer_id"]) and len(checksum) == 64


def test_export_rows_without_an_id_take_the_id_of_their_orders_by_email(sandbox, connect, tmp_path, state_url) -> None:
    buyer = next(
        c
        for c in sandbox.customers()
        if c["customer_id"] in sandbox.order_totals() and c["email"] == c["email"].strip() and "@" in c["email"]
    )
    text = sandbox.export_csv(bom=False).replace(f"\r\n{buyer['customer_id']},", "\r\n,", 1)
    (tmp_path / "c.csv").write_text(text, encoding="utf-8")
    customers = by_key(
        extract(
            connect(sandbox),
            DecoNetworkOptions(customers_export_url=f"file://{tmp_path}/c.csv"),
            None,
            now=NOW,
            state_url=state_url,
        ).customers
    )
    got = customers[str(buyer["customer_id"])]
    assert got["order_count"] == sandbox.order_totals()[buyer["customer_id"]][0] and got["store"] == buyer["store"]
    assert f"email:{buyer['email']}" not in customers


# ---- the hook: status codes, HTML, backoff, credentials --------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_wrong_password_raises_an_auth_error_that_never_shows_the_password(data, connect, legacy) -> None:
    with DecoNetworkSandbox(data, legacy_codes=legacy) as sb:
        hook = connect(sb, password="Wr0ng-Passw0rd-Value")
        with pytest.raises(DecoNetworkAuthError) as caught:
            extract(hook, DecoNetworkOptions(), None)
    assert caught.value.code == (10002 if legacy else 30001)
    assert "username and password" in str(caught.value) and "Wr0ng-Passw0rd-Value" not in str(caught.value)


@pytest.mark.parametrize("legacy", [False, True])
def test_api_not_enabled_raises_with_what_to_enable(data, connect, legacy) -> None:
    with (
        DecoNetworkSandbox(data, api_enabled=False, legacy_codes=legacy) as sb,
        pytest.raises(DecoNetworkNotEnabledError, match="Apps Store") as caught,
    ):
        next(connect(sb).find_orders([(8, 6, "2000-01-01T00:00:00", None, None)]))
    assert caught.value.code == (10005 if legacy else 31000)


@pytest.mark.parametrize(
    "params, code",
    [
        ([("limit", 10)], 50002),
        ([("conditions[1][field]", 8), ("conditions[1][condition]", 6), ("conditions[1][date1]", "soon")], 50003),
        ([("field", 8), ("condition", 6), ("date1", "2024-01-01"), ("limit", 500)], 50004),
        ([("field", 12), ("condition", 6), ("date1", "2024-01-01")], 50005),
    ],
)
def test_request_errors_raise_with_the_code_and_deconetworks_description(sandbox, connect, params, code) -> None:
    with pytest.raises(DecoNetworkRequestError, match=str(code)) as caught:
        connect(sandbox).call(FIND_PATH, params)
    assert caught.value.code == code


def test_a_bad_date_in_find_orders_is_a_request_error_naming_the_condition(sandbox, connect) -> None:
    with pytest.raises(DecoNetworkRequestError, match="Condition 1 date1 invalid"):
        next(connect(sandbox).find_orders([(8, 6, "last tuesday", None, None)]))


def test_a_wrong_host_answering_html_raises_an_error_saying_so(sandbox, connect) -> None:
    with pytest.raises(DecoNetworkHtmlError, match="HTML page.*host is the DecoNetwork site URL"):
        extract(connect(sandbox, host=sandbox.url + "/shop"), DecoNetworkOptions(), None)


def test_a_login_page_instead_of_json_raises_an_html_error(data, connect) -> None:
    with (
        DecoNetworkSandbox(data, bad_login_html=True) as sb,
        pytest.raises(DecoNetworkHtmlError, match="username and password"),
    ):
        connect(sb, password="not-it").call(FIND_PATH, [("field", 8)])


def test_429_503_and_dropped_connections_are_retried(sandbox, connect) -> None:
    for kind in ("429", "drop", "503"):
        sandbox.inject_fault(kind)
    hook = connect(sandbox)
    pages = list(hook.find_orders([(8, 6, "2000-01-01T00:00:00", None, None)]))
    assert sum(len(p) for p in pages) == len(sandbox.orders())
    assert [c["status"] for c in find_calls(sandbox)][:4] == [429, 0, 503, 200]


def test_a_site_unavailable_beyond_the_retries_fails_saying_so(sandbox, connect) -> None:
    sandbox.inject_fault("503", times=10)
    hook = connect(sandbox)
    hook.max_retries = 2
    with pytest.raises(DecoNetworkError, match="unavailable \\(HTTP 503\\)"):
        hook.call(FIND_PATH, [("field", 8)])


def test_credentials_travel_only_as_form_fields_and_extras_never_become_headers(sandbox, connect) -> None:
    hook = connect(sandbox, extra={"X-Api-Key": "extra-secret-value", "timeout": 30})
    next(hook.find_orders([(8, 6, "2000-01-01T00:00:00", None, None)]))
    call = find_calls(sandbox)[-1]
    assert call["method"] == "POST" and call["query_keys"] == []
    assert call["params"]["username"] == sandbox.username and call["params"]["skip_login_token"] == "1"
    headers = {h.lower() for h in call["headers"]}
    assert "x-api-key" not in headers and "authorization" not in headers and "timeout" not in headers
    assert hook.timeout == 30


def test_a_host_without_scheme_means_https(connect) -> None:
    hook = connect(None, host="shop.secure-decoration.com", login="u", password="p")
    assert hook.site_url == "https://shop.secure-decoration.com"


def test_test_connection_reports_success_and_failure(sandbox, connect) -> None:
    ok, message = connect(sandbox).test_connection()
    assert ok and "answered" in message
    ok, message = connect(sandbox, password="nope").test_connection()
    assert not ok and "authentication failed" in message


def test_cursor_is_json(sandbox, connect, export, state_url) -> None:
    result = extract(
        connect(sandbox), DecoNetworkOptions(customers_export_url=export), None, now=NOW, state_url=state_url
    )
    assert json.loads(json.dumps(result.cursor)) == result.cursor


# ---- the export file: shapes that cannot be a complete export (issue 12) ---------------------------------
# Each of these once read "successfully" as a wrong table (shifted columns, a dropped column, rows missing),
# and with source_deletions "delete" a wrong table deletes Zoho records. They must fail, saying what to do.

EXPORT_AGAIN = "export the customers again"


def _write(tmp_path: Path, text: str | bytes, name: str = "c.csv") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return f"file://{path}"


def _reject(url: str, *fragments: str) -> str:
    """read_export(url) must raise DecoNetworkExportError naming the file, the fix and each fragment."""
    with pytest.raises(DecoNetworkExportError) as caught:
        read_export(url)
    message = str(caught.value)
    assert url in message and EXPORT_AGAIN in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _lines(sandbox: DecoNetworkSandbox) -> tuple[str, list[str]]:
    header, *rows = sandbox.export_csv(bom=False).split("\r\n")
    return header, [r for r in rows if r]


def test_rows_ending_with_a_trailing_delimiter_are_rejected_as_a_width_mismatch_not_read_shifted(
    sandbox, tmp_path
) -> None:
    header, rows = _lines(sandbox)
    url = _write(tmp_path, "\r\n".join([header, *(r + "," for r in rows)]) + "\r\n")
    _reject(
        url,
        "every data row",
        "trailing delimiter",
        f"{len(EXPORT_COLUMNS) - 1} fields",
        f"the header has {len(EXPORT_COLUMNS) - 2}",
    )


def test_rows_with_one_more_filled_cell_than_the_header_are_rejected_as_an_unnamed_column(tmp_path) -> None:
    text = "customer_id,email\r\n1,a@example.com,x\r\n2,b@example.com,y\r\n"
    _reject(_write(tmp_path, text), "every data row has 3 fields but the header has 2", "no name in the header")


def test_a_header_ending_with_a_trailing_delimiter_the_rows_lack_is_rejected_too(sandbox, tmp_path) -> None:
    header, rows = _lines(sandbox)
    _reject(_write(tmp_path, "\r\n".join([header + ",", *rows]) + "\r\n"), "trailing delimiter", "header")


@pytest.mark.parametrize("change, fields", [("more", 23), ("fewer", 21)])
def test_one_data_row_with_more_or_fewer_fields_than_the_header_is_rejected_naming_its_line(
    sandbox, tmp_path, change: str, fields: int
) -> None:
    header, rows = _lines(sandbox)
    rows[3] = rows[3] + ",extra" if change == "more" else rows[3].rsplit(",", 1)[0]
    url = _write(tmp_path, "\r\n".join([header, *rows]) + "\r\n")
    _reject(url, "1 of 300 data rows", "the header's 22 fields", f"line 5 has {fields}", "quoted")


def test_a_file_cut_mid_row_is_rejected_as_truncated(sandbox, tmp_path) -> None:
    header, rows = _lines(sandbox)
    cut = rows[200][: rows[200].index(",", 30)]  # the last row stops after a few cells, without a line end
    _reject(_write(tmp_path, "\r\n".join([header, *rows[:200], cut])), "last data row (line 202)", "cut short")


def test_a_file_cut_inside_a_quoted_cell_is_rejected_as_truncated(tmp_path) -> None:
    text = 'customer_id,email,address\r\n1,a@example.com,"1 Main St\r\nFlat 2"\r\n2,b@example.com,"9 Hill'
    _reject(_write(tmp_path, text), "quoted cell", "line 4", "cut short")


def test_a_stray_quote_inside_a_quoted_cell_is_rejected_naming_the_line(tmp_path) -> None:
    text = 'customer_id,email,company\r\n1,a@example.com,"Acme" Ltd"\r\n'
    _reject(_write(tmp_path, text), "not valid CSV", "line 2", "quote")


@pytest.mark.parametrize(
    "old, new, named",
    [
        (",company,", ",email,", "'email' (columns 3 and 7)"),  # pandas kept the first, dropped the second
        (",balance", ",Deleted", "'deleted' (columns 21 and 22)"),  # names are case-insensitive
    ],
)
def test_duplicated_header_names_are_rejected_naming_them(sandbox, tmp_path, old: str, new: str, named: str) -> None:
    header, rows = _lines(sandbox)
    url = _write(tmp_path, "\r\n".join([header.replace(old, new), *rows]) + "\r\n")
    _reject(url, named, "more than once")


@pytest.mark.parametrize("delimiter, name", [(";", "semicolon"), ("\t", "tab")])
def test_an_export_separated_by_semicolons_or_tabs_is_rejected_saying_to_use_commas(
    sandbox, tmp_path, delimiter: str, name: str
) -> None:
    text = sandbox.export_csv(bom=True)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    _reject(_write(tmp_path, out.getvalue()), f"separated by {name}s", "comma-separated")


def test_an_export_that_is_not_utf8_is_rejected_saying_to_save_it_as_utf8(tmp_path) -> None:
    latin1 = "customer_id,email,lastname\r\n1,jo@example.com,Müller\r\n".encode("latin-1")
    _reject(_write(tmp_path, latin1), "not UTF-8", "byte 0xfc", "UTF-8")


def test_an_export_saved_as_utf16_is_rejected_naming_the_encoding(tmp_path) -> None:
    utf16 = "customer_id,email\r\n1,jo@example.com\r\n".encode("utf-16")
    _reject(_write(tmp_path, utf16), "UTF-16", "UTF-8")


def test_an_export_with_nul_bytes_is_rejected_as_not_a_text_csv(tmp_path) -> None:
    _reject(_write(tmp_path, b"customer_id,email\r\n1,jo@example.com\x00\x00\r\n"), "NUL")


def test_an_empty_file_is_rejected_as_not_even_a_header(tmp_path) -> None:
    _reject(_write(tmp_path, b""), "empty")


def test_a_well_formed_export_with_quoted_commas_newlines_bom_and_crlf_reads_exactly(tmp_path) -> None:
    text = (
        "\ufeffcustomer_id,email,company,address,city,lastname,balance\r\n"
        '1,a@example.com,"Smith, Jones & Co","1 Main St\r\nFlat 2",Paris,"O""Brien",1.50\r\n'
        '2,b@example.com,,"Line one\nline two",,Ünal,\r\n'
        "3,c@example.com,NA,,null,李,0\r\n"
        "\r\n"
    )  # a blank line at the end, as some tools write
    rows, checksum = read_export(_write(tmp_path, text))
    first, second, third = rows.to_dict("records")
    assert (first["company"], first["address"], first["city"], first["lastname"], first["balance"]) == (
        "Smith, Jones & Co",
        "1 Main St\r\nFlat 2",
        "Paris",
        'O"Brien',
        1.5,
    )
    assert (second["address"], second["lastname"], second["company"]) == ("Line one\nline two", "Ünal", None)
    assert (third["customer_id"], third["company"], third["city"], third["lastname"]) == ("3", "NA", "null", "李")
    assert list(rows["customer_id"]) == ["1", "2", "3"] and len(checksum) == 64


def test_a_stray_quote_in_an_unquoted_cell_is_read_as_text_by_the_strict_reader(tmp_path) -> None:
    # An odd number of quotes sends the file to the strict reader; a quote inside an unquoted cell is text.
    text = 'customer_id,email,company\r\n1,a@example.com,The 12" Pizza Co\r\n2,b@example.com,"Quoted, Ltd"\r\n'
    rows, _ = read_export(_write(tmp_path, text))
    assert list(rows["company"]) == ['The 12" Pizza Co', "Quoted, Ltd"]


def test_the_fast_and_the_strict_reader_read_a_regular_export_the_same(sandbox) -> None:
    text = sandbox.export_csv() + '9999,q@example.com,,,"Ann\r\nMarie","O""Neil"' + "," * 16 + "\r\n"
    header = [c.lower() for c in sandbox_module.EXPORT_COLUMNS]
    fast = source_module._read_fast(text.encode("utf-8"), header)
    strict = source_module._read_strict("file:///x.csv", text.removeprefix("\ufeff"))
    assert fast is not None and len(fast) == len(sandbox.customers()) + 1
    pd.testing.assert_frame_equal(fast.astype(object), strict.astype(object))
    assert (fast.iloc[-1]["firstname"], fast.iloc[-1]["lastname"]) == ("Ann\r\nMarie", 'O"Neil')


def test_the_sandboxs_export_reads_back_row_for_row(sandbox, tmp_path) -> None:
    rows, _ = read_export(_write(tmp_path, sandbox.export_csv()))
    assert list(rows["customer_id"]) == [str(c["customer_id"]) for c in sandbox.customers()]
    assert list(rows["email"]) == [c["email"].strip() or None for c in sandbox.customers()]


def test_a_header_only_export_reads_as_no_rows(sandbox, tmp_path) -> None:
    header, _ = _lines(sandbox)
    rows, _ = read_export(_write(tmp_path, "\ufeff" + header + "\r\n"))
    assert rows.empty and "email" in rows.columns


@pytest.mark.parametrize("use_order_api", [False, True])
def test_a_header_only_export_gives_no_keys_for_deletion_and_says_why(
    sandbox, connect, tmp_path, state_url, use_order_api: bool
) -> None:
    header, _ = _lines(sandbox)
    options = DecoNetworkOptions(customers_export_url=_write(tmp_path, header + "\r\n"), use_order_api=use_order_api)
    result = extract(connect(sandbox) if use_order_api else None, options, None, now=NOW, state_url=state_url)
    # Orders still give their buyers, but without the export nobody can tell who was deleted.
    assert result.full and result.all_customer_keys is None
    assert result.incomplete_reason == "the customer export has no data rows"
    assert (len(result.customers) > 0) == use_order_api
    assert result.cursor["last_full_at"] is None  # the next run is a full pass again


def test_a_complete_export_gives_every_key_and_no_incomplete_reason(sandbox, tmp_path) -> None:
    options = DecoNetworkOptions(customers_export_url=_write(tmp_path, sandbox.export_csv()), use_order_api=False)
    result = extract(None, options, None, now=NOW)
    assert result.incomplete_reason is None
    assert sorted(result.all_customer_keys) == sorted(str(c["customer_id"]) for c in sandbox.customers())
