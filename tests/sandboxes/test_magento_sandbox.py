"""The Magento 2.4 REST sandbox, exercised over real HTTP with requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from sandboxes.magento import MagentoError as SandboxMagentoError, MagentoSandbox
from sandboxes.seed import generate_store

REPO = Path(__file__).resolve().parents[2]
INTEGRATION = {"Authorization": "Bearer sandbox-integration-token-0123456789"}
ADMIN = {"username": "sync-admin", "password": "sandbox-admin-password-123"}


def criteria(*groups: list[tuple], sort: list[tuple] = (), page_size: int | None = None,
             current_page: int | None = None, **extra: str) -> dict:
    """searchCriteria query params: groups of (field, value[, condition_type]) filters."""
    q: dict = {}
    for g, filters in enumerate(groups):
        for f, (fld, value, *cond) in enumerate(filters):
            base = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            q[f"{base}[field]"] = fld
            q[f"{base}[value]"] = value
            if cond:
                q[f"{base}[condition_type]"] = cond[0]
    for i, (fld, direction) in enumerate(sort):
        q[f"searchCriteria[sortOrders][{i}][field]"] = fld
        if direction:
            q[f"searchCriteria[sortOrders][{i}][direction]"] = direction
    if page_size is not None:
        q["searchCriteria[pageSize]"] = page_size
    if current_page is not None:
        q["searchCriteria[currentPage]"] = current_page
    if not any(k.startswith("searchCriteria") for k in q):
        q["searchCriteria"] = ""
    q.update(extra)
    return q


@pytest.fixture(scope="module")
def data():
    return generate_store(400, seed=7)


@pytest.fixture(scope="module")
def shared(data):
    """A read-only sandbox for tests that do not change anything."""
    with MagentoSandbox(data) as sb:
        yield sb


@pytest.fixture
def sandbox(data):
    """A private sandbox for tests that mutate state or change settings."""
    with MagentoSandbox(data) as sb:
        yield sb


def search(sb: MagentoSandbox, params: dict, *, path: str = "/rest/V1/customers/search",
           headers: dict = INTEGRATION) -> requests.Response:
    return requests.get(sb.url + path, params=params, headers=headers, timeout=10)


def ids(resp: requests.Response, key: str = "id") -> list[int]:
    assert resp.status_code == 200, resp.text
    return [item[key] for item in resp.json()["items"]]


# ---- authentication and ACL ---------------------------------------------------------------------------

def test_admin_token_is_a_json_string_that_authorizes_searches(shared):
    resp = requests.post(shared.url + "/rest/V1/integration/admin/token", json=ADMIN, timeout=10)
    assert resp.status_code == 200 and resp.text.startswith('"')
    token = resp.json()
    assert isinstance(token, str) and len(token) == 32
    r = search(shared, criteria(page_size=1), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["total_count"] == 400


def test_wrong_admin_password_is_refused_with_401_and_magentos_sign_in_message(shared):
    resp = requests.post(shared.url + "/rest/V1/integration/admin/token",
                         json={**ADMIN, "password": "nope"}, timeout=10)
    assert resp.status_code == 401
    assert resp.json() == {"message": "The account sign-in was incorrect or your account is disabled "
                                      "temporarily. Please wait and try again later."}


def test_missing_password_is_a_400_required_field(shared):
    resp = requests.post(shared.url + "/rest/V1/integration/admin/token", json={"username": "x"}, timeout=10)
    assert resp.status_code == 400
    assert resp.json() == {"message": '"%fieldName" is required. Enter and try again.',
                           "parameters": {"fieldName": "password"}}


def test_two_factor_auth_refuses_admin_tokens_with_400_and_active_providers(data):
    with MagentoSandbox(data, two_factor_auth=True) as sb:
        resp = requests.post(sb.url + "/rest/V1/integration/admin/token", json=ADMIN, timeout=10)
        assert resp.status_code == 400
        assert resp.json() == {"message": "Please use the 2fa provider-specific endpoints to obtain a token.",
                               "parameters": {"active_providers": ["google"]}}
        assert search(sb, criteria(page_size=1)).status_code == 200  # integration tokens still work


def test_admin_token_expires_after_four_hours_of_sandbox_clock(sandbox):
    token = requests.post(sandbox.url + "/rest/V1/integration/admin/token", json=ADMIN, timeout=10).json()
    auth = {"Authorization": f"Bearer {token}"}
    sandbox.advance_clock(4 * 3600 - 1)
    assert search(sandbox, criteria(page_size=1), headers=auth).status_code == 200
    sandbox.advance_clock(1)
    assert search(sandbox, criteria(page_size=1), headers=auth).status_code == 401


def test_integration_token_is_accepted_as_bearer_on_customers_and_orders(shared):
    assert search(shared, criteria(page_size=1)).status_code == 200
    assert search(shared, criteria(page_size=1), path="/rest/V1/orders").status_code == 200


@pytest.mark.parametrize("path, resource", [("/rest/V1/customers/search", "Magento_Customer::customer"),
                                            ("/rest/default/V1/orders", "Magento_Sales::actions_view")])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eA=="}])
def test_missing_or_unknown_token_gets_401_naming_the_acl_resource(shared, path, resource, headers):
    resp = search(shared, criteria(page_size=1), path=path, headers=headers)
    assert resp.status_code == 401
    assert resp.json() == {"message": "The consumer isn't authorized to access %resources.",
                           "parameters": {"resources": resource}}


# ---- OAuth 1.0a integrations (signed by hand here, independently of the sync's hook) -------------------------

def _enc(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="~")


def oauth_header(sb: MagentoSandbox, method: str, url: str, *, nonce: str | None = None, timestamp: int | None = None,
                 signature_method: str = "HMAC-SHA256", consumer_secret: str | None = None, **overrides: str) -> str:
    """RFC 5849 by the book: sorted encoded pairs of query + protocol params, HMAC keyed by both secrets."""
    import base64
    import hashlib
    import hmac
    import uuid
    from urllib.parse import unquote, urlsplit

    oauth = {"oauth_consumer_key": sb.consumer_key, "oauth_token": sb.integration_token,
             "oauth_signature_method": signature_method, "oauth_timestamp": str(timestamp or int(time.time())),
             "oauth_nonce": nonce or uuid.uuid4().hex, "oauth_version": "1.0", **overrides}
    parts = urlsplit(url)
    query = [tuple(unquote(x) for x in p.split("=", 1)) for p in parts.query.split("&") if p]
    pairs = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in [*query, *oauth.items()]))
    base = "&".join([method, _enc(f"{parts.scheme}://{parts.netloc}{parts.path}"), _enc(pairs)])
    key = f"{_enc(consumer_secret or sb.consumer_secret)}&{_enc(sb.access_token_secret)}".encode()
    digest = hashlib.sha256 if signature_method == "HMAC-SHA256" else hashlib.sha1
    oauth["oauth_signature"] = base64.b64encode(hmac.new(key, base.encode(), digest).digest()).decode()
    return "OAuth " + ", ".join(f'{_enc(k)}="{_enc(v)}"' for k, v in oauth.items())


@pytest.fixture(scope="module")
def oauth_only(data):
    """A 2.4.4+ store: integration tokens are not accepted as standalone Bearer tokens."""
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        yield sb


SIGNED_URL = "/rest/V1/customers/search?searchCriteria%5BpageSize%5D=2&searchCriteria%5Bfilter_groups%5D%5B0%5D" \
             "%5Bfilters%5D%5B0%5D%5Bfield%5D=updated_at&searchCriteria%5Bfilter_groups%5D%5B0%5D%5Bfilters%5D%5B0%5D" \
             "%5Bvalue%5D=2024-01-01%2000%3A00%3A00&searchCriteria%5Bfilter_groups%5D%5B0%5D%5Bfilters%5D%5B0%5D" \
             "%5Bcondition_type%5D=gteq"


@pytest.mark.parametrize("signature_method", ["HMAC-SHA256", "HMAC-SHA1"])
def test_oauth1_signed_request_is_verified_and_accepted(oauth_only, signature_method):
    url = oauth_only.url + SIGNED_URL
    resp = requests.get(url, headers={"Authorization": oauth_header(oauth_only, "GET", url,
                                                                      signature_method=signature_method)}, timeout=10)
    assert resp.status_code == 200 and len(resp.json()["items"]) == 2


def test_bearer_integration_token_is_refused_when_bearer_use_is_off_but_admin_tokens_still_work(oauth_only):
    resp = search(oauth_only, criteria(page_size=1))
    assert resp.status_code == 401 and resp.json()["parameters"] == {"resources": "Magento_Customer::customer"}
    token = requests.post(oauth_only.url + "/rest/V1/integration/admin/token", json=ADMIN, timeout=10).json()
    assert search(oauth_only, criteria(page_size=1), headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("tamper", ["query", "path", "added_param", "wrong_secret"])
def test_tampered_oauth1_request_is_refused_with_the_invalid_signature_message(oauth_only, tamper):
    url = oauth_only.url + SIGNED_URL
    header = oauth_header(oauth_only, "GET", url, consumer_secret="guess" if tamper == "wrong_secret" else None)
    sent = {"query": url.replace("pageSize%5D=2", "pageSize%5D=200"),
            "path": url.replace("/rest/V1/", "/rest/default/V1/"),
            "added_param": url + "&fields=items%5Bid%5D", "wrong_secret": url}[tamper]
    resp = requests.get(sent, headers={"Authorization": header}, timeout=10)
    assert resp.status_code == 401
    assert resp.json() == {"message": "The signature is invalid. Verify and try again."}


def test_plus_in_a_signed_query_is_a_literal_plus_like_magentos_rawurldecode(oauth_only):
    # The client signs "2024-01-01 00:00:00" but sends "+": Magento verifies against a literal "+" and refuses.
    url = oauth_only.url + SIGNED_URL
    header = oauth_header(oauth_only, "GET", url)
    resp = requests.get(url.replace("%2000", "+00"), headers={"Authorization": header}, timeout=10)
    assert resp.status_code == 401 and resp.json()["message"].startswith("The signature is invalid")


def test_replayed_oauth1_nonce_is_refused(oauth_only):
    url = oauth_only.url + SIGNED_URL
    header = oauth_header(oauth_only, "GET", url, nonce="once-only-nonce")
    assert requests.get(url, headers={"Authorization": header}, timeout=10).status_code == 200
    replay = requests.get(url, headers={"Authorization": header}, timeout=10)
    assert replay.status_code == 401
    assert replay.json() == {"message": "The nonce is already being used by the consumer with ID %1", "parameters": [1]}


@pytest.mark.parametrize("change, status, message", [
    ({"timestamp": int(time.time()) + 3600}, 400, "Incorrect timestamp value in the oauth_timestamp parameter"),
    ({"oauth_consumer_key": "someone-else"}, 401, "A consumer having the specified key does not exist"),
    ({"oauth_token": "revoked-token"}, 401, "Specified token does not exist"),
    ({"signature_method": "PLAINTEXT"}, 400, "Signature method %1 is not supported"),
    ({"oauth_version": "2.0"}, 400, "The \"%1\" Oauth version isn't supported."),
])
def test_oauth1_protocol_errors_are_refused_like_magento(oauth_only, change, status, message):
    url = oauth_only.url + SIGNED_URL
    resp = requests.get(url, headers={"Authorization": oauth_header(oauth_only, "GET", url, **change)}, timeout=10)
    assert resp.status_code == status and resp.json()["message"] == message


def test_oauth1_request_without_a_nonce_is_400_required(oauth_only):
    url = oauth_only.url + SIGNED_URL
    header = oauth_header(oauth_only, "GET", url).replace("oauth_nonce=", "oauth_nonsense=")
    resp = requests.get(url, headers={"Authorization": header}, timeout=10)
    assert resp.status_code == 400 and resp.json()["parameters"] == {"fieldName": "oauth_nonce"}


def test_integration_resources_limit_what_the_integration_may_read(data):
    with MagentoSandbox(data, integration_resources={"Magento_Customer::customer"}) as sb:
        assert search(sb, criteria(page_size=1)).status_code == 200
        orders = search(sb, criteria(page_size=1), path="/rest/V1/orders")
        assert orders.status_code == 401 and orders.json()["parameters"] == {"resources": "Magento_Sales::actions_view"}
        url = sb.url + "/rest/V1/orders?searchCriteria%5BpageSize%5D=1"
        signed = requests.get(url, headers={"Authorization": oauth_header(sb, "GET", url)}, timeout=10)
        assert signed.status_code == 401  # the same integration, signed: the same ACL


# ---- routes and store codes -----------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("GET", "/rest/V1/nothing"), ("POST", "/rest/V1/customers/search"),
                                          ("GET", "/rest/V1/integration/admin/token"), ("GET", "/rest/V2/orders")])
def test_unknown_route_or_wrong_method_is_404_request_does_not_match_any_route(shared, method, path):
    resp = requests.request(method, shared.url + path, headers=INTEGRATION, timeout=10)
    assert resp.status_code == 404
    assert resp.json() == {"message": "Request does not match any route."}


@pytest.mark.parametrize("prefix", ["/rest", "/rest/default", "/rest/eu", "/rest/all"])
def test_known_store_codes_are_accepted_and_do_not_filter_customers(shared, prefix):
    resp = search(shared, criteria(page_size=1), path=prefix + "/V1/customers/search")
    assert resp.json()["total_count"] == 400


def test_unknown_store_code_stays_in_the_route_and_so_404s(shared):
    # Magento's PathProcessor only strips known store codes; anything else becomes part of the route.
    resp = search(shared, criteria(page_size=1), path="/rest/nowhere/V1/customers/search")
    assert resp.status_code == 404 and resp.json()["message"] == "Request does not match any route."


def test_filtering_by_website_id_is_the_way_to_split_customers_by_store(shared, data):
    eu = search(shared, criteria([("website_id", "2")], page_size=500), path="/rest/eu/V1/customers/search")
    assert ids(eu) == [c["id"] for c in data.customers if c["website_id"] == 2]


def test_search_without_search_criteria_is_400_required(shared):
    resp = search(shared, {})
    assert resp.status_code == 400
    assert resp.json()["parameters"] == {"fieldName": "searchCriteria"}


def test_non_integer_page_size_is_400_invalid_type(shared):
    resp = search(shared, criteria(page_size="ten"))  # type: ignore[arg-type]
    assert resp.status_code == 400 and resp.json()["parameters"] == ["ten", "int"]


def test_store_views_list_default_and_eu(shared):
    views = requests.get(shared.url + "/rest/V1/store/storeViews", headers=INTEGRATION, timeout=10).json()
    assert {(v["code"], v["id"], v["website_id"]) for v in views} >= {("default", 1, 1), ("eu", 2, 2)}


# ---- filters --------------------------------------------------------------------------------------------

def test_filters_inside_one_group_are_ored(shared):
    resp = search(shared, criteria([("id", "3"), ("id", "5"), ("id", "7")]))
    assert ids(resp) == [3, 5, 7]


def test_filter_groups_are_anded(shared, data):
    resp = search(shared, criteria([("website_id", "2")], [("id", "100", "lteq")]))
    assert ids(resp) == [c["id"] for c in data.customers if c["website_id"] == 2 and c["id"] <= 100]


def test_camel_case_filter_groups_and_condition_type_spellings_are_accepted(shared):
    q = {"searchCriteria[filterGroups][0][filters][0][field]": "id",
         "searchCriteria[filterGroups][0][filters][0][value]": "395",
         "searchCriteria[filterGroups][0][filters][0][conditionType]": "gt"}
    assert ids(search(shared, q)) == [396, 397, 398, 399, 400]


def test_gteq_on_updated_at_returns_exactly_the_rows_changed_since(shared, data):
    since = sorted(c["updated_at"] for c in data.customers)[300]
    resp = search(shared, criteria([("updated_at", since, "gteq")], sort=[("updated_at", "ASC")], page_size=300))
    expected = sorted((c for c in data.customers if c["updated_at"] >= since), key=lambda c: (c["updated_at"], c["id"]))
    assert ids(resp) == [c["id"] for c in expected]
    assert resp.json()["total_count"] == len(expected)


def test_in_and_nin_take_comma_separated_lists(shared):
    assert ids(search(shared, criteria([("id", "9,2,4", "in")]))) == [2, 4, 9]
    assert 2 not in ids(search(shared, criteria([("id", "1,2,3", "nin")], page_size=5)))


def test_like_uses_percent_wildcards_and_ignores_case_like_mysql(shared, data):
    resp = search(shared, criteria([("email", "%EXAMPLE.ORG", "like")]))
    expected = [c["id"] for c in data.customers if c["email"].lower().endswith("example.org")]
    assert ids(resp) == expected and expected


def test_eq_on_email_ignores_case_like_mysql(shared, data):
    c = data.customers[10]
    assert c["id"] in ids(search(shared, criteria([("email", c["email"].upper())])))


def test_null_and_notnull_see_omitted_fields_as_null(shared, data):
    without_dob = ids(search(shared, criteria([("dob", "", "null")])))
    assert without_dob == [c["id"] for c in data.customers if "dob" not in c]
    assert len(ids(search(shared, criteria([("dob", "", "notnull")])))) == 400 - len(without_dob)


def test_from_and_to_in_separate_groups_make_a_range(shared):
    assert ids(search(shared, criteria([("id", "10", "from")], [("id", "12", "to")]))) == [10, 11, 12]


def test_neq_excludes_the_value(shared, data):
    resp = search(shared, criteria([("website_id", "1", "neq")], page_size=1))
    assert resp.json()["total_count"] == sum(1 for c in data.customers if c["website_id"] != 1)


def test_orders_filter_by_customer_id_and_exclude_canceled(shared, data):
    cid = next(o["customer_id"] for o in data.orders if "customer_id" in o)
    resp = search(shared, criteria([("customer_id", str(cid))], [("status", "canceled", "neq")]), path="/rest/V1/orders")
    expected = [o["entity_id"] for o in data.orders if o.get("customer_id") == cid and o["status"] != "canceled"]
    assert ids(resp, "entity_id") == expected


def test_unknown_customer_field_is_400_invalid_attribute_name(shared):
    resp = search(shared, criteria([("favourite_colour", "blue")]))
    assert resp.status_code == 400 and resp.json()["parameters"] == ["favourite_colour"]


# ---- sorting and paging ---------------------------------------------------------------------------------

def test_search_stops_being_sorted_differently_when_updated_at_ties_break_by_id(shared, data):
    seen: list[dict] = []
    for page in range(1, 100):
        resp = search(shared, criteria(sort=[("updated_at", "ASC")], page_size=7, current_page=page))
        seen += resp.json()["items"]
        if page * 7 >= resp.json()["total_count"]:
            break
    keys = [(c["updated_at"], c["id"]) for c in seen]
    assert keys == sorted(keys) and len({c["id"] for c in seen}) == 400
    assert len(keys) - len({k for k, _ in keys}) > 10  # there really were ties to break


def test_sort_direction_defaults_to_desc(shared):
    assert ids(search(shared, criteria(sort=[("id", None)], page_size=3))) == [400, 399, 398]


def test_without_sort_orders_rows_come_in_id_order(shared):
    assert ids(search(shared, criteria(page_size=4, current_page=2))) == [5, 6, 7, 8]


def test_pages_are_one_based_and_total_count_ignores_paging(shared):
    first = search(shared, criteria(page_size=150, current_page=1)).json()
    last = search(shared, criteria(page_size=150, current_page=3)).json()
    assert [c["id"] for c in first["items"]] == list(range(1, 151))
    assert [c["id"] for c in last["items"]] == list(range(301, 401))
    assert first["total_count"] == last["total_count"] == 400


def test_past_the_last_page_items_are_empty(shared):
    resp = search(shared, criteria(page_size=150, current_page=4)).json()
    assert resp["items"] == [] and resp["total_count"] == 400


def test_legacy_mode_repeats_the_last_page_past_the_end(data):
    with MagentoSandbox(data, legacy_last_page_repeat=True) as sb:
        last = ids(search(sb, criteria(page_size=150, current_page=3)))
        assert ids(search(sb, criteria(page_size=150, current_page=9))) == last


def test_without_page_size_every_match_is_returned_when_input_limits_are_off(shared):
    assert len(ids(search(shared, criteria()))) == 400


def test_input_limits_default_to_20_rows_and_refuse_page_sizes_above_300(data):
    with MagentoSandbox(data, input_limit_enabled=True) as sb:
        resp = search(sb, criteria()).json()
        assert len(resp["items"]) == 20 and resp["total_count"] == 400
        assert resp["search_criteria"]["page_size"] == 20
        assert len(ids(search(sb, criteria(page_size=300)))) == 300
        refused = search(sb, criteria(page_size=301))
        assert refused.status_code == 400
        assert refused.json() == {"message": "Maximum SearchCriteria pageSize is %max", "parameters": {"max": 300}}


def test_search_criteria_echo_has_page_size_and_current_page_only_when_set(shared):
    echo = search(shared, criteria([("id", "5", "gt")], sort=[("id", "ASC")], page_size=2)).json()["search_criteria"]
    assert echo == {"filter_groups": [{"filters": [{"field": "id", "value": "5", "condition_type": "gt"}]}],
                    "sort_orders": [{"field": "id", "direction": "ASC"}], "page_size": 2}
    bare = search(shared, criteria([("id", "5")])).json()["search_criteria"]
    assert bare == {"filter_groups": [{"filters": [{"field": "id", "value": "5", "condition_type": "eq"}]}]}


# ---- response shape -------------------------------------------------------------------------------------

def test_null_fields_are_omitted_never_sent_as_null(shared):
    resp = search(shared, criteria())
    assert "null" not in resp.text
    items = resp.json()["items"]
    assert any("dob" not in c for c in items) and any("default_billing" not in c for c in items)


def test_every_customer_carries_extension_attributes_is_subscribed(shared, data):
    items = search(shared, criteria()).json()["items"]
    assert [c["extension_attributes"]["is_subscribed"] for c in items] == \
        [c["extension_attributes"]["is_subscribed"] for c in data.customers]


def test_fields_parameter_trims_items_and_top_level_keys(shared):
    body = search(shared, criteria(page_size=2, fields="items[id,email,updated_at],total_count")).json()
    assert set(body) == {"items", "total_count"}
    assert all(set(item) == {"id", "email", "updated_at"} for item in body["items"])
    only_items = search(shared, criteria(page_size=1, fields="items[id,addresses[city]]")).json()
    assert set(only_items) == {"items"} and set(only_items["items"][0]) <= {"id", "addresses"}


def test_non_ascii_names_travel_as_json_unicode_escapes(shared, data):
    resp = search(shared, criteria(page_size=400))
    assert resp.content.isascii() and "\\u" in resp.text
    assert [c["lastname"] for c in resp.json()["items"]] == [c["lastname"] for c in data.customers]


def test_get_customer_by_id_and_missing_customer_is_404(shared):
    ok = requests.get(shared.url + "/rest/V1/customers/7", headers=INTEGRATION, timeout=10)
    assert ok.status_code == 200 and ok.json()["id"] == 7 and "is_subscribed" in ok.json()["extension_attributes"]
    missing = requests.get(shared.url + "/rest/V1/customers/99999", headers=INTEGRATION, timeout=10)
    assert missing.status_code == 404
    assert missing.json()["parameters"] == {"fieldName": "customerId", "fieldValue": 99999}


# ---- changes made through the sandbox ---------------------------------------------------------------------

def test_update_customer_bumps_updated_at_to_the_sandbox_clock(sandbox):
    now = sandbox.now()
    changed = sandbox.update_customer(12, firstname="Zoë", email="zoe@example.com")
    assert changed["updated_at"] == now and changed["firstname"] == "Zoë"
    found = search(sandbox, criteria([("updated_at", now, "gteq")])).json()["items"]
    assert [(c["id"], c["email"]) for c in found] == [(12, "zoe@example.com")]


def test_update_customer_address_replaces_default_address_fields(sandbox, data):
    cid = next(c["id"] for c in data.customers if c["addresses"])
    sandbox.update_customer(cid, address={"city": "Springfield", "telephone": "555-0100", "company": None})
    address = requests.get(f"{sandbox.url}/rest/V1/customers/{cid}", headers=INTEGRATION, timeout=10).json()
    default = next(a for a in address["addresses"] if str(a["id"]) == address["default_billing"])
    assert default["city"] == "Springfield" and default["telephone"] == "555-0100" and "company" not in default


def test_update_customer_without_address_creates_a_default_address(sandbox, data):
    cid = next(c["id"] for c in data.customers if not c["addresses"])
    changed = sandbox.update_customer(cid, address={"city": "Lyon", "country_id": "FR", "street": ["1 rue X"]})
    assert changed["default_billing"] == changed["default_shipping"] == str(changed["addresses"][0]["id"])


def test_set_subscribed_changes_the_flag_without_bumping_updated_at(sandbox, data):
    before = data.customers[20]
    sandbox.advance_clock(3600)
    sandbox.set_subscribed(21, not before["extension_attributes"]["is_subscribed"])
    after = requests.get(sandbox.url + "/rest/V1/customers/21", headers=INTEGRATION, timeout=10).json()
    assert after["extension_attributes"]["is_subscribed"] is not before["extension_attributes"]["is_subscribed"]
    assert after["updated_at"] == before["updated_at"]


def test_hard_delete_removes_the_customer_and_strips_customer_id_from_its_orders(sandbox, data):
    cid = next(o["customer_id"] for o in data.orders if "customer_id" in o)
    their = [o["entity_id"] for o in data.orders if o.get("customer_id") == cid]
    sandbox.delete_customer(cid)
    assert ids(search(sandbox, criteria([("id", str(cid))]))) == []
    orders = {o["entity_id"]: o for o in search(sandbox, criteria(), path="/rest/V1/orders").json()["items"]}
    assert all("customer_id" not in orders[e] and orders[e]["customer_email"] for e in their)
    assert search(sandbox, criteria([("customer_id", str(cid))]), path="/rest/V1/orders").json()["total_count"] == 0
    assert any(o["entity_id"] in their and o["customer_id"] == cid for o in data.orders)  # caller's data untouched


def test_rest_delete_endpoint_hard_deletes_too(sandbox):
    resp = requests.delete(sandbox.url + "/rest/V1/customers/5", headers=INTEGRATION, timeout=10)
    assert resp.status_code == 200 and resp.json() is True
    assert requests.delete(sandbox.url + "/rest/V1/customers/5", headers=INTEGRATION, timeout=10).status_code == 404


def test_add_order_for_an_eu_customer_charges_eur_with_base_grand_total_in_usd(sandbox, data):
    eu = next(c for c in data.customers if c["website_id"] == 2)
    order = sandbox.add_order(eu["id"], base_grand_total=100.0)
    assert order["order_currency_code"] == "EUR" and order["base_currency_code"] == "USD"
    assert order["grand_total"] == 92.0 and order["base_grand_total"] == 100.0
    assert order["customer_id"] == eu["id"] and order["created_at"] == sandbox.now()
    assert order["entity_id"] == len(data.orders) + 1 and order["increment_id"].startswith("2")


def test_guest_order_has_no_customer_id_key(sandbox):
    order = sandbox.add_order(None, base_grand_total=10.5, email="walk-in@example.com", status="pending")
    assert "customer_id" not in order and order["customer_is_guest"] == 1 and order["state"] == "new"


def test_http_control_endpoints_drive_the_same_helpers(sandbox):
    base = sandbox.url + "/__sandbox__"
    assert requests.get(base + "/state", timeout=10).json()["customers"] == 400
    assert requests.post(base + "/customers/3", json={"lastname": "Nguyễn"}, timeout=10).json()["lastname"] == "Nguyễn"
    requests.post(base + "/customers/3/subscription", json={"subscribed": True}, timeout=10).raise_for_status()
    assert sandbox.customers()[2]["extension_attributes"]["is_subscribed"] is True
    order = requests.post(base + "/orders", json={"customer_id": 3, "base_grand_total": 12.5}, timeout=10).json()
    assert order["customer_id"] == 3
    requests.delete(base + "/customers/3", timeout=10).raise_for_status()
    state = requests.get(base + "/state", timeout=10).json()
    assert state["customers"] == 399 and state["orders"] == len(sandbox.orders())
    assert requests.delete(base + "/customers/3", timeout=10).status_code == 404


def test_calls_log_records_method_path_query_and_status(sandbox):
    search(sandbox, criteria(page_size=3))
    search(sandbox, criteria(page_size=3), headers={})
    calls = sandbox.calls()
    assert [(c["method"], c["path"], c["status"]) for c in calls] == [
        ("GET", "/rest/V1/customers/search", 200), ("GET", "/rest/V1/customers/search", 401)]
    assert calls[0]["query"]["searchCriteria[pageSize]"] == "3" and calls[0]["ts"] <= time.time()
    over_http = requests.get(sandbox.url + "/__sandbox__/calls", timeout=10).json()
    assert len(over_http) == 2  # control endpoints are not logged


def test_add_customer_takes_the_next_id_and_refuses_the_same_email_twice_on_one_website(sandbox, data):
    added = sandbox.add_customer("new.person@example.com", firstname="New", website_id=2, subscribed=True)
    assert added["id"] == len(data.customers) + 1 and added["created_at"] == added["updated_at"] == sandbox.now()
    assert added["website_id"] == added["store_id"] == 2 and added["created_in"] == "EU Store View"
    assert added["extension_attributes"]["is_subscribed"] is True and "middlename" not in added
    with pytest.raises(SandboxMagentoError, match="same email address"):
        sandbox.add_customer(" NEW.person@example.com", website_id=2)
    assert sandbox.add_customer("new.person@example.com", website_id=1)["id"] == added["id"] + 1  # another website
    over_http = requests.post(sandbox.url + "/__sandbox__/customers", json={"email": "http@example.com"}, timeout=10)
    assert over_http.json()["id"] == added["id"] + 2


def test_on_request_runs_before_each_rest_request_so_tests_can_edit_between_pages(sandbox):
    seen = []

    def edit(request: dict) -> None:
        seen.append((request["method"], request["path"], request["query"].get("searchCriteria[currentPage]")))
        if len(seen) == 1:
            sandbox.delete_customer(1)

    sandbox.on_request = edit
    first = search(sandbox, criteria(page_size=2, current_page=1))
    requests.get(sandbox.url + "/__sandbox__/state", timeout=10)  # control calls are not REST calls
    assert ids(first) == [2, 3]  # the edit landed before the page was read
    assert seen == [("GET", "/rest/V1/customers/search", "1")]


def test_calls_log_records_the_request_headers(sandbox):
    search(sandbox, criteria(page_size=1), headers={**INTEGRATION, "X-Probe": "yes"})
    headers = sandbox.calls()[-1]["headers"]
    assert headers["X-Probe"] == "yes" and headers["Authorization"] == INTEGRATION["Authorization"]


# ---- indexes, keyset pages and top-k answer exactly as a plain scan of the table ---------------------------

ORDERS_PATH = "/rest/V1/orders"


@pytest.fixture(scope="module")
def store():
    """Enough rows that selective filters go through an index (the sandbox scans when an index keeps too much)."""
    return generate_store(3000, seed=3)


@pytest.fixture
def twins(store):
    """The same store twice: the first as it runs, the second with indexes, keyset bisection and top-k off."""
    with MagentoSandbox(store) as fast, MagentoSandbox(store) as plain:
        plain._fast_paths = False
        yield fast, plain


def assert_same_answers(twins, params: dict, path: str = "/rest/V1/customers/search") -> dict:
    fast, plain = ((r.status_code, r.json()) for r in (search(sb, params, path=path) for sb in twins))
    assert fast == plain
    return fast[1]


def keyset_pages(sb: MagentoSandbox, groups: list, pk: str, path: str, page_size: int) -> Iterator[dict]:
    """Every page as MagentoHook.search asks for it: the caller's groups, then `pk > last id`, in pk order."""
    last = None
    while True:
        keyset = [] if last is None else [[(pk, str(last), "gt")]]
        resp = search(sb, criteria(*groups, *keyset, sort=[(pk, "ASC")], page_size=page_size, current_page=1),
                      path=path)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        yield body
        if not body["items"] or body["total_count"] <= len(body["items"]):
            return
        last = body["items"][-1][pk]


