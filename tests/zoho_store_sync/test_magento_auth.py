"""Every way the Magento hook authenticates, against the Magento sandbox over real HTTP."""

from __future__ import annotations

import json

import pytest
import requests

from sandboxes.magento import MagentoSandbox
from sandboxes.seed import generate_store
from tests.conftest import connection_env
from zoho_store_sync.hooks.magento import (
    MagentoAuthError,
    MagentoHook,
    OAuth1,
    oauth1_signature,
    signature_base_string,
)

CONN = "magento_auth_test"
TOKEN_PATH = "/rest/V1/integration/admin/token"


@pytest.fixture(scope="module")
def data():
    return generate_store(60, seed=3)


def connect(monkeypatch: pytest.MonkeyPatch, sandbox: MagentoSandbox, auth: str, **fields) -> MagentoHook:
    """A hook on a Connection given as an AIRFLOW_CONN_ env var, as a data engineer would define it."""
    if auth == "admin":
        fields = {"login": sandbox.admin_username, "password": sandbox.admin_password, **fields}
    elif auth == "integration_token":
        fields = {"password": sandbox.integration_token, **fields}
    extra = {"auth": auth, **fields.pop("extra", {})}
    monkeypatch.setenv(*connection_env(CONN, conn_type="http", host=sandbox.url, extra=extra, **fields))
    return MagentoHook(CONN)


def oauth1_fields(sandbox: MagentoSandbox) -> dict:
    """The recommended layout: identifiers in the extra, the two secrets as JSON in the password."""
    return {
        "password": json.dumps(
            {"consumer_secret": sandbox.consumer_secret, "access_token_secret": sandbox.access_token_secret}
        ),
        "extra": {"consumer_key": sandbox.consumer_key, "access_token": sandbox.integration_token},
    }


def first_customers(hook: MagentoHook, n: int = 3) -> list[int]:
    body = hook.get("customers/search", [("searchCriteria[pageSize]", n), ("searchCriteria[currentPage]", 1)])
    return [c["id"] for c in body["items"]]


def token_calls(sandbox: MagentoSandbox) -> int:
    return sum(1 for c in sandbox.calls() if c["path"] == TOKEN_PATH)


# ---- integration token as bearer ------------------------------------------------------------------------


