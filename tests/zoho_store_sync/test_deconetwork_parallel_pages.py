"""DecoNetwork order pages read several at a time: taken only when provably whole, else read again one at a time."""

from __future__ import annotations

from collections import Counter

import pytest

from sandboxes.deconetwork import DecoNetworkSandbox, DecoStoreData, generate_deconetwork_store
from tests.conftest import connection_env
from zoho_store_sync.hooks import deconetwork as hook_module
from zoho_store_sync.hooks.deconetwork import DecoNetworkHook
from zoho_store_sync.sources.deconetwork.extraction import ALL_ORDERS_SINCE
from zoho_store_sync.sources.deconetwork.hook import FIELD_DATE_MODIFIED, GREATER_OR_EQUAL, LESS_OR_EQUAL

CONN = "deconetwork_parallel_test"
ALL = [(FIELD_DATE_MODIFIED, GREATER_OR_EQUAL, ALL_ORDERS_SINCE, None, None)]


@pytest.fixture(scope="module")
def data() -> DecoStoreData:
    return generate_deconetwork_store(1_200, seed=9)  # about 1,000 orders: 10 pages of 100


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(hook_module, "_sleep", lambda seconds: None)

    def connect(sb: DecoNetworkSandbox) -> DecoNetworkHook:
        monkeypatch.setenv(
            *connection_env(CONN, conn_type="http", host=sb.url, login=sb.username, password=sb.password)
        )
        return DecoNetworkHook(CONN)

    return connect


def order_ids(pages) -> list[str]:
    return [str(o["order_id"]) for page in pages for o in page]


def test_pages_read_at_once_give_the_same_orders_in_the_same_order_as_one_at_a_time(hook, data):
    with DecoNetworkSandbox(data) as sb:
        deco = hook(sb)
        one_at_a_time = order_ids(deco.find_orders(ALL))
        calls = deco.calls
        at_once = order_ids(deco.find_orders(ALL, parallelism=4))
        assert deco.calls - calls == calls  # the same pages, none read twice
    assert len(one_at_a_time) > 500 and at_once == one_at_a_time


def test_an_order_leaving_the_search_while_pages_are_read_at_once_loses_nothing_that_stayed(hook, data):
    with DecoNetworkSandbox(data) as sb:
        deco = hook(sb)
        until_now = [(FIELD_DATE_MODIFIED, LESS_OR_EQUAL, sb.now(), None, None)]  # every order, until one is modified
        first_order = min(o["order_id"] for o in sb.orders())
        searches = []

        def shop_works(request: dict) -> None:
            searches.append(request["path"])
            if len(searches) == 2:  # the first page was read; the pages after it are about to be, all at once
                sb.advance_clock(60)
                sb.modify_order(first_order, order_status=3)  # modified now: out of `<= then`, every offset moves

        sb.on_request = shop_works
        read = Counter(order_ids(deco.find_orders(until_now, parallelism=4)))
        sb.on_request = None
        stayed = {str(o["order_id"]) for o in sb.orders()} - {str(first_order)}
    assert max(read.values()) == 1
    assert stayed <= set(read), f"lost: {sorted(stayed - set(read))[:5]}"
