"""The DecoNetwork sandbox, exercised over real HTTP with requests: the order API as documented, and the export."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from sandboxes.deconetwork import (EXPORT_COLUMNS, FIND_PATH, DecoNetworkSandbox, DecoStoreData,
                                   generate_deconetwork_store)

REPO = Path(__file__).resolve().parents[2]
AUTH = {"username": "api-user", "password": "sandbox-deco-password-123"}
ALL = {"field": "8", "condition": "6", "date1": "2000-01-01T00:00:00"}


@pytest.fixture(scope="module")
def data() -> DecoStoreData:
    return generate_deconetwork_store(300, seed=3)


@pytest.fixture(scope="module")
def shared(data: DecoStoreData) -> Iterator[DecoNetworkSandbox]:
    """A read-only sandbox for tests that change nothing."""
    with DecoNetworkSandbox(data) as sb:
        yield sb


@pytest.fixture
def sandbox(data: DecoStoreData) -> Iterator[DecoNetworkSandbox]:
    with DecoNetworkSandbox(data) as sb:
        yield sb


def find(sb: DecoNetworkSandbox, params: dict[str, Any], *, method: str = "POST", auth: bool = True,
         path: str = FIND_PATH) -> requests.Response:
    fields = {**(AUTH if auth else {}), **params}
    if method == "GET":
        return requests.get(sb.url + path, params=fields, timeout=10)
    return requests.post(sb.url + path, data=fields, timeout=10)


def code(resp: requests.Response) -> int:
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json"), resp.text
    return resp.json()["response_status"]["code"]


# ---- the data set --------------------------------------------------------------------------------------

def test_generated_site_has_a_main_store_and_three_affiliate_stores_with_their_customers(data: DecoStoreData) -> None:
    owners = {s["store_id"]: s["owner"] for s in data.stores}
    assert owners == {"1": "me", "2": "affiliate", "3": "affiliate", "4": "affiliate"}
    assert {c["store_id"] for c in data.customers} == set(owners)
    assert all(c["store_owner"] == owners[c["store_id"]] for c in data.customers)


def test_generated_customers_are_varied_like_a_real_site(data: DecoStoreData) -> None:
    customers = data.customers
    assert any(c["deleted"] for c in customers)
    assert any(c["newsletter"] and not c["login"] for c in customers)  # newsletter-only subscribers
    assert any(c["balance"] > 0 for c in customers)
    assert any(not c["address"] for c in customers)
    names = "".join(c["firstname"] + c["lastname"] for c in customers)
    assert any("\u0400" <= ch <= "\u04ff" for ch in names)  # Cyrillic
    assert any("\u4e00" <= ch <= "\u9fff" for ch in names)  # CJK
    assert any("\u0600" <= ch <= "\u06ff" for ch in names)  # Arabic
    assert any("@" not in c["email"] or c["email"] != c["email"].strip() for c in customers)  # messy emails


def test_generated_orders_include_quotes_cancellations_and_guest_checkouts(data: DecoStoreData) -> None:
    statuses = {o["order_status_name"] for o in data.orders}
    assert {"Quote", "Cancelled", "Shipped"} <= statuses
    assert all(o["date_ordered"] is None for o in data.orders if o["order_status_name"] == "Quote")
    assert any(o["customer_id"] is None for o in data.orders)
    assert len(data.orders) > 100


def test_generation_is_deterministic_for_a_seed() -> None:
    assert generate_deconetwork_store(50, seed=9) == generate_deconetwork_store(50, seed=9)
    assert generate_deconetwork_store(50, seed=9) != generate_deconetwork_store(50, seed=10)


# ---- the envelope and paging ---------------------------------------------------------------------------

def test_find_answers_the_documented_envelope_with_total_and_at_most_limit_orders(shared: DecoNetworkSandbox) -> None:
    body = find(shared, {**ALL, "limit": "7"}).json()
    assert body["response_status"] == {"code": 10001, "severity": "SUCCESS", "description": "."}
    assert body["total"] == len(shared.orders()) and len(body["orders"]) == 7
    order = body["orders"][0]
    for key in ("order_id", "customer_id", "order_status", "billable_amount", "date_ordered", "date_modified",
                "billing_details"):
        assert key in order


def test_offset_pages_through_every_order_once_in_order_id_order(shared: DecoNetworkSandbox) -> None:
    seen: list[int] = []
    offset = 0
    while True:
        body = find(shared, {**ALL, "limit": "100", "offset": str(offset)}).json()
        seen += [o["order_id"] for o in body["orders"]]
        offset += len(body["orders"])
        if offset >= body["total"]:
            break
    assert seen == sorted(o["order_id"] for o in shared.orders())


def test_offset_past_the_end_answers_no_orders_and_the_total(shared: DecoNetworkSandbox) -> None:
    body = find(shared, {**ALL, "offset": "100000"}).json()
    assert body["orders"] == [] and body["total"] == len(shared.orders())


def test_default_limit_is_100(shared: DecoNetworkSandbox) -> None:
    assert len(find(shared, ALL).json()["orders"]) == 100


@pytest.mark.parametrize("params", [{"limit": "101"}, {"limit": "-1"}, {"limit": "ten"}, {"offset": "-5"},
                                    {"offset": "1.5"}])
def test_invalid_limit_or_offset_answers_50004(shared: DecoNetworkSandbox, params: dict) -> None:
    assert code(find(shared, {**ALL, **params})) == 50004


# ---- request forms -------------------------------------------------------------------------------------

def test_get_query_and_post_form_give_the_same_answer(shared: DecoNetworkSandbox) -> None:
    params = {**ALL, "limit": "5", "skip_login_token": "1"}
    assert find(shared, params, method="GET").json() == find(shared, params).json()


def test_credentials_in_the_query_and_conditions_in_the_body_combine_like_php_request(
        shared: DecoNetworkSandbox) -> None:
    resp = requests.post(shared.url + FIND_PATH, params=AUTH, data={**ALL, "limit": "1"}, timeout=10)
    assert code(resp) == 10001


def test_multi_conditions_are_joined_with_and(shared: DecoNetworkSandbox) -> None:
    orders = shared.orders()
    shipped = [o for o in orders if o["order_status"] == 3]
    since = sorted(o["date_modified"] for o in shipped)[len(shipped) // 2]
    body = find(shared, {"conditions[1][field]": "4", "conditions[1][condition]": "1", "conditions[1][string]": "3",
                         "conditions[2][field]": "8", "conditions[2][condition]": "6",
                         "conditions[2][date1]": since}).json()
    expected = sorted(o["order_id"] for o in shipped if o["date_modified"] >= since)
    assert body["total"] == len(expected) and [o["order_id"] for o in body["orders"]] == expected


def test_date_conditions_compare_as_documented(shared: DecoNetworkSandbox) -> None:
    orders = shared.orders()
    pivot = sorted(o["date_modified"] for o in orders)[50]
    day = pivot[:10]

    def total(condition: str, **extra: str) -> int:
        return find(shared, {"field": "8", "condition": condition, "date1": pivot, **extra}).json()["total"]

    assert total("6") == sum(o["date_modified"] >= pivot for o in orders)
    assert total("4") == sum(o["date_modified"] > pivot for o in orders)
    assert total("3") == sum(o["date_modified"] < pivot for o in orders)
    assert total("1") == sum(o["date_modified"] == pivot for o in orders)
    assert total("7", date2=day) == sum(pivot <= o["date_modified"] <= f"{day}T23:59:59" for o in orders)
    same_day = find(shared, {"field": "8", "condition": "1", "date1": day}).json()["total"]
    assert same_day == sum(o["date_modified"][:10] == day for o in orders)


def test_date_ordered_is_null_for_quotes_so_they_never_match_a_date_ordered_condition(
        shared: DecoNetworkSandbox) -> None:
    body = find(shared, {"field": "1", "condition": "6", "date1": "2000-01-01", "limit": "100"}).json()
    assert body["total"] == sum(o["date_ordered"] is not None for o in shared.orders())


def test_fields_6_and_7_follow_the_configured_reading_of_the_docs(data: DecoStoreData) -> None:
    with DecoNetworkSandbox(data, field6="date_shipped") as sb:
        shipped = find(sb, {"field": "6", "condition": "6", "date1": "2000-01-01"}).json()["total"]
        invoiced = find(sb, {"field": "7", "condition": "6", "date1": "2000-01-01"}).json()["total"]
    assert shipped == sum(o["date_shipped"] is not None for o in data.orders)
    assert invoiced == sum(o["date_invoiced"] is not None for o in data.orders)


# ---- status codes --------------------------------------------------------------------------------------

def test_wrong_password_answers_30001_authentication_failed(shared: DecoNetworkSandbox) -> None:
    resp = requests.post(shared.url + FIND_PATH, data={**ALL, "username": "api-user", "password": "nope"}, timeout=10)
    assert resp.json() == {"response_status": {"code": 30001, "severity": "ERROR",
                                               "description": "Authentication failed"}}


def test_api_not_enabled_answers_31000(data: DecoStoreData) -> None:
    with DecoNetworkSandbox(data, api_enabled=False) as sb:
        assert code(find(sb, ALL)) == 31000


def test_legacy_codes_answer_10002_and_10005_as_some_clients_see_them(data: DecoStoreData) -> None:
    with DecoNetworkSandbox(data, legacy_codes=True) as sb:
        assert code(requests.post(sb.url + FIND_PATH, data={**ALL, "username": "api-user", "password": "x"},
                                  timeout=10)) == 10002
    with DecoNetworkSandbox(data, legacy_codes=True, api_enabled=False) as sb:
        assert code(find(sb, ALL)) == 10005


def test_no_conditions_answers_50002(shared: DecoNetworkSandbox) -> None:
    assert code(find(shared, {"limit": "10"})) == 50002


@pytest.mark.parametrize("params, description", [
    ({"conditions[1][condition]": "6", "conditions[1][date1]": "2024-01-01"}, "Condition 1 'field' missing"),
    ({"conditions[1][field]": "8", "conditions[1][date1]": "2024-01-01"}, "Condition 1 'condition' missing"),
    ({"field": "8", "condition": "6", "date1": "yesterday"}, "Condition 1 date1 invalid"),
    ({"field": "8", "condition": "6"}, "Condition 1 date1 invalid"),
    ({"field": "8", "condition": "7", "date1": "2024-01-01"}, "Condition 1 date2 invalid"),
    ({**{f"conditions[1][{k}]": v for k, v in ALL.items()}, "conditions[2][field]": "1",
      "conditions[2][condition]": "6", "conditions[2][date1]": "2024-13-01"}, "Condition 2 date1 invalid"),
])
def test_malformed_conditions_answer_50003_naming_the_condition(shared: DecoNetworkSandbox, params: dict,
                                                                description: str) -> None:
    status = find(shared, params).json()["response_status"]
    assert (status["code"], status["severity"], status["description"]) == (50003, "ERROR", description)


@pytest.mark.parametrize("params", [{"field": "9", "condition": "6", "date1": "2024-01-01"},
                                    {"field": "8", "condition": "8", "date1": "2024-01-01"},
                                    {"field": "3", "condition": "1"},
                                    {"field": "4", "condition": "1", "string": "shipped"}])
def test_invalid_request_parameters_answer_50005(shared: DecoNetworkSandbox, params: dict) -> None:
    assert code(find(shared, params)) == 50005


def test_invoice_number_condition_finds_one_order(shared: DecoNetworkSandbox) -> None:
    order_id = shared.orders()[10]["order_id"]
    body = find(shared, {"field": "3", "condition": "1", "string": str(order_id)}).json()
    assert [o["order_id"] for o in body["orders"]] == [order_id]


# ---- HTML pages ----------------------------------------------------------------------------------------

def test_unknown_path_answers_an_html_404_page(shared: DecoNetworkSandbox) -> None:
    for path in ("/api/json/manage_customers/find", "/nothing", "/shop" + FIND_PATH):
        resp = find(shared, ALL, path=path)
        assert resp.status_code == 404 and resp.text.startswith("<!DOCTYPE html>")
        assert resp.headers["Content-Type"].startswith("text/html")


def test_a_request_without_credentials_lands_on_the_html_login_page(shared: DecoNetworkSandbox) -> None:
    resp = find(shared, ALL, auth=False)
    assert resp.status_code == 200 and resp.url.endswith("/login") and "<form" in resp.text
    assert [r.status_code for r in resp.history] == [302]


def test_bad_login_can_answer_with_the_login_page_as_some_clients_report(data: DecoStoreData) -> None:
    with DecoNetworkSandbox(data, bad_login_html=True) as sb:
        resp = requests.post(sb.url + FIND_PATH, data={**ALL, "username": "api-user", "password": "x"}, timeout=10)
    assert resp.text.startswith("<!DOCTYPE html>") and resp.url.endswith("/login")


# ---- faults --------------------------------------------------------------------------------------------

def test_injected_faults_answer_429_503_and_a_dropped_connection_then_recover(sandbox: DecoNetworkSandbox) -> None:
    sandbox.inject_fault("429")
    sandbox.inject_fault("503")
    sandbox.inject_fault("drop")
    assert find(sandbox, ALL).status_code == 429
    assert find(sandbox, ALL).status_code == 503
    with pytest.raises(requests.ConnectionError):
        find(sandbox, ALL)
    assert code(find(sandbox, ALL)) == 10001


# ---- changes and inspection ----------------------------------------------------------------------------

def test_added_and_modified_orders_carry_a_new_date_modified(sandbox: DecoNetworkSandbox) -> None:
    before = sandbox.now()
    customer = sandbox.customers()[0]
    added = sandbox.add_order(customer["customer_id"], billable_amount=42.5)
    assert added["date_modified"] > before and added["date_ordered"] == added["date_modified"]
    assert added["billing_details"]["email"] == customer["email"].strip().lower()
    old = sandbox.orders()[0]
    changed = sandbox.modify_order(old["order_id"], status=9)
    assert changed["order_status_name"] == "Cancelled" and changed["date_modified"] > added["date_modified"]
    body = find(sandbox, {"field": "8", "condition": "6", "date1": added["date_modified"]}).json()
    assert [o["order_id"] for o in body["orders"]] == sorted([added["order_id"], old["order_id"]])


def test_control_endpoints_change_orders_over_http(sandbox: DecoNetworkSandbox) -> None:
    resp = requests.post(sandbox.url + "/__sandbox__/orders", json={"customer_id": 1001, "billable_amount": 10},
                         timeout=10)
    order_id = resp.json()["order_id"]
    requests.post(f"{sandbox.url}/__sandbox__/orders/{order_id}", json={"status": 3}, timeout=10)
    assert next(o for o in sandbox.orders() if o["order_id"] == order_id)["order_status"] == 3
    assert requests.get(sandbox.url + "/__sandbox__/state", timeout=10).json()["orders"] == len(sandbox.orders())


def test_calls_are_inspectable_over_http_with_the_password_redacted(sandbox: DecoNetworkSandbox) -> None:
    find(sandbox, {**ALL, "limit": "3"})
    calls = requests.get(sandbox.url + "/__sandbox__/calls", timeout=10).json()
    assert calls[-1]["params"]["password"] == "***" and calls[-1]["params"]["limit"] == "3"
    assert calls[-1]["code"] == 10001 and calls[-1]["method"] == "POST" and calls[-1]["query_keys"] == []
    assert AUTH["password"] not in json.dumps(calls)


# ---- the customer export -------------------------------------------------------------------------------

def test_write_export_writes_the_contract_columns_one_row_per_customer(sandbox: DecoNetworkSandbox,
                                                                       tmp_path: Path) -> None:
    path = sandbox.write_export(tmp_path / "exports" / "customers.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the UTF-8 BOM spreadsheet tools write
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert len(rows) == len(sandbox.customers())
    assert {r["store_owner"] for r in rows} == {"me", "affiliate"} and {r["deleted"] for r in rows} == {"0", "1"}


def test_export_can_carry_order_totals_counting_ordered_not_cancelled_orders(sandbox: DecoNetworkSandbox) -> None:
    rows = {r["customer_id"]: r for r in csv.DictReader(io.StringIO(
        sandbox.export_csv(include_order_totals=True, bom=False)))}
    counted: dict[str, int] = {}
    for o in sandbox.orders():
        if o["customer_id"] is not None and o["date_ordered"] and o["order_status_name"] != "Cancelled":
            counted[str(o["customer_id"])] = counted.get(str(o["customer_id"]), 0) + 1
    assert {k: int(r["order_count"]) for k, r in rows.items() if int(r["order_count"])} == counted


def test_customer_changes_show_in_the_next_export(sandbox: DecoNetworkSandbox) -> None:
    sandbox.update_customer(1002, newsletter=True, store_id="4", balance=7.5)
    row = next(r for r in csv.DictReader(io.StringIO(sandbox.export_csv(bom=False))) if r["customer_id"] == "1002")
    assert (row["newsletter"], row["store"], row["store_owner"], row["balance"]) == (
        "1", "Lakeside Brewing Merch", "affiliate", "7.50")
    added = sandbox.add_customer(email="new.person@example.com", login="", newsletter=True)
    assert added["customer_id"] == max(c["customer_id"] for c in sandbox.customers())


# ---- command line --------------------------------------------------------------------------------------

def test_cli_serves_until_terminated_and_writes_a_ready_file(tmp_path: Path) -> None:
    ready, export = tmp_path / "ready.json", tmp_path / "customers.csv"
    proc = subprocess.Popen([sys.executable, "-m", "sandboxes.deconetwork", "--port", "0", "--customers", "40",
                             "--ready-file", str(ready), "--export", str(export)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        for _ in range(200):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        resp = requests.post(info["url"] + FIND_PATH, data={**AUTH, **ALL}, timeout=10)
        assert code(resp) == 10001 and export.exists()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
