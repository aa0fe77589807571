"""The Magento sandbox's id-range fast path (``pk <= ceiling`` then ``pk > keyset``) answers as a plain scan does."""

from __future__ import annotations

import pytest

from sandboxes.magento import MagentoSandbox
from sandboxes.seed import generate_store
from tests.sandboxes.test_magento_sandbox import criteria, keyset_pages, search

ORDERS_PATH = "/rest/V1/orders"
CUSTOMERS_PATH = "/rest/V1/customers/search"


@pytest.fixture(scope="module")
def store():
    return generate_store(3000, seed=3)


@pytest.fixture
def twins(store):
    """The same store twice: the second with indexes, keyset bisection and id ranges off (plain scans)."""
    with MagentoSandbox(store) as fast, MagentoSandbox(store) as plain:
        plain._fast_paths = False
        yield fast, plain


def range_pass(twins, groups: list, pk: str, path: str, page_size: int) -> list[int]:
    """Both twins paged by keyset in step, every page compared; the ids read."""
    read: list[int] = []
    for fast, plain in zip(*(keyset_pages(sb, groups, pk, path, page_size) for sb in twins)):
        assert fast == plain
        read += [item[pk] for item in fast["items"]]
    return read


@pytest.mark.parametrize("condition", ["lteq", "lt", "to"])
@pytest.mark.parametrize("page_size", [300, 37])
def test_a_customer_id_range_answers_every_keyset_page_as_a_plain_scan(twins, store, condition, page_size):
    groups = [[("website_id", "1,2", "in")], [("id", "1700", condition)]]
    read = range_pass(twins, groups, "id", CUSTOMERS_PATH, page_size)
    below = [c["id"] for c in store.customers if c["id"] < 1700 or c["id"] == 1700 and condition != "lt"]
    assert read == below


def test_an_order_id_range_with_a_floor_answers_every_page_as_a_plain_scan(twins):
    first = search(
        twins[0],
        criteria(
            [("entity_id", "900", "gt")],
            [("entity_id", "2000", "lteq")],
            sort=[("entity_id", "ASC")],
            page_size=50,
            current_page=1,
        ),
        path=ORDERS_PATH,
    )
    plain = search(
        twins[1],
        criteria(
            [("entity_id", "900", "gt")],
            [("entity_id", "2000", "lteq")],
            sort=[("entity_id", "ASC")],
            page_size=50,
            current_page=1,
        ),
        path=ORDERS_PATH,
    )
    assert first.json() == plain.json() and first.json()["total_count"] == 1100
    read = range_pass(twins, [[("entity_id", "2000", "lteq")]], "entity_id", ORDERS_PATH, 211)
    assert read == list(range(1, 2001))


def test_a_range_whose_ceiling_is_below_the_keyset_is_empty_with_a_total_of_zero(twins):
    answers = [
        search(sb, criteria([("id", "100", "lteq")], [("id", "150", "gt")], sort=[("id", "ASC")], page_size=10))
        for sb in twins
    ]
    assert answers[0].json() == answers[1].json() and answers[0].json()["total_count"] == 0
