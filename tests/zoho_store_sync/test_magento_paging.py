"""Every paging hazard of Magento's searchCriteria, and its errors and backoff, against the sandbox."""

from __future__ import annotations

from collections import Counter

import pytest
import requests

from sandboxes.magento import MagentoSandbox
from sandboxes.seed import generate_store
from tests.conftest import connection_env
from zoho_store_sync.errors import SourceIncompleteError
from zoho_store_sync.hooks.magento import MagentoError, MagentoHook, format_magento_message

CONN = "magento_paging_test"
N = 120


@pytest.fixture(scope="module")
def data():
    return generate_store(N, seed=5)


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
    hook.delays = []  # type: ignore[attr-defined]
    hook.sleep = hook.delays.append  # type: ignore[attr-defined]  # record backoff instead of waiting
    return hook


def read_ids(hook: MagentoHook, page_size: int = 300, **kwargs) -> list[int]:
    return [
        c["id"]
        for page in hook.search(
            "customers/search", page_size=page_size, fields="items[id,updated_at],total_count", **kwargs
        )
        for c in page
    ]


def searches(sandbox: MagentoSandbox) -> list[dict]:
    return [c for c in sandbox.calls() if c["path"].endswith("/customers/search")]


# ---- input limits -----------------------------------------------------------------------------------------


def test_without_page_size_input_limits_silently_return_20_rows(data):
    with MagentoSandbox(data, input_limit_enabled=True) as sb:
        body = requests.get(
            sb.url + "/rest/V1/customers/search",
            params={"searchCriteria": ""},
            headers={"Authorization": f"Bearer {sb.integration_token}"},
            timeout=10,
        ).json()
    assert len(body["items"]) == 20 and body["total_count"] == N  # the hazard the hook avoids


def test_page_size_is_always_sent_so_the_default_of_20_never_truncates(monkeypatch, data):
    with MagentoSandbox(data, input_limit_enabled=True) as sb:
        assert read_ids(hook_for(monkeypatch, sb)) == list(range(1, N + 1))
        assert all(c["query"]["searchCriteria[pageSize]"] == "300" for c in searches(sb))


def test_page_size_above_the_stores_maximum_is_lowered_to_it(monkeypatch, data):
    with MagentoSandbox(data, input_limit_enabled=True, max_page_size=50) as sb:
        assert read_ids(hook_for(monkeypatch, sb)) == list(range(1, N + 1))
        sizes = [(c["query"]["searchCriteria[pageSize]"], c["status"]) for c in searches(sb)]
    assert sizes == [("300", 400), ("50", 200), ("50", 200), ("50", 200)]


# ---- the legacy last-page repeat --------------------------------------------------------------------------


def test_legacy_last_page_repeat_neither_repeats_nor_loses_rows(monkeypatch, data):
    with MagentoSandbox(data, legacy_last_page_repeat=True) as sb:
        headers = {"Authorization": f"Bearer {sb.integration_token}"}
        past_end = requests.get(
            sb.url + "/rest/V1/customers/search",
            headers=headers,
            timeout=10,
            params={"searchCriteria[pageSize]": 50, "searchCriteria[currentPage]": 9},
        ).json()
        assert [c["id"] for c in past_end["items"]] == list(range(101, N + 1))  # <= 2.3: the last page again
        ids = read_ids(hook_for(monkeypatch, sb), page_size=50)
        assert ids == list(range(1, N + 1))
        assert len(searches(sb)) == 1 + 3  # the probe above, then exactly ceil(120 / 50) pages: stopped on total_count


# ---- rows changing while paging ---------------------------------------------------------------------------


