"""The sandboxes' shared router: matching rules, and an endpoint added as one decorated function, over HTTP."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests

from sandboxes._router import Response, Router, SandboxError
from sandboxes.deconetwork import DecoNetworkSandbox, generate_deconetwork_store
from sandboxes.magento import MagentoError, MagentoSandbox
from sandboxes.seed import generate_store
from sandboxes.zoho import module_scope
from sandboxes.zoho.faults import ZohoError, answer
from sandboxes.zoho_crm import ZohoSandbox


def handler(name: str) -> Any:
    return lambda *args, **params: (name, params)


# ---------------------------------------------------------------------------------------------- matching


def test_a_static_segment_wins_over_a_parameter_and_a_dead_end_falls_back_to_it() -> None:
    router = Router()
    router.add("GET", "/crm/v8/{module}/{record_id}", handler("record"))
    router.add("GET", "/crm/v8/settings/fields", handler("fields"))
    router.add("POST", "/crm/v8/{module}/upsert", handler("upsert"))
    routes, params = router.match("/crm/v8/settings/fields")
    assert routes["GET"].handler()[0] == "fields" and params == {}
    routes, params = router.match("/crm/v8/settings/other")  # "settings" leads nowhere: back to {module}
    assert routes["GET"].handler()[0] == "record" and params == {"module": "settings", "record_id": "other"}
    routes, params = router.match("/crm/v8/Contacts/upsert")  # the path decides first, then the method
    assert set(routes) == {"POST"} and params == {"module": "Contacts"}
    assert router.match("/crm/v8/Contacts") is None and router.match("/crm/v8/a/b/c") is None


def test_int_parameters_conditions_and_slashes() -> None:
    router = Router()
    router.add("GET", "/V1/customers/{customer_id:int}", handler("customer"))
    router.add("GET", "/login", handler("login"), strict_slashes=True)
    router.add("POST", "/{module}/{id}/convert", handler("convert"), where={"module": lambda m: m.lower() == "leads"})
    assert router.match("/V1/customers/0042")[1] == {"customer_id": 42}
    assert router.match("/V1/customers/abc") is None
    assert router.match("/V1/customers/42/")[1] == {"customer_id": 42}  # a trailing slash is ignored...
    assert router.match("/login") is not None and router.match("/login/") is None  # ...unless the route is strict
    assert router.match("/V1//customers/42") is None  # empty segments count, unless collapse_slashes
    assert router.match("/LEADS/7/convert")[1] == {"module": "LEADS", "id": "7"}
    assert router.match("/Contacts/7/convert") is None
    collapsing = Router(collapse_slashes=True)
    collapsing.add("GET", "/crm/v8/org", handler("org"))
    assert collapsing.match("//crm//v8/org/") is not None


def test_a_copy_takes_new_routes_without_touching_the_original() -> None:
    router = Router()
    router.add("GET", "/a", handler("a"), operation="first")
    mine = router.copy()
    mine.add("GET", "/b", handler("b"), operation="second")
    assert mine.match("/b") is not None and router.match("/b") is None
    assert [r.pattern for r in mine.find(operation="second")] == ["/b"]
    assert mine.find(operation="first")[0].operation == "first"  # options read as attributes


# ------------------------------------------------------------------------------------- toy endpoints


@pytest.fixture
def zoho() -> Iterator[ZohoSandbox]:
    with ZohoSandbox() as sandbox:
        yield sandbox


def zoho_token(sandbox: ZohoSandbox, refresh_token: str | None = None) -> dict[str, str]:
    form = {"grant_type": "refresh_token", "client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
            "refresh_token": refresh_token or sandbox.refresh_token}
    token = requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10).json()["access_token"]
    return {"Authorization": f"Zoho-oauthtoken {token}"}


def test_a_zoho_endpoint_is_one_decorated_function_with_its_operation_scope_and_credits(zoho: ZohoSandbox) -> None:
    @zoho.routes.route("GET", "/crm/v8/{module}/toy/{n:int}", operation="toy", scope=module_scope("READ"), cost=3)
    def toy(sb: ZohoSandbox, req: Any, info: dict, module: str, n: int) -> Response:
        if n == 0:
            raise ZohoError(400, "INVALID_DATA", "invalid data", param_name="n")
        info["records"] = n
        return answer(200, {"data": [{"n": n, "echo": req.query.get("echo")}]})

    auth = zoho_token(zoho)
    resp = requests.get(f"{zoho.url}/crm/v8/contacts/toy/4?echo=hi", headers=auth, timeout=10)
    assert resp.status_code == 200 and resp.json() == {"data": [{"n": 4, "echo": "hi"}]}
    call = zoho.calls()[-1]
    assert (call["operation"], call["module"], call["records"], call["credits"]) == ("toy", "Contacts", 4, 3)
    assert zoho.credits_used() == 3

    error = requests.get(f"{zoho.url}/crm/v8/Contacts/toy/0", headers=auth, timeout=10)
    assert error.status_code == 400
    assert error.json() == {"code": "INVALID_DATA", "details": {"param_name": "n"}, "message": "invalid data",
                            "status": "error"}
    wrong_method = requests.post(f"{zoho.url}/crm/v8/Contacts/toy/4", headers=auth, timeout=10)
    assert wrong_method.status_code == 405 and zoho.calls()[-1]["operation"] == "toy"

    zoho.inject_fault("429", operation="toy")  # faults name the new operation like any other
    assert requests.get(f"{zoho.url}/crm/v8/Contacts/toy/4", headers=auth, timeout=10).status_code == 429

    leads_only = zoho.add_refresh_token(zoho.client_id, ("ZohoCRM.modules.leads.READ",))
    refused = requests.get(f"{zoho.url}/crm/v8/Contacts/toy/4", headers=zoho_token(zoho, leads_only), timeout=10)
    assert refused.status_code == 401 and refused.json()["code"] == "OAUTH_SCOPE_MISMATCH"

    with ZohoSandbox() as other:  # the route belongs to that instance alone
        missing = requests.get(f"{other.url}/crm/v8/Contacts/toy/4", headers=zoho_token(other), timeout=10)
        assert missing.status_code == 404 and missing.json()["code"] == "INVALID_URL_PATTERN"


def test_a_magento_endpoint_is_one_decorated_function_behind_its_acl_resource() -> None:
    with MagentoSandbox(generate_store(20, seed=1)) as magento:
        @magento.routes.route("GET", "/V1/toy/{n:int}", resource="Magento_Customer::customer")
        def toy(sb: MagentoSandbox, req: Any, params: dict, n: int) -> Any:
            if n == 0:
                raise MagentoError(404, "No such entity with %fieldName = %fieldValue", {"fieldName": "n",
                                                                                        "fieldValue": n})
            return {"n": n, "path": params.get("path")}

        auth = {"Authorization": f"Bearer {magento.integration_token}"}
        resp = requests.get(f"{magento.url}/rest/default/V1/toy/3?path=a/b", headers=auth, timeout=10)
        assert resp.status_code == 200 and resp.text == '{"n":3,"path":"a\\/b"}'  # PHP's json_encode
        missing = requests.get(f"{magento.url}/rest/V1/toy/0", headers=auth, timeout=10)
        assert missing.status_code == 404 and missing.json()["parameters"] == {"fieldName": "n", "fieldValue": 0}
        refused = requests.get(f"{magento.url}/rest/V1/toy/3", timeout=10)
        assert refused.status_code == 401
        assert refused.json()["parameters"] == {"resources": "Magento_Customer::customer"}
        assert [c["status"] for c in magento.calls()] == [200, 404, 401]


def test_a_deconetwork_api_endpoint_is_one_decorated_function_behind_the_site_credentials() -> None:
    with DecoNetworkSandbox(generate_deconetwork_store(20, 1)) as deco:
        @deco.routes.route(("GET", "POST"), "/api/json/toy/ping", api=True)
        def ping(sb: DecoNetworkSandbox, req: Any, params: dict) -> dict:
            return {"response_status": {"code": 10001, "severity": "SUCCESS", "description": "."},
                    "echo": params.get("echo")}

        resp = requests.post(f"{deco.url}/api/json/toy/ping", timeout=10,
                             data={"username": deco.username, "password": deco.password, "echo": "hi"})
        assert resp.status_code == 200 and resp.json()["echo"] == "hi"
        bad = requests.get(f"{deco.url}/api/json/toy/ping", params={"username": deco.username, "password": "x"},
                           timeout=10)
        assert bad.status_code == 200 and bad.json()["response_status"]["code"] == 30001
        assert [c["code"] for c in deco.calls()] == [10001, 30001]


def test_every_system_raises_the_one_sandbox_error_in_its_own_wire_format() -> None:
    from sandboxes.deconetwork import DecoApiError

    assert ZohoError(400, "INVALID_DATA", "invalid data").response().body == {
        "code": "INVALID_DATA", "details": {}, "message": "invalid data", "status": "error"}
    assert MagentoError(404, "Request does not match any route.").response().body == {
        "message": "Request does not match any route."}
    deco = DecoApiError(50004)
    assert isinstance(deco, SandboxError) and deco.response().status == 200
    assert deco.body() == {"response_status": {"code": 50004, "severity": "ERROR",
                                               "description": "Invalid limit or offset"}}