def keyset_pass(twins, groups: list, *, orders: bool = False, page_size: int = 300,
                between: Callable[[int], None] | None = None) -> list[int]:
    """A keyset pass over both twins in step, page by page the same; `between(n)` edits after page n."""
    pk, path = ("entity_id", ORDERS_PATH) if orders else ("id", "/rest/V1/customers/search")
    read = []
    passes = (keyset_pages(sb, groups, pk, path, page_size) for sb in twins)
    for number, (fast, plain) in enumerate(zip(*passes), start=1):
        assert fast == plain
        read += [item[pk] for item in fast["items"]]
        if between is not None:
            between(number)
    return read


def both(twins, edit: Callable[[MagentoSandbox], Any]) -> None:
    for sb in twins:
        edit(sb)


def some_ids(store, n: int) -> str:
    return ",".join(str(c["id"]) for c in store.customers[::29][:n])


@pytest.mark.parametrize("groups", [
    [],
    [[("website_id", "2", "in")]],
    [[("website_id", "1,2", "in")], [("updated_at", "2025-05-26 10:20:21", "gteq")]],
    [[("updated_at", "2025-06-15 19:29:16", "gteq")]],
    [[("dob", "", "notnull")], [("updated_at", "2025-03-01 00:00:00", "lt")]],
], ids=["whole table", "website in", "website in and updated_at gteq", "updated_at gteq", "notnull and lt"])
@pytest.mark.parametrize("page_size", [300, 41])
def test_keyset_pass_over_customers_answers_every_page_as_a_plain_scan(twins, groups, page_size):
    read = keyset_pass(twins, groups, page_size=page_size)
    assert read == sorted(set(read)) and read


