"""Zoho CRM record calls (upsert, update, delete, get, deleted, convert, fields, org) and their outcomes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import requests

from zoho_store_sync.errors import ZohoRequestError
from zoho_store_sync.settings import ZOHO_API_VERSION, ZOHO_CREDITS, ZOHO_MAX_PER_PAGE, ZOHO_MAX_RECORDS_PER_WRITE

# Record-level codes that a retry cannot fix until the data changes.
PERMANENT_CODES = frozenset(
    {
        "INVALID_DATA",
        "MANDATORY_NOT_FOUND",
        "DUPLICATE_DATA",
        "MULTIPLE_OR_MULTI_ERRORS",
        "DEPENDENT_FIELD_MISSING",
        "DEPENDENT_MISMATCH",
        "INVALID_MODULE",
        "INVALID_REQUEST_METHOD",
        "AUTHORIZATION_FAILED",
        "NOT_APPROVED",
        "ID_ALREADY_CONVERTED",
        "LIMIT_EXCEEDED",
        "CONVERTED_RECORD",
        "RECORD_LOCKED",
        "BLOCKED_RECORD",
    }
)


@dataclass(frozen=True)
class RecordOutcome:
    """What Zoho answered for one record of a write, read positionally from ``data[i]``."""

    ok: bool
    code: str
    message: str = ""
    action: str | None = None  # "insert" / "update" for upserts and bulk rows, "convert", "delete"
    zoho_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        return not self.ok and self.code not in PERMANENT_CODES

    def describe(self) -> str:
        extra = {k: v for k, v in self.details.items() if k in ("api_name", "maximum_length", "expected_data_type")}
        return f"{self.code}: {self.message}" + (f" {extra}" if extra else "")


class RecordJSON(str):
    """A record already encoded as a JSON object (a plan's payload): written into the request body as it is."""


class Caller(Protocol):
    """What the record calls need: ``ZohoClient.request``."""

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        credits: int = ...,
        write: bool = ...,
        params: dict[str, Any] | None = ...,
        json: Any = ...,
        data: bytes | None = ...,
        headers: dict[str, str] | None = ...,
        files: Any = ...,
        base_url: str | None = ...,
        module: str | None = ...,
    ) -> requests.Response: ...


def write_credits(n_records: int) -> int:
    """Insert, update and upsert cost one credit per 10 records (zoho-crm-api.md §8.1)."""
    return max(1, math.ceil(n_records / 10) * ZOHO_CREDITS["write_per_10_records"])


def records_body(records: Sequence[dict[str, Any] | RecordJSON], rest: dict[str, Any]) -> bytes:
    """``{"data": records, **rest}`` as JSON; pre-encoded records are spliced in, not parsed and re-encoded
    (that round trip was a fifth of the client's work per call in a reset)."""
    items = [record if isinstance(record, RecordJSON) else json.dumps(record) for record in records]
    tail = json.dumps(rest)[1:]  # '"duplicate_check_fields": [...]}'
    return ('{"data": [' + ", ".join(items) + "], " + tail).encode("utf-8")


def json_body(response: requests.Response) -> Any:
    """The decoded body, or None when empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def raise_for_request_error(response: requests.Response, operation: str) -> None:
    if response.status_code >= 400:
        body = json_body(response)
        body = body if isinstance(body, dict) else {}
        raise ZohoRequestError(
            f"{operation}: HTTP {response.status_code} {body.get('code', '')} {body.get('message', '')}".rstrip(),
            code=body.get("code"),
            status=response.status_code,
        )


def zoho_time(moment: datetime) -> str:
    """ISO 8601 with offset, Zoho's date-time format (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


def parse_record_outcomes(response: requests.Response, expected: int) -> list[RecordOutcome]:
    """Positional outcomes of a write (200/201/207/400). A request-level error applies to every record."""
    body = json_body(response)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and len(data) == expected:
        return [_outcome(item) for item in data]
    code: Any = (
        body.get("code", f"HTTP_{response.status_code}") if isinstance(body, dict) else f"HTTP_{response.status_code}"
    )
    message: Any = body.get("message", "unexpected response") if isinstance(body, dict) else "unexpected response"
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):  # e.g. INVALID_MODULE in data
        code, message = data[0].get("code", code), data[0].get("message", message)
    return [RecordOutcome(ok=False, code=str(code), message=str(message))] * expected


def _outcome(item: dict[str, Any]) -> RecordOutcome:
    details = item.get("details") or {}
    ok = item.get("status") == "success" or item.get("code") == "SUCCESS"
    return RecordOutcome(
        ok=ok,
        code=str(item.get("code", "UNKNOWN")),
        message=str(item.get("message", "")),
        action=item.get("action"),
        zoho_id=str(details["id"]) if ok and details.get("id") else None,
        details=details if not ok else {},
    )


