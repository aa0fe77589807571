"""Magento extraction: scope, full and incremental passes with concurrent changes, and the order rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from sandboxes.magento import MagentoSandbox
from sandboxes.seed import STORES, StoreData, generate_store
from tests.conftest import connection_env
from zoho_store_sync.config import MagentoOptions
from zoho_store_sync.errors import SourceIncompleteError
from zoho_store_sync.hooks.magento import MagentoHook
from zoho_store_sync.sources import SourceExtract
from zoho_store_sync.sources import magento as source
from zoho_store_sync.sources.magento import extract, extract_customers

CONN = "magento_extract_test"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EXACT = MagentoOptions(overlap_seconds=0)  # no overlap: the returned set can be predicted row by row


@pytest.fixture(scope="module")
def seeded() -> StoreData:
    return generate_store(400, seed=11)


def hook_for(monkeypatch: pytest.MonkeyPatch, sandbox: MagentoSandbox) -> MagentoHook:
    monkeypatch.setenv(
        *connection_env(
            CONN,
            conn_type="http",
            host=sandbox.url,
            password=sandbox.integration_token,
            extra={"auth": "integration_token"},
        )
    )
    hook = MagentoHook(CONN)
    hook.sleep = lambda seconds: None  # the page retries' backoff: tests never wait
    return hook


def by_key(result: SourceExtract) -> dict[str, dict]:
    frame = result.customers
    assert frame["customer_key"].is_unique  # de-duplicated: each customer at most once per run
    return {row["customer_key"]: row for row in frame.to_dict("records")}


def expected_aggregates(orders: list[dict]) -> dict[str, tuple[int, float]]:
    """The documented rules, written out independently: counted states, base currency, refunds off."""
    out: dict[str, tuple[int, float]] = {}
    for o in orders:
        if "customer_id" in o and o["state"] not in ("canceled", "closed"):
            count, value = out.get(str(o["customer_id"]), (0, 0.0))
            out[str(o["customer_id"])] = (count + 1, value + o["base_grand_total"] - o.get("base_total_refunded", 0.0))
    return out


def assert_complete_aggregates(result: SourceExtract, sandbox: MagentoSandbox) -> None:
    truth = expected_aggregates(sandbox.orders())
    for key, row in by_key(result).items():
        if key.startswith("guest:"):
            continue
        count, value = truth.get(key, (0, 0.0))
        assert (row["order_count"], row["total_order_value"]) == (count, pytest.approx(value, abs=0.011)), key


def changed_since(
    sandbox: MagentoSandbox, cursor: dict, overlap: int, website_ids: list[int] | None = None
) -> set[str]:
    """What an incremental pass must return, computed from the sandbox's own state."""

    def since(ts: str) -> str:
        return (datetime.strptime(ts, "%Y-%m-%d %H:%M:%S") - timedelta(seconds=overlap)).strftime("%Y-%m-%d %H:%M:%S")

    in_scope = {c["id"]: c for c in sandbox.customers() if not website_ids or c["website_id"] in website_ids}
    by_profile = {i for i, c in in_scope.items() if c["updated_at"] >= since(cursor["customers_updated_at"])}
    by_orders = {
        o["customer_id"]
        for o in sandbox.orders()
        if "customer_id" in o and o["updated_at"] >= since(cursor["orders_updated_at"])
    }
    return {str(i) for i in by_profile | (by_orders & in_scope.keys())}


# ---- scope ---------------------------------------------------------------------------------------------------


def test_same_email_on_two_websites_is_two_customers(monkeypatch, magento_sandbox):
    frame = extract(hook_for(monkeypatch, magento_sandbox), MagentoOptions(), None, now=T0).customers
    twins = frame[frame["email"].duplicated(keep=False)]
    twins = twins.groupby("email").filter(lambda g: set(g["store_id"]) == {"1", "2"})
    assert len(twins) == 2 and twins["customer_key"].is_unique


def test_tenant_limited_to_one_website_sees_only_it(monkeypatch, magento_sandbox):
    hook = hook_for(monkeypatch, magento_sandbox)
    result = extract(hook, MagentoOptions(store_code="eu", website_ids=[2]), None, now=T0)
    eu = {str(c["id"]) for c in magento_sandbox.customers() if c["website_id"] == 2}
    assert set(result.customers["customer_key"]) == eu == set(result.all_customer_keys)
    assert set(result.customers["store_id"]) == {"2"} and set(result.customers["store"]) == {"EU Store View"}
    searched = [c for c in magento_sandbox.calls() if c["path"].endswith("customers/search")]
    assert searched and all(c["path"] == "/rest/eu/V1/customers/search" for c in searched)
    assert all(c["query"]["searchCriteria[filter_groups][0][filters][0][field]"] == "website_id" for c in searched)