@pytest.mark.parametrize("groups", [
    [],
    [[("updated_at", "2025-06-01 00:00:00", "gteq")]],
    [[("customer_id", ",".join(str(i) for i in range(1, 3000, 30)), "in")]],
    [[("status", "canceled", "neq")], [("customer_id", "", "notnull")]],
], ids=["whole table", "updated_at gteq", "customer_id in", "neq and notnull"])
def test_keyset_pass_over_orders_answers_every_page_as_a_plain_scan(twins, groups):
    read = keyset_pass(twins, groups, orders=True, page_size=50)
    assert read == sorted(set(read)) and len(read) > 50


def test_keyset_pass_while_customers_change_between_pages_neither_loses_nor_repeats_a_row(twins, store):
    def edit(page: int) -> None:
        if page == 2:  # rows behind and ahead of the keyset change, vanish and appear
            both(twins, lambda sb: sb.delete_customer(2500))
            both(twins, lambda sb: sb.update_customer(10, firstname="Already read"))
            both(twins, lambda sb: sb.update_customer(2600, firstname="Not read yet"))
            both(twins, lambda sb: sb.add_customer("late.arrival@example.com"))

    read = keyset_pass(twins, [[("website_id", "1,2", "in")]], page_size=200, between=edit)
    assert read == sorted(set(read))
    assert set(read) == {c["id"] for c in store.customers} - {2500} | {len(store.customers) + 1}