def test_integration_token_is_sent_as_a_bearer_token(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(monkeypatch, sb, "integration_token")
        assert first_customers(hook) == [1, 2, 3]
        assert sb.calls()[-1]["headers"]["Authorization"] == f"Bearer {sb.integration_token}"


def test_bearer_integration_token_is_refused_when_the_store_requires_oauth1(monkeypatch, data):
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        hook = connect(monkeypatch, sb, "integration_token")
        with pytest.raises(MagentoAuthError) as error:
            first_customers(hook)
        assert error.value.status == 401
        assert "Magento_Customer::customer" in str(error.value) and "use auth 'oauth1'" in str(error.value)


# ---- admin token -------------------------------------------------------------------------------------------


def test_admin_login_gets_a_token_and_renews_it_once_after_the_four_hour_expiry(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(monkeypatch, sb, "admin")
        assert first_customers(hook) == [1, 2, 3]
        assert token_calls(sb) == 1
        assert first_customers(hook) == [1, 2, 3]
        assert token_calls(sb) == 1  # reused while valid
        sb.advance_clock(4 * 3600)  # Magento's default admin token lifetime
        assert first_customers(hook) == [1, 2, 3]
        assert token_calls(sb) == 2
        assert [c["status"] for c in sb.calls() if c["path"] != TOKEN_PATH][-2:] == [401, 200]


def test_admin_token_is_renewed_only_once_then_the_401_is_raised(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        # Every search ages the store by 4 hours: each fresh token has expired by the time it is checked.
        sb.on_request = lambda request: sb.advance_clock(4 * 3600) if "search" in request["path"] else None
        hook = connect(monkeypatch, sb, "admin")
        with pytest.raises(MagentoAuthError, match="HTTP 401"):
            first_customers(hook)
        assert token_calls(sb) == 2


def test_two_factor_refusal_says_so_and_points_to_integrations(monkeypatch, data):
    with MagentoSandbox(data, two_factor_auth=True) as sb:
        hook = connect(monkeypatch, sb, "admin")
        with pytest.raises(MagentoAuthError) as error:
            first_customers(hook)
        message = str(error.value)
        assert "two-factor authentication is on" in message
        assert "Please use the 2fa provider-specific endpoints to obtain a token." in message
        assert "System > Extensions > Integrations" in message and "'oauth1'" in message


def test_wrong_admin_password_is_an_auth_error_with_magentos_own_message(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(monkeypatch, sb, "admin", password="wrong")
        with pytest.raises(MagentoAuthError, match="HTTP 401.*account sign-in was incorrect"):
            first_customers(hook)


# ---- OAuth 1.0a ---------------------------------------------------------------------------------------------


def test_oauth1_signature_base_string_matches_the_rfc5849_example():
    # RFC 5849 §3.4.1.1: the query, the form body and the protocol parameters, decoded.
    params = [
        ("b5", "=%3D"),
        ("a3", "a"),
        ("c@", ""),
        ("a2", "r b"),
        ("oauth_consumer_key", "9djdj82h48djs9d2"),
        ("oauth_token", "kkk9d7dh3k39sjv7"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "137131201"),
        ("oauth_nonce", "7d8f3e4a"),
        ("c2", ""),
        ("a3", "2 q"),
    ]
    assert signature_base_string("post", "HTTP://EXAMPLE.COM:80/request?b5=x", params) == (
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540"
        "%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method"
        "%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
    )


def test_oauth1_signature_is_hmac_sha256_keyed_by_both_encoded_secrets():
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"c%26s&t%20s", b"BASE", hashlib.sha256).digest()).decode()
    assert oauth1_signature("BASE", "c&s", "t s") == expected


def test_oauth1_signed_request_is_accepted_and_a_tampered_one_refused(monkeypatch, data):
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        hook = connect(monkeypatch, sb, "oauth1", **oauth1_fields(sb))
        assert first_customers(hook) == [1, 2, 3]
        header = sb.calls()[-1]["headers"]["Authorization"]
        assert header.startswith("OAuth ") and 'oauth_signature_method="HMAC-SHA256"' in header
        assert 'oauth_version="1.0"' in header

        auth = OAuth1(sb.consumer_key, sb.consumer_secret, sb.integration_token, sb.access_token_secret)
        url = f"{sb.url}/rest/V1/customers/search?searchCriteria%5BpageSize%5D=1"
        with requests.Session() as session:
            signed = requests.Request("GET", url, auth=auth).prepare()
            assert session.send(signed, timeout=10).status_code == 200
            tampered = requests.Request("GET", url, auth=auth).prepare()
            tampered.url = tampered.url.replace("pageSize%5D=1", "pageSize%5D=50")
            refused = session.send(tampered, timeout=10)
        assert refused.status_code == 401
        assert refused.json() == {"message": "The signature is invalid. Verify and try again."}


def test_oauth1_request_signed_with_the_wrong_secret_is_refused(monkeypatch, data):
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        fields = oauth1_fields(sb)
        fields["password"] = json.dumps({"consumer_secret": "not-it", "access_token_secret": sb.access_token_secret})
        hook = connect(monkeypatch, sb, "oauth1", **fields)
        with pytest.raises(MagentoAuthError, match="The signature is invalid"):
            first_customers(hook)


def test_replayed_oauth1_nonce_is_refused(data):
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        auth = OAuth1(
            sb.consumer_key,
            sb.consumer_secret,
            sb.integration_token,
            sb.access_token_secret,
            nonce=lambda: "always-the-same",
        )
        url = f"{sb.url}/rest/V1/customers/search?searchCriteria%5BpageSize%5D=1"
        assert requests.get(url, auth=auth, timeout=10).status_code == 200
        replay = requests.get(url, auth=auth, timeout=10)
        assert replay.status_code == 401
        assert replay.json()["message"] == "The nonce is already being used by the consumer with ID %1"


def test_oauth1_signs_filter_values_with_spaces_and_brackets(monkeypatch, data):
    # A space must travel as %20: Magento rebuilds the signed values with rawurldecode ("+" stays a plus).
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        hook = connect(monkeypatch, sb, "oauth1", **oauth1_fields(sb))
        since = sorted(c["updated_at"] for c in data.customers)[-5]
        rows = [
            c
            for page in hook.search(
                "customers/search",
                filter_groups=[[("updated_at", since, "gteq")]],
                fields="items[id,updated_at],total_count",
            )
            for c in page
        ]
        assert {c["id"] for c in rows} == {c["id"] for c in data.customers if c["updated_at"] >= since}


@pytest.mark.parametrize("layout", ["secrets_in_password_json", "all_in_extras", "all_in_password_json"])
def test_oauth1_credentials_may_be_in_extras_or_in_the_password_as_json(monkeypatch, data, layout):
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        everything = {
            "consumer_key": sb.consumer_key,
            "consumer_secret": sb.consumer_secret,
            "access_token": sb.integration_token,
            "access_token_secret": sb.access_token_secret,
        }
        fields = {
            "secrets_in_password_json": oauth1_fields(sb),
            "all_in_extras": {"extra": everything},
            "all_in_password_json": {"password": json.dumps(everything)},
        }[layout]
        assert first_customers(connect(monkeypatch, sb, "oauth1", **fields)) == [1, 2, 3]


def test_missing_oauth1_credentials_are_named_without_revealing_the_others(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(
            monkeypatch,
            sb,
            "oauth1",
            password=json.dumps({"consumer_secret": "very-secret-value"}),
            extra={"consumer_key": "ck"},
        )
        with pytest.raises(MagentoAuthError) as error:
            first_customers(hook)
        assert "access_token, access_token_secret" in str(error.value)
        assert "very-secret-value" not in str(error.value)


def test_no_connection_extra_ever_becomes_an_http_header(monkeypatch, data):
    with MagentoSandbox(data, allow_integration_bearer=False) as sb:
        extra = {
            "consumer_key": sb.consumer_key,
            "access_token": sb.integration_token,
            "consumer_secret": sb.consumer_secret,
            "access_token_secret": sb.access_token_secret,
            "store_code": "default",
            "X-Custom": "leak-me",
            "timeout": 30,
        }
        hook = connect(monkeypatch, sb, "oauth1", extra=extra)
        first_customers(hook)
        headers = sb.calls()[-1]["headers"]
    names = {name.lower() for name in headers}
    assert not names & {name.lower() for name in [*extra, "auth"]}
    sent = " ".join(headers.values())
    assert sb.consumer_secret not in sent and sb.access_token_secret not in sent and "leak-me" not in sent
    assert "Basic" not in headers.get("Authorization", "")


def test_admin_password_is_never_sent_as_basic_auth(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(monkeypatch, sb, "admin")
        first_customers(hook)
        assert all(sb.admin_password not in " ".join(c["headers"].values()) for c in sb.calls())


# ---- ACL and configuration errors -----------------------------------------------------------------------------


def test_integration_without_an_acl_resource_gets_an_error_naming_it(monkeypatch, data):
    with MagentoSandbox(data, integration_resources={"Magento_Customer::customer"}) as sb:
        hook = connect(monkeypatch, sb, "integration_token")
        assert first_customers(hook) == [1, 2, 3]
        with pytest.raises(MagentoAuthError) as error:
            hook.get("orders", [("searchCriteria[pageSize]", 1)])
    message = str(error.value)
    assert "The consumer isn't authorized to access Magento_Sales::actions_view." in message
    assert "Grant the ACL resource Magento_Sales::actions_view to the integration" in message


def test_unknown_auth_mode_is_refused_with_the_valid_choices(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(monkeypatch, sb, "basic", password="x")
        with pytest.raises(MagentoAuthError, match="unknown auth 'basic'.*integration_token, oauth1, admin"):
            first_customers(hook)


def test_store_code_goes_in_the_url_but_the_admin_token_call_is_unscoped(monkeypatch, data):
    with MagentoSandbox(data) as sb:
        hook = connect(monkeypatch, sb, "admin")
        hook.store_code = "eu"
        first_customers(hook)
        assert [c["path"] for c in sb.calls()] == [TOKEN_PATH, "/rest/eu/V1/customers/search"]
