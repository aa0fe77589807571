"""Properties of the deterministic Magento store generator (sandboxes.seed)."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

import pytest

from sandboxes.seed import StoreData, generate_store

TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
EMAIL_OK = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
SCRIPTS = {
    "Latin with diacritics": re.compile(r"[À-ÖØ-öø-ž]"),
    "Cyrillic": re.compile(r"[\u0400-\u04FF]"),
    "Greek": re.compile(r"[\u0370-\u03FF]"),
    "CJK": re.compile(r"[\u3040-\u30FF\u4E00-\u9FFF]"),
    "Arabic": re.compile(r"[\u0600-\u06FF]"),
    "Devanagari": re.compile(r"[\u0900-\u097F]"),
}


@pytest.fixture(scope="module")
def store() -> StoreData:
    return generate_store(3000, seed=7)


def _walk(value, path="$"):
    """Yield (path, value) for every nested value, to look for nulls anywhere."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def test_same_seed_gives_identical_data_and_another_seed_does_not(store):
    again = generate_store(3000, seed=7)
    assert again.customers == store.customers and again.orders == store.orders
    other = generate_store(3000, seed=8)
    assert other.customers != store.customers


def test_start_moves_every_timestamp():
    shifted = generate_store(50, seed=7, start="2025-06-01 00:00:00")
    assert min(c["created_at"] for c in shifted.customers) == "2025-06-01 00:00:00"
    assert all(o["created_at"] >= "2025-06-01 00:00:00" for o in shifted.orders)


def test_generating_3000_customers_takes_well_under_a_second():
    began = time.perf_counter()
    generate_store(3000, seed=11)
    assert time.perf_counter() - began < 1.0


@pytest.mark.parametrize("n", [0, 1, 7, 49])
def test_tiny_stores_still_generate_consistent_data(n):
    data = generate_store(n)
    assert [c["id"] for c in data.customers] == list(range(1, n + 1))
    ids = {c["id"] for c in data.customers}
    assert {o["customer_id"] for o in data.orders if "customer_id" in o} <= ids
    assert sum(1 for o in data.orders if o["customer_is_guest"]) >= 5


def test_no_value_anywhere_is_null_because_magento_omits_null_keys(store):
    nulls = [p for p, v in _walk({"customers": store.customers, "orders": store.orders}) if v is None]
    assert nulls == []


def test_customers_look_like_magento_customer_interface(store):
    for c in store.customers:
        assert isinstance(c["id"], int) and isinstance(c["group_id"], int)
        assert TS.match(c["created_at"]) and TS.match(c["updated_at"])
        assert c["updated_at"] >= c["created_at"]
        assert c["firstname"] and c["lastname"]
        assert isinstance(c["extension_attributes"]["is_subscribed"], bool)
        assert (c["website_id"], c["store_id"]) in {(1, 1), (2, 2)}
        assert c["created_in"] == {1: "Default Store View", 2: "EU Store View"}[c["website_id"]]
        if c["addresses"]:
            # default_billing / default_shipping are address ids as *strings*
            ids = {str(a["id"]) for a in c["addresses"]}
            assert c["default_billing"] in ids and c["default_shipping"] in ids
            assert all(a["customer_id"] == c["id"] and isinstance(a["street"], list) for a in c["addresses"])
            assert all(len(a["country_id"]) == 2 and "region_id" in a for a in c["addresses"])
        else:
            assert "default_billing" not in c and "default_shipping" not in c
    assert [c["id"] for c in store.customers] == list(range(1, 3001))


def test_created_at_grows_with_id_like_an_auto_increment(store):
    created = [c["created_at"] for c in store.customers]
    assert created == sorted(created)


def test_many_customers_share_an_updated_at_second(store):
    ties = Counter(c["updated_at"] for c in store.customers)
    assert max(ties.values()) >= 50  # the legacy import batch
    assert sum(1 for n in ties.values() if n > 1) >= 2  # and a later admin mass action


def test_about_45_percent_of_customers_have_between_1_and_12_orders(store):
    per_customer = Counter(o["customer_id"] for o in store.orders if "customer_id" in o)
    assert 0.40 <= len(per_customer) / len(store.customers) <= 0.50
    assert min(per_customer.values()) >= 1 and max(per_customer.values()) <= 12
    assert max(per_customer.values()) >= 8  # the long tail exists


def test_about_20_percent_of_non_buyers_are_newsletter_subscribers(store):
    buyers = {o["customer_id"] for o in store.orders if "customer_id" in o}
    non_buyers = [c for c in store.customers if c["id"] not in buyers]
    share = sum(c["extension_attributes"]["is_subscribed"] for c in non_buyers) / len(non_buyers)
    assert 0.16 <= share <= 0.24


def test_about_10_percent_of_customers_have_no_address(store):
    share = sum(1 for c in store.customers if not c["addresses"]) / len(store.customers)
    assert 0.07 <= share <= 0.13