def test_keyset_pass_over_orders_follows_deletes_and_new_orders_between_pages(twins, store):
    ids = [c["id"] for c in store.customers[:400]]
    chunk = [[("customer_id", ",".join(map(str, ids)), "in")]]
    buyer = next(o["customer_id"] for o in reversed(store.orders) if o.get("customer_id") in ids)
    theirs = {o["entity_id"] for o in store.orders if o.get("customer_id") == buyer}

    def edit(page: int) -> None:
        if page == 1:
            both(twins, lambda sb: sb.delete_customer(buyer))  # their orders lose customer_id
            both(twins, lambda sb: sb.add_order(ids[0], base_grand_total=10.0))

    read = keyset_pass(twins, chunk, orders=True, page_size=100, between=edit)
    orphaned_unread = theirs - set(read[:100])  # lost their customer_id before the pass reached them
    expected = {o["entity_id"] for o in store.orders if o.get("customer_id") in ids} - orphaned_unread
    assert orphaned_unread and read == sorted(set(read)) and set(read) == expected | {len(store.orders) + 1}


@pytest.mark.parametrize("groups", [
    [[("id", "17,5,900,5,abc,12.0, 44", "in")]], [[("entity_id", "40")]], [[("id", " 7 ", "eq")]],
    [[("id", "7.5")]], [[("id", "abc", "gt")]], [[("id", "nan", "gteq")]], [[("id", "nan", "lteq")]],
    [[("id", "2990", "gteq")], [("id", "2995", "to")]], [[("id", "1e1", "lt")]], [[("id", "", "in")]],
    [[("id", "10", "moreq")], [("id", "14", "lteq")]], [[("id", "2", "neq")]],
    [[("website_id", "2", "in")], [("id", "SOME_IDS", "in")]],
    [[("id", "3"), ("id", "2999"), ("email", "nobody@example.com")]],
    [[("email", "JAMES1975@EXAMPLE.COM")]], [[("email", "Mary_davis40@example.NET,x@y.z", "in")]],
    [[("email", " james1975@example.com")]], [[("email", "james1975@example.com"), ("lastname", "Smith")]],
    [[("email", "%@example.com", "like")], [("id", "100", "lt")]],
    [[("updated_at", "2025-06-15 19:29:16", "gt")]], [[("updated_at", "2025-06-15 19:29:16", "from")]],
    [[("updated_at", "2024-01-01 00:00:00")]], [[("updated_at", "2024-01-01 00:00:00", "lteq")]],
    [[("updated_at", "2025-06", "gteq")]], [[("updated_at", "", "gt")]],
    [[("updated_at", "2025-06-01 00:00:00", "in")]],
    [[("updated_at", "2025-06-20 00:00:00", "moreq")], [("dob", "", "null")]],
    [[("updated_at", "2025-06-01 00:00:00", "gteq")], [("updated_at", "2025-06-02 00:00:00", "to")]],
    [[("updated_at", "2025-06-01 00:00:00", "gteq"), ("id", "1,2,3", "in")]],
], ids=lambda g: repr(g)[:70])
def test_indexed_customer_filters_answer_as_a_plain_scan(twins, store, groups):
    groups = [[(f, some_ids(store, 100) if v == "SOME_IDS" else v, *c) for f, v, *c in g] for g in groups]
    body = assert_same_answers(twins, criteria(*groups, page_size=3000))
    assert body["total_count"] == len(body["items"])


