"""The Zoho sandbox as a standard org: layouts requiring Leads' Company, enforced on every write; the current user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from sandboxes.zoho_crm import ZohoSandbox


@pytest.fixture
def sandbox() -> Iterator[ZohoSandbox]:
    with ZohoSandbox() as sb:
        yield sb


def token(sb: ZohoSandbox, scopes: tuple[str, ...] | None = None) -> str:
    refresh = sb.refresh_token if scopes is None else sb.add_refresh_token(sb.client_id, scopes)
    body = requests.post(
        f"{sb.url}/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": sb.client_id,
            "client_secret": sb.client_secret,
            "refresh_token": refresh,
        },
        timeout=10,
    ).json()
    return body["access_token"]


def call(sb: ZohoSandbox, method: str, path: str, access: str | None = None, **kwargs) -> requests.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Zoho-oauthtoken {access or token(sb)}"}
    return requests.request(method, f"{sb.url}{path}", headers=headers, timeout=10, **kwargs)


def required(layout_body: dict) -> set[str]:
    [layout] = layout_body["layouts"]
    return {f["api_name"] for s in layout["sections"] for f in s["fields"] if f["required"]}


def test_a_standard_org_layout_requires_company_on_leads_and_last_name_on_both(sandbox):
    leads = call(sandbox, "GET", "/crm/v8/settings/layouts", params={"module": "Leads"})
    contacts = call(sandbox, "GET", "/crm/v8/settings/layouts", params={"module": "contacts"})
    assert leads.status_code == contacts.status_code == 200
    assert required(leads.json()) == {"Last_Name", "Company"}
    assert required(contacts.json()) == {"Last_Name"}
    [layout] = leads.json()["layouts"]
    assert layout["name"] == "Standard" and layout["profiles"][0]["default"] is True


def test_layouts_need_a_layouts_or_settings_scope(sandbox):
    narrow = token(sandbox, ("ZohoCRM.modules.ALL", "ZohoCRM.settings.fields.READ"))
    refused = call(sandbox, "GET", "/crm/v8/settings/layouts", narrow, params={"module": "Leads"})
    assert refused.status_code == 401 and refused.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    broad = token(sandbox, ("ZohoCRM.settings.ALL",))
    assert call(sandbox, "GET", "/crm/v8/settings/layouts", broad, params={"module": "Leads"}).status_code == 200
    missing = call(sandbox, "GET", "/crm/v8/settings/layouts")
    assert missing.json()["code"] == "REQUIRED_PARAM_MISSING"


def test_every_write_path_rejects_a_lead_without_company_as_zoho_does(sandbox):
    lead = {"Last_Name": "Lee", "Email": "ann@example.com"}
    for method, path in (("POST", "/crm/v8/Leads"), ("POST", "/crm/v8/Leads/upsert")):
        item = call(sandbox, method, path, json={"data": [lead]}).json()["data"][0]
        assert item["code"] == "MANDATORY_NOT_FOUND"
        assert item["details"] == {"api_name": "Company", "json_path": "$.data[0].Company"}
    created = call(sandbox, "POST", "/crm/v8/Leads", json={"data": [{**lead, "Company": "Acme"}]}).json()["data"][0]
    assert created["code"] == "SUCCESS"
    cleared = call(sandbox, "PUT", "/crm/v8/Leads", json={"data": [{"id": created["details"]["id"], "Company": None}]})
    assert cleared.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"
    renamed = call(sandbox, "PUT", "/crm/v8/Leads", json={"data": [{"id": created["details"]["id"], "City": "Oslo"}]})
    assert renamed.json()["data"][0]["code"] == "SUCCESS"  # an update need not repeat a field it leaves alone
    assert call(sandbox, "POST", "/crm/v8/Contacts", json={"data": [lead]}).json()["data"][0]["code"] == "SUCCESS"


def test_the_layout_requirement_can_be_switched_off_or_extended(sandbox):
    sandbox.layout_required = {}
    assert required(call(sandbox, "GET", "/crm/v8/settings/layouts", params={"module": "Leads"}).json()) == {
        "Last_Name"
    }
    lead = {"Last_Name": "Lee", "Email": "ann@example.com"}
    assert call(sandbox, "POST", "/crm/v8/Leads", json={"data": [lead]}).json()["data"][0]["code"] == "SUCCESS"
    requests.post(f"{sandbox.url}/__sandbox__/layout_required", json={"Contacts": ["Mobile"]}, timeout=10)
    item = call(sandbox, "POST", "/crm/v8/Contacts", json={"data": [lead]}).json()["data"][0]
    assert (item["code"], item["details"]["api_name"]) == ("MANDATORY_NOT_FOUND", "Mobile")


def test_an_unknown_picklist_value_is_stored_as_sent_as_zoho_does(sandbox):
    lead = {"Last_Name": "Lee", "Email": "ann@example.com", "Company": "Acme", "Salutation": "Sir"}
    assert call(sandbox, "POST", "/crm/v8/Leads", json={"data": [lead]}).json()["data"][0]["code"] == "SUCCESS"
    assert sandbox.records("Leads")[0]["Salutation"] == "Sir"


def test_the_current_user_is_served_as_zohos_sdks_read_it_at_start_up(sandbox):
    body = call(sandbox, "GET", "/crm/v8/users", params={"type": "CurrentUser"}).json()
    [user] = body["users"]
    assert user["email"] == "admin@sandbox.example" and user["profile"]["name"] == "Administrator"
    narrow = token(sandbox, ("ZohoCRM.modules.ALL",))
    assert call(sandbox, "GET", "/crm/v8/users", narrow, params={"type": "CurrentUser"}).status_code == 401