def test_rows_inserted_deleted_and_updated_while_paging_are_neither_lost_nor_repeated(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        added: list[int] = []

        def admin_edits(request: dict) -> None:
            if not request["path"].endswith("/customers/search"):
                return
            page = len(searches(sb))  # calls already answered
            if page == 1:  # after the first page (ids 1..20) was read
                sb.delete_customer(5)  # behind: page numbers would now skip a row
                sb.delete_customer(90)  # ahead: must simply not appear
                sb.advance_clock(60)
                sb.update_customer(10, firstname="Behind")  # behind: read once, in its old version
                sb.update_customer(70, firstname="Ahead")  # ahead: read once, in its new version
                added.append(sb.add_customer("new.during.paging@example.com")["id"])
            if page == 3:
                sb.delete_customer(2)

        sb.on_request = admin_edits
        rows = [c for page in hook_for(monkeypatch, sb).search("customers/search", page_size=20) for c in page]
    ids = [c["id"] for c in rows]
    names = {c["id"]: c["firstname"] for c in rows}
    assert names[70] == "Ahead" and names[10] != "Behind"  # the next incremental run reads 10 again
    counts = Counter(ids)
    assert max(counts.values()) == 1  # nothing read twice
    present_throughout = set(range(1, N + 1)) - {5, 90, 2}
    assert present_throughout <= set(ids)  # nothing that stayed was lost
    assert 90 not in ids and added[0] in ids  # deleted ahead: gone; inserted at the end: read
    assert 5 in ids and 2 in ids  # deleted behind: already read before they went


def test_page_numbers_would_lose_a_row_when_one_is_deleted_behind(data):
    # Why the hook pages by keyset: the same edit under currentPage paging skips a row.
    with MagentoSandbox(data) as sb:
        headers = {"Authorization": f"Bearer {sb.integration_token}"}

        def page(n: int) -> list[int]:
            body = requests.get(
                sb.url + "/rest/V1/customers/search",
                headers=headers,
                timeout=10,
                params={
                    "searchCriteria[pageSize]": 20,
                    "searchCriteria[currentPage]": n,
                    "searchCriteria[sortOrders][0][field]": "id",
                    "searchCriteria[sortOrders][0][direction]": "ASC",
                },
            )
            return [c["id"] for c in body.json()["items"]]

        first = page(1)
        sb.delete_customer(5)
        second = page(2)
    assert first[-1] == 20 and second[0] == 22  # customer 21 was never read


# ---- partial answers: a 200 page that is not the whole truth (issue 12) --------------------------------------


def order_ids(hook: MagentoHook, page_size: int = 20) -> list[int]:
    return [
        o["entity_id"]
        for page in hook.search(
            "orders", page_size=page_size, id_field="entity_id", fields="items[entity_id],total_count"
        )
        for o in page
    ]


def test_an_empty_page_mid_paging_is_retried_then_fails_naming_the_store_the_endpoint_and_the_rows_read(
    monkeypatch, data
):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("empty_page", path="customers", after_pages=2, times=None)
        with pytest.raises(SourceIncompleteError) as error:
            read_ids(hook, page_size=20)
        faulted = sb.applied_faults()
    message = str(error.value)
    assert sb.url in message and "customers/search" in message
    assert "40 of the 120 rows" in message and "What to do" in message
    assert len(faulted) == 1 + hook.page_retries and len(hook.delays) == hook.page_retries  # type: ignore[attr-defined]


def test_a_transient_empty_page_is_retried_and_every_row_is_read_exactly_once(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("empty_page", path="customers", after_pages=2, times=1)
        ids = read_ids(hook, page_size=20)
        assert len(sb.applied_faults()) == 1
    assert ids == list(range(1, N + 1))
    assert len(hook.delays) == 1  # type: ignore[attr-defined]


def test_an_empty_orders_page_mid_paging_fails_the_read(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("empty_page", path="orders", after_pages=1, times=None)
        with pytest.raises(SourceIncompleteError, match=r"orders.* 20 of the \d+ rows"):
            order_ids(hook)


def test_a_short_page_is_retried_then_fails_and_a_transient_one_loses_nothing(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        everything = order_ids(hook)
        sb.inject_fault("short_page", path="orders", after_pages=1, times=1)
        assert order_ids(hook) == everything
        sb.inject_fault("short_page", path="orders", after_pages=1, times=None)
        with pytest.raises(SourceIncompleteError, match="short page"):
            order_ids(hook)


def test_a_full_last_page_that_claims_to_be_the_end_is_confirmed_by_one_more_page(monkeypatch, data):
    # total_count moved down to exactly the page's rows: the old loop stopped there and lost 100 customers.
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("total_drift", path="customers", drift=-100)
        assert read_ids(hook, page_size=20) == list(range(1, N + 1))


def test_the_hook_re_exports_the_incomplete_read_error():
    from zoho_store_sync.hooks import magento

    assert magento.SourceIncompleteError is SourceIncompleteError


# ---- backoff and errors -----------------------------------------------------------------------------------


def test_429_and_503_are_retried_after_the_stores_retry_after(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("429")
        sb.inject_fault("503")
        assert read_ids(hook) == list(range(1, N + 1))
        assert [c["status"] for c in searches(sb)] == [429, 503, 200]
    assert hook.delays == [1.0, 1.0]  # type: ignore[attr-defined]


def test_a_dropped_connection_is_retried_with_growing_backoff(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        sb.inject_fault("drop", times=2)
        assert read_ids(hook) == list(range(1, N + 1))
    first, second = hook.delays  # type: ignore[attr-defined]
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


def test_a_429_storm_gives_up_after_max_retries_with_the_status(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        hook.max_retries = 2
        sb.inject_fault("429", times=5)
        with pytest.raises(MagentoError) as error:
            read_ids(hook)
    assert error.value.status == 429 and "Too Many Requests" in str(error.value)
    assert len(hook.delays) == 2  # type: ignore[attr-defined]


def test_error_messages_fill_positional_and_named_parameters():
    assert format_magento_message(
        {"message": "Invalid product data: %1", "parameters": ["Invalid attribute set entity type"]}
    ) == ("Invalid product data: Invalid attribute set entity type")
    assert format_magento_message({"message": "%1 of %10 (%2)", "parameters": list("abcdefghij")}) == "a of j (b)"
    assert format_magento_message(
        {
            "message": "The consumer isn't authorized to access %resources.",
            "parameters": {"resources": "Magento_Customer::customer"},
        }
    ) == ("The consumer isn't authorized to access Magento_Customer::customer.")
    assert format_magento_message(
        {
            "message": "No such entity with %fieldName = %fieldValue",
            "parameters": {"fieldName": "customerId", "fieldValue": 7},
        }
    ) == ("No such entity with customerId = 7")
    assert format_magento_message("<html>oops</html>") == "<html>oops</html>"


def test_magento_errors_from_the_store_read_with_their_placeholders_filled(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = hook_for(monkeypatch, sb)
        with pytest.raises(MagentoError) as positional:
            read_ids(hook, filter_groups=[[("no_such_field", "1", "eq")]])
        with pytest.raises(MagentoError) as named:
            hook.get("customers/99999")
    assert positional.value.status == 400 and str(positional.value).endswith("Invalid attribute name: no_such_field")
    assert named.value.status == 404 and str(named.value).endswith("No such entity with customerId = 99999")