@pytest.mark.parametrize("groups", [
    [[("customer_id", ",".join(str(i) for i in range(1, 300, 3)), "in")]], [[("customer_id", "12")]],
    [[("customer_id", "")]], [[("customer_id", "12"), ("customer_is_guest", "1")]],
    [[("customer_email", "JAMES1975@example.com"), ("customer_email", "no@one.com")], [("customer_is_guest", "0")]],
    [[("entity_id", "3,4,3371,99999", "in")]], [[("entity_id", "3000", "gt")], [("entity_id", "3100", "lt")]],
    [[("updated_at", "2025-07-01 00:00:00", "gteq")]],
    [[("updated_at", "2025-07-01 00:00:00", "gteq")], [("customer_id", "1,2,3,4,5,6,7,8,9,10", "in")]],
], ids=lambda g: repr(g)[:70])
def test_indexed_order_filters_answer_as_a_plain_scan(twins, groups):
    body = assert_same_answers(twins, criteria(*groups, page_size=5000), ORDERS_PATH)
    assert body["total_count"] == len(body["items"])


@pytest.mark.parametrize("sort, page_size, groups", [
    ([("updated_at", "DESC")], 1, [[("website_id", "1,2", "in")]]),  # MagentoHook.newest
    ([("updated_at", None)], 1, []),  # no direction: DESC
    ([("updated_at", "ASC")], 5, [[("updated_at", "2024-06-01 00:00:00", "lt")]]),  # ties at the import second
    ([("email", "ASC")], 5, []), ([("email", "DESC")], 5, []),  # case-insensitive order
    ([("dob", "ASC")], 10, []), ([("dob", "DESC")], 10, []),  # NULLs first ascending, last descending
    ([("id", "DESC")], 3, [[("id", "100", "gt")]]),  # a pk filter last, but not in pk order: no keyset
    ([("lastname", "ASC"), ("updated_at", "DESC")], 4, []),
    ([("id", "ASC")], 5, [[("website_id", "2")], [("id", "2900", "gt")]]),  # a keyset read by page number
])
def test_sorted_pages_answer_as_a_full_sort(twins, sort, page_size, groups):
    for page in (1, 2, 3):  # the first page may be a top-k; the pages after it come from one full sort
        body = assert_same_answers(twins, criteria(*groups, sort=sort, page_size=page_size, current_page=page))
        assert len(body["items"]) == page_size