class ZohoRecords:
    """Record calls of the v8 API, each through ``caller.request`` (token, retries, credits, scope errors)."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller
        self._org: dict[str, Any] | None = None

    def upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any] | RecordJSON],
        *,
        duplicate_check_fields: Sequence[str] = ("Email",),
        trigger: Sequence[str] | None = None,
    ) -> list[RecordOutcome]:
        """Insert-or-update up to 100 records matched on ``duplicate_check_fields``; one outcome per record.

        A record is a dict, or its JSON text wrapped in ``RecordJSON`` (a plan's payloads), sent as it is.
        """
        if not records:
            return []
        if len(records) > ZOHO_MAX_RECORDS_PER_WRITE:
            raise ValueError(f"at most {ZOHO_MAX_RECORDS_PER_WRITE} records per upsert, got {len(records)}")
        rest: dict[str, Any] = {"duplicate_check_fields": list(duplicate_check_fields)}
        if trigger is not None:
            rest["trigger"] = list(trigger)
        response = self._caller.request(
            "POST",
            f"/crm/{ZOHO_API_VERSION}/{module}/upsert",
            operation="upsert",
            credits=write_credits(len(records)),
            write=True,
            data=records_body(records, rest),
            module=module,
        )
        return parse_record_outcomes(response, len(records))

    def update(
        self, module: str, records: Sequence[dict[str, Any]], *, trigger: Sequence[str] | None = None
    ) -> list[RecordOutcome]:
        """Update records by their ``id`` (PUT /crm/v8/{module}), 100 a call; one outcome per record."""
        missing = [i for i, record in enumerate(records) if not record.get("id")]
        if missing:
            raise ValueError(f"update_records: records at positions {missing[:10]} have no 'id'")
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(records), ZOHO_MAX_RECORDS_PER_WRITE):
            chunk = list(records[start : start + ZOHO_MAX_RECORDS_PER_WRITE])
            body: dict[str, Any] = {"data": chunk}
            if trigger is not None:
                body["trigger"] = list(trigger)
            response = self._caller.request(
                "PUT",
                f"/crm/{ZOHO_API_VERSION}/{module}",
                operation="update",
                credits=write_credits(len(chunk)),
                write=True,
                json=body,
                module=module,
            )
            outcomes += [
                replace(o, action="update") if o.ok else o for o in parse_record_outcomes(response, len(chunk))
            ]
        return outcomes

    def delete(self, module: str, ids: Sequence[str], *, wf_trigger: bool = True) -> list[RecordOutcome]:
        """Delete records by id, 100 a call; one outcome per id (``INVALID_DATA`` for unknown ids).

        A retry after a 5xx may report ``INVALID_DATA`` "record not deleted" for an id the first attempt
        deleted: check ``deleted`` when that matters.
        """
        ids = [str(i) for i in ids]
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(ids), ZOHO_MAX_RECORDS_PER_WRITE):
            chunk = ids[start : start + ZOHO_MAX_RECORDS_PER_WRITE]
            response = self._caller.request(
                "DELETE",
                f"/crm/{ZOHO_API_VERSION}/{module}",
                operation="delete",
                write=True,
                module=module,
                params={"ids": ",".join(chunk), "wf_trigger": "true" if wf_trigger else "false"},
            )
            outcomes += [
                replace(o, action="delete") if o.ok else o for o in parse_record_outcomes(response, len(chunk))
            ]
        return outcomes

    def get(self, module: str, ids: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """Records by id (at most 100 ids per call), only the named fields."""
        ids = list(ids)
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):
            response = self._caller.request(
                "GET",
                f"/crm/{ZOHO_API_VERSION}/{module}",
                operation="get",
                module=module,
                params={"ids": ",".join(ids[start : start + 100]), "fields": ",".join(fields)},
            )
            if response.status_code == 204:
                continue
            raise_for_request_error(response, "get")
            found.extend(response.json().get("data", []))
        return found

    def deleted(self, module: str, since: datetime | None = None, *, type: str = "all") -> list[dict[str, Any]]:
        """Zoho's deleted-records list (recycle bin 60 days, permanent 120 days), all pages.

        ``since``: only records deleted after it (``If-Modified-Since``). ``type``: all, recycle or permanent.
        Costs 2 credits per page.
        """
        headers = {"If-Modified-Since": zoho_time(since)} if since is not None else None
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self._caller.request(
                "GET",
                f"/crm/{ZOHO_API_VERSION}/{module}/deleted",
                operation="deleted",
                module=module,
                credits=ZOHO_CREDITS["deleted"],
                headers=headers,
                params={"type": type, "page": page, "per_page": ZOHO_MAX_PER_PAGE},
            )
            if response.status_code in (204, 304):  # nothing (more) deleted
                return out
            raise_for_request_error(response, "deleted")
            body = response.json() or {}
            out.extend(body.get("data") or [])
            if not (body.get("info") or {}).get("more_records"):
                return out
            page += 1

    def convert_lead(
        self,
        lead_id: str,
        *,
        contact_id: str | None = None,
        account_id: str | None = None,
        overwrite: bool = False,
    ) -> RecordOutcome:
        """Convert a Lead into a Contact (5 credits). ``zoho_id`` of a success is the Contact's id.

        ``contact_id`` links that Contact and ``account_id`` that Account. Without ids Zoho matches on its own
        (the lead's Email against Contacts, its Company against Account names, then its *name* against Contacts),
        and creates an Account whenever the lead has a Company: there is no documented switch to skip the Account
        but an empty Company (Zoho help "Convert Leads"). ``details["Accounts"]`` of a success names the Account.
        """
        options: dict[str, Any] = {"overwrite": overwrite, "notify_lead_owner": False, "notify_new_entity_owner": False}
        if contact_id:
            options["Contacts"] = {"id": str(contact_id)}
        if account_id:
            options["Accounts"] = {"id": str(account_id)}
        response = self._caller.request(
            "POST",
            f"/crm/{ZOHO_API_VERSION}/Leads/{lead_id}/actions/convert",
            operation="convert",
            module="Leads",
            credits=ZOHO_CREDITS["convert"],
            write=True,
            json={"data": [options]},
        )
        [outcome] = parse_record_outcomes(response, 1)
        body = json_body(response)
        item = (body.get("data") or [{}])[0] if isinstance(body, dict) and isinstance(body.get("data"), list) else {}
        if not outcome.ok:
            if isinstance(body, dict) and "data" not in body:
                return RecordOutcome(
                    False,
                    str(body.get("code", f"HTTP_{response.status_code}")),
                    str(body.get("message", "")),
                    details=dict(body.get("details") or {}),
                )
            return outcome
        details = item.get("details") or {}
        contact = details.get("Contacts") or {}
        return RecordOutcome(
            True,
            outcome.code,
            outcome.message,
            action="convert",
            zoho_id=str(contact["id"]) if contact.get("id") else None,
            details={k: details.get(k) for k in ("Contacts", "Accounts", "Deals")},
        )

    def fields(self, module: str) -> list[dict[str, Any]]:
        """Field metadata of a module: api_name, data_type, length, read_only, system_mandatory, ..."""
        response = self._caller.request(
            "GET",
            f"/crm/{ZOHO_API_VERSION}/settings/fields",
            operation="fields",
            params={"module": module},
            module=module,
        )
        raise_for_request_error(response, "fields")
        return response.json().get("fields", [])

    def layouts(self, module: str) -> list[dict[str, Any]]:
        """The module's layouts (GET /crm/v8/settings/layouts): ``sections[].fields[]`` with ``api_name`` and
        ``required``, the fields a record must carry beyond the system-mandatory ones."""
        response = self._caller.request(
            "GET",
            f"/crm/{ZOHO_API_VERSION}/settings/layouts",
            operation="layouts",
            params={"module": module},
            module=module,
        )
        raise_for_request_error(response, "layouts")
        return (json_body(response) or {}).get("layouts", [])

    def current_user(self) -> dict[str, Any]:
        """The connected user (GET /crm/v8/users?type=CurrentUser, what Zoho's SDKs read at start-up)."""
        response = self._caller.request(
            "GET", f"/crm/{ZOHO_API_VERSION}/users", operation="users", params={"type": "CurrentUser"}
        )
        raise_for_request_error(response, "users")
        users = (json_body(response) or {}).get("users") or []
        if not users:
            raise ZohoRequestError("users: Zoho answered without the current user", status=response.status_code)
        return dict(users[0])

    def org(self) -> dict[str, Any]:
        """The org (``id``, ``zgid``, ``company_name``, ...): GET /crm/v8/org."""
        response = self._caller.request("GET", f"/crm/{ZOHO_API_VERSION}/org", operation="org")
        raise_for_request_error(response, "org")
        orgs = (response.json() or {}).get("org") or []
        if not orgs:
            raise ZohoRequestError("org: Zoho answered without an org", status=response.status_code)
        self._org = dict(orgs[0])
        return dict(orgs[0])

    def zgid(self) -> str:
        """The org's zgid (Bulk Write's ``X-CRM-ORG``), read once."""
        if self._org is None or not self._org.get("zgid"):
            self.org()
        return str((self._org or {}).get("zgid"))
