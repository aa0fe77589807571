"""Specification tests of the Zoho sandbox's COQL endpoint, duplicate-check preferences and lead-conversion matching."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from sandboxes.zoho.records import create_account_in_ui, create_in_ui
from sandboxes.zoho_crm import ZohoSandbox


class Api:
    def __init__(self, sandbox: ZohoSandbox, token: str) -> None:
        self.url, self.headers = sandbox.url, {"Authorization": f"Zoho-oauthtoken {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, headers=self.headers, timeout=10, **kwargs)

    def coql(self, query: str) -> requests.Response:
        return self.call("POST", "/crm/v8/coql", json={"select_query": query})

    def convert(self, lead_id: str, **options: Any) -> dict:
        response = self.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert", json={"data": [options]})
        assert response.status_code == 200, response.text
        return response.json()["data"][0]["details"]


def _token(sandbox: ZohoSandbox, refresh_token: str | None = None) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": refresh_token or sandbox.refresh_token,
    }
    return requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10).json()["access_token"]


@pytest.fixture
def sandbox() -> Iterator[ZohoSandbox]:
    with ZohoSandbox() as running:
        yield running


@pytest.fixture
def api(sandbox: ZohoSandbox) -> Api:
    return Api(sandbox, _token(sandbox))


def _lead(sandbox: ZohoSandbox, email: str, first: str = "Pat", last: str = "Boyle", **extra: Any) -> str:
    return create_in_ui(sandbox, "Leads", {"First_Name": first, "Last_Name": last, "Email": email, **extra})["id"]


def _contact(sandbox: ZohoSandbox, email: str | None, first: str = "Pat", last: str = "Boyle") -> str:
    values = {"First_Name": first, "Last_Name": last, **({"Email": email} if email else {})}
    return create_in_ui(sandbox, "Contacts", values)["id"]


# ---- COQL ----------------------------------------------------------------------------------------------


def test_coql_finds_records_by_email_in_a_list_ignoring_case(sandbox: ZohoSandbox, api: Api) -> None:
    first, second = _contact(sandbox, "a@x.example"), _contact(sandbox, "B@x.example")
    _contact(sandbox, "c@x.example")
    response = api.coql("select id, Email from Contacts where Email in ('a@x.example', 'b@x.example') limit 200")
    assert response.status_code == 200
    body = response.json()
    assert [row["id"] for row in body["data"]] == [first, second]
    assert body["info"] == {"count": 2, "more_records": False}


def test_coql_with_nothing_found_answers_204(api: Api) -> None:
    assert api.coql("select id from Leads where Email = 'nobody@x.example'").status_code == 204


def test_coql_leaves_converted_leads_out(sandbox: ZohoSandbox, api: Api) -> None:
    lead = _lead(sandbox, "lead@x.example")
    api.convert(lead)
    assert api.coql("select id from Leads where Email in ('lead@x.example')").status_code == 204


def test_coql_pages_with_limit_and_offset_and_says_when_more_records_exist(sandbox: ZohoSandbox, api: Api) -> None:
    ids = [_contact(sandbox, "same@x.example", last=f"Twin{i}") for i in range(3)]
    page = api.coql("select id from Contacts where Email = 'same@x.example' limit 2 offset 0").json()
    assert [row["id"] for row in page["data"]] == ids[:2] and page["info"]["more_records"] is True
    page = api.coql("select id from Contacts where Email = 'same@x.example' limit 2 offset 2").json()
    assert [row["id"] for row in page["data"]] == ids[2:] and page["info"]["more_records"] is False


@pytest.mark.parametrize(("limit", "credits"), [(200, 1), (201, 2), (1000, 2), (1001, 3), (2000, 3)])
def test_coql_costs_credits_by_its_limit(sandbox: ZohoSandbox, api: Api, limit: int, credits: int) -> None:
    api.coql(f"select id from Contacts where Email = 'x@x.example' limit {limit}")
    assert [c["credits"] for c in sandbox.calls() if c["operation"] == "coql"] == [credits]


def test_coql_refuses_more_than_100_values_in_an_in_list(api: Api) -> None:
    values = ", ".join(f"'p{i}@x.example'" for i in range(101))
    response = api.coql(f"select id from Contacts where Email in ({values})")
    assert response.status_code == 400 and response.json()["code"] == "LIMIT_EXCEEDED"
    values = ", ".join(f"'p{i}@x.example'" for i in range(100))
    assert api.coql(f"select id from Contacts where Email in ({values})").status_code == 204


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("select id from Contacts limit 2001", "LIMIT_EXCEEDED"),
        ("select id from Contacts limit 2000 offset 98001", "LIMIT_EXCEEDED"),
        ("select id from Contacts where Email = 'a' and Last_Name = 'b'", "SYNTAX_ERROR"),  # brackets needed
        ("select Nope from Contacts", "INVALID_QUERY"),
        ("delete from Contacts", "SYNTAX_ERROR"),
    ],
)
def test_coql_refuses_what_zoho_refuses(api: Api, query: str, code: str) -> None:
    response = api.coql(query)
    assert response.status_code == 400 and response.json()["code"] == code


def test_coql_accepts_two_bracketed_criteria(sandbox: ZohoSandbox, api: Api) -> None:
    wanted = _contact(sandbox, "a@x.example", last="Smith")
    _contact(sandbox, "a@x.example", last="Jones")
    rows = api.coql("select id from Contacts where (Email = 'a@x.example' and Last_Name = 'Smith')").json()["data"]
    assert [row["id"] for row in rows] == [wanted]


def test_coql_needs_the_coql_scope(sandbox: ZohoSandbox) -> None:
    token = sandbox.add_refresh_token(sandbox.client_id, ("ZohoCRM.modules.ALL",))
    response = Api(sandbox, _token(sandbox, token)).coql("select id from Contacts where Email = 'a@x.example'")
    assert response.status_code == 401 and response.json()["code"] == "OAUTH_SCOPE_MISMATCH"


# ---- duplicate-check preferences -----------------------------------------------------------------------


def test_without_duplicate_check_preferences_a_contact_is_created_beside_a_lead_with_its_email(
    sandbox: ZohoSandbox, api: Api
) -> None:
    _lead(sandbox, "pat@x.example")
    body = {"data": [{"Last_Name": "Boyle", "Email": "pat@x.example"}], "duplicate_check_fields": ["Email"]}
    item = api.call("POST", "/crm/v8/Contacts/upsert", json=body).json()["data"][0]
    assert item["code"] == "SUCCESS" and item["action"] == "insert"


def test_duplicate_check_preferences_refuse_a_new_contact_whose_email_a_lead_has_and_name_the_lead(
    sandbox: ZohoSandbox, api: Api
) -> None:
    lead = _lead(sandbox, "pat@x.example")
    sandbox.duplicate_check = {"Contacts": {"Email": ["Contacts", "Leads"]}}
    body = {"data": [{"Last_Name": "Boyle", "Email": "PAT@x.example"}], "duplicate_check_fields": ["Email"]}
    response = api.call("POST", "/crm/v8/Contacts/upsert", json=body)
    item = response.json()["data"][0]
    assert response.status_code == 400 and item["code"] == "DUPLICATE_DATA"
    assert item["details"]["api_name"] == "Email" and item["details"]["json_path"] == "$.data[0].Email"
    assert item["details"]["duplicate_record"]["id"] == lead
    assert item["details"]["duplicate_record"]["module"]["api_name"] == "Leads"
    inserted = api.call("POST", "/crm/v8/Contacts", json={"data": [{"Last_Name": "B", "Email": "pat@x.example"}]})
    assert inserted.json()["data"][0]["code"] == "DUPLICATE_DATA"


def test_an_upsert_matching_its_own_module_is_an_update_under_duplicate_check_preferences(
    sandbox: ZohoSandbox, api: Api
) -> None:
    contact = _contact(sandbox, "pat@x.example")
    _lead(sandbox, "pat@x.example")
    sandbox.duplicate_check = {"Contacts": {"Email": ["Contacts", "Leads"]}}
    body = {"data": [{"Last_Name": "Boyle", "Email": "pat@x.example"}], "duplicate_check_fields": ["Email"]}
    item = api.call("POST", "/crm/v8/Contacts/upsert", json=body).json()["data"][0]
    assert item["action"] == "update" and item["details"]["id"] == contact


# ---- conversion: Zoho's matching without ids, and Accounts -----------------------------------------------


def test_convert_without_ids_attaches_a_lead_to_a_same_named_contact_with_another_email(
    sandbox: ZohoSandbox, api: Api
) -> None:
    stranger = _contact(sandbox, "john.smith@elsewhere.example", first="John", last="Smith")
    lead = _lead(sandbox, "john@ours.example", first="John", last="Smith")
    assert api.convert(lead)["Contacts"]["id"] == stranger  # Zoho's name match (doc §4.7)


def test_convert_with_a_contact_id_links_that_contact_not_the_same_named_one(sandbox: ZohoSandbox, api: Api) -> None:
    _contact(sandbox, "john.smith@elsewhere.example", first="John", last="Smith")
    ours = _contact(sandbox, "john@ours.example", first="John", last="Smith")
    lead = _lead(sandbox, "john@ours.example", first="John", last="Smith")
    assert api.convert(lead, Contacts={"id": ours})["Contacts"]["id"] == ours


def test_convert_matches_the_company_against_existing_account_names(sandbox: ZohoSandbox, api: Api) -> None:
    account = create_account_in_ui(sandbox, "Zylker Biotech")
    lead = _lead(sandbox, "pat@x.example", Company="zylker biotech")
    assert api.convert(lead)["Accounts"]["id"] == account["id"]


def test_convert_creates_no_account_for_a_lead_without_company_and_links_a_given_account(
    sandbox: ZohoSandbox, api: Api
) -> None:
    assert api.convert(_lead(sandbox, "a@x.example"))["Accounts"] is None
    account = create_account_in_ui(sandbox, "Chosen Ltd")
    lead = _lead(sandbox, "b@x.example", Company="Other Co")
    assert api.convert(lead, Accounts={"id": account["id"]})["Accounts"]["id"] == account["id"]