@pytest.mark.parametrize("sort", [[("customer_id", "ASC")], [("customer_id", "DESC")], [("entity_id", "DESC")],
                                  [("base_grand_total", "ASC")], [("customer_email", "DESC")]])
def test_sorted_order_pages_answer_as_a_full_sort(twins, sort):  # guests have no customer_id: NULLs
    for page in (1, 2):
        body = assert_same_answers(twins, criteria(sort=sort, page_size=5, current_page=page), ORDERS_PATH)
        assert len(body["items"]) == 5


def test_newest_order_answers_as_a_full_sort_with_the_total_count(twins, store):
    body = assert_same_answers(twins, criteria(sort=[("updated_at", "DESC")], page_size=1, current_page=1,
                                               fields="items[entity_id,updated_at],total_count"), ORDERS_PATH)
    assert body["total_count"] == len(store.orders)
    assert body["items"][0]["updated_at"] == max(o["updated_at"] for o in store.orders)


def test_indexes_follow_rows_changed_added_and_deleted_after_they_were_built(twins, store):
    since = criteria([("updated_at", "2025-06-20 00:00:00", "gteq")], sort=[("id", "ASC")], page_size=3000)
    by_email = criteria([("email", "changed.address@example.com")])
    by_buyer = criteria([("customer_id", "5,6,7", "in")], page_size=100)
    before = assert_same_answers(twins, since)  # the first searches build the indexes
    assert assert_same_answers(twins, by_email)["items"] == []
    assert_same_answers(twins, by_buyer, ORDERS_PATH)
    for sb in twins:
        sb.advance_clock(3600)
        sb.update_customer(3, email="Changed.Address@example.com")
        sb.delete_customer(6)
        sb.add_order(5, base_grand_total=1.0)
        sb.add_customer("fresh@example.com")
    after = assert_same_answers(twins, since)
    assert {c["id"] for c in after["items"]} == {c["id"] for c in before["items"]} - {6} | {3, len(store.customers) + 1}
    assert [c["id"] for c in assert_same_answers(twins, by_email)["items"]] == [3]
    assert_same_answers(twins, by_buyer, ORDERS_PATH)
    for cid in range(100, 300):  # enough changes that the indexes are rebuilt rather than patched
        both(twins, lambda sb: sb.update_customer(cid, lastname="Bulk"))
    assert assert_same_answers(twins, since)["total_count"] == after["total_count"] + 200