# ---- full and incremental passes ---------------------------------------------------------------------------------


def test_first_run_is_a_full_pass_with_every_key_and_a_cursor_of_magento_timestamps(monkeypatch, magento_sandbox):
    hook = hook_for(monkeypatch, magento_sandbox)
    result = extract(hook, MagentoOptions(), None, now=T0)
    customers, orders = magento_sandbox.customers(), magento_sandbox.orders()
    assert result.full and len(result.customers) == len(customers)
    assert sorted(result.all_customer_keys) == sorted(str(c["id"]) for c in customers)
    assert result.cursor == {
        "customers_updated_at": max(c["updated_at"] for c in customers),
        "orders_updated_at": max(o["updated_at"] for o in orders),
        "last_full_at": T0.isoformat(),
    }
    assert result.calls == hook.calls > 0
    assert_complete_aggregates(result, magento_sandbox)


def test_extract_customers_is_the_full_pass(monkeypatch, magento_sandbox):
    hook = hook_for(monkeypatch, magento_sandbox)
    pd.testing.assert_frame_equal(
        extract_customers(hook, MagentoOptions()), extract(hook, MagentoOptions(), None, now=T0).customers
    )


def test_incremental_run_returns_changed_customers_and_buyers_with_complete_aggregates(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    first = extract(hook, EXACT, None, now=T0)
    sb.advance_clock(3600)
    sb.update_customer(12, lastname="Changed")
    buyer = next(o["customer_id"] for o in sb.orders() if o.get("customer_id", 12) != 12)
    sb.add_order(buyer, base_grand_total=10.0)  # the customer row itself does not change

    second = extract(hook, EXACT, first.cursor, now=T0 + timedelta(hours=1))
    rows = by_key(second)
    assert not second.full and second.all_customer_keys is None
    assert set(rows) == changed_since(sb, first.cursor, 0) >= {"12", str(buyer)}
    assert rows["12"]["lastname"] == "Changed"
    assert_complete_aggregates(second, sb)  # all their orders, not only the changed one
    assert second.cursor["last_full_at"] == first.cursor["last_full_at"]
    assert second.cursor["customers_updated_at"] == second.cursor["orders_updated_at"] == sb.now()


def test_overlap_window_reads_again_what_changed_just_before_the_cursor(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    first = extract(hook, MagentoOptions(overlap_seconds=3600), None, now=T0)
    second = extract(hook, MagentoOptions(overlap_seconds=3600), first.cursor, now=T0 + timedelta(minutes=30))
    assert set(by_key(second)) == changed_since(sb, first.cursor, 3600) != set()


def test_changes_between_runs_and_during_paging_are_each_picked_up_exactly_once(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    options = MagentoOptions(overlap_seconds=0, page_size=2)  # small pages: edits land between them
    first = extract(hook, options, None, now=T0)

    sb.advance_clock(600)  # between the runs
    for cid in (40, 50, 60, 70, 80):
        sb.update_customer(cid, lastname=f"Between{cid}")
    mark = sb.now()
    buyer = 33
    edits = {"done": False}

    def during_paging(request: dict) -> None:
        filters = request["query"].values()
        if edits["done"] or not request["path"].endswith("customers/search") or "50" not in filters:
            return  # wait until the incremental customer pass asks for ids after 50
        edits["done"] = True
        sb.advance_clock(5)
        sb.update_customer(45, lastname="DuringBehind")  # the keyset has passed 45: the next run reads it
        sb.update_customer(75, lastname="DuringAhead")  # not yet reached: this run reads it
        sb.add_order(buyer, base_grand_total=25.0)

    sb.on_request = during_paging
    second = extract(hook, options, first.cursor, now=T0 + timedelta(hours=1))
    sb.on_request = None
    assert edits["done"]
    rows2 = by_key(second)
    assert {"40", "50", "60", "70", "80", "75"} <= set(rows2) and "45" not in rows2
    assert rows2["75"]["lastname"] == "DuringAhead"
    # The new mark is the newest updated_at before paging began, not the newest read (75's, 5 s later).
    assert second.cursor["customers_updated_at"] == mark

    third = extract(hook, options, second.cursor, now=T0 + timedelta(hours=2))
    rows3 = by_key(third)
    assert rows3["45"]["lastname"] == "DuringBehind" and str(buyer) in set(rows2) | set(rows3)
    assert set(rows3) == changed_since(sb, second.cursor, 0)  # from the mark on (gteq: its own second too)
    assert_complete_aggregates(third, sb)
    latest = {**{k: r["lastname"] for k, r in rows2.items()}, **{k: r["lastname"] for k, r in rows3.items()}}
    current = {str(c["id"]): c["lastname"] for c in sb.customers()}
    assert all(latest[k] == current[k] for k in latest)  # every change arrived in its final version


def test_newsletter_only_change_is_caught_by_the_periodic_full_pass(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    first = extract(hook, EXACT, None, now=T0)
    quiet = next(c for c in sb.customers() if str(c["id"]) not in changed_since(sb, first.cursor, 0))
    was = quiet["extension_attributes"]["is_subscribed"]
    sb.advance_clock(3600)
    sb.set_subscribed(quiet["id"], not was)  # newsletter_subscriber only: updated_at does not move

    incremental = extract(hook, EXACT, first.cursor, now=T0 + timedelta(hours=23))
    assert not incremental.full and str(quiet["id"]) not in by_key(incremental)
    full = extract(hook, EXACT, incremental.cursor, now=T0 + timedelta(hours=24))
    assert full.full and by_key(full)[str(quiet["id"])]["newsletter"] is (not was)
    assert full.cursor["last_full_at"] == (T0 + timedelta(hours=24)).isoformat()


def test_full_every_hours_sets_the_full_pass_period(monkeypatch, magento_sandbox):
    hook = hook_for(monkeypatch, magento_sandbox)
    first = extract(hook, EXACT, None, now=T0)
    assert not extract(hook, EXACT, first.cursor, full_every_hours=2, now=T0 + timedelta(hours=1)).full
    assert extract(hook, EXACT, first.cursor, full_every_hours=2, now=T0 + timedelta(hours=2)).full
    assert extract(hook, EXACT, {}, now=T0).full  # an empty cursor is no cursor


def test_hard_deleted_customer_leaves_the_full_pass_and_its_orders_count_for_no_one(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    gone = next(o["customer_id"] for o in sb.orders() if "customer_id" in o)
    first = extract(hook, EXACT, None, now=T0)
    sb.delete_customer(gone)
    incremental = extract(hook, EXACT, first.cursor, now=T0 + timedelta(hours=1))
    assert str(gone) not in by_key(incremental)  # a delete leaves no updated_at behind
    full = extract(hook, MagentoOptions(guest_orders_as_leads=True), incremental.cursor, now=T0 + timedelta(days=2))
    assert str(gone) not in full.all_customer_keys
    guest_emails = {o["customer_email"].strip().lower() for o in sb.orders() if o["customer_is_guest"] == 1}
    their_emails = {
        o["customer_email"].strip().lower()
        for o in sb.orders()
        if o["customer_is_guest"] == 0 and "customer_id" not in o
    } - guest_emails
    assert their_emails
    assert not their_emails & {k.removeprefix("guest:") for k in by_key(full) if k.startswith("guest:")}
    assert_complete_aggregates(full, sb)


def test_orders_changed_outside_the_tenants_websites_bring_no_customer(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    options = MagentoOptions(website_ids=[1], overlap_seconds=0)
    first = extract(hook, options, None, now=T0)
    eu = next(c["id"] for c in sb.customers() if c["website_id"] == 2)
    home = next(c["id"] for c in sb.customers() if c["website_id"] == 1)
    sb.advance_clock(60)
    sb.add_order(eu, base_grand_total=5.0)
    sb.add_order(home, base_grand_total=5.0)
    rows = by_key(extract(hook, options, first.cursor, now=T0 + timedelta(hours=1)))
    assert str(home) in rows and str(eu) not in rows
    assert set(rows) == changed_since(sb, first.cursor, 0, website_ids=[1])


def test_many_customers_changed_through_orders_are_fetched_in_chunks(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    monkeypatch.setattr(source, "ID_CHUNK", 3)
    first = extract(hook, EXACT, None, now=T0)
    sb.advance_clock(60)
    buyers = [c["id"] for c in sb.customers()[100:108]]
    for cid in buyers:
        sb.add_order(cid, base_grand_total=1.0)
    second = extract(hook, EXACT, first.cursor, now=T0 + timedelta(hours=1))
    assert {str(c) for c in buyers} <= set(by_key(second))
    assert_complete_aggregates(second, sb)
    chunked = [
        c
        for c in sb.calls()
        if c["path"].endswith("/orders")
        and c["query"].get("searchCriteria[filter_groups][0][filters][0][field]") == "customer_id"
    ]
    assert len(chunked) >= 3 and all(
        len(c["query"]["searchCriteria[filter_groups][0][filters][0][value]"].split(",")) <= 3 for c in chunked
    )


# ---- partial reads (issue 12): a full pass is full only when it provably read everything ---------------------

PAGED = MagentoOptions(page_size=50)  # 400 customers, ~1,000 orders: many pages, so faults land mid-paging


def test_full_pass_with_an_empty_customers_page_mid_paging_fails_instead_of_passing_for_full(
    monkeypatch, magento_sandbox
):
    hook = hook_for(monkeypatch, magento_sandbox)
    magento_sandbox.inject_fault("empty_page", path="customers", after_pages=3, times=None)  # probe + 2 pages
    with pytest.raises(SourceIncompleteError, match=r"customers/search.* 100 of the 400 rows"):
        extract(hook, PAGED, None, now=T0)


def test_full_pass_with_an_empty_orders_page_fails_rather_than_lowering_order_counts(monkeypatch, magento_sandbox):
    hook = hook_for(monkeypatch, magento_sandbox)
    magento_sandbox.inject_fault("empty_page", path="orders", after_pages=4, times=None)
    with pytest.raises(SourceIncompleteError, match=r"orders.* 150 of the [\d,]+ rows"):
        extract(hook, PAGED, None, now=T0)


def test_a_transient_empty_page_in_a_full_pass_still_reads_every_customer_once_with_all_orders(
    monkeypatch, magento_sandbox
):
    hook = hook_for(monkeypatch, magento_sandbox)
    magento_sandbox.inject_fault("empty_page", path="customers", after_pages=3, times=1)
    magento_sandbox.inject_fault("empty_page", path="orders", after_pages=5, times=1)
    result = extract(hook, PAGED, None, now=T0)
    assert len(magento_sandbox.applied_faults()) == 2
    assert result.full and getattr(result, "incomplete_reason", "missing") is None
    assert sorted(result.all_customer_keys, key=int) == [str(c["id"]) for c in magento_sandbox.customers()]
    assert_complete_aggregates(result, magento_sandbox)


def test_a_full_pass_not_provably_complete_sends_what_it_read_but_gives_no_keys_for_deletions(
    monkeypatch, magento_sandbox, caplog
):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    first = extract(hook, PAGED, None, now=T0)
    # A page that leaves out 3 customers yet looks full: only the counts can tell.
    sb.inject_fault("skip_rows", path="customers", after_pages=3, rows=3)
    with caplog.at_level("WARNING", logger="zoho_store_sync.sources.magento"):
        second = extract(hook, PAGED, first.cursor, now=T0 + timedelta(days=2))
    reason = getattr(second, "incomplete_reason", None)
    assert second.full and second.all_customer_keys is None  # deletion detection off for this run
    assert reason and "3 rows" in reason and "not in the pages read" in reason
    assert [r for r in caplog.records if r.levelname == "WARNING" and reason in r.getMessage()]
    assert len(second.customers) == len(sb.customers()) - 3  # what it read is true and is sent
    assert_complete_aggregates(second, sb)
    # Not recorded as a full pass: the next run tries the full pass again.
    assert second.cursor["last_full_at"] == first.cursor["last_full_at"]
    assert extract(hook, PAGED, second.cursor, now=T0 + timedelta(days=2, minutes=30)).all_customer_keys is not None


def test_a_moving_total_count_alone_is_checked_and_the_pass_stays_full(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    sb.inject_fault("total_drift", path="customers", after_pages=3, drift=+40)  # the count ran at another moment
    sb.inject_fault("total_drift", path="orders", after_pages=2, drift=-30)
    result = extract(hook, PAGED, None, now=T0)
    assert len(sb.applied_faults()) == 2
    assert getattr(result, "incomplete_reason", "missing") is None
    assert sorted(result.all_customer_keys, key=int) == [str(c["id"]) for c in sb.customers()]
    assert_complete_aggregates(result, sb)


def test_customers_deleted_and_added_while_paging_leave_the_pass_provably_full(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    pages = {"n": 0}

    def admin_edits(request: dict) -> None:
        if not request["path"].endswith("customers/search"):
            return
        pages["n"] += 1
        if pages["n"] == 4:  # after the probe and two pages (ids 1..100)
            for gone in (20, 150, 151, 390):  # one behind the keyset, three ahead of it
                sb.delete_customer(gone)
            sb.add_customer("joined.while.paging@example.com")

    sb.on_request = admin_edits
    result = extract(hook, PAGED, None, now=T0)
    sb.on_request = None
    assert getattr(result, "incomplete_reason", "missing") is None
    keys = set(result.all_customer_keys)
    assert {str(c["id"]) for c in sb.customers()} <= keys  # every customer the store still has
    assert not keys & {"150", "151", "390"}  # deleted ahead: never read


def test_incremental_pass_fails_when_an_empty_orders_page_would_lower_a_buyers_count(monkeypatch, magento_sandbox):
    sb = magento_sandbox
    hook = hook_for(monkeypatch, sb)
    first = extract(hook, EXACT, None, now=T0)
    sb.advance_clock(60)
    buyer = next(o["customer_id"] for o in sb.orders() if "customer_id" in o)
    sb.add_order(buyer, base_grand_total=10.0)
    # the orders probe and the changed orders are read right; every search for the buyers' orders is empty
    sb.inject_fault("empty_page", path="orders", after_pages=2, times=None)
    with pytest.raises(SourceIncompleteError, match="orders"):
        extract(hook, EXACT, first.cursor, now=T0 + timedelta(hours=1))


# ---- the order rules, with hand-made data -----------------------------------------------------------------------


def _customer(cid: int, email: str, website_id: int = 1) -> dict:
    store = STORES[website_id]
    return {
        "id": cid,
        "group_id": 1,
        "created_at": "2024-01-01 00:00:00",
        "updated_at": "2024-01-02 00:00:00",
        "created_in": store["name"],
        "email": email,
        "firstname": f"First{cid}",
        "lastname": f"Last{cid}",
        "store_id": website_id,
        "website_id": website_id,
        "addresses": [],
        "disable_auto_group_change": 0,
        "extension_attributes": {"is_subscribed": False},
    }


def _order(
    entity_id: int,
    customer_id: int | None,
    base: float,
    *,
    state: str = "complete",
    refunded: float = 0.0,
    store_id: int = 1,
    email: str = "",
    guest: bool = False,
    updated: str = "2024-02-01 00:00:00",
) -> dict:
    rate = STORES[store_id]["rate"]
    o = {
        "entity_id": entity_id,
        "increment_id": f"{entity_id:09d}",
        "state": state,
        "status": state,
        "store_id": store_id,
        "store_name": STORES[store_id]["order_store_name"],
    }
    if customer_id is not None:
        o["customer_id"] = customer_id
    o.update(
        {
            "customer_email": email,
            "customer_firstname": "Gina",
            "customer_lastname": "Guest",
            "customer_is_guest": 1 if guest else 0,
            "grand_total": round(base * rate, 2),
            "base_grand_total": base,
        }
    )
    if refunded:
        o.update({"total_refunded": round(refunded * rate, 2), "base_total_refunded": refunded})
    o.update(
        {
            "order_currency_code": STORES[store_id]["order_currency"],
            "base_currency_code": "USD",
            "created_at": updated,
            "updated_at": updated,
        }
    )
    return o


@pytest.fixture
def handmade():
    customers = [
        _customer(1, "alice@example.com"),
        _customer(2, "bob@example.com", website_id=2),
        _customer(3, "carol@example.com"),
        _customer(4, "dave@example.com"),
    ]
    orders = [
        _order(1, 1, 100.0, email="alice@example.com"),
        _order(2, 1, 50.0, state="processing", refunded=20.0, email="alice@example.com"),  # partly refunded
        _order(3, 1, 70.0, state="canceled", email="alice@example.com"),
        _order(4, 1, 30.0, state="closed", refunded=30.0, email="alice@example.com"),  # fully refunded
        _order(5, 2, 100.0, store_id=2, email="bob@example.com"),  # charged 92 EUR, 100 USD base
        _order(6, 4, 60.0, email="dave@example.com"),
        _order(7, None, 40.0, email="guest@example.com", guest=True),
        _order(8, None, 10.0, state="canceled", email="Guest@Example.com ", guest=True),
        _order(9, None, 25.0, email=" ALICE@example.com", guest=True),  # a registered customer's email
        _order(10, None, 80.0, store_id=2, email="eu.guest@example.com", guest=True),
        _order(11, None, 15.0, state="canceled", email="tried@example.com", guest=True),
        _order(12, None, 999.0, email="erased@example.com"),  # a deleted customer's order: no customer_id
    ]
    with MagentoSandbox(StoreData(customers=customers, orders=orders)) as sb:
        yield sb


def test_canceled_and_closed_orders_do_not_count_and_refunds_are_taken_off(monkeypatch, handmade):
    rows = by_key(extract(hook_for(monkeypatch, handmade), MagentoOptions(), None, now=T0))
    assert (rows["1"]["order_count"], rows["1"]["total_order_value"]) == (2, 130.0)  # 100 + (50 - 20)
    assert (rows["3"]["order_count"], rows["3"]["total_order_value"]) == (0, 0.0)


def test_order_value_is_in_base_currency_so_store_views_in_other_currencies_add_up(monkeypatch, handmade):
    rows = by_key(extract(hook_for(monkeypatch, handmade), MagentoOptions(), None, now=T0))
    assert (rows["2"]["order_count"], rows["2"]["total_order_value"]) == (1, 100.0)


def test_guest_orders_and_orders_without_customer_id_are_no_customer_by_default(monkeypatch, handmade):
    rows = by_key(extract(hook_for(monkeypatch, handmade), MagentoOptions(), None, now=T0))
    assert set(rows) == {"1", "2", "3", "4"}
    assert sum(r["total_order_value"] for r in rows.values()) == 130.0 + 100.0 + 60.0  # 999 counts for no one


def test_guest_orders_as_leads_make_one_lead_per_email_with_their_total_but_no_order_count(monkeypatch, handmade):
    result = extract(hook_for(monkeypatch, handmade), MagentoOptions(guest_orders_as_leads=True), None, now=T0)
    rows = by_key(result)
    guests = {k: r for k, r in rows.items() if k.startswith("guest:")}
    assert set(guests) == {"guest:guest@example.com", "guest:eu.guest@example.com", "guest:tried@example.com"}
    lead = guests["guest:guest@example.com"]
    assert (lead["order_count"], lead["total_order_value"]) == (0, 40.0)  # the canceled one adds nothing
    assert lead["registered"] is False and lead["newsletter"] is False and lead["deleted"] is False
    assert (lead["email"], lead["firstname"], lead["store"], lead["store_id"]) == (
        "guest@example.com",
        "Gina",
        "Default Store View",
        "1",
    )
    assert guests["guest:eu.guest@example.com"]["store_id"] == "2"
    assert guests["guest:tried@example.com"]["total_order_value"] == 0.0
    assert rows["1"]["total_order_value"] == 130.0  # Alice's guest checkout is not added to her account
    assert set(result.all_customer_keys) == set(rows)  # guest keys too: they are not deletions


def test_guest_leads_respect_the_tenants_websites(monkeypatch, handmade):
    options = MagentoOptions(guest_orders_as_leads=True, website_ids=[2])
    rows = by_key(extract(hook_for(monkeypatch, handmade), options, None, now=T0))
    assert set(rows) == {"2", "guest:eu.guest@example.com"}


def test_a_new_guest_order_brings_the_guests_complete_total_incrementally(monkeypatch, handmade):
    hook = hook_for(monkeypatch, handmade)
    options = MagentoOptions(guest_orders_as_leads=True, overlap_seconds=0)
    first = extract(hook, options, None, now=T0)
    handmade.advance_clock(60)
    handmade.add_order(None, base_grand_total=5.0, email="GUEST@example.com")
    handmade.add_order(None, base_grand_total=7.0, email="alice@example.com")  # registered: never a lead
    rows = by_key(extract(hook, options, first.cursor, now=T0 + timedelta(hours=1)))
    # (every hand-made order shares the cursor's second, so gteq reads the other guests again too)
    assert "guest:guest@example.com" in rows and "guest:alice@example.com" not in rows
    assert rows["guest:guest@example.com"]["total_order_value"] == 45.0
    assert rows.get("1", {"total_order_value": 130.0})["total_order_value"] == 130.0


def test_order_aggregates_ignore_orders_without_customer_id():
    frame = source.order_aggregates(
        [
            {"customer_id": 7, "state": "complete", "base_grand_total": 10.0},
            {"state": "complete", "base_grand_total": 500.0, "customer_is_guest": 0},  # its customer was deleted
            {"state": "complete", "base_grand_total": 300.0, "customer_is_guest": 1},
            {"customer_id": 7, "state": "holded", "base_grand_total": 5.0, "base_total_refunded": 1.0},
        ]
    )
    assert frame.to_dict("records") == [{"customer_key": "7", "order_count": 2, "total_order_value": 14.0}]
