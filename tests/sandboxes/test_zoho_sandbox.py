"""Specification tests of the Zoho CRM v8 sandbox, over real HTTP on loopback."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from sandboxes.zoho_crm import ZohoSandbox

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OAS_DIR = PROJECT_ROOT / "tests" / "zoho_oas" / "v8.0"


# ------------------------------------------------------------------------------------------ helpers


class Api:
    """Tiny Zoho client for the tests: one access token, the right header prefix."""

    def __init__(self, sandbox: ZohoSandbox, token: str) -> None:
        self.url, self.headers = sandbox.url, {"Authorization": f"Zoho-oauthtoken {token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def upsert(self, module: str, records: list[dict], **body: Any) -> requests.Response:
        return self.call("POST", f"/crm/v8/{module}/upsert", json={"data": records, **body})

    def insert(self, module: str, records: list[dict]) -> requests.Response:
        return self.call("POST", f"/crm/v8/{module}", json={"data": records})

    def get(self, module: str, **params: Any) -> requests.Response:
        return self.call("GET", f"/crm/v8/{module}", params=params)


def refresh(sandbox: ZohoSandbox, **overrides: str) -> requests.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token,
        **overrides,
    }
    return requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10)


def access_token(sandbox: ZohoSandbox, refresh_token: str | None = None) -> str:
    body = refresh(sandbox, **({"refresh_token": refresh_token} if refresh_token else {})).json()
    return body["access_token"]


def contact(n: int, **extra: Any) -> dict:
    return {"Last_Name": f"Person{n}", "Email": f"person{n}@example.com", **extra}


def bulk_zip(rows: list[list[str]], name: str = "contacts.csv") -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, text.getvalue())
    return buffer.getvalue()


@pytest.fixture
def sandbox() -> Iterator[ZohoSandbox]:
    with ZohoSandbox() as sb:
        sb.layout_required = {}  # these tests write Leads without Company: tests/sandboxes/test_zoho_sandbox_layouts.py
        yield sb


@pytest.fixture
def api(sandbox: ZohoSandbox) -> Api:
    return Api(sandbox, access_token(sandbox))


# -------------------------------------------------------------------------------------------- OAuth


def test_refresh_returns_bearer_access_token_and_api_domain_but_no_refresh_token(sandbox: ZohoSandbox) -> None:
    response = refresh(sandbox)
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"access_token", "scope", "api_domain", "token_type", "expires_in"}
    assert body["api_domain"] == sandbox.url and body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert "ZohoCRM.modules.ALL" in body["scope"]


def test_refresh_parameters_may_be_sent_in_the_query_string(sandbox: ZohoSandbox) -> None:
    params = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token,
    }
    assert "access_token" in requests.post(f"{sandbox.url}/oauth/v2/token", params=params, timeout=10).json()


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"client_id": "1000.UNKNOWN"}, "invalid_client"),
        ({"client_secret": "wrong"}, "invalid_client_secret"),
        ({"refresh_token": "1000.not-a-token"}, "invalid_code"),
    ],
)
def test_oauth_errors_come_back_as_http_200_with_an_error_key(sandbox: ZohoSandbox, override: dict, error: str) -> None:
    response = refresh(sandbox, **override)
    assert response.status_code == 200
    assert response.json() == {"error": error}


def test_eleventh_refresh_within_ten_minutes_is_throttled_with_http_400_access_denied(sandbox: ZohoSandbox) -> None:
    for _ in range(10):
        assert "access_token" in refresh(sandbox).json()
    throttled = refresh(sandbox)
    assert throttled.status_code == 400
    assert throttled.json() == {
        "error_description": "You have made too many requests continuously. Please try again after some time.",
        "error": "Access Denied",
        "status": "failure",
    }
    other = sandbox.add_refresh_token(sandbox.client_id, ("ZohoCRM.modules.ALL",))
    assert "access_token" in refresh(sandbox, refresh_token=other).json()  # the limit is per refresh token
    assert sandbox.token_calls() == 11
    token_calls = [c for c in sandbox.calls() if c["operation"] == "token"]
    assert [c["token_calls"] for c in token_calls[:11]] == list(range(1, 12))
    assert all(c["credits"] == 0 for c in token_calls)


def test_grant_code_exchange_returns_a_refresh_token_and_the_code_is_single_use(sandbox: ZohoSandbox) -> None:
    code = sandbox.issue_grant_code(sandbox.client_id, ("ZohoCRM.modules.ALL",))
    form = {
        "grant_type": "authorization_code",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "code": code,
    }
    first = requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10).json()
    assert {"access_token", "refresh_token", "scope", "api_domain", "token_type", "expires_in"} <= set(first)
    assert "access_token" in refresh(sandbox, refresh_token=first["refresh_token"]).json()
    again = requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10)
    assert again.status_code == 200 and again.json() == {"error": "invalid_code"}


def test_expired_grant_code_answers_invalid_code(sandbox: ZohoSandbox) -> None:
    code = sandbox.issue_grant_code(sandbox.client_id, ("ZohoCRM.modules.ALL",), ttl_seconds=0)
    form = {
        "grant_type": "authorization_code",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "code": code,
    }
    assert requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10).json() == {"error": "invalid_code"}


def test_grant_code_redirect_uri_must_match_the_registered_one(sandbox: ZohoSandbox) -> None:
    sandbox.add_client("1000.WEBAPP", "web-secret", redirect_uri="https://app.example/callback")
    code = sandbox.issue_grant_code("1000.WEBAPP", ("ZohoCRM.modules.ALL",))
    form = {
        "grant_type": "authorization_code",
        "client_id": "1000.WEBAPP",
        "client_secret": "web-secret",
        "code": code,
        "redirect_uri": "https://evil.example/callback",
    }
    url = f"{sandbox.url}/oauth/v2/token"
    assert requests.post(url, data=form, timeout=10).json() == {"error": "invalid_redirect_uri"}
    form["redirect_uri"] = "https://app.example/callback"
    assert "refresh_token" in requests.post(url, data=form, timeout=10).json()


def test_revoking_a_refresh_token_kills_its_access_tokens(sandbox: ZohoSandbox, api: Api) -> None:
    url = f"{sandbox.url}/oauth/v2/token/revoke"
    assert requests.post(url, params={"token": sandbox.refresh_token}, timeout=10).json() == {"status": "success"}
    assert api.get("Contacts", fields="Email").json()["code"] == "INVALID_TOKEN"
    assert refresh(sandbox).json() == {"error": "invalid_code"}
    assert requests.post(url, params={"token": "1000.unknown"}, timeout=10).status_code == 400


def test_token_calls_are_logged_with_operation_token_and_secrets_redacted(sandbox: ZohoSandbox) -> None:
    params = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token,
    }
    requests.post(f"{sandbox.url}/oauth/v2/token", params=params, timeout=10)
    call = sandbox.calls()[-1]
    assert call["operation"] == "token" and call["status"] == 200 and call["credits"] == 0
    assert call["query"]["client_secret"] == "***" and call["query"]["refresh_token"] == "***"


# ------------------------------------------------------------------------------------- API auth/scopes


def test_missing_authorization_header_answers_401_authentication_failure(sandbox: ZohoSandbox) -> None:
    response = requests.get(f"{sandbox.url}/crm/v8/Contacts", params={"fields": "Email"}, timeout=10)
    assert response.status_code == 401
    assert response.json() == {
        "code": "AUTHENTICATION_FAILURE",
        "details": {},
        "message": "Authentication failed",
        "status": "error",
    }


@pytest.mark.parametrize("header", ["Zoho-oauthtoken 1000.unknown", "Bearer {token}"])
def test_unknown_token_or_bearer_prefix_answers_401_invalid_token(sandbox: ZohoSandbox, header: str) -> None:
    headers = {"Authorization": header.format(token=access_token(sandbox))}
    response = requests.get(f"{sandbox.url}/crm/v8/Contacts", params={"fields": "Email"}, headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


def test_expired_access_token_answers_invalid_token() -> None:
    with ZohoSandbox(access_token_ttl=0) as sandbox:
        api = Api(sandbox, access_token(sandbox))
        assert api.get("Contacts", fields="Email").json()["code"] == "INVALID_TOKEN"


def test_token_without_the_needed_scope_answers_401_oauth_scope_mismatch(sandbox: ZohoSandbox) -> None:
    reader = Api(
        sandbox, access_token(sandbox, sandbox.add_refresh_token(sandbox.client_id, ("ZohoCRM.modules.contacts.READ",)))
    )
    assert reader.get("Contacts", fields="Email").status_code == 204
    for response in (
        reader.upsert("Contacts", [contact(1)]),
        reader.get("Leads", fields="Email"),
        reader.call("GET", "/crm/v8/settings/fields", params={"module": "Contacts"}),
        reader.call("GET", "/crm/v8/org"),
    ):
        assert response.status_code == 401
        assert response.json() == {
            "code": "OAUTH_SCOPE_MISMATCH",
            "message": "Unauthorized",
            "status": "error",
            "details": {},
        }


def test_per_module_write_scope_allows_upsert_into_that_module_only(sandbox: ZohoSandbox) -> None:
    writer = Api(
        sandbox,
        access_token(sandbox, sandbox.add_refresh_token(sandbox.client_id, ("ZohoCRM.modules.contacts.WRITE",))),
    )
    assert writer.upsert("Contacts", [contact(1)]).status_code == 200
    assert writer.upsert("Leads", [contact(2)]).json()["code"] == "OAUTH_SCOPE_MISMATCH"


def test_search_needs_the_secure_search_scope(api: Api) -> None:
    response = api.call("GET", "/crm/v8/Contacts/search", params={"email": "a@example.com"})
    assert response.json()["code"] == "OAUTH_SCOPE_MISMATCH"


# ----------------------------------------------------------------------------------------- upsert


def test_upsert_of_a_new_email_inserts_with_action_insert(sandbox: ZohoSandbox, api: Api) -> None:
    response = api.upsert("Contacts", [contact(1, Order_Count=2, Total_Order_Value=99.5)])
    item = response.json()["data"][0]
    assert response.status_code == 200
    assert (item["code"], item["action"], item["message"], item["status"]) == (
        "SUCCESS",
        "insert",
        "record added",
        "success",
    )
    assert item["duplicate_field"] is None
    assert len(item["details"]["id"]) == 19 and item["details"]["id"].isdigit()
    [stored] = sandbox.records("Contacts")
    assert stored["id"] == item["details"]["id"] and stored["Order_Count"] == 2
    assert stored["Full_Name"] == "Person1" and "Created_Time" in stored and "Modified_Time" in stored


def test_upsert_matches_existing_contact_by_email_ignoring_case(sandbox: ZohoSandbox, api: Api) -> None:
    first = api.upsert("Contacts", [contact(1, First_Name="Ann")]).json()["data"][0]["details"]["id"]
    response = api.upsert("Contacts", [{"Last_Name": "Person1", "Email": "  PERSON1@Example.COM ", "Order_Count": 7}])
    item = response.json()["data"][0]
    assert (item["action"], item["duplicate_field"], item["message"]) == ("update", "Email", "record updated")
    assert item["details"]["id"] == first
    [stored] = sandbox.records("Contacts")
    assert stored["Order_Count"] == 7 and stored["First_Name"] == "Ann"


def test_upsert_with_mixed_results_answers_207_with_positional_items(api: Api) -> None:
    response = api.upsert("Contacts", [contact(1), {"Email": "noname@example.com"}, contact(3)])
    data = response.json()["data"]
    assert response.status_code == 207
    assert [d["status"] for d in data] == ["success", "error", "success"]
    assert data[1] == {
        "code": "MANDATORY_NOT_FOUND",
        "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"},
        "message": "required field not found",
        "status": "error",
    }


def test_upsert_where_every_record_fails_answers_400_with_a_data_body(sandbox: ZohoSandbox, api: Api) -> None:
    response = api.upsert("Contacts", [{"Email": "a@example.com"}, {"Last_Name": "X", "Email": "not-an-email"}])
    assert response.status_code == 400
    assert [d["code"] for d in response.json()["data"]] == ["MANDATORY_NOT_FOUND", "INVALID_DATA"]
    assert sandbox.records("Contacts") == []


def test_more_than_100_records_in_one_write_answers_400_limit_exceeded(sandbox: ZohoSandbox, api: Api) -> None:
    records = [contact(n) for n in range(101)]
    for response in (api.upsert("Contacts", records), api.insert("Contacts", records)):
        assert response.status_code == 400
        assert response.json()["code"] == "LIMIT_EXCEEDED"
    assert sandbox.records("Contacts") == []
    assert api.upsert("Contacts", records[:100]).status_code == 200


def test_insert_answers_201_and_creates_duplicates_for_the_same_email(sandbox: ZohoSandbox, api: Api) -> None:
    assert api.insert("Contacts", [contact(1)]).status_code == 201
    assert api.insert("Contacts", [contact(1)]).status_code == 201
    assert len(sandbox.records("Contacts")) == 2


def test_upsert_with_duplicates_updates_the_oldest_match(sandbox: ZohoSandbox, api: Api) -> None:
    api.insert("Contacts", [contact(1, First_Name="Old")])
    api.insert("Contacts", [contact(1, First_Name="New")])
    oldest = sandbox.records("Contacts")[0]["id"]
    assert api.upsert("Contacts", [contact(1, Order_Count=1)]).json()["data"][0]["details"]["id"] == oldest


def test_unique_extra_field_rejects_duplicates_on_insert_and_drives_upsert_matching() -> None:
    unique = {"Contacts": [{"api_name": "Source_Customer_ID", "unique": True}]}
    with ZohoSandbox(extra_fields=unique) as sandbox:
        api = Api(sandbox, access_token(sandbox))
        api.insert("Contacts", [contact(1, Source_Customer_ID="deco-1")])
        duplicate = api.insert("Contacts", [contact(2, Source_Customer_ID="DECO-1")]).json()["data"][0]
        assert duplicate["code"] == "DUPLICATE_DATA" and duplicate["details"]["api_name"] == "Source_Customer_ID"
        # Email left out of duplicate_check_fields: the system Email check is skipped, unique fields still apply
        item = api.upsert(
            "Contacts", [contact(9, Source_Customer_ID="deco-1")], duplicate_check_fields=["Source_Customer_ID"]
        ).json()["data"][0]
        assert (item["action"], item["duplicate_field"]) == ("update", "Source_Customer_ID")
        assert sandbox.records("Contacts")[0]["Email"] == "person9@example.com"


def test_upsert_rejects_a_duplicate_check_field_that_is_not_unique(api: Api) -> None:
    response = api.upsert("Contacts", [contact(1)], duplicate_check_fields=["Phone"])
    assert response.status_code == 400 and response.json()["code"] == "INVALID_DATA"


def test_upsert_into_leads_does_not_match_contacts(sandbox: ZohoSandbox, api: Api) -> None:
    api.upsert("Contacts", [contact(1)])
    assert api.upsert("Leads", [contact(1)]).json()["data"][0]["action"] == "insert"


# ---------------------------------------------------------------------------------------- validation


def test_value_longer_than_the_field_reports_maximum_length(api: Api) -> None:
    item = api.upsert("Contacts", [contact(1, First_Name="x" * 41)]).json()["data"][0]
    assert item == {
        "code": "INVALID_DATA",
        "details": {"maximum_length": 40, "api_name": "First_Name", "json_path": "$.data[0].First_Name"},
        "message": "invalid data",
        "status": "error",
    }


@pytest.mark.parametrize(
    ("field_name", "value", "expected"),
    [
        ("Order_Count", "3", "integer"),
        ("Newsletter_Subscriber", "yes", "boolean"),
        ("Total_Order_Value", "9.50", "double"),
        ("Account_Balance", True, "double"),
    ],
)
def test_wrong_type_reports_expected_data_type(api: Api, field_name: str, value: Any, expected: str) -> None:
    item = api.upsert("Contacts", [contact(1, **{field_name: value})]).json()["data"][0]
    assert item["code"] == "INVALID_DATA"
    assert item["details"] == {
        "expected_data_type": expected,
        "api_name": field_name,
        "json_path": f"$.data[0].{field_name}",
    }


def test_unknown_field_is_invalid_data_with_the_field_api_name_message(api: Api) -> None:
    item = api.upsert("Contacts", [contact(1, Favourite_Colour="blue")]).json()["data"][0]
    assert item["code"] == "INVALID_DATA"
    assert item["message"] == "the field api name given seems to be invalid"
    assert item["details"] == {"api_name": "Favourite_Colour", "json_path": "$.data[0].Favourite_Colour"}


@pytest.mark.parametrize("field_name", ["Full_Name", "Created_Time", "Converted__s"])
def test_read_only_fields_are_rejected(api: Api, field_name: str) -> None:
    item = api.upsert("Leads", [contact(1, **{field_name: "2024-01-01T00:00:00+00:00"})]).json()["data"][0]
    assert item["code"] == "INVALID_DATA" and item["details"]["api_name"] == field_name


def test_leads_use_street_city_zip_code_and_contacts_use_mailing_fields(api: Api) -> None:
    assert api.upsert("Leads", [contact(1, Street="1 Main", Zip_Code="12345", Company="Acme")]).status_code == 200
    assert api.upsert("Contacts", [contact(1, Street="1 Main")]).json()["data"][0]["code"] == "INVALID_DATA"
    assert api.upsert("Contacts", [contact(1, Mailing_Street="1 Main", Mailing_Zip="12345")]).status_code == 200


# -------------------------------------------------------------------------------------------- update


def test_update_needs_an_id_per_record_and_rejects_unknown_ids(sandbox: ZohoSandbox, api: Api) -> None:
    rid = api.insert("Contacts", [contact(1)]).json()["data"][0]["details"]["id"]
    response = api.call(
        "PUT",
        "/crm/v8/Contacts",
        json={"data": [{"id": rid, "Phone": "555"}, {"Phone": "1"}, {"id": "5700000000000999999", "Phone": "2"}]},
    )
    data = response.json()["data"]
    assert response.status_code == 207
    assert data[0]["message"] == "record updated"
    assert (data[1]["code"], data[1]["details"]["api_name"]) == ("MANDATORY_NOT_FOUND", "id")
    assert (data[2]["code"], data[2]["message"]) == ("INVALID_DATA", "the id given seems to be invalid")
    assert sandbox.records("Contacts")[0]["Phone"] == "555"


def test_update_by_path_id_can_clear_a_field_but_not_the_mandatory_last_name(sandbox: ZohoSandbox, api: Api) -> None:
    rid = api.insert("Contacts", [contact(1, Phone="555")]).json()["data"][0]["details"]["id"]
    assert api.call("PUT", f"/crm/v8/Contacts/{rid}", json={"data": [{"Phone": None}]}).status_code == 200
    assert "Phone" not in sandbox.records("Contacts")[0]
    cleared = api.call("PUT", f"/crm/v8/Contacts/{rid}", json={"data": [{"Last_Name": ""}]})
    assert cleared.status_code == 400 and cleared.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"


def test_if_unmodified_since_older_than_the_record_answers_412_already_modified(api: Api) -> None:
    api.insert("Contacts", [contact(1)])
    response = api.call(
        "POST",
        "/crm/v8/Contacts/upsert",
        json={"data": [contact(1, Phone="1")]},
        headers={"If-Unmodified-Since": "2020-01-01T00:00:00+00:00"},
    )
    assert response.status_code == 412
    assert response.json()["data"][0]["code"] == "ALREADY_MODIFIED"


# ----------------------------------------------------------------------------------------------- get


def test_get_records_requires_the_fields_parameter(api: Api) -> None:
    response = api.get("Contacts")
    assert response.status_code == 400
    assert response.json() == {
        "code": "REQUIRED_PARAM_MISSING",
        "details": {"param_name": "fields"},
        "message": "required param is missing",
        "status": "error",
    }


def test_get_records_accepts_at_most_50_fields(api: Api) -> None:
    names = ",".join(["Email"] * 51)
    response = api.get("Contacts", fields=names)
    assert response.status_code == 400 and response.json()["details"] == {"limit": 50, "param_name": "fields"}


def test_get_records_on_an_empty_module_answers_204(api: Api) -> None:
    response = api.get("Contacts", fields="Email")
    assert response.status_code == 204 and response.content == b""


def test_get_records_pages_with_per_page_and_more_records(api: Api) -> None:
    api.upsert("Contacts", [contact(n) for n in range(5)])
    pages = [api.get("Contacts", fields="Email,Last_Name", per_page=2, page=p, sort_order="asc") for p in (1, 2, 3)]
    bodies = [p.json() for p in pages]
    assert [b["info"]["more_records"] for b in bodies] == [True, True, False]
    assert [b["info"]["count"] for b in bodies] == [2, 2, 1]
    emails = [r["Email"] for b in bodies for r in b["data"]]
    assert emails == [f"person{n}@example.com" for n in range(5)]
    assert set(bodies[0]["data"][0]) == {"id", "Email", "Last_Name"}
    assert api.get("Contacts", fields="Email", per_page=2, page=4).status_code == 204


def test_page_token_continues_a_listing_and_is_bound_to_its_query(api: Api) -> None:
    api.upsert("Contacts", [contact(n) for n in range(3)])
    first = api.get("Contacts", fields="Email", per_page=2).json()
    token = first["info"]["next_page_token"]
    second = api.get("Contacts", fields="Email", per_page=2, page_token=token).json()
    assert len({r["id"] for r in first["data"] + second["data"]}) == 3
    assert (
        api.get("Contacts", fields="Last_Name", per_page=2, page_token=token).json()["code"]
        == "TOKEN_BOUND_DATA_MISMATCH"
    )


def test_get_records_rejects_per_page_over_200_and_pages_past_2000_records(api: Api) -> None:
    assert api.get("Contacts", fields="Email", per_page=201).status_code == 400
    response = api.get("Contacts", fields="Email", per_page=200, page=11)
    assert response.json()["code"] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED"


def test_get_records_by_ids(api: Api) -> None:
    ids = [d["details"]["id"] for d in api.upsert("Contacts", [contact(n) for n in range(3)]).json()["data"]]
    body = api.get("Contacts", fields="Email", ids=f"{ids[0]},{ids[2]}").json()
    assert sorted(r["id"] for r in body["data"]) == sorted([ids[0], ids[2]])


def test_get_one_record_returns_its_fields_and_204_when_unknown(api: Api) -> None:
    rid = api.upsert("Contacts", [contact(1, Order_Count=4)]).json()["data"][0]["details"]["id"]
    record = api.call("GET", f"/crm/v8/Contacts/{rid}").json()["data"][0]
    assert record["id"] == rid and record["Order_Count"] == 4 and record["Mailing_City"] is None
    assert api.call("GET", "/crm/v8/Contacts/5700000000000999999").status_code == 204


def test_unknown_module_answers_invalid_module(api: Api) -> None:
    response = api.get("Deals", fields="Deal_Name")
    assert response.status_code == 400 and response.json()["code"] == "INVALID_MODULE"
    assert api.upsert("Deals", [{"Deal_Name": "x"}]).json()["data"][0]["code"] == "INVALID_MODULE"


def test_unknown_path_answers_404_invalid_url_pattern(api: Api) -> None:
    response = api.call("GET", "/crm/v8/Contacts/1/nothing/here")
    assert response.status_code == 404 and response.json()["code"] == "INVALID_URL_PATTERN"


# ------------------------------------------------------------------------------------ delete/deleted


def test_delete_reports_success_and_record_not_deleted_per_id(sandbox: ZohoSandbox, api: Api) -> None:
    rid = api.insert("Contacts", [contact(1)]).json()["data"][0]["details"]["id"]
    response = api.call("DELETE", "/crm/v8/Contacts", params={"ids": f"{rid},5700000000000999999"})
    assert response.status_code == 207
    assert response.json()["data"] == [
        {"code": "SUCCESS", "details": {"id": rid}, "message": "record deleted", "status": "success"},
        {
            "code": "INVALID_DATA",
            "details": {"id": "5700000000000999999"},
            "message": "record not deleted",
            "status": "error",
        },
    ]
    assert sandbox.records("Contacts") == []


def test_delete_needs_ids_and_takes_at_most_100(api: Api) -> None:
    missing = api.call("DELETE", "/crm/v8/Contacts")
    assert missing.status_code == 400 and missing.json()["details"] == {"param_name": "ids"}
    too_many = api.call("DELETE", "/crm/v8/Contacts", params={"ids": ",".join(str(n) for n in range(101))})
    assert too_many.json()["code"] == "LIMIT_EXCEEDED"


def test_deleted_list_shows_api_and_ui_deletions_filtered_by_type(sandbox: ZohoSandbox, api: Api) -> None:
    ids = [d["details"]["id"] for d in api.insert("Contacts", [contact(1), contact(2)]).json()["data"]]
    api.call("DELETE", "/crm/v8/Contacts", params={"ids": ids[0]})
    sandbox.delete_record_in_ui("Contacts", ids[1], permanent=True)
    every = api.call("GET", "/crm/v8/Contacts/deleted").json()
    assert {d["id"]: d["type"] for d in every["data"]} == {ids[0]: "recycle", ids[1]: "permanent"}
    assert every["info"] == {"per_page": 200, "count": 2, "page": 1, "more_records": False}
    permanent = api.call("GET", "/crm/v8/Contacts/deleted", params={"type": "permanent"}).json()["data"]
    assert permanent == [
        {
            "deleted_by": None,
            "id": ids[1],
            "display_name": None,
            "type": "permanent",
            "created_by": None,
            "deleted_time": permanent[0]["deleted_time"],
        }
    ]
    recycle = api.call("GET", "/crm/v8/Contacts/deleted", params={"type": "recycle"}).json()["data"]
    assert recycle[0]["display_name"] == "Person1" and recycle[0]["deleted_by"]["name"] == "Sandbox Admin"


def test_deleted_list_honours_if_modified_since(sandbox: ZohoSandbox, api: Api) -> None:
    ids = [d["details"]["id"] for d in api.insert("Contacts", [contact(1), contact(2)]).json()["data"]]
    sandbox.delete_record_in_ui("Contacts", ids[0])
    time.sleep(1.1)  # the header has second precision
    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    sandbox.delete_record_in_ui("Contacts", ids[1])
    body = api.call("GET", "/crm/v8/Contacts/deleted", headers={"If-Modified-Since": since}).json()
    assert [d["id"] for d in body["data"]] == [ids[1]]
    future = api.call("GET", "/crm/v8/Contacts/deleted", headers={"If-Modified-Since": "2999-01-01T00:00:00Z"})
    assert future.status_code == 204


def test_deleted_list_is_204_when_empty_and_rejects_unknown_type(api: Api) -> None:
    assert api.call("GET", "/crm/v8/Leads/deleted").status_code == 204
    bad = api.call("GET", "/crm/v8/Leads/deleted", params={"type": "trash"})
    assert bad.status_code == 400 and bad.json()["code"] == "PATTERN_NOT_MATCHED"


def test_deleted_list_costs_two_credits(sandbox: ZohoSandbox, api: Api) -> None:
    api.call("GET", "/crm/v8/Leads/deleted")
    assert sandbox.calls()[-1]["credits"] == 2


# ------------------------------------------------------------------------------------------- convert


def test_convert_creates_contact_and_account_and_hides_the_lead(sandbox: ZohoSandbox, api: Api) -> None:
    lead = api.upsert("Leads", [contact(1, Company="Acme", City="Paris", Order_Count=2)]).json()
    lead_id = lead["data"][0]["details"]["id"]
    response = api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert", json={"data": [{}]})
    item = response.json()["data"][0]
    assert response.status_code == 200 and item["message"] == "The record has been converted successfully"
    assert item["details"]["Deals"] is None and item["details"]["Accounts"]["name"] == "Acme"
    [new_contact] = sandbox.records("Contacts")
    assert new_contact["id"] == item["details"]["Contacts"]["id"]
    assert (new_contact["Mailing_City"], new_contact["Order_Count"]) == ("Paris", 2)
    [stored_lead] = sandbox.records("Leads")
    assert stored_lead["Converted__s"] is True
    assert api.get("Leads", fields="Email").status_code == 204
    assert len(api.get("Leads", fields="Email", converted="true").json()["data"]) == 1


def test_convert_links_the_contact_given_in_the_body(sandbox: ZohoSandbox, api: Api) -> None:
    contact_id = api.upsert("Contacts", [contact(7)]).json()["data"][0]["details"]["id"]
    lead_id = api.upsert("Leads", [contact(1)]).json()["data"][0]["details"]["id"]
    body = {"data": [{"Contacts": {"id": contact_id}}]}
    item = api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert", json=body).json()["data"][0]
    assert item["details"]["Contacts"]["id"] == contact_id
    assert len(sandbox.records("Contacts")) == 1


def test_convert_matches_an_existing_contact_by_the_lead_email(sandbox: ZohoSandbox, api: Api) -> None:
    contact_id = api.upsert("Contacts", [contact(1)]).json()["data"][0]["details"]["id"]
    lead_id = api.upsert("Leads", [{"Last_Name": "Lead", "Email": "PERSON1@example.com"}]).json()["data"][0]["details"][
        "id"
    ]
    item = api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert").json()["data"][0]
    assert item["details"]["Contacts"]["id"] == contact_id
    assert item["details"]["Accounts"] is None


def test_converting_twice_answers_400_id_already_converted(sandbox: ZohoSandbox, api: Api) -> None:
    lead_id = api.upsert("Leads", [contact(1)]).json()["data"][0]["details"]["id"]
    assert api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert").status_code == 200
    assert sandbox.calls()[-1]["credits"] == 5
    again = api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert")
    assert again.status_code == 400 and again.json()["code"] == "ID_ALREADY_CONVERTED"


def test_upsert_does_not_match_a_converted_lead(sandbox: ZohoSandbox, api: Api) -> None:
    lead_id = api.upsert("Leads", [contact(1)]).json()["data"][0]["details"]["id"]
    api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert")
    assert api.upsert("Leads", [contact(1)]).json()["data"][0]["action"] == "insert"


# ------------------------------------------------------------------------------------ fields and org


def test_fields_metadata_lists_standard_and_custom_fields_with_types_and_lengths(api: Api) -> None:
    fields = {
        f["api_name"]: f
        for f in api.call("GET", "/crm/v8/settings/fields", params={"module": "Contacts"}).json()["fields"]
    }
    assert (fields["Last_Name"]["length"], fields["Last_Name"]["system_mandatory"]) == (80, True)
    assert fields["First_Name"]["length"] == 40
    assert (fields["Email"]["data_type"], fields["Email"]["length"]) == ("email", 100)
    assert fields["Mailing_Street"]["length"] == 250 and fields["Phone"]["length"] == 30
    assert [v["actual_value"] for v in fields["Salutation"]["pick_list_values"]][1:] == [
        "Mr.",
        "Mrs.",
        "Ms.",
        "Dr.",
        "Prof.",
    ]
    assert fields["Full_Name"]["read_only"] is True
    custom = {name: f["data_type"] for name, f in fields.items() if f["custom_field"]}
    assert custom == {
        "Order_Count": "integer",
        "Total_Order_Value": "currency",
        "Account_Balance": "currency",
        "Newsletter_Subscriber": "boolean",
        "Store_Name": "text",
        "Store_URL": "website",
        "Customer_Deleted": "boolean",
        "Source_Customer_ID": "text",
    }
    leads = {
        f["api_name"]: f
        for f in api.call("GET", "/crm/v8/settings/fields", params={"module": "Leads"}).json()["fields"]
    }
    assert (leads["Company"]["length"], leads["Company"]["system_mandatory"]) == (200, False)
    assert "Zip_Code" in leads and "Mailing_Zip" not in leads and leads["Converted__s"]["read_only"]


def test_fields_metadata_needs_a_known_module(api: Api) -> None:
    assert api.call("GET", "/crm/v8/settings/fields").json()["code"] == "REQUIRED_PARAM_MISSING"
    assert api.call("GET", "/crm/v8/settings/fields", params={"module": "Nope"}).json() == {
        "code": "INVALID_MODULE",
        "details": {},
        "message": "the module name given seems to be invalid",
        "status": "error",
    }


def test_extra_fields_are_served_and_accepted() -> None:
    extra = {"Leads": [{"api_name": "Loyalty_Tier", "data_type": "text", "length": 10}]}
    with ZohoSandbox(extra_fields=extra) as sandbox:
        sandbox.layout_required = {}  # Leads written without Company
        api = Api(sandbox, access_token(sandbox))
        names = [
            f["api_name"]
            for f in api.call("GET", "/crm/v8/settings/fields", params={"module": "Leads"}).json()["fields"]
        ]
        assert "Loyalty_Tier" in names
        assert api.upsert("Leads", [contact(1, Loyalty_Tier="gold")]).status_code == 200
        assert (
            api.upsert("Leads", [contact(1, Loyalty_Tier="x" * 11)]).json()["data"][0]["details"]["maximum_length"]
            == 10
        )


def test_org_returns_id_and_zgid(api: Api) -> None:
    [org] = api.call("GET", "/crm/v8/org").json()["org"]
    assert org["company_name"] == "Sandbox Org" and org["zgid"].isdigit() and org["id"].isdigit()


def test_ids_are_deterministic_for_a_seed() -> None:
    def first_id(seed: int) -> str:
        with ZohoSandbox(seed=seed) as sandbox:
            return (
                Api(sandbox, access_token(sandbox)).upsert("Contacts", [contact(1)]).json()["data"][0]["details"]["id"]
            )

    assert first_id(3) == first_id(3) != first_id(4)


# ---------------------------------------------------------------------------------- credits/concurrency


def test_credits_are_charged_per_operation(sandbox: ZohoSandbox, api: Api) -> None:
    api.upsert("Contacts", [contact(n) for n in range(25)])
    api.get("Contacts", fields="Email")
    api.call("GET", "/crm/v8/Contacts/deleted")
    assert [c["credits"] for c in sandbox.calls() if c["operation"] != "token"] == [3, 1, 2]
    assert sandbox.credits_used() == 6


def test_credits_remaining_header_appears_only_once_half_the_daily_credits_are_used() -> None:
    with ZohoSandbox(daily_credits=4) as sandbox:
        api = Api(sandbox, access_token(sandbox))
        first = api.get("Contacts", fields="Email")
        second = api.get("Contacts", fields="Email")
        assert "X-API-CREDITS-REMAINING" not in first.headers
        assert second.headers["X-API-CREDITS-REMAINING"] == "2"
        api.get("Contacts", fields="Email")
        api.get("Contacts", fields="Email")
        exhausted = api.get("Contacts", fields="Email")
        assert exhausted.status_code == 429 and exhausted.json()["code"] == "TOO_MANY_REQUESTS"
        assert exhausted.headers["X-API-CREDITS-REMAINING"] == "0"
        assert sandbox.credits_used() == 4


def test_concurrency_limit_answers_429_and_peak_concurrency_is_tracked() -> None:
    with ZohoSandbox(concurrency_limit=2, latency=0.5) as sandbox:
        api = Api(sandbox, access_token(sandbox))
        statuses: list[int] = []
        start = threading.Barrier(5)

        def call() -> None:
            start.wait()  # all five in flight together, well inside the 0.5 s latency
            statuses.append(api.get("Contacts", fields="Email").status_code)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [204, 204, 429, 429, 429]
        assert sandbox.peak_concurrency >= 3  # a rejection means more than the limit were in flight
        rejected = [c for c in sandbox.calls() if c["status"] == 429]
        assert all(c["credits"] == 0 for c in rejected)


def test_sequential_calls_never_raise_peak_concurrency_above_one() -> None:
    with ZohoSandbox(concurrency_limit=1, latency=0.05) as sandbox:
        api = Api(sandbox, access_token(sandbox))
        started = time.monotonic()
        assert [api.get("Contacts", fields="Email").status_code for _ in range(3)] == [204, 204, 204]
        assert time.monotonic() - started >= 0.15
        assert sandbox.peak_concurrency == 1


# -------------------------------------------------------------------------------------------- faults


def test_injected_429_and_500_hit_only_the_named_operation_the_given_number_of_times(
    sandbox: ZohoSandbox, api: Api
) -> None:
    sandbox.inject_fault("429", times=2, operation="upsert")
    sandbox.inject_fault("500", operation="get")
    assert api.upsert("Contacts", [contact(1)]).status_code == 429
    assert api.upsert("Contacts", [contact(1)]).json()["code"] == "TOO_MANY_REQUESTS"
    response = api.get("Contacts", fields="Email")
    assert response.status_code == 500 and response.json()["code"] == "INTERNAL_ERROR"
    assert api.upsert("Contacts", [contact(1)]).status_code == 200
    assert len(sandbox.records("Contacts")) == 1


def test_injected_fault_status_can_be_overridden(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.inject_fault("500", status=503)
    assert api.get("Contacts", fields="Email").status_code == 503


def test_drop_fault_closes_the_socket_without_an_answer(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.inject_fault("drop", operation="upsert")
    with pytest.raises(requests.exceptions.ConnectionError):
        api.upsert("Contacts", [contact(1)])
    assert sandbox.records("Contacts") == []
    assert sandbox.calls()[-1]["status"] is None
    assert api.upsert("Contacts", [contact(1)]).status_code == 200


def test_expire_token_fault_invalidates_all_current_access_tokens(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.inject_fault("expire_token")
    assert api.get("Contacts", fields="Email").json()["code"] == "INVALID_TOKEN"
    assert api.get("Contacts", fields="Email").json()["code"] == "INVALID_TOKEN"  # the token stays dead
    assert Api(sandbox, access_token(sandbox)).get("Contacts", fields="Email").status_code == 204


def test_apply_then_500_applies_the_write_and_answers_500(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.inject_fault("apply_then_500", operation="upsert")
    response = api.upsert("Contacts", [contact(1)])
    assert response.status_code == 500 and response.json()["code"] == "INTERNAL_ERROR"
    assert len(sandbox.records("Contacts")) == 1
    assert api.upsert("Contacts", [contact(1)]).json()["data"][0]["action"] == "update"  # a retry does not duplicate


def test_apply_then_500_is_not_billed_like_every_other_5xx(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.inject_fault("apply_then_500", operation="upsert")
    api.upsert("Contacts", [contact(i) for i in range(20)])
    assert sandbox.credits_used() == 0 and sandbox.calls()[-1]["credits"] == 0


def test_injected_429_and_500_can_carry_a_retry_after_header(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.inject_fault("429", operation="upsert", retry_after=2)
    sandbox.inject_fault("500", operation="upsert")
    throttled = api.upsert("Contacts", [contact(1)])
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert "Retry-After" not in api.upsert("Contacts", [contact(1)]).headers


def test_a_denied_permission_answers_403_no_permission_naming_it(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.deny_permissions("Leads", ["Crm_Implied_View_Leads"])
    denied = api.upsert("Leads", [contact(1)])
    assert denied.status_code == 403
    assert denied.json() == {
        "code": "NO_PERMISSION",
        "details": {"permissions": ["Crm_Implied_View_Leads"]},
        "message": "permission denied",
        "status": "error",
    }
    assert api.upsert("Contacts", [contact(1)]).status_code == 200
    sandbox.deny_permissions("Leads", [])
    assert api.upsert("Leads", [contact(1)]).status_code == 200


def test_token_throttle_window_can_be_shortened_for_tests(sandbox: ZohoSandbox) -> None:
    sandbox.token_throttle_window = 0.2
    for _ in range(10):
        assert "access_token" in refresh(sandbox).json()
    assert refresh(sandbox).status_code == 400
    time.sleep(0.25)
    assert "access_token" in refresh(sandbox).json()


def test_faults_hit_the_token_endpoint_only_when_it_is_named(sandbox: ZohoSandbox) -> None:
    sandbox.inject_fault("500")
    assert refresh(sandbox).status_code == 200  # an unnamed fault waits for an API call
    sandbox.reset_calls()
    sandbox.inject_fault("500", operation="token")
    assert refresh(sandbox).status_code == 500


def test_random_fault_rate_is_reproducible_with_the_seed() -> None:
    def pattern(seed: int) -> list[int]:
        with ZohoSandbox(seed=seed) as sandbox:
            api = Api(sandbox, access_token(sandbox))
            sandbox.set_fault_rate("500", 0.5)
            return [api.get("Contacts", fields="Email").status_code for _ in range(12)]

    first = pattern(11)
    assert first == pattern(11) and {204, 500} == set(first)


def test_unknown_fault_kind_is_refused(sandbox: ZohoSandbox) -> None:
    with pytest.raises(ValueError):
        sandbox.inject_fault("teapot")


# ------------------------------------------------------------------------------- inspection over HTTP


def test_http_inspection_endpoints_expose_state_calls_and_faults(sandbox: ZohoSandbox, api: Api) -> None:
    api.upsert("Leads", [contact(1)])
    state = requests.get(f"{sandbox.url}/__sandbox__/state", timeout=10).json()
    assert [r["Email"] for r in state["records"]["Leads"]] == ["person1@example.com"]
    assert state["records"]["Contacts"] == [] and state["credits_used"] == 1 and state["peak_concurrency"] == 1
    calls = requests.get(f"{sandbox.url}/__sandbox__/calls", timeout=10).json()["calls"]
    assert [c["operation"] for c in calls] == ["token", "upsert"]
    assert set(calls[1]) >= {"method", "path", "query", "status", "module", "operation", "records", "credits", "ts"}
    assert (calls[1]["module"], calls[1]["records"]) == ("Leads", 1)
    requests.post(f"{sandbox.url}/__sandbox__/reset_calls", timeout=10)
    assert sandbox.calls() == []
    requests.post(f"{sandbox.url}/__sandbox__/faults", json={"kind": "500", "times": 1, "operation": "get"}, timeout=10)
    assert api.get("Leads", fields="Email").status_code == 500


# ------------------------------------------------------------------------------------------ bulk write


def upload(sandbox: ZohoSandbox, api: Api, payload: bytes, **headers: str) -> requests.Response:
    org = api.call("GET", "/crm/v8/org").json()["org"][0]["zgid"]
    return api.call(
        "POST",
        "/crm/v8/upload",
        files={"file": ("contacts.zip", payload, "application/zip")},
        headers={"feature": "bulk-write", "X-CRM-ORG": org, **headers},
    )


def wait_for_job(api: Api, job_id: str) -> list[dict]:
    seen = []
    for _ in range(100):
        body = api.call("GET", f"/crm/bulk/v8/write/{job_id}").json()
        if not seen or seen[-1]["status"] != body["status"]:
            seen.append(body)
        if body["status"] == "COMPLETED":
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never completed: {[s['status'] for s in seen]}")


def test_bulk_write_upsert_round_trip_from_upload_to_result_csv(sandbox: ZohoSandbox, api: Api) -> None:
    existing = api.upsert("Contacts", [contact(1)]).json()["data"][0]["details"]["id"]
    rows = [
        ["Email", "Last_Name", "Order_Count", "Newsletter_Subscriber"],
        ["PERSON1@example.com", "Person1", "5", "true"],
        ["new@example.com", "New", "1", "false"],
        ["broken@example.com", "", "x", "true"],
    ]
    uploaded = upload(sandbox, api, bulk_zip(rows)).json()
    assert (uploaded["code"], uploaded["message"]) == ("FILE_UPLOAD_SUCCESS", "file uploaded.")
    job = {
        "operation": "upsert",
        "resource": [
            {
                "type": "data",
                "module": {"api_name": "Contacts"},
                "file_id": uploaded["details"]["file_id"],
                "find_by": "Email",
            }
        ],
    }
    created = api.call("POST", "/crm/bulk/v8/write", json=job)
    assert created.status_code == 201 and created.json()["code"] == "SUCCESS"
    assert sandbox.calls()[-1]["credits"] == 500
    states = wait_for_job(api, created.json()["details"]["id"])
    assert [s["status"] for s in states] == ["ADDED", "IN PROGRESS", "COMPLETED"]
    done = states[-1]
    assert done["resource"][0]["file"] == {
        "status": "COMPLETED",
        "name": "contacts.csv",
        "added_count": 1,
        "skipped_count": 1,
        "updated_count": 1,
        "total_count": 3,
    }
    zipped = requests.get(done["result"]["download_url"], headers=api.headers, timeout=10)
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        result = list(csv.DictReader(io.StringIO(archive.read(archive.namelist()[0]).decode())))
    assert list(result[0]) == ["Email", "Last_Name", "Order_Count", "STATUS", "RECORD_ID", "ERRORS"]
    assert [r["STATUS"] for r in result] == ["updated", "added", "skipped"]
    assert result[0]["RECORD_ID"] == existing
    assert result[2]["ERRORS"] == "INVALID_DATA-Order_Count:MANDATORY_NOT_FOUND-Last_Name"
    stored = {r["Email"].lower(): r for r in sandbox.records("Contacts")}
    assert stored["person1@example.com"]["Order_Count"] == 5
    assert stored["new@example.com"]["Newsletter_Subscriber"] is False


def test_bulk_write_uses_field_mappings_by_index(sandbox: ZohoSandbox, api: Api) -> None:
    rows = [["surname", "mail"], ["Smith", "smith@example.com"]]
    file_id = upload(sandbox, api, bulk_zip(rows)).json()["details"]["file_id"]
    job = {
        "operation": "insert",
        "resource": [
            {
                "type": "data",
                "module": {"api_name": "Leads"},
                "file_id": file_id,
                "field_mappings": [
                    {"api_name": "Last_Name", "index": 0},
                    {"api_name": "Email", "index": 1},
                    {"api_name": "Lead_Source", "default_value": {"value": "Online Store"}},
                ],
            }
        ],
    }
    wait_for_job(api, api.call("POST", "/crm/bulk/v8/write", json=job).json()["details"]["id"])
    [lead] = sandbox.records("Leads")
    assert (lead["Last_Name"], lead["Email"], lead["Lead_Source"]) == ("Smith", "smith@example.com", "Online Store")


def test_bulk_lookup_columns_name_the_related_record_by_the_mappings_find_by(sandbox: ZohoSandbox, api: Api) -> None:
    rows = [["Last_Name", "Account_Name"], ["Smith", "5700000000000999999"]]
    file_id = upload(sandbox, api, bulk_zip(rows)).json()["details"]["file_id"]
    job = {
        "operation": "insert",
        "resource": [
            {
                "type": "data",
                "module": {"api_name": "Contacts"},
                "file_id": file_id,
                "field_mappings": [
                    {"api_name": "Last_Name", "index": 0},
                    {"api_name": "Account_Name", "index": 1, "find_by": "id"},
                ],
            }
        ],
    }
    wait_for_job(api, api.call("POST", "/crm/bulk/v8/write", json=job).json()["details"]["id"])
    [stored] = sandbox.records("Contacts")
    assert stored["Account_Name"] == {"id": "5700000000000999999"}


def test_bulk_result_is_an_octet_stream_and_the_download_url_may_be_relative(sandbox: ZohoSandbox, api: Api) -> None:
    sandbox.bulk_relative_download_url = True
    file_id = upload(sandbox, api, bulk_zip([["Last_Name"], ["A"]])).json()["details"]["file_id"]
    job = {
        "operation": "insert",
        "resource": [{"type": "data", "module": {"api_name": "Contacts"}, "file_id": file_id}],
    }
    done = wait_for_job(api, api.call("POST", "/crm/bulk/v8/write", json=job).json()["details"]["id"])[-1]
    url = done["result"]["download_url"]
    assert url.startswith("/crm/bulk/v8/write/")
    result = api.call("GET", url)
    assert result.headers["Content-Type"] == "application/octet-stream"  # as bulk_write.json declares
    assert zipfile.is_zipfile(io.BytesIO(result.content))


def test_picklist_values_carry_colour_code_as_the_fields_oas_requires(api: Api) -> None:
    fields = {
        f["api_name"]: f
        for f in api.call("GET", "/crm/v8/settings/fields", params={"module": "Leads"}).json()["fields"]
    }
    assert all("colour_code" in v for v in fields["Lead_Status"]["pick_list_values"])


def test_bulk_upload_needs_its_headers_and_a_zip(sandbox: ZohoSandbox, api: Api) -> None:
    missing = api.call("POST", "/crm/v8/upload", files={"file": ("c.zip", bulk_zip([["Last_Name"]]))})
    assert missing.status_code == 400
    not_zip = upload(sandbox, api, b"Last_Name\nSmith\n")
    assert not_zip.status_code == 400 and not_zip.json()["code"] == "INVALID_FILE_FORMAT"


def test_bulk_job_validation_errors(sandbox: ZohoSandbox, api: Api) -> None:
    file_id = upload(sandbox, api, bulk_zip([["Last_Name", "Email"], ["A", "a@example.com"]])).json()["details"][
        "file_id"
    ]

    def create(operation: str, **resource: Any) -> dict:
        body = {
            "operation": operation,
            "resource": [{"type": "data", "module": {"api_name": "Contacts"}, "file_id": file_id, **resource}],
        }
        return api.call("POST", "/crm/bulk/v8/write", json=body).json()

    assert create("upsert")["code"] == "MANDATORY_NOT_FOUND"
    assert create("insert", file_id="123")["code"] == "INVALID_FILE_ID"
    assert create("insert", module={"api_name": "Deals"})["code"] == "MODULE_NOT_AVAILABLE"
    assert create("insert", field_mappings=[{"api_name": "Email", "index": 1}])["code"] == "MANDATORY_FIELDS_NOT_MAPPED"
    assert api.call("GET", "/crm/bulk/v8/write/999").json()["code"] == "RESOURCE_NOT_FOUND"


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_ready_file_mode_serves_until_killed(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.zoho_crm", "--port", "0", "--ready-file", str(ready)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        sandbox = ZohoSandbox()  # defaults match the CLI's client and refresh token
        form = {
            "grant_type": "refresh_token",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "refresh_token": sandbox.refresh_token,
        }
        token = requests.post(f"{info['url']}/oauth/v2/token", data=form, timeout=10).json()
        assert token["api_domain"] == info["url"]
        state = requests.get(f"{info['url']}/__sandbox__/state", timeout=10).json()
        assert state["records"] == {"Contacts": [], "Leads": []}
    finally:
        process.kill()
        process.wait(timeout=10)
    assert process.returncode != 0


# ---------------------------------------------------------------------------------- official OpenAPI


def _oas_validator(file_name: str, schema_name: str) -> Any:
    """Validator for one component schema; external refs (other OAS files) become nullable objects."""
    pytest.importorskip("openapi_core")
    from openapi_schema_validator import OAS30Validator

    def local(node: Any) -> Any:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str) and not node["$ref"].startswith("#"):
                return {"type": "object", "nullable": True}
            relaxed = {k: local(v) for k, v in node.items()}
            if "type" in relaxed and isinstance(relaxed.get("type"), str):
                relaxed["nullable"] = True  # Zoho answers null for empty values (doc samples)
            return relaxed
        return [local(v) for v in node] if isinstance(node, list) else node

    spec = local(json.loads((OAS_DIR / file_name).read_text()))
    return OAS30Validator({"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]})


def test_responses_validate_against_the_official_openapi_schemas(sandbox: ZohoSandbox, api: Api) -> None:
    if not OAS_DIR.exists():
        pytest.skip("official OpenAPI files not available")
    upserted = api.upsert("Contacts", [contact(1)]).json()["data"][0]
    _oas_validator("record.json", "Success_Response").validate(upserted)
    listed = api.get("Contacts", fields="Email,Last_Name").json()
    _oas_validator("record.json", "Response_Wrapper").validate(listed)
    api.call("DELETE", "/crm/v8/Contacts", params={"ids": upserted["details"]["id"]})
    deleted = api.call("GET", "/crm/v8/Contacts/deleted").json()
    _oas_validator("record.json", "Deleted_Records_Wrapper").validate(deleted)
    missing = api.call("DELETE", "/crm/v8/Contacts").json()
    _oas_validator("record.json", "API_Exception").validate(missing)
    lead_id = api.upsert("Leads", [contact(2, Company="Acme")]).json()["data"][0]["details"]["id"]
    converted = api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert").json()["data"][0]
    _oas_validator("convert_lead.json", "Success_Response").validate(converted)
    again = api.call("POST", f"/crm/v8/Leads/{lead_id}/actions/convert").json()
    _oas_validator("convert_lead.json", "ID_Already_Converted_API_Exception").validate(again)
    file_id = upload(sandbox, api, bulk_zip([["Last_Name"], ["A"]])).json()["details"]["file_id"]
    job = {
        "operation": "insert",
        "resource": [{"type": "data", "module": {"api_name": "Contacts"}, "file_id": file_id}],
    }
    created = api.call("POST", "/crm/bulk/v8/write", json=job).json()
    _oas_validator("bulk_write.json", "Success_Response").validate(created)
    _oas_validator("bulk_write.json", "Bulk_Write_Response").validate(wait_for_job(api, created["details"]["id"])[-1])