def test_indexes_built_up_front_answer_as_those_built_on_first_use(twins, store):
    fast, _ = twins
    fast.build_indexes()  # what the CLI does before serving
    assert {column for _, column in fast._indexes} == {"id", "email", "updated_at", "entity_id", "customer_id",
                                                       "customer_email"}
    keyset_pass(twins, [[("updated_at", "2025-06-15 19:29:16", "gteq")]])
    assert_same_answers(twins, criteria([("customer_id", some_ids(store, 40), "in")], page_size=100), ORDERS_PATH)


def test_odd_values_in_an_indexed_column_answer_as_a_plain_scan(twins):
    both(twins, lambda sb: sb.add_customer("number@example.com", updated_at=20250101))
    both(twins, lambda sb: sb.add_customer("list@example.com", updated_at=["2025-06-30"]))
    both(twins, lambda sb: sb.add_customer("word@example.com", updated_at="Later"))
    both(twins, lambda sb: sb.update_customer(8, email=None))
    for n, value in enumerate([3, float("nan"), 1, 2]):  # in this order, a NaN would unsort a sorted index
        both(twins, lambda sb: sb.add_customer(f"n{n}@example.com", updated_at=value))
    for groups in ([[("updated_at", "20250101")]], [[("updated_at", "2025-06-22 00:00:00", "gteq")]],
                   [[("updated_at", "2e7", "gt")]], [[("updated_at", "LATER", "in")]], [[("updated_at", "LATER")]],
                   [[("updated_at", "3")]], [[("updated_at", "nan")]], [[("updated_at", "2.5", "lt")]],
                   [[("email", "", "null")]], [[("email", "number@EXAMPLE.com")]]):
        assert_same_answers(twins, criteria(*groups, page_size=3000))


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
def test_a_sort_over_values_that_do_not_compare_fails_alike_even_for_one_row(twins, direction):
    both(twins, lambda sb: sb.add_customer("number@example.com", dob=19800101))  # a number among strings
    failed = assert_same_answers(twins, criteria(sort=[("dob", direction)], page_size=1))
    assert failed["message"].startswith("Internal Error")


def test_bad_searches_fail_the_same_way_on_every_path(twins):
    assert_same_answers(twins, criteria([("favourite_colour", "blue")], [("id", "5", "gt")]))
    assert_same_answers(twins, criteria([("entity_id", "5", "gt")], sort=[("nothing", "ASC")]), ORDERS_PATH)
    assert_same_answers(twins, criteria([("nothing", "5", "gt")], sort=[("entity_id", "ASC")]), ORDERS_PATH)
    assert_same_answers(twins, {"searchCriteria[filter_groups][0][filters][0][field]": "id",
                                "searchCriteria[filter_groups][0][filters][0][value][]": "5",
                                "searchCriteria[filter_groups][0][filters][0][condition_type]": "gt"})


def test_a_keyset_pass_filters_the_table_once_and_an_indexed_one_only_the_rows_named(twins, store, monkeypatch):
    import sandboxes.magento as magento

    evaluated = []
    plain_combine = magento.combine_groups

    def counting(groups):
        predicate = plain_combine(groups)
        return predicate and (lambda row: evaluated.append(row["id"]) or predicate(row))

    monkeypatch.setattr(magento, "combine_groups", counting)
    pages = list(keyset_pages(twins[0], [[("website_id", "1,2", "in")]], "id", "/rest/V1/customers/search", 100))
    assert len(pages) == 30 and len(evaluated) == len(store.customers)
    evaluated.clear()
    list(keyset_pages(twins[0], [[("id", some_ids(store, 100), "in")]], "id", "/rest/V1/customers/search", 30))
    assert len(evaluated) == 100


