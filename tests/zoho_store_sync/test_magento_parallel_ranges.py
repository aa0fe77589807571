"""A full pass read in parallel id ranges: the same rows as one keyset read, none lost or repeated while rows change."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from sandboxes.magento import MagentoSandbox
from sandboxes.seed import StoreData, generate_store
from tests.conftest import connection_env
from zoho_store_sync.config import MagentoOptions
from zoho_store_sync.errors import SourceIncompleteError
from zoho_store_sync.hooks.magento import MagentoHook
from zoho_store_sync.sources.magento import extract
from zoho_store_sync.sources.magento.extraction import CUSTOMER_FIELDS, ORDER_FIELDS
from zoho_store_sync.sources.magento.ranges import IdRange, KeysetRead, range_count, ranges_from_cuts, read_all

CONN = "magento_ranges_test"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
N = 1_500
PAGE = 25  # 60 customer pages: 8 ranges of 7-8 pages at parallelism 4
OPTIONS = MagentoOptions(page_size=PAGE)
EDITS = 150  # store edits during the pass, one per request: about 2 of every 3 pages of it


@pytest.fixture(scope="module")
def seeded() -> StoreData:
    return generate_store(N, seed=23)


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


def customer_searches(sandbox: MagentoSandbox, since: int = 0) -> list[dict]:
    """The customer searches the store answered, from its call number ``since`` on."""
    return [c for c in sandbox.calls()[since:] if c["path"].endswith("/customers/search")]


def has_ceiling(call: dict) -> bool:
    return any(value == "lteq" for key, value in call["query"].items() if key.endswith("[condition_type]"))


def read_customers_and_orders(hook: MagentoHook, sandbox: MagentoSandbox, parallelism: int) -> tuple[list, list]:
    customers_total, orders_total = sandbox.state()["customers"], sandbox.state()["orders"]
    (customers, customers_report), (orders, orders_report) = read_all(
        hook,
        [
            KeysetRead("customers/search", (), CUSTOMER_FIELDS, PAGE, "id", customers_total),
            KeysetRead("orders", (), ORDER_FIELDS, PAGE, "entity_id", orders_total),
        ],
        parallelism,
    )
    assert customers_report.complete and orders_report.complete
    return customers, orders


# ---- cutting the id line ----------------------------------------------------------------------------------


def test_cut_points_make_ranges_that_cover_the_whole_id_line_without_overlap():
    ranges = ranges_from_cuts([(99, 100), (199, 230), (299, 301)], total=400)
    assert ranges == [
        IdRange(None, 100, 100),
        IdRange(100, 230, 100),
        IdRange(230, 301, 100),
        IdRange(301, None, 100),  # no ceiling: rows inserted above 301 while paging are read here
    ]


def test_a_cut_point_the_store_no_longer_had_merges_its_two_ranges():
    ranges = ranges_from_cuts([(99, 100), (199, None), (299, 301)], total=400)
    assert ranges == [IdRange(None, 100, 100), IdRange(100, 301, 200), IdRange(301, None, 100)]


def test_cut_points_out_of_order_or_repeated_are_dropped_and_every_range_expects_its_ceiling_row():
    # Rows deleted between the cut-point calls moved the later offsets onto ids already used.
    ranges = ranges_from_cuts([(99, 100), (199, 100), (299, 90)], total=300)
    assert ranges == [IdRange(None, 90, 300), IdRange(90, None, 0)]


def test_small_searches_and_a_parallelism_of_one_are_read_as_one_keyset_read():
    assert range_count(total=9_000, page_size=300, parallelism=8) == 1  # 30 pages: seconds, one page at a time
    assert range_count(total=9_600, page_size=300, parallelism=8) == 8  # 32 pages: 8 ranges of 4
    assert range_count(total=1_000_000, page_size=300, parallelism=1) == 1
    assert range_count(total=1_000_000, page_size=300, parallelism=8) == 16


# ---- a parallel pass against the store --------------------------------------------------------------------


def test_a_parallel_full_pass_returns_exactly_what_a_sequential_one_does(monkeypatch, seeded):
    with MagentoSandbox(seeded) as sb:
        hook = hook_for(monkeypatch, sb)
        sequential = extract(hook, OPTIONS, None, parallelism=1, now=T0)
        assert not any(has_ceiling(c) for c in customer_searches(sb))
        since = len(sb.calls())
        parallel = extract(hook, OPTIONS, None, parallelism=4, now=T0)
        ranged = [c for c in customer_searches(sb, since) if has_ceiling(c)]
    assert len(ranged) >= 7 * 7  # the customers were read in (at least 7) bounded ranges
    assert parallel.incomplete_reason is None and parallel.all_customer_keys == sequential.all_customer_keys
    assert parallel.customers.equals(sequential.customers)
    assert parallel.cursor == sequential.cursor


def test_rows_inserted_updated_and_deleted_during_a_parallel_pass_are_neither_lost_nor_repeated(monkeypatch, seeded):
    with MagentoSandbox(seeded) as sb:
        hook = hook_for(monkeypatch, sb)
        before = {c["id"] for c in sb.customers()}
        orders_before = {o["entity_id"] for o in sb.orders()}
        rng = random.Random(3)
        lock = threading.Lock()
        deleted: set[int] = set()
        updated: set[int] = set()
        inserted_while_top_range_paged: set[int] = set()
        inserted: set[int] = set()
        new_orders: set[int] = set()

        def admin_edits(request: dict) -> None:
            """Every search page: an admin deletes, edits and registers customers, and customers order."""
            if request["method"] != "GET" or len(new_orders) >= EDITS:
                return  # the edits stop, so the top ranges can reach their empty page
            query = request["query"]
            top_range = request["path"].endswith("/customers/search") and not any(
                v == "lteq" for k, v in query.items() if k.endswith("[condition_type]")
            )
            keyset = any(v == "gt" for k, v in query.items() if k.endswith("[condition_type]"))
            with lock:
                alive = sorted(before - deleted)
                victim = rng.choice(alive)
                sb.delete_customer(victim)
                deleted.add(victim)
                edited = rng.choice(sorted(set(alive) - {victim}))
                sb.update_customer(edited, firstname=f"Edited {len(updated)}")
                updated.add(edited)
                new_id = sb.add_customer(f"new.{len(inserted)}@example.com")["id"]
                inserted.add(new_id)
                if top_range and keyset:  # the top range is still paging: a row above its keyset must be read
                    inserted_while_top_range_paged.add(new_id)
                new_orders.add(sb.add_order(edited, base_grand_total=10.0)["entity_id"])

        sb.on_request = admin_edits
        customers, orders = read_customers_and_orders(hook, sb, parallelism=4)
        sb.on_request = None
    ids = Counter(c["id"] for c in customers)
    assert ids and max(ids.values()) == 1, "a customer was read twice"
    assert before - deleted <= set(ids), "a customer present throughout the pass was lost"
    assert set(ids) <= before | inserted
    assert inserted_while_top_range_paged and inserted_while_top_range_paged <= set(ids)
    assert len(deleted) > 50 and deleted & set(ids) and updated & set(ids)  # the edits really ran during the pass
    order_ids = Counter(o["entity_id"] for o in orders)
    assert max(order_ids.values()) == 1, "an order was read twice"
    assert orders_before <= set(order_ids)  # orders are never deleted: every one present at the start is read
    assert set(order_ids) <= orders_before | new_orders


def test_an_empty_first_page_of_a_range_is_read_again_not_taken_for_an_empty_range(monkeypatch, seeded):
    with MagentoSandbox(seeded) as sb:
        hook = hook_for(monkeypatch, sb)
        everything = extract(hook, OPTIONS, None, parallelism=4)
        since = len(sb.calls())
        extract(hook, OPTIONS, None, parallelism=4)
        # the count probe and the cut-point calls (pages of one row) come first: the next customers search opens a range
        before_ranges = sum(1 for c in customer_searches(sb, since) if c["query"]["searchCriteria[pageSize]"] == "1")
        sb.inject_fault("empty_page", path="customers", after_pages=before_ranges, times=1)
        again = extract(hook, OPTIONS, None, parallelism=4)
        faulted = sb.applied_faults()
    assert len(faulted) == 1 and faulted[0]["total_count"] > 0  # a range's first page answered empty
    assert again.incomplete_reason is None
    assert again.all_customer_keys == everything.all_customer_keys
    assert again.customers.equals(everything.customers)


def test_a_range_that_keeps_failing_fails_the_whole_pass_and_nothing_partial_is_returned(monkeypatch, seeded):
    with MagentoSandbox(seeded) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("empty_page", path="customers", after_pages=15, times=None)
        with pytest.raises(SourceIncompleteError, match="customers/search is incomplete"):
            extract(hook, OPTIONS, None, parallelism=4)
        sb.clear_faults()
        sb.inject_fault("empty_page", path="orders", after_pages=20, times=None)
        with pytest.raises(SourceIncompleteError, match="orders is incomplete"):
            extract(hook, OPTIONS, None, parallelism=4)
        assert sb.applied_faults()


def test_a_range_that_fails_stops_the_other_ranges_instead_of_reading_on(monkeypatch, seeded):
    with MagentoSandbox(seeded) as sb:
        hook = hook_for(monkeypatch, sb)
        extract(hook, OPTIONS, None, parallelism=4)
        whole_pass = len(sb.calls())
        # the orders ranges (the largest) are read first: one fails on its second page
        sb.inject_fault("empty_page", path="orders", after_pages=10, times=None)
        with pytest.raises(SourceIncompleteError, match="orders is incomplete"):
            extract(hook, OPTIONS, None, parallelism=4)
        failed_pass = len(sb.calls()) - whole_pass
    assert failed_pass < whole_pass / 3  # the customers ranges waiting their turn never started