def test_names_come_in_latin_cyrillic_greek_cjk_arabic_and_devanagari_scripts(store):
    names = [c["firstname"] + " " + c["lastname"] for c in store.customers]
    for script, pattern in SCRIPTS.items():
        assert sum(1 for n in names if pattern.search(n)) >= 10, script


def test_some_customers_have_a_prefix_and_some_addresses_a_company_and_telephone(store):
    prefixes = Counter(c["prefix"] for c in store.customers if "prefix" in c)
    assert set(prefixes) <= {"Mr.", "Ms.", "Mrs.", "Dr."} and len(prefixes) >= 3
    addresses = [a for c in store.customers for a in c["addresses"]]
    with_company = sum(1 for a in addresses if "company" in a) / len(addresses)
    with_phone = sum(1 for a in addresses if "telephone" in a) / len(addresses)
    assert 0.05 < with_company < 0.25 and 0.4 < with_phone < 0.9


def test_both_websites_are_populated(store):
    websites = Counter(c["website_id"] for c in store.customers)
    assert websites[1] > websites[2] > 300


def test_some_emails_have_upper_case_or_surrounding_whitespace(store):
    emails = [c["email"] for c in store.customers]
    assert sum(1 for e in emails if e != e.lower()) >= 3
    assert 3 <= sum(1 for e in emails if e != e.strip()) <= 10


def test_three_to_five_emails_are_invalid(store):
    invalid = [c["email"] for c in store.customers if not EMAIL_OK.match(c["email"].strip())]
    assert 3 <= len(invalid) <= 5, invalid
    assert any("@" not in e for e in invalid) and any("@@" in e for e in invalid)


def test_three_to_five_emails_are_duplicated_on_one_website_up_to_case_and_whitespace(store):
    groups = defaultdict(list)
    for c in store.customers:
        groups[(c["website_id"], c["email"].strip().casefold())].append(c["email"])
    dups = [g for g in groups.values() if len(g) > 1]
    assert 3 <= len(dups) <= 5
    assert all(len(set(g)) == len(g) for g in dups)  # they differ only by case/whitespace


def test_exactly_one_email_belongs_to_two_customers_on_different_websites(store):
    by_email = defaultdict(set)
    for c in store.customers:
        by_email[c["email"]].add(c["website_id"])
    assert [e for e, w in by_email.items() if w == {1, 2}].__len__() == 1


def test_orders_look_like_magento_order_interface(store):
    for o in store.orders:
        assert TS.match(o["created_at"]) and o["updated_at"] >= o["created_at"]
        assert o["customer_is_guest"] in (0, 1)
        assert isinstance(o["grand_total"], float) and isinstance(o["base_grand_total"], float)
        assert o["base_currency_code"] == "USD"
        assert o["store_id"] in (1, 2) and o["store_name"].endswith("Store View")
    entity_ids = [o["entity_id"] for o in store.orders]
    assert entity_ids == list(range(1, len(store.orders) + 1))
    assert [o["created_at"] for o in store.orders] == sorted(o["created_at"] for o in store.orders)
    assert len({o["increment_id"] for o in store.orders}) == len(store.orders)


def test_orders_include_canceled_and_partly_refunded_ones(store):
    statuses = Counter(o["status"] for o in store.orders)
    assert statuses["canceled"] > 0 and statuses["complete"] > statuses["canceled"]
    partly = [o for o in store.orders if 0 < o.get("total_refunded", 0) < o["grand_total"]]
    assert partly and all(o["base_total_refunded"] < o["base_grand_total"] for o in partly)
    assert all("total_refunded" not in o for o in store.orders if o["status"] == "canceled")


def test_eu_store_orders_are_in_eur_with_base_grand_total_in_usd(store):
    eu = [o for o in store.orders if o["store_id"] == 2]
    assert eu and all(o["order_currency_code"] == "EUR" for o in eu)
    assert all(abs(o["grand_total"] - o["base_grand_total"] * 0.92) < 0.011 for o in eu)
    assert all(o["order_currency_code"] == "USD" and o["grand_total"] == o["base_grand_total"]
               for o in store.orders if o["store_id"] == 1)
    assert all(o["increment_id"].startswith("2") and len(o["increment_id"]) == 10 for o in eu)


def test_buyer_orders_belong_to_existing_customers_in_their_store(store):
    customers = {c["id"]: c for c in store.customers}
    for o in store.orders:
        if "customer_id" in o:
            c = customers[o["customer_id"]]
            assert o["customer_is_guest"] == 0 and o["store_id"] == c["store_id"]
            assert o["customer_email"] == c["email"] and o["created_at"] >= c["created_at"]


def test_a_handful_of_guest_orders_have_no_customer_id(store):
    guests = [o for o in store.orders if o["customer_is_guest"] == 1]
    assert 5 <= len(guests) <= 12
    assert all("customer_id" not in o and o["customer_email"] for o in guests)
    assert all("customer_id" in o for o in store.orders if o["customer_is_guest"] == 0)