# ---- faults -------------------------------------------------------------------------------------------

def test_injected_429_503_and_dropped_connections_then_recovery(sandbox):
    sandbox.inject_fault("429")
    sandbox.inject_fault("503")
    sandbox.inject_fault("drop")
    limited = search(sandbox, criteria(page_size=1))
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert search(sandbox, criteria(page_size=1)).status_code == 503
    with pytest.raises(requests.ConnectionError):
        search(sandbox, criteria(page_size=1))
    assert search(sandbox, criteria(page_size=1)).status_code == 200


def keyset_page(sb: MagentoSandbox, after: int | None, *, path: str = "/rest/V1/customers/search", key: str = "id",
                page_size: int = 100) -> requests.Response:
    """One page of a keyset pass, as the sync's hook asks for it: `key > after`, sorted by key."""
    groups = [[(key, after, "gt")]] if after is not None else []
    return search(sb, criteria(*groups, sort=[(key, "ASC")], page_size=page_size, current_page=1), path=path)


def test_empty_page_fault_answers_200_with_exactly_no_items_and_total_count_0_mid_paging(sandbox):
    sandbox.inject_fault("empty_page", path="customers", after_pages=1, times=1)
    first = keyset_page(sandbox, None)
    assert ids(first) == list(range(1, 101)) and first.json()["total_count"] == 400
    faulty = keyset_page(sandbox, 100)
    assert faulty.status_code == 200 and faulty.text == '{"items":[],"total_count":0}'  # as seen in issue 12
    again = keyset_page(sandbox, 100)  # times=1: the same page is right when asked again
    assert ids(again) == list(range(101, 201)) and again.json()["total_count"] == 300
    assert sandbox.applied_faults() == [{"kind": "empty_page", "path": "customers", "total_count": 300}]


def test_a_persistent_page_fault_lasts_until_cleared(sandbox):
    sandbox.inject_fault("empty_page", path="customers", after_pages=1, times=None)
    assert len(ids(keyset_page(sandbox, None))) == 100
    for _ in range(5):
        assert keyset_page(sandbox, 100).json() == {"items": [], "total_count": 0}
    sandbox.clear_faults()
    assert ids(keyset_page(sandbox, 100)) == list(range(101, 201))
    assert len(sandbox.applied_faults()) == 5


def test_short_page_fault_cuts_the_items_and_keeps_the_true_total(sandbox, data):
    sandbox.inject_fault("short_page", path="orders", after_pages=1)
    keyset_page(sandbox, None, path=ORDERS_PATH, key="entity_id")
    short = keyset_page(sandbox, 100, path=ORDERS_PATH, key="entity_id").json()
    assert [o["entity_id"] for o in short["items"]] == list(range(101, 151))  # half of a 100-row page
    assert short["total_count"] == len(data.orders) - 100  # unchanged: the page contradicts its own total
    sandbox.inject_fault("short_page", path="orders", rows=3)
    assert len(keyset_page(sandbox, 100, path=ORDERS_PATH, key="entity_id").json()["items"]) == 3


def test_total_drift_fault_moves_only_the_total_count(sandbox):
    sandbox.inject_fault("total_drift", path="customers", drift=-250)
    lowered = keyset_page(sandbox, None)
    assert ids(lowered) == list(range(1, 101)) and lowered.json()["total_count"] == 150
    sandbox.inject_fault("total_drift", path="customers", drift=+7)
    assert keyset_page(sandbox, 100).json()["total_count"] == 307
    assert keyset_page(sandbox, 200).json()["total_count"] == 200  # once only


def test_skip_rows_fault_leaves_rows_out_of_a_page_that_still_looks_full(sandbox):
    sandbox.inject_fault("skip_rows", path="customers", rows=4)
    page = keyset_page(sandbox, None)
    assert len(ids(page)) == 100 and page.json()["total_count"] == 400
    assert ids(page) == list(range(1, 49)) + list(range(53, 105))  # 49..52 never shown


def test_page_faults_count_and_hit_only_searches_of_their_path(sandbox):
    sandbox.inject_fault("empty_page", path="orders", after_pages=1)
    assert len(ids(keyset_page(sandbox, None))) == 100  # customers: neither counted nor faulted
    assert len(ids(keyset_page(sandbox, None, path=ORDERS_PATH, key="entity_id"), "entity_id")) == 100
    assert len(ids(keyset_page(sandbox, 100))) == 100
    assert keyset_page(sandbox, 100, path=ORDERS_PATH, key="entity_id").json()["items"] == []
    sandbox.inject_fault("total_drift", drift=1)  # no path: any search
    assert keyset_page(sandbox, 100).json()["total_count"] == 301


def test_unknown_fault_kinds_and_paths_are_refused(sandbox):
    with pytest.raises(ValueError, match="unknown fault kind"):
        sandbox.inject_fault("partial")
    with pytest.raises(ValueError, match="unknown path"):
        sandbox.inject_fault("empty_page", path="invoices")
    with pytest.raises(ValueError, match="drift"):
        sandbox.inject_fault("total_drift", path="orders")


def test_page_faults_over_http_set_list_and_clear(sandbox):
    base = sandbox.url + "/__sandbox__/faults"
    requests.post(base, json={"kind": "empty_page", "path": "customers", "after_pages": 1, "times": None},
                  timeout=10).raise_for_status()
    keyset_page(sandbox, None)
    assert keyset_page(sandbox, 100).json() == {"items": [], "total_count": 0}
    assert requests.get(base, timeout=10).json() == [{"kind": "empty_page", "path": "customers", "total_count": 300}]
    requests.delete(base, timeout=10).raise_for_status()
    assert len(ids(keyset_page(sandbox, 100))) == 100
    assert requests.post(base, json={"kind": "short_page", "path": "invoices"}, timeout=10).status_code == 400


def test_latency_slows_every_rest_call(data):
    with MagentoSandbox(data, latency=0.2) as sb:
        began = time.perf_counter()
        search(sb, criteria(page_size=1))
        assert time.perf_counter() - began >= 0.2


# ---- command line -------------------------------------------------------------------------------------

def test_cli_writes_the_ready_file_and_serves_until_terminated(tmp_path):
    ready = tmp_path / "magento.json"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "sandboxes.magento", "--port", "0", "--customers", "50",
                             "--seed", "7", "--ready-file", str(ready)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no ready file"
        url = json.loads(ready.read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(url + "/__sandbox__/state", timeout=10).json()["customers"] == 50
        resp = requests.get(url + "/rest/V1/customers/search", params=criteria(page_size=5), headers=INTEGRATION,
                            timeout=10)
        assert resp.json()["total_count"] == 50
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
