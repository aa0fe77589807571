"""Local stand-in for the Zoho CRM v8 API (OAuth, records, deleted list, convert, fields, org, bulk write).

It is a real HTTP server on 127.0.0.1 built on the standard library only. It reproduces the behaviour
documented in ``shared/docs/zoho-crm-api.md`` and the official v8 OpenAPI files: error bodies and status
codes, per-record positional results, the token throttle, credits, concurrency limits and injected faults.
Run it standalone with ``python -m sandboxes.zoho_crm --port 0 --ready-file PATH``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import csv
import email.policy
import email.utils
import functools
import gc
import hashlib
import io
import json
import math
import random
import re
import threading
import time
import zipfile
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit
from sandboxes._server import LoopbackServer, SandboxHandler, serve_until_stopped

MODULES = ("Contacts", "Leads")
MAX_WRITE_RECORDS = 100
MAX_PAGE_SIZE = 200
MAX_FIELDS_PARAM = 50
DISCRETE_PAGE_LIMIT = 2000
TOKEN_PAGE_LIMIT = 100_000
TOKEN_THROTTLE_COUNT = 10
TOKEN_THROTTLE_WINDOW = 600.0
MAX_ACTIVE_ACCESS_TOKENS = 15  # Zoho docs say 10 or 15; the oldest is invalidated past the cap
CREDIT_WINDOW = 86_400.0
BULK_MAX_ROWS = 25_000
BULK_MAX_COLUMNS = 200
BULK_MAX_BYTES = 25 * 1024 * 1024
FAULT_KINDS = ("429", "500", "drop", "expire_token", "apply_then_500")
TOKEN_OPERATIONS = ("token", "revoke")

THROTTLE_BODY = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}

# ---------------------------------------------------------------------------------------------- helpers


def _err(code: str, message: str, **details: Any) -> dict:
    """Zoho's error object: flat for request-level errors, one item of ``data`` for per-record ones."""
    return {"code": code, "details": details, "message": message, "status": "error"}


def _iso(ts: float) -> str:
    return _iso_second(int(ts))


@functools.lru_cache(maxsize=64)
def _iso_second(second: int) -> str:
    """Formatted once per second: every record written stamps its Created_Time and Modified_Time."""
    return datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _parse_time(value: str) -> float | None:
    """ISO 8601 (Zoho's format) or an RFC 1123 HTTP date; None when unparsable."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _norm(value: Any) -> str:
    """Duplicate matching key: Zoho compares unique values case-insensitively (and we trim)."""
    return str(value).strip().lower()


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _write_status(items: list[dict], all_ok: int) -> int:
    """All success → ``all_ok``; mixed → 207; all failed → 400 (body still ``{"data": [...]}``)."""
    ok = sum(1 for item in items if item.get("status") == "success")
    if ok == len(items):
        return all_ok
    return 207 if ok else 400


# ------------------------------------------------------------------------------------------ field metadata

_JSON_TYPES = {
    "text": "string", "textarea": "string", "email": "string", "phone": "string", "website": "string",
    "picklist": "string", "integer": "integer", "currency": "double", "double": "double",
    "boolean": "boolean", "date": "string", "datetime": "string", "lookup": "jsonobject",
    "ownerlookup": "jsonobject", "multiselectpicklist": "jsonarray",
}
_DEFAULT_LENGTHS = {
    "text": 255, "textarea": 32000, "email": 100, "phone": 30, "website": 255, "picklist": 120,
    "integer": 9, "currency": 16, "double": 16, "boolean": 5, "date": 20, "datetime": 120,
    "lookup": 120, "ownerlookup": 120, "multiselectpicklist": 2000,
}
_TEXTUAL = frozenset({"text", "textarea", "email", "phone", "website", "picklist"})
_EXPECTED_TYPE = {"currency": "double", "lookup": "jsonobject", "ownerlookup": "jsonobject",
                  "multiselectpicklist": "jsonarray"}
_EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_SALUTATIONS = ("-None-", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.")
_LEAD_SOURCES = ("-None-", "Advertisement", "Cold Call", "Employee Referral", "External Referral",
                 "Online Store", "Partner", "Public Relations", "Seminar Partner", "Trade Show",
                 "Web Download", "Web Research", "Chat")
_LEAD_STATUSES = ("-None-", "Attempted to Contact", "Contact in Future", "Contacted", "Junk Lead",
                  "Lost Lead", "Not Contacted", "Pre-Qualified", "Not Qualified")


def _spec(api_name: str, data_type: str, length: int | None = None, **flags: Any) -> dict:
    return {"api_name": api_name, "data_type": data_type, "length": length, **flags}


def _standard_specs(module: str) -> list[dict]:
    """Standard Contacts/Leads fields per doc §6/§7 (Contacts use Mailing_*, Leads use Street/City/...)."""
    head = [
        _spec("Owner", "ownerlookup"),
        _spec("Salutation", "picklist", picklist=_SALUTATIONS),
        _spec("First_Name", "text", 40),
        _spec("Last_Name", "text", 80, mandatory=True),
        _spec("Full_Name", "text", 120, read_only=True),
        _spec("Email", "email", 100),
        _spec("Secondary_Email", "email", 100),
        _spec("Phone", "phone", 30),
        _spec("Mobile", "phone", 30),
        _spec("Fax", "phone", 30),
        _spec("Lead_Source", "picklist", picklist=_LEAD_SOURCES),
        _spec("Email_Opt_Out", "boolean"),
        _spec("Description", "textarea", 32000),
    ]
    if module == "Contacts":
        address = ["Street", "City", "State", "Zip", "Country"]
        body = [_spec("Home_Phone", "phone", 30), _spec("Other_Phone", "phone", 30),
                _spec("Title", "text", 100), _spec("Department", "text", 100),
                _spec("Date_of_Birth", "date"), _spec("Account_Name", "lookup")]
        for prefix in ("Mailing", "Other"):
            body += [_spec(f"{prefix}_{part}", "text", 250 if part == "Street" else 100) for part in address]
    else:
        body = [_spec("Company", "text", 200), _spec("Designation", "text", 100),
                _spec("Website", "website", 255), _spec("Lead_Status", "picklist", picklist=_LEAD_STATUSES),
                _spec("No_of_Employees", "integer"), _spec("Annual_Revenue", "currency"),
                _spec("Skype_ID", "text", 50), _spec("Twitter", "text", 50),
                _spec("Street", "text", 250), _spec("City", "text", 100), _spec("State", "text", 100),
                _spec("Zip_Code", "text", 100), _spec("Country", "text", 100),
                _spec("Converted__s", "boolean", read_only=True),
                _spec("Converted_Date_Time", "datetime", read_only=True)]
    tail = [_spec("Created_Time", "datetime", read_only=True), _spec("Modified_Time", "datetime", read_only=True),
            _spec("Created_By", "ownerlookup", read_only=True), _spec("Modified_By", "ownerlookup", read_only=True)]
    return head + body + tail


_CUSTOM_SPECS = [
    _spec("Order_Count", "integer"),
    _spec("Total_Order_Value", "currency"),
    _spec("Account_Balance", "currency"),
    _spec("Newsletter_Subscriber", "boolean"),
    _spec("Store_Name", "text", 255),
    _spec("Store_URL", "website", 255),
    _spec("Customer_Deleted", "boolean"),
    _spec("Source_Customer_ID", "text", 50),
]

# Lead → Contact field mapping on conversion (same-named custom fields map too).
_LEAD_TO_CONTACT = {
    "Salutation": "Salutation", "First_Name": "First_Name", "Last_Name": "Last_Name", "Email": "Email",
    "Secondary_Email": "Secondary_Email", "Phone": "Phone", "Mobile": "Mobile", "Fax": "Fax",
    "Lead_Source": "Lead_Source", "Email_Opt_Out": "Email_Opt_Out", "Description": "Description",
    "Designation": "Title", "Street": "Mailing_Street", "City": "Mailing_City", "State": "Mailing_State",
    "Zip_Code": "Mailing_Zip", "Country": "Mailing_Country",
}


def _complete_field(spec: dict, field_id: str, custom: bool) -> dict:
    """Expand a short spec into the metadata shape of GET /settings/fields (doc §6)."""
    data_type = spec.get("data_type", "text")
    read_only = bool(spec.get("read_only", False))
    label = spec.get("field_label") or spec["api_name"].replace("__s", "").replace("_", " ")
    picklist = spec.get("picklist") or ()
    unique = spec.get("unique") or {}
    if unique is True:
        unique = {"case_sensitive": False}
    out = {
        "api_name": spec["api_name"], "field_label": label, "display_label": label, "id": field_id,
        "data_type": data_type, "json_type": _JSON_TYPES.get(data_type, "string"),
        "length": spec.get("length") or _DEFAULT_LENGTHS.get(data_type, 255),
        "system_mandatory": bool(spec.get("mandatory", spec.get("system_mandatory", False))),
        "read_only": read_only, "field_read_only": read_only, "custom_field": custom, "visible": True,
        "unique": unique,
        "operation_type": {"api_create": not read_only, "api_update": not read_only,
                           "web_create": not read_only, "web_update": not read_only},
        "decimal_place": 2 if data_type == "currency" else None,
        "pick_list_values": [
            {"display_value": v, "actual_value": v, "reference_value": v, "sequence_number": i + 1,
             "id": f"{field_id}{i:02d}", "type": "used", "colour_code": None} for i, v in enumerate(picklist)],
        "lookup": {"module": {"api_name": "Accounts"}} if data_type == "lookup" else {},
    }
    for key, value in spec.items():  # extra_fields may carry any other metadata key verbatim
        if key not in ("picklist", "mandatory", "unique") and key not in out:
            out[key] = value
    return out


def _check_value(spec: dict, value: Any, path: str) -> tuple[Any, dict | None]:
    """Validate one value against its field; returns (value to store, error item or None)."""
    name, data_type, length = spec["api_name"], spec["data_type"], spec["length"]
    if value is None:
        return None, None

    # The error items are built only for a value that fails (most values pass: 1,500 checks per 100 records).
    def type_error() -> dict:
        return _err("INVALID_DATA", "invalid data", expected_data_type=_EXPECTED_TYPE.get(data_type, data_type),
                    api_name=name, json_path=path)

    def too_long() -> dict:
        return _err("INVALID_DATA", "invalid data", maximum_length=length, api_name=name, json_path=path)

    def bad_value() -> dict:
        return _err("INVALID_DATA", "invalid data", api_name=name, json_path=path)

    if data_type in _TEXTUAL:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return None, type_error()
        text = value if isinstance(value, str) else str(value)  # Zoho stores numbers sent to text fields as text
        if len(text) > length:
            return None, too_long()
        if data_type == "email" and text.strip() and not _EMAIL_RE.match(text.strip()):
            return None, bad_value()
        if data_type == "website" and any(c.isspace() for c in text.strip()):  # loose: localhost URLs pass
            return None, bad_value()
        return text, None
    if data_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return None, type_error()
        return (value, None) if len(str(abs(value))) <= length else (None, too_long())
    if data_type in ("currency", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None, type_error()
        return (value, None) if len(str(int(abs(value)))) <= length else (None, too_long())
    if data_type == "boolean":
        return (value, None) if isinstance(value, bool) else (None, type_error())
    if data_type == "date":
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            return None, type_error()
        return value, None
    if data_type == "datetime":
        ok = isinstance(value, str) and _parse_time(value) is not None
        return (value, None) if ok else (None, type_error())
    if data_type in ("lookup", "ownerlookup"):
        ok = isinstance(value, dict) and (value.get("id") or value.get("name"))
        return (dict(value), None) if ok else (None, type_error())
    if data_type == "multiselectpicklist":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return (list(value), None) if ok else (None, type_error())
    return value, None


# ------------------------------------------------------------------------------------------ HTTP plumbing


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes
    _json: Any = field(default=None, repr=False)
    _json_error: bool = field(default=False, repr=False)

    def json(self) -> Any:
        """Parsed JSON body; raises ValueError when the body is not JSON."""
        if self._json is None and not self._json_error:
            try:
                self._json = json.loads(self.body.decode("utf-8") or "null")
            except (UnicodeDecodeError, ValueError):
                self._json_error = True
        if self._json_error:
            raise ValueError("body is not JSON")
        return self._json

    def data_count(self) -> int:
        try:
            data = self.json().get("data") if isinstance(self.json(), dict) else None
        except ValueError:
            return 0
        return len(data) if isinstance(data, list) else 0


@dataclass
class _Response:
    status: int
    body: Any = None  # dict → JSON, bytes → raw, None → empty
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=UTF-8"
    drop: bool = False


def _json_response(status: int, body: Any) -> _Response:
    return _Response(status, body)


_INVALID_URL = _err("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
_INVALID_METHOD = _err("INVALID_REQUEST_METHOD", "The http request method type is not a valid one")
_INTERNAL = _err("INTERNAL_ERROR", "Internal server error occurred.")
_CONCURRENCY = _err("TOO_MANY_REQUESTS", "The concurrency limit of the app has been exceeded. Please try again later.")
_OUT_OF_CREDITS = _err("TOO_MANY_REQUESTS", "Many requests fired than the allowed limit for the past 24 hours.")
_INVALID_TOKEN = _err("INVALID_TOKEN", "invalid oauth token")
_AUTH_FAILURE = _err("AUTHENTICATION_FAILURE", "Authentication failed")
_SCOPE_MISMATCH = _err("OAUTH_SCOPE_MISMATCH", "Unauthorized")
_INVALID_MODULE = _err("INVALID_MODULE", "the module name given seems to be invalid")


@dataclass
class _Route:
    operation: str
    module: str | None
    handler: Callable[..., _Response] | None
    args: tuple = ()
    error: _Response | None = None  # 404/405 answered after authentication


# ------------------------------------------------------------------------------------------------ sandbox


class ZohoSandbox(LoopbackServer):
    """In-process Zoho CRM v8 emulator serving the accounts host and the API host on one loopback port.

    Test knobs: ``inject_fault`` / ``set_fault_rate`` (429 with optional Retry-After, 500, drop, expire_token,
    apply_then_500), ``deny_permissions`` (403 NO_PERMISSION), ``latency`` (each API call answers that long after
    it arrived), ``concurrency_limit`` (429 past it; ``peak_concurrency`` records the most calls in flight),
    ``token_throttle_window``,
    ``bulk_step_seconds`` and ``bulk_relative_download_url``; ``calls()`` lists every call with its credits.
    """

    thread_name = "zoho-sandbox"

    def _handler(self) -> type:
        return _Handler

    def __init__(
        self,
        *,
        client_id: str = "1000.SANDBOXCLIENT",
        client_secret: str = "sandbox-client-secret-0123456789",
        refresh_token: str = "1000.sandbox-refresh-token-0123456789abcdef",
        scopes: tuple[str, ...] = ("ZohoCRM.modules.ALL", "ZohoCRM.settings.fields.READ", "ZohoCRM.org.READ",
                                   "ZohoCRM.bulk.ALL", "ZohoFiles.files.ALL"),
        access_token_ttl: int = 3600,
        latency: float = 0.0,
        concurrency_limit: int | None = None,
        daily_credits: int = 100_000,
        seed: int = 0,
        extra_fields: dict[str, list[dict]] | None = None,
    ) -> None:
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.access_token_ttl = access_token_ttl
        self.latency = latency
        self.concurrency_limit = concurrency_limit
        self.daily_credits = daily_credits
        self.seed = seed
        self.bulk_step_seconds = 0.2  # pause between bulk job states so pollers see ADDED → IN PROGRESS
        # Zoho's v7 samples give a relative download_url; the OAS an absolute one (doc §9 step 5).
        self.bulk_relative_download_url = False
        self.token_throttle_window = TOKEN_THROTTLE_WINDOW  # tests shorten Zoho's 10 minutes
        self.url = ""
        self.peak_concurrency = 0
        self._lock = threading.RLock()  # one lock around the record store and all other state
        self._next_id = 5_700_000_000_000_000_000 + (seed % 10**9) * 10**6  # 19 digits, deterministic
        self._token_rng = random.Random(f"zoho-sandbox-tokens-{seed}")
        self._fault_rng = random.Random(seed)
        self._user = {"name": "Sandbox Admin", "id": self._new_id(), "email": "admin@sandbox.example"}
        self._org_id, self._zgid = self._new_id(), str(600_000_000 + seed % 10**8)
        self._fields = self._build_fields(extra_fields or {})
        # Per module, the fields every written record is checked against (the field list is fixed from here on).
        self._mandatory = {m: tuple(n for n, spec in specs.items() if spec["system_mandatory"])
                           for m, specs in self._fields.items()}
        self._unique = {m: [n for n, spec in specs.items() if spec["unique"]] for m, specs in self._fields.items()}
        self._store: dict[str, dict[str, dict]] = {m: {} for m in MODULES}
        self._mtimes: dict[str, float] = {}
        self._indexes: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._deleted: dict[str, list[dict]] = {m: [] for m in MODULES}
        self._accounts: dict[str, dict] = {}
        self._clients: dict[str, dict] = {}
        self._refresh_tokens: dict[str, dict] = {}
        self._access_tokens: dict[str, dict] = {}
        self._grant_codes: dict[str, dict] = {}
        self._token_calls: dict[str, int] = {}
        self._calls: list[dict] = []
        self._credits: deque[tuple[float, int]] = deque()
        self._credits_in_window = 0
        self._in_flight = 0
        self._faults: list[dict] = []
        self._denied: dict[str, list[str]] = {}
        self._fault_rates: dict[str, float] = {}
        self._files: dict[str, dict] = {}
        self._jobs: dict[str, dict] = {}
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_client(client_id, client_secret)
        self._refresh_tokens[refresh_token] = {"client_id": client_id, "scopes": tuple(scopes),
                                               "issued": deque(), "revoked": False}

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self, port: int = 0) -> "ZohoSandbox":
        self._stopping.clear()
        return super().start(port)

    def stop(self) -> None:
        self._stopping.set()  # ends the bulk-job threads' waits
        super().stop()

    # ------------------------------------------------------------------------- registration helpers

    def add_client(self, client_id: str, client_secret: str, redirect_uri: str | None = None) -> None:
        with self._lock:
            self._clients[client_id] = {"secret": client_secret, "redirect_uri": redirect_uri}

    def add_refresh_token(self, client_id: str, scopes: tuple[str, ...]) -> str:
        with self._lock:
            token = f"1000.{self._token_rng.getrandbits(128):032x}.{self._token_rng.getrandbits(128):032x}"
            self._refresh_tokens[token] = {"client_id": client_id, "scopes": tuple(scopes),
                                           "issued": deque(), "revoked": False}
            return token

    def issue_grant_code(self, client_id: str, scopes: tuple[str, ...], ttl_seconds: float = 120.0) -> str:
        """A single-use authorization code, like the Zoho API console's self-client grant token."""
        with self._lock:
            code = f"1000.{self._token_rng.getrandbits(128):032x}.{self._token_rng.getrandbits(128):032x}"
            self._grant_codes[code] = {"client_id": client_id, "scopes": tuple(scopes),
                                       "expires_at": time.time() + ttl_seconds, "used": False}
            return code

    # ----------------------------------------------------------------------------------- inspection

    def records(self, module: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(rec) for rec in self._store[module].values()]

    def deleted_records(self, module: str) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(entry) for entry in self._deleted[module]]

    def calls(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def credits_used(self) -> int:
        with self._lock:
            self._expire_credits(time.time())
            return self._credits_in_window

    def token_calls(self, refresh_token: str | None = None) -> int:
        """Token endpoint calls that named this refresh token (default: the constructor's one)."""
        with self._lock:
            return self._token_calls.get(refresh_token or self.refresh_token, 0)

    # ----------------------------------------------------------------------------------------- faults

    def inject_fault(self, kind: str, *, times: int = 1, operation: str | None = None,
                     status: int | None = None, retry_after: float | str | None = None) -> None:
        """Queue a fault for the next ``times`` matching calls.

        ``operation=None`` matches every API call (not token calls); name ``"token"`` to hit the accounts host.
        ``status`` overrides the HTTP status of a 429/500/apply_then_500 answer. ``retry_after`` adds a
        ``Retry-After`` header to a 429 or 500 (Zoho does not document one; a client must cope either way).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append({"kind": kind, "times": int(times), "operation": operation, "status": status,
                                 "retry_after": retry_after})

    def deny_permissions(self, module: str, permissions: list[str]) -> None:
        """The connected user's profile loses ``permissions`` on ``module``: its calls answer 403 NO_PERMISSION.

        An empty list gives the permissions back.
        """
        with self._lock:
            if permissions:
                self._denied[self._module_name(module)] = list(permissions)
            else:
                self._denied.pop(self._module_name(module), None)

    def set_fault_rate(self, kind: str, probability: float) -> None:
        """Random faults on API calls, reproducible for a given seed; probability 0 switches them off."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            if probability <= 0:
                self._fault_rates.pop(kind, None)
            else:
                self._fault_rates[kind] = float(probability)

    def delete_record_in_ui(self, module: str, record_id: str, permanent: bool = False) -> None:
        """A user deletes a record inside Zoho: it leaves the module and shows in the deleted list."""
        with self._lock:
            if record_id not in self._store[module]:
                raise KeyError(f"{module} has no record {record_id}")
            self._remove(module, record_id, "permanent" if permanent else "recycle")

    def _take_fault(self, operation: str) -> dict | None:
        api_call = operation not in TOKEN_OPERATIONS
        with self._lock:
            for fault in self._faults:
                wanted = fault["operation"]
                if (wanted is None and api_call) or wanted == operation:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self._faults.remove(fault)
                    return fault
            if api_call:
                for kind, probability in self._fault_rates.items():
                    if self._fault_rng.random() < probability:
                        return {"kind": kind, "times": 1, "operation": None, "status": None, "retry_after": None}
        return None

    def _fault_response(self, fault: dict) -> _Response | None:
        """The answer a fault gives before the request is processed (None for apply_then_500)."""
        kind = fault["kind"]
        if kind == "drop":
            return _Response(0, drop=True)
        headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
        if kind == "429":
            return _Response(fault["status"] or 429, _err("TOO_MANY_REQUESTS", "too many requests"), headers)
        if kind == "500":
            return _Response(fault["status"] or 500, copy.deepcopy(_INTERNAL), headers)
        if kind == "expire_token":
            with self._lock:
                self._access_tokens.clear()
            return _json_response(401, _INVALID_TOKEN)
        return None

    # -------------------------------------------------------------------------------------- dispatch

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        req = _read_request(handler)
        if req.path.startswith("/__sandbox__"):
            _send(handler, self._inspect(req))
            return
        started = time.time()
        info: dict[str, Any] = {"module": None, "operation": "unknown", "records": 0, "credits": 0}
        try:
            if req.path.startswith("/oauth/v2/"):
                resp = self._handle_oauth(req, info)
            else:
                resp = self._handle_api(req, info)
        except Exception:  # a sandbox bug must look like Zoho's 500, not hang the client
            resp = _json_response(500, _INTERNAL)
        self._record_call(req, resp, info, started)
        _send(handler, resp)

    def _record_call(self, req: _Request, resp: _Response, info: dict, started: float) -> None:
        secret_keys = {"client_secret", "refresh_token", "code", "token"}
        query = {k: ("***" if k in secret_keys else v) for k, v in req.query.items()}
        entry = {"method": req.method, "path": req.path, "query": query,
                 "status": None if resp.drop else resp.status, **info, "ts": started}
        with self._lock:
            self._calls.append(entry)

    def _inspect(self, req: _Request) -> _Response:
        """Test/demo endpoints under /__sandbox__ (no auth, not counted as calls)."""
        route = (req.method, req.path.rstrip("/"))
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return _json_response(400, {"error": "body is not JSON"})
        if route == ("GET", "/__sandbox__/state"):
            with self._lock:
                state = {"records": {m: self.records(m) for m in MODULES}, "credits_used": self.credits_used(),
                         "peak_concurrency": self.peak_concurrency,
                         "deleted": {m: self.deleted_records(m) for m in MODULES}, "zgid": self._zgid}
            return _json_response(200, state)
        if route == ("GET", "/__sandbox__/calls"):
            return _json_response(200, {"calls": self.calls()})
        if route == ("POST", "/__sandbox__/reset_calls"):
            self.reset_calls()
            return _json_response(200, {"status": "success"})
        try:
            return self._inspect_action(route, body or {})
        except (KeyError, TypeError, ValueError) as exc:
            return _json_response(400, {"error": str(exc)})

    def _inspect_action(self, route: tuple[str, str], body: dict) -> _Response:
        if route == ("POST", "/__sandbox__/faults"):
            if "probability" in body:
                self.set_fault_rate(body["kind"], float(body["probability"]))
            else:
                self.inject_fault(body["kind"], times=int(body.get("times", 1)),
                                  operation=body.get("operation"), status=body.get("status"),
                                  retry_after=body.get("retry_after"))
            return _json_response(200, {"status": "success"})
        if route == ("POST", "/__sandbox__/delete_in_ui"):
            self.delete_record_in_ui(body["module"], str(body["id"]), bool(body.get("permanent", False)))
            return _json_response(200, {"status": "success"})
        if route == ("POST", "/__sandbox__/grant_code"):
            code = self.issue_grant_code(body.get("client_id", self.client_id), tuple(body["scopes"]),
                                         float(body.get("ttl_seconds", 120.0)))
            return _json_response(200, {"code": code})
        if route == ("POST", "/__sandbox__/refresh_token"):
            token = self.add_refresh_token(body.get("client_id", self.client_id), tuple(body["scopes"]))
            return _json_response(200, {"refresh_token": token})
        return _json_response(404, {"error": "unknown sandbox endpoint"})

    # ----------------------------------------------------------------------------------------- OAuth

    def _handle_oauth(self, req: _Request, info: dict) -> _Response:
        params = dict(req.query)
        if "urlencoded" in (req.headers.get("Content-Type") or "") and req.body:
            params.update({k: v[-1] for k, v in parse_qs(req.body.decode("utf-8"), keep_blank_values=True).items()})
        path = req.path.rstrip("/")
        info["operation"] = "revoke" if path == "/oauth/v2/token/revoke" else "token"
        info["grant_type"] = params.get("grant_type")
        if path not in ("/oauth/v2/token", "/oauth/v2/token/revoke"):
            return _json_response(404, {"error": "invalid_request"})
        fault = self._take_fault(info["operation"])
        if fault is not None and (resp := self._fault_response(fault)) is not None:
            return resp
        if req.method != "POST":
            return _json_response(405, {"error": "invalid_request"})
        if info["operation"] == "revoke":
            return self._oauth_revoke(params.get("token", ""))
        grant_type = params.get("grant_type")
        if grant_type == "refresh_token":
            return self._oauth_refresh(params, info)
        if grant_type == "authorization_code":
            return self._oauth_exchange(params)
        return _json_response(200, {"error": "unsupported_grant_type"})

    def _client_error(self, params: dict) -> str | None:
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            return "invalid_client"
        if client["secret"] != params.get("client_secret"):
            return "invalid_client_secret"
        return None

    def _oauth_refresh(self, params: dict, info: dict) -> _Response:
        token = params.get("refresh_token", "")
        now = time.time()
        with self._lock:
            self._token_calls[token] = self._token_calls.get(token, 0) + 1
            info["token_calls"] = self._token_calls[token]
            if error := self._client_error(params):
                return _json_response(200, {"error": error})  # Zoho answers OAuth errors with HTTP 200
            holder = self._refresh_tokens.get(token)
            if holder is None or holder["revoked"] or holder["client_id"] != params.get("client_id"):
                return _json_response(200, {"error": "invalid_code"})
            issued = holder["issued"]
            while issued and now - issued[0] >= self.token_throttle_window:
                issued.popleft()
            if len(issued) >= TOKEN_THROTTLE_COUNT:
                return _json_response(400, dict(THROTTLE_BODY))
            access = self._issue_access_token(token, holder, now)
        return _json_response(200, {"access_token": access, "scope": " ".join(holder["scopes"]),
                                    "api_domain": self.url, "token_type": "Bearer",
                                    "expires_in": self.access_token_ttl})

    def _oauth_exchange(self, params: dict) -> _Response:
        now = time.time()
        with self._lock:
            if error := self._client_error(params):
                return _json_response(200, {"error": error})
            grant = self._grant_codes.get(params.get("code", ""))
            if grant is None or grant["used"] or grant["expires_at"] <= now \
                    or grant["client_id"] != params.get("client_id"):
                return _json_response(200, {"error": "invalid_code"})
            registered = self._clients[params["client_id"]]["redirect_uri"]
            if registered is not None and params.get("redirect_uri") != registered:
                return _json_response(200, {"error": "invalid_redirect_uri"})
            grant["used"] = True
            refresh = self.add_refresh_token(grant["client_id"], grant["scopes"])
            holder = self._refresh_tokens[refresh]
            access = self._issue_access_token(refresh, holder, now)
        return _json_response(200, {"access_token": access, "refresh_token": refresh,
                                    "scope": " ".join(grant["scopes"]), "api_domain": self.url,
                                    "token_type": "Bearer", "expires_in": self.access_token_ttl})

    def _issue_access_token(self, refresh: str, holder: dict, now: float) -> str:
        holder["issued"].append(now)
        mine = sorted((rec["issued_at"], tok) for tok, rec in self._access_tokens.items()
                      if rec["refresh_token"] == refresh)
        for _, oldest in mine[: max(0, len(mine) - MAX_ACTIVE_ACCESS_TOKENS + 1)]:
            del self._access_tokens[oldest]  # past the active-token cap Zoho invalidates the oldest
        token = f"1000.{self._token_rng.getrandbits(128):032x}.{self._token_rng.getrandbits(128):032x}"
        self._access_tokens[token] = {"refresh_token": refresh, "scopes": {s.lower() for s in holder["scopes"]},
                                      "expires_at": now + self.access_token_ttl, "issued_at": now}
        return token

    def _oauth_revoke(self, token: str) -> _Response:
        with self._lock:
            holder = self._refresh_tokens.get(token)
            if holder is not None and not holder["revoked"]:
                holder["revoked"] = True  # revoking a refresh token kills its access tokens too
                for access in [t for t, rec in self._access_tokens.items() if rec["refresh_token"] == token]:
                    del self._access_tokens[access]
                return _json_response(200, {"status": "success"})
            if self._access_tokens.pop(token, None) is not None:
                return _json_response(200, {"status": "success"})
        return _json_response(400, {"status": "failure", "error": "invalid_request"})

    # ------------------------------------------------------------------------------------ API pipeline

    def _handle_api(self, req: _Request, info: dict) -> _Response:
        route = self._route(req)
        info.update(operation=route.operation, module=route.module)
        with self._lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
            over_limit = self.concurrency_limit is not None and self._in_flight > self.concurrency_limit
        arrived = time.monotonic()
        try:
            if over_limit:
                return _json_response(429, _CONCURRENCY)
            fault = self._take_fault(route.operation)
            if fault is not None and (resp := self._fault_response(fault)) is not None:
                return resp
            resp = self._authorised_call(req, route, info)
            if fault is not None and fault["kind"] == "apply_then_500":
                self._refund(info["credits"])  # answered 5xx, so not billed, like every other 5xx here
                info["credits"] = 0
                resp = self._with_credit_header(_json_response(fault["status"] or 500, _INTERNAL))
            if self.latency:
                # A remote Zoho's response time: the answer leaves `latency` after the call arrived, this
                # sandbox's own work included; the call counts as in flight until then.
                time.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
            return resp
        finally:
            with self._lock:
                self._in_flight -= 1

    def _authorised_call(self, req: _Request, route: _Route, info: dict) -> _Response:
        scopes, failure = self._authenticate(req)
        if failure is not None:
            return failure
        if route.error is not None:
            return route.error
        if not self._scope_ok(scopes, route):
            return _json_response(401, _SCOPE_MISMATCH)
        with self._lock:
            denied = self._denied.get(route.module or "")
        if denied:  # the user's profile lacks a permission: 403 naming it (doc §2.6)
            return _json_response(403, _err("NO_PERMISSION", "permission denied", permissions=list(denied)))
        cost = self._cost(route.operation, req)
        if not self._charge(cost):
            return self._with_credit_header(_json_response(429, _OUT_OF_CREDITS))
        info["credits"] = cost
        try:
            resp = route.handler(req, info, *route.args)
        except Exception:  # a sandbox bug must look like Zoho's own 500, not hang the client
            resp = _json_response(500, _INTERNAL)
        if resp.status >= 500:  # Zoho does not bill calls that fail on its side
            self._refund(cost)
            info["credits"] = 0
        return self._with_credit_header(resp)

    def _authenticate(self, req: _Request) -> tuple[set[str], _Response | None]:
        header = req.headers.get("Authorization")
        if not header:
            return set(), _json_response(401, _AUTH_FAILURE)
        prefix, _, token = header.strip().partition(" ")
        if prefix != "Zoho-oauthtoken":  # e.g. "Bearer": Zoho does not accept it
            return set(), _json_response(401, _INVALID_TOKEN)
        with self._lock:
            record = self._access_tokens.get(token.strip())
            if record is None or record["expires_at"] <= time.time():
                self._access_tokens.pop(token.strip(), None)
                return set(), _json_response(401, _INVALID_TOKEN)
            return set(record["scopes"]), None

    def _scope_ok(self, granted: set[str], route: _Route) -> bool:
        """Per-operation scope rules of doc §2.7 (scopes compare case-insensitively)."""
        op, module = route.operation, (route.module or "").lower()

        def any_of(*names: str) -> bool:
            return any(name.lower() in granted for name in names)

        def module_scope(*actions: str) -> bool:
            names = ["ZohoCRM.modules.ALL", f"ZohoCRM.modules.{module}.ALL"]
            for action in actions:
                names += [f"ZohoCRM.modules.{action}", f"ZohoCRM.modules.{module}.{action}"]
            return any_of(*names)

        rules: dict[str, Callable[[], bool]] = {
            "get": lambda: module_scope("READ"),
            "get_record": lambda: module_scope("READ"),
            "deleted": lambda: module_scope("READ"),
            "search": lambda: module_scope("READ") and any_of("ZohoSearch.securesearch.READ",
                                                              "ZohoSearch.securesearch.ALL"),
            "insert": lambda: module_scope("CREATE", "WRITE"),
            "update": lambda: module_scope("UPDATE", "WRITE"),
            "upsert": lambda: module_scope("CREATE", "WRITE"),
            "delete": lambda: module_scope("DELETE"),
            "convert": lambda: module_scope("CREATE", "WRITE"),
            "fields": lambda: any_of("ZohoCRM.settings.fields.READ", "ZohoCRM.settings.fields.ALL",
                                     "ZohoCRM.settings.ALL"),
            "org": lambda: any_of("ZohoCRM.org.READ", "ZohoCRM.org.ALL"),
            "upload": lambda: any_of("ZohoFiles.files.ALL"),
            "bulk_write": lambda: any_of("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.CREATE"),
            "bulk_status": lambda: any_of("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.CREATE", "ZohoCRM.bulk.READ"),
            "bulk_download": lambda: any_of("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.CREATE", "ZohoCRM.bulk.READ"),
        }
        rule = rules.get(op)
        return True if rule is None else rule()

    @staticmethod
    def _cost(operation: str, req: _Request) -> int:
        """Credits per call (doc §8.1): writes 1 per 10 records, convert 5, deleted 2, bulk job 500."""
        if operation in ("insert", "update", "upsert"):
            return max(1, math.ceil(req.data_count() / 10))
        return {"convert": 5, "deleted": 2, "bulk_write": 500}.get(operation, 1)

    def _expire_credits(self, now: float) -> None:
        while self._credits and now - self._credits[0][0] >= CREDIT_WINDOW:
            self._credits_in_window -= self._credits.popleft()[1]

    def _charge(self, cost: int) -> bool:
        with self._lock:
            now = time.time()
            self._expire_credits(now)
            if self._credits_in_window + cost > self.daily_credits:
                return False
            self._credits.append((now, cost))
            self._credits_in_window += cost
            return True

    def _refund(self, cost: int) -> None:
        with self._lock:
            self._credits.append((time.time(), -cost))
            self._credits_in_window -= cost

    def _with_credit_header(self, resp: _Response) -> _Response:
        used = self.credits_used()
        if used * 2 >= self.daily_credits:  # the header appears only once half the day's credits are gone
            resp.headers["X-API-CREDITS-REMAINING"] = str(max(0, self.daily_credits - used))
        return resp

    # ------------------------------------------------------------------------------------------- routes

    def _route(self, req: _Request) -> _Route:
        parts = [p for p in req.path.split("/") if p]
        method = req.method
        if parts[:2] == ["crm", "v8"]:
            return self._route_v8(method, parts[2:])
        if parts[:4] == ["crm", "bulk", "v8", "write"]:
            rest = parts[4:]
            if not rest:
                return self._expect(method, "POST", _Route("bulk_write", None, self._h_bulk_write))
            if len(rest) == 1:
                return self._expect(method, "GET", _Route("bulk_status", None, self._h_bulk_status, (rest[0],)))
            if len(rest) == 2 and rest[1] == "result":
                return self._expect(method, "GET",
                                    _Route("bulk_download", None, self._h_bulk_download, (rest[0],)))
        return _Route("unknown", None, None, error=_json_response(404, _INVALID_URL))

    def _route_v8(self, method: str, rest: list[str]) -> _Route:
        if rest == ["org"]:
            return self._expect(method, "GET", _Route("org", None, self._h_org))
        if rest == ["settings", "fields"]:
            return self._expect(method, "GET", _Route("fields", None, self._h_fields))
        if rest == ["upload"]:
            return self._expect(method, "POST", _Route("upload", None, self._h_upload))
        if len(rest) == 1:
            ops = {"GET": ("get", self._h_get_records), "POST": ("insert", self._h_insert),
                   "PUT": ("update", self._h_update), "DELETE": ("delete", self._h_delete)}
            return self._by_method(method, rest[0], ops, ())
        if len(rest) == 2 and rest[1] in ("upsert", "deleted", "search"):
            op, verb, handler = {"upsert": ("upsert", "POST", self._h_upsert),
                                 "deleted": ("deleted", "GET", self._h_deleted),
                                 "search": ("search", "GET", self._h_search)}[rest[1]]
            return self._expect(method, verb, _Route(op, self._module_name(rest[0]), handler, (rest[0],)))
        if len(rest) == 2:
            ops = {"GET": ("get_record", self._h_get_record), "PUT": ("update", self._h_update),
                   "DELETE": ("delete", self._h_delete)}
            return self._by_method(method, rest[0], ops, (rest[1],))
        if len(rest) == 4 and rest[2:] == ["actions", "convert"] and self._module_name(rest[0]) == "Leads":
            return self._expect(method, "POST", _Route("convert", "Leads", self._h_convert, (rest[1],)))
        return _Route("unknown", None, None, error=_json_response(404, _INVALID_URL))

    def _by_method(self, method: str, module: str, ops: dict, extra: tuple) -> _Route:
        if method not in ops:
            return _Route("unknown", self._module_name(module), None, error=_json_response(405, _INVALID_METHOD))
        op, handler = ops[method]
        return _Route(op, self._module_name(module), handler, (module, *extra))

    @staticmethod
    def _expect(method: str, verb: str, route: _Route) -> _Route:
        if method != verb:
            route.handler, route.error = None, _json_response(405, _INVALID_METHOD)
        return route

    @staticmethod
    def _module_name(name: str) -> str:
        """Canonical module api name (Zoho accepts any case); unknown names are returned unchanged."""
        return next((m for m in MODULES if m.lower() == name.lower()), name)

    # ------------------------------------------------------------------------------------ record store

    def _new_id(self) -> str:
        with self._lock:
            self._next_id += 1
            return str(self._next_id)

    def _build_fields(self, extra: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
        """Field metadata per module; extra_fields add fields or override same-named ones."""
        out: dict[str, dict[str, dict]] = {}
        for module in MODULES:
            specs = {s["api_name"]: (s, False) for s in _standard_specs(module)}
            specs.update({s["api_name"]: (s, True) for s in _CUSTOM_SPECS})
            for spec in extra.get(module, []):
                base, custom = specs.get(spec["api_name"], ({}, True))
                specs[spec["api_name"]] = ({**base, **spec}, custom)
            out[module] = {name: _complete_field(spec, self._new_id(), custom)
                           for name, (spec, custom) in specs.items()}
        return out

    def _unique_fields(self, module: str) -> list[str]:
        return list(self._unique[module])

    def _matches(self, module: str, field_name: str, value: Any) -> list[str]:
        """Ids whose ``field_name`` equals ``value`` (normalised), oldest first; converted leads excluded."""
        if _blank(value):
            return []
        key = (module, field_name)
        if key not in self._indexes:
            index: dict[str, list[str]] = {}
            for rid, rec in self._store[module].items():
                if not _blank(rec.get(field_name)):
                    index.setdefault(_norm(rec[field_name]), []).append(rid)
            self._indexes[key] = index
        ids = self._indexes[key].get(_norm(value), [])
        return [rid for rid in ids if not self._store[module][rid].get("Converted__s")]

    def _reindex(self, module: str, old: dict | None, new: dict | None) -> None:
        for (mod, field_name), index in self._indexes.items():
            if mod != module:
                continue
            if old is not None and not _blank(old.get(field_name)):
                bucket = index.get(_norm(old[field_name]), [])
                if old["id"] in bucket:
                    bucket.remove(old["id"])
            if new is not None and not _blank(new.get(field_name)):
                bucket = index.setdefault(_norm(new[field_name]), [])
                bucket.append(new["id"])
                bucket.sort()  # ids grow with creation time, so this keeps oldest first

    def _create(self, module: str, values: dict) -> dict:
        now = time.time()
        stamp = _iso(now)
        rec = {"id": self._new_id(), "Owner": dict(self._user)}
        rec.update({k: v for k, v in values.items() if v is not None})
        rec.update({"Created_Time": stamp, "Modified_Time": stamp, "Created_By": dict(self._user),
                    "Modified_By": dict(self._user)})
        if module == "Leads":
            rec.setdefault("Converted__s", False)
        _set_full_name(rec)
        self._store[module][rec["id"]] = rec
        self._mtimes[rec["id"]] = now
        self._reindex(module, None, rec)
        return rec

    def _apply(self, module: str, record_id: str, values: dict) -> dict:
        old = self._store[module][record_id]
        new = dict(old)
        for key, value in values.items():
            if value is None:
                new.pop(key, None)
            else:
                new[key] = value
        now = time.time()
        new.update({"Modified_Time": _iso(now), "Modified_By": dict(self._user)})
        _set_full_name(new)
        self._store[module][record_id] = new
        self._mtimes[record_id] = now
        self._reindex(module, old, new)
        return new

    def _remove(self, module: str, record_id: str, kind: str) -> None:
        rec = self._store[module].pop(record_id)
        self._reindex(module, rec, None)
        permanent = kind == "permanent"  # permanently deleted entries carry no user or name (doc §5)
        now = time.time()
        self._deleted[module].append({
            "deleted_by": None if permanent else {"name": self._user["name"], "id": self._user["id"]},
            "id": record_id, "display_name": None if permanent else rec.get("Full_Name"), "type": kind,
            "created_by": None if permanent else {"name": self._user["name"], "id": self._user["id"]},
            "deleted_time": _iso(now), "_ts": now})

    def _success_details(self, rec: dict) -> dict:
        return {"Modified_Time": rec["Modified_Time"], "Modified_By": rec["Modified_By"],
                "Created_Time": rec["Created_Time"], "id": rec["id"], "Created_By": rec["Created_By"],
                "$approval_state": "approved"}

    # ------------------------------------------------------------------------------------ validation

    _PASS_THROUGH_KEYS = frozenset({"id", "Layout", "Tag", "trigger"})

    def _validate_record(self, module: str, rec: Any, index: int, *, creating: bool) -> tuple[dict, list[dict]]:
        """Check one input record; returns the values to store and every error found (API reports the first)."""
        if not isinstance(rec, dict):
            return {}, [_err("INVALID_DATA", "invalid data", expected_data_type="jsonobject",
                             api_name="data", json_path=f"$.data[{index}]")]
        specs = self._fields[module]
        values: dict[str, Any] = {}
        errors: list[dict] = []
        for key, raw in rec.items():
            if key in self._PASS_THROUGH_KEYS or key.startswith("$"):
                continue
            path = f"$.data[{index}].{key}"
            spec = specs.get(key)
            if spec is None:
                errors.append(_err("INVALID_DATA", "the field api name given seems to be invalid",
                                   api_name=key, json_path=path))
            elif spec["read_only"]:
                errors.append(_err("INVALID_DATA", "invalid data", api_name=key, json_path=path,
                                   reason="field is read only"))
            else:
                value, error = _check_value(spec, raw, path)
                if error is not None:
                    errors.append(error)
                else:
                    values[key] = None if isinstance(value, str) and not value.strip() else value
        for name in self._mandatory[module]:
            missing = _blank(values.get(name)) if creating else (name in values and _blank(values[name]))
            if missing and not any(e["details"].get("api_name") == name for e in errors):
                errors.append(_err("MANDATORY_NOT_FOUND", "required field not found", api_name=name,
                                   json_path=f"$.data[{index}].{name}"))
        return values, errors

    def _unique_errors(self, module: str, values: dict, index: int, own_id: str | None) -> list[dict]:
        """DUPLICATE_DATA when a value of a unique field (extra_fields ``unique``) is already taken."""
        for name in self._unique_fields(module):
            others = [rid for rid in self._matches(module, name, values.get(name)) if rid != own_id]
            if others:
                return [_err("DUPLICATE_DATA", "duplicate data", api_name=name, json_path=f"$.data[{index}].{name}",
                             duplicate_record={"id": others[0], "module": {"api_name": module},
                                               "Owner": {"name": self._user["name"], "id": self._user["id"]}},
                             more_records=len(others) > 1)]
        return []

    def _stale(self, record_id: str, since: float | None, index: int) -> dict | None:
        """ALREADY_MODIFIED when If-Unmodified-Since is older than the record's last change."""
        if since is None or int(self._mtimes.get(record_id, 0)) <= int(since):
            return None
        return _err("ALREADY_MODIFIED", "record updated time has already passed if-unmodified-since time",
                    id=record_id, json_path=f"$.data[{index}]")

    def _write_payload(self, req: _Request, module: str, info: dict) -> tuple[str, list, _Response | None]:
        """Common checks of insert/update/upsert bodies: module, JSON, ``data`` present, at most 100."""
        mod = self._module_name(module)
        if mod not in MODULES:
            return mod, [], _json_response(400, {"data": [_INVALID_MODULE]})
        try:
            body = req.json()
        except ValueError:
            return mod, [], _json_response(400, _err("INVALID_DATA", "body", expected_data_type="jsonobject"))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return mod, [], _json_response(400, _err("MANDATORY_NOT_FOUND", "required field not found",
                                                     api_name="data", json_path="$.data"))
        info["records"] = len(data)
        if len(data) > MAX_WRITE_RECORDS:
            return mod, [], _json_response(400, _err("LIMIT_EXCEEDED", "Record count exceeded",
                                                     limit=MAX_WRITE_RECORDS, api_name="data", json_path="$.data"))
        return mod, data, None

    def _unmodified_since(self, req: _Request) -> tuple[float | None, _Response | None]:
        header = req.headers.get("If-Unmodified-Since")
        if not header:
            return None, None
        since = _parse_time(header)
        if since is None:
            return None, _json_response(400, _err("INVALID_DATA", "invalid data", header_name="If-Unmodified-Since"))
        return since, None

    # ---------------------------------------------------------------------------------- write handlers

    def _h_insert(self, req: _Request, info: dict, module: str) -> _Response:
        mod, data, failure = self._write_payload(req, module, info)
        if failure is not None:
            return failure
        items = []
        with self._lock:
            for i, rec in enumerate(data):
                values, errors = self._validate_record(mod, rec, i, creating=True)
                errors = errors or self._unique_errors(mod, values, i, None)  # insert never merges on Email
                if errors:
                    items.append(errors[0])
                    continue
                new = self._create(mod, values)
                items.append({"code": "SUCCESS", "details": self._success_details(new),
                              "message": "record added", "status": "success"})
        return _json_response(_write_status(items, 201), {"data": items})

    def _h_update(self, req: _Request, info: dict, module: str, path_id: str | None = None) -> _Response:
        mod, data, failure = self._write_payload(req, module, info)
        if failure is not None:
            return failure
        since, failure = self._unmodified_since(req)
        if failure is not None:
            return failure
        if path_id is not None:  # PUT /{module}/{id}: the id comes from the path, one record
            data = [{**data[0], "id": path_id}] if isinstance(data[0], dict) else data[:1]
        with self._lock:
            items = [self._update_one(mod, rec, i, since) for i, rec in enumerate(data)]
        if any(item["code"] == "ALREADY_MODIFIED" for item in items):
            return _json_response(412, {"data": items})
        return _json_response(_write_status(items, 200), {"data": items})

    def _update_one(self, module: str, rec: Any, index: int, since: float | None) -> dict:
        record_id = str(rec.get("id")) if isinstance(rec, dict) and rec.get("id") is not None else None
        if record_id is None:
            return _err("MANDATORY_NOT_FOUND", "required field not found", api_name="id",
                        json_path=f"$.data[{index}].id")
        existing = self._store[module].get(record_id)
        if existing is None:
            return _err("INVALID_DATA", "the id given seems to be invalid", api_name="id",
                        json_path=f"$.data[{index}].id")
        if existing.get("Converted__s"):
            return _err("CONVERTED_RECORD", "can't update the converted record", id=record_id)
        values, errors = self._validate_record(module, rec, index, creating=False)
        errors = errors or self._unique_errors(module, values, index, record_id)
        stale = self._stale(record_id, since, index)
        if errors or stale:
            return errors[0] if errors else stale
        updated = self._apply(module, record_id, values)
        return {"code": "SUCCESS", "details": self._success_details(updated), "message": "record updated",
                "status": "success"}

    def _h_upsert(self, req: _Request, info: dict, module: str) -> _Response:
        mod, data, failure = self._write_payload(req, module, info)
        if failure is not None:
            return failure
        since, failure = self._unmodified_since(req)
        if failure is not None:
            return failure
        order, failure = self._duplicate_order(mod, req.json().get("duplicate_check_fields"))
        if failure is not None:
            return failure
        with self._lock:
            items = [self._upsert_one(mod, rec, i, order, since) for i, rec in enumerate(data)]
        if any(item["code"] == "ALREADY_MODIFIED" for item in items):
            return _json_response(412, {"data": items})
        return _json_response(_write_status(items, 200), {"data": items})

    def _duplicate_order(self, module: str, requested: Any) -> tuple[list[str], _Response | None]:
        """Matching order of doc §4.3: given fields first, then the other unique fields; the system
        field (Email) is used only when no list is given or the list names it."""
        unique = self._unique_fields(module)
        if requested is None:
            return ["Email"] + [f for f in unique if f != "Email"], None
        if not isinstance(requested, list) or not all(isinstance(f, str) for f in requested):
            return [], _json_response(400, _err("INVALID_DATA", "invalid data", expected_data_type="jsonarray",
                                                api_name="duplicate_check_fields"))
        for i, name in enumerate(requested):
            if name != "Email" and name not in unique:
                return [], _json_response(400, _err("INVALID_DATA", "invalid data", api_name=name,
                                                    json_path=f"$.duplicate_check_fields[{i}]"))
        return list(requested) + [f for f in unique if f not in requested], None

    def _find_match(self, module: str, rec: dict, order: list[str]) -> tuple[str | None, str | None]:
        for name in order:
            ids = self._matches(module, name, rec.get(name))
            if ids:
                return ids[0], name  # several matches (insert allows duplicates): the oldest is updated
        return None, None

    def _upsert_one(self, module: str, rec: Any, index: int, order: list[str], since: float | None) -> dict:
        match_id, duplicate_field = self._find_match(module, rec, order) if isinstance(rec, dict) else (None, None)
        values, errors = self._validate_record(module, rec, index, creating=match_id is None)
        errors = errors or self._unique_errors(module, values, index, match_id)
        stale = self._stale(match_id, since, index) if match_id else None
        if errors or stale:
            return errors[0] if errors else stale
        if match_id is None:
            saved, action, message = self._create(module, values), "insert", "record added"
        else:
            saved, action, message = self._apply(module, match_id, values), "update", "record updated"
        return {"code": "SUCCESS", "duplicate_field": duplicate_field, "action": action,
                "details": self._success_details(saved), "message": message, "status": "success"}

    def _h_delete(self, req: _Request, info: dict, module: str, path_id: str | None = None) -> _Response:
        mod = self._module_name(module)
        if mod not in MODULES:
            return _json_response(400, _INVALID_MODULE)
        ids = [path_id] if path_id else [i.strip() for i in req.query.get("ids", "").split(",") if i.strip()]
        info["records"] = len(ids)
        if not ids:
            return _json_response(400, _err("REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                                            param_name="ids"))
        if len(ids) > MAX_WRITE_RECORDS:
            return _json_response(400, _err("LIMIT_EXCEEDED", "Record count exceeded", limit=MAX_WRITE_RECORDS,
                                            param_name="ids"))
        items = []
        with self._lock:
            for record_id in ids:
                if record_id in self._store[mod]:
                    self._remove(mod, record_id, "recycle")
                    items.append({"code": "SUCCESS", "details": {"id": record_id}, "message": "record deleted",
                                  "status": "success"})
                else:
                    items.append(_err("INVALID_DATA", "record not deleted", id=record_id))
        return _json_response(_write_status(items, 200), {"data": items})

    # ----------------------------------------------------------------------------------- read handlers

    def _paging(self, query: dict) -> tuple[int, int, _Response | None]:
        try:
            page, per_page = int(query.get("page", 1)), int(query.get("per_page", MAX_PAGE_SIZE))
        except ValueError:
            return 0, 0, _json_response(400, _err("INVALID_DATA", "invalid data", param_name="page/per_page"))
        if page < 1:
            return 0, 0, _json_response(400, _err("INVALID_DATA", "invalid data", param_name="page"))
        if not 1 <= per_page <= MAX_PAGE_SIZE:
            return 0, 0, _json_response(400, _err("INVALID_DATA", "invalid data", param_name="per_page",
                                                  maximum_length=MAX_PAGE_SIZE))
        return page, per_page, None

    def _since_header(self, req: _Request) -> tuple[float | None, _Response | None]:
        header = req.headers.get("If-Modified-Since")
        if not header:
            return None, None
        since = _parse_time(header)
        if since is None:
            return None, _json_response(400, _err("INVALID_DATA", "invalid data", header_name="If-Modified-Since"))
        return since, None

    def _h_get_records(self, req: _Request, info: dict, module: str) -> _Response:
        mod = self._module_name(module)
        if mod not in MODULES:
            return _json_response(400, _INVALID_MODULE)
        names, failure = self._fields_param(mod, req.query.get("fields"))
        if failure is not None:
            return failure
        opts, failure = self._list_options(req)
        if failure is not None:
            return failure
        with self._lock:
            rows = self._select(mod, opts)
        if opts["since"] is not None and not rows:
            return _Response(304)  # nothing modified since If-Modified-Since
        start = opts["offset"]
        page_rows = rows[start:start + opts["per_page"]]
        info["records"] = len(page_rows)
        if not page_rows:
            return _Response(204)
        more = len(rows) > start + len(page_rows)
        data = [{"id": rec["id"], **{n: copy.deepcopy(rec.get(n)) for n in names if n != "id"}} for rec in page_rows]
        return _json_response(200, {"data": data, "info": self._list_info(opts, len(page_rows), more, start)})

    def _fields_param(self, module: str, raw: str | None) -> tuple[list[str], _Response | None]:
        if not raw or not raw.strip():
            return [], _json_response(400, _err("REQUIRED_PARAM_MISSING", "required param is missing",
                                                param_name="fields"))
        names = [n.strip() for n in raw.split(",") if n.strip()]
        if len(names) > MAX_FIELDS_PARAM:
            return [], _json_response(400, _err("LIMIT_EXCEEDED", "Max field limit exceeded",
                                                limit=MAX_FIELDS_PARAM, param_name="fields"))
        unknown = [n for n in names if n != "id" and n not in self._fields[module]]
        if unknown:
            return [], _json_response(400, _err("INVALID_DATA", "invalid data", api_name=unknown[0],
                                                param_name="fields"))
        return names, None

    def _list_options(self, req: _Request) -> tuple[dict, _Response | None]:
        q = req.query
        page, per_page, failure = self._paging(q)
        if failure is not None:
            return {}, failure
        since, failure = self._since_header(req)
        if failure is not None:
            return {}, failure
        opts = {"page": page, "per_page": per_page, "since": since, "sort_by": q.get("sort_by", "id"),
                "sort_order": q.get("sort_order", "desc"), "converted": q.get("converted", "false"),
                "ids": [i.strip() for i in q.get("ids", "").split(",") if i.strip()]}
        for key, allowed in (("sort_by", ("id", "Created_Time", "Modified_Time")), ("sort_order", ("asc", "desc")),
                             ("converted", ("true", "false", "both"))):
            if opts[key] not in allowed:
                return {}, _json_response(400, _err("INVALID_DATA", "invalid data", param_name=key,
                                                    supported_values=list(allowed)))
        opts["bound"] = hashlib.sha256(json.dumps([req.path, sorted((k, v) for k, v in q.items()
                                       if k not in ("page", "page_token"))]).encode()).hexdigest()[:16]
        return self._resolve_offset(opts, q.get("page_token"))

    def _resolve_offset(self, opts: dict, token: str | None) -> tuple[dict, _Response | None]:
        """``page`` reaches the first 2,000 records; past that a ``page_token`` bound to the query is needed."""
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
            except ValueError:
                return {}, _json_response(400, _err("INVALID_DATA", "invalid data", param_name="page_token"))
            if state.get("b") != opts["bound"]:
                return {}, _json_response(400, _err("TOKEN_BOUND_DATA_MISMATCH", "invalid data",
                                                    param_name="page_token"))
            if state.get("e", 0) < time.time():
                return {}, _json_response(400, _err("EXPIRED_VALUE", "invalid data", param_name="page_token"))
            opts["offset"] = int(state["o"])
            if opts["offset"] + opts["per_page"] > TOKEN_PAGE_LIMIT:
                return {}, _json_response(400, _err("PAGINATION_LIMIT_EXCEEDED", "invalid data",
                                                    limit=TOKEN_PAGE_LIMIT))
            return opts, None
        opts["offset"] = (opts["page"] - 1) * opts["per_page"]
        if opts["offset"] + opts["per_page"] > DISCRETE_PAGE_LIMIT:
            return {}, _json_response(400, _err("DISCRETE_PAGINATION_LIMIT_EXCEEDED", "invalid data",
                                                limit=DISCRETE_PAGE_LIMIT))
        return opts, None

    def _select(self, module: str, opts: dict) -> list[dict]:
        rows = list(self._store[module].values())
        if opts["ids"]:
            wanted = set(opts["ids"])
            rows = [r for r in rows if r["id"] in wanted]
        elif module == "Leads" and opts["converted"] != "both":  # converted leads are hidden by default
            want = opts["converted"] == "true"
            rows = [r for r in rows if bool(r.get("Converted__s")) == want]
        if opts["since"] is not None:
            rows = [r for r in rows if int(self._mtimes[r["id"]]) >= int(opts["since"])]
        key = {"id": lambda r: int(r["id"]), "Created_Time": lambda r: (r["Created_Time"], int(r["id"])),
               "Modified_Time": lambda r: (self._mtimes[r["id"]], int(r["id"]))}[opts["sort_by"]]
        return sorted(rows, key=key, reverse=opts["sort_order"] == "desc")

    def _list_info(self, opts: dict, count: int, more: bool, start: int) -> dict:
        next_token = None
        if more:
            state = {"o": start + count, "b": opts["bound"], "e": time.time() + CREDIT_WINDOW}
            next_token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        return {"call": False, "per_page": opts["per_page"], "next_page_token": next_token, "count": count,
                "sort_by": opts["sort_by"], "page": opts["page"], "previous_page_token": None,
                "page_token_expiry": _iso(time.time() + CREDIT_WINDOW), "sort_order": opts["sort_order"],
                "email": False, "more_records": more}

    def _h_get_record(self, req: _Request, info: dict, module: str, record_id: str) -> _Response:
        mod = self._module_name(module)
        if mod not in MODULES:
            return _json_response(400, _INVALID_MODULE)
        with self._lock:
            rec = self._store[mod].get(record_id)
            if rec is None or rec.get("Converted__s"):
                return _Response(204)  # unknown, deleted and converted records answer no content
            names = [n.strip() for n in req.query.get("fields", "").split(",") if n.strip()] or list(self._fields[mod])
            out = {"id": rec["id"], **{n: copy.deepcopy(rec.get(n)) for n in names if n != "id"}}
        info["records"] = 1
        return _json_response(200, {"data": [out]})

    def _h_deleted(self, req: _Request, info: dict, module: str) -> _Response:
        mod = self._module_name(module)
        if mod not in MODULES:
            return _json_response(400, _INVALID_MODULE)
        kind = req.query.get("type", "all")
        if kind not in ("all", "recycle", "permanent"):
            return _json_response(400, _err("PATTERN_NOT_MATCHED", "Please check whether the input values are correct",
                                            param_name="type"))
        page, per_page, failure = self._paging(req.query)
        if failure is None:
            since, failure = self._since_header(req)
        if failure is not None:
            return failure
        with self._lock:
            rows = [e for e in self._deleted[mod] if kind == "all" or e["type"] == kind]
        if since is not None:  # second precision, inclusive: a client may see an entry twice, never miss one
            rows = [e for e in rows if int(e["_ts"]) >= int(since)]
        rows.sort(key=lambda e: e["_ts"], reverse=True)
        start = (page - 1) * per_page
        chunk = rows[start:start + per_page]
        info["records"] = len(chunk)
        if not chunk:
            return _Response(204)
        data = [{k: copy.deepcopy(v) for k, v in e.items() if not k.startswith("_")} for e in chunk]
        return _json_response(200, {"data": data, "info": {"per_page": per_page, "count": len(chunk), "page": page,
                                                           "more_records": len(rows) > start + len(chunk)}})

    def _h_search(self, req: _Request, info: dict, module: str) -> _Response:
        """Minimal search: ``email`` (all email fields) or ``criteria`` with equals (as contains) / starts_with."""
        mod = self._module_name(module)
        if mod not in MODULES:
            return _json_response(400, _INVALID_MODULE)
        page, per_page, failure = self._paging(req.query)
        if failure is not None:
            return failure
        test, failure = self._search_predicate(mod, req.query)
        if failure is not None:
            return failure
        with self._lock:
            rows = [copy.deepcopy(r) for r in self._store[mod].values() if not r.get("Converted__s") and test(r)]
        rows = rows[:DISCRETE_PAGE_LIMIT]
        chunk = rows[(page - 1) * per_page: page * per_page]
        info["records"] = len(chunk)
        if not chunk:
            return _Response(204)
        more = len(rows) > page * per_page
        return _json_response(200, {"data": chunk, "info": {"per_page": per_page, "count": len(chunk), "page": page,
                                                            "more_records": more}})

    def _search_predicate(self, module: str, query: dict) -> tuple[Callable[[dict], bool], _Response | None]:
        if query.get("criteria"):
            conditions = re.findall(r"\(\(?([A-Za-z0-9_]+):(equals|starts_with):((?:\\.|[^)])*)\)", query["criteria"])
            if not conditions:
                return (lambda r: False), _json_response(400, _err("INVALID_QUERY", "invalid query formed",
                                                                   param_name="criteria"))
            use_or = ")or(" in query["criteria"].replace(" ", "").lower()

            def match(rec: dict, cond: tuple[str, str, str]) -> bool:
                value, wanted = _norm(rec.get(cond[0]) or ""), _norm(cond[2].replace("\\", ""))
                return value.startswith(wanted) if cond[1] == "starts_with" else wanted in value  # equals = contains

            return (lambda r: (any if use_or else all)(match(r, c) for c in conditions)), None
        if query.get("email"):
            wanted = _norm(query["email"])
            emails = [n for n, s in self._fields[module].items() if s["data_type"] == "email"]
            return (lambda r: any(_norm(r.get(n) or "") == wanted for n in emails)), None
        return (lambda r: False), _json_response(400, _err("REQUIRED_PARAM_MISSING",
                                                           "One of the expected parameter is missing",
                                                           param_name="criteria/email/phone/word"))

    def _h_fields(self, req: _Request, info: dict) -> _Response:
        module = req.query.get("module")
        if not module:
            return _json_response(400, _err("REQUIRED_PARAM_MISSING", "required param is missing",
                                            param_name="module"))
        mod = self._module_name(module)
        if mod not in MODULES:
            return _json_response(400, _INVALID_MODULE)
        info["module"] = mod
        return _json_response(200, {"fields": copy.deepcopy(list(self._fields[mod].values()))})

    def _h_org(self, req: _Request, info: dict) -> _Response:
        org = {"id": self._org_id, "zgid": self._zgid, "company_name": "Sandbox Org",
               "domain_name": f"org{self._zgid}", "primary_email": self._user["email"], "currency": "USD",
               "iso_code": "USD", "currency_symbol": "$", "time_zone": "UTC", "country_code": "US",
               "type": "production", "mc_status": False, "gapps_enabled": False,
               "license_details": {"paid": True, "paid_type": "enterprise", "trial_type": None,
                                   "trial_expiry": None, "users_license_purchased": 10}}
        return _json_response(200, {"org": [org]})

    # ------------------------------------------------------------------------------------------ convert

    def _h_convert(self, req: _Request, info: dict, lead_id: str) -> _Response:
        try:
            body = req.json() if req.body else {}
        except ValueError:
            return _json_response(400, _err("INVALID_DATA", "body", expected_data_type="jsonobject"))
        data = body.get("data") if isinstance(body, dict) else None
        options = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        info["records"] = 1
        with self._lock:
            lead = self._store["Leads"].get(lead_id)
            if lead is None:
                return _json_response(400, _err("INVALID_DATA", "invalid data", resource_path_index=1))
            if lead.get("Converted__s"):
                return _json_response(400, _err("ID_ALREADY_CONVERTED", "id already converted",
                                                resource_path_index=1))
            deal, failure = self._convert_deal(options.get("Deals"))
            if failure is not None:
                return failure
            contact, failure = self._convert_contact(lead, options)
            if failure is not None:
                return failure
            account = self._convert_account(lead, options.get("Accounts"))
            if account is not None and "Account_Name" not in contact:
                contact = self._apply("Contacts", contact["id"], {"Account_Name": dict(account)})
            self._apply("Leads", lead_id, {"Converted__s": True, "Converted_Date_Time": _iso(time.time())})
        details = {"Contacts": {"name": contact.get("Full_Name"), "id": contact["id"]}, "Deals": deal,
                   "Accounts": account}
        return _json_response(200, {"data": [{"code": "SUCCESS", "details": details,
                                              "message": "The record has been converted successfully",
                                              "status": "success"}]})

    def _convert_contact(self, lead: dict, options: dict) -> tuple[dict, _Response | None]:
        """Link the given contact, else the contact with the lead's Email, else create one from the lead."""
        mapped = {dst: lead[src] for src, dst in _LEAD_TO_CONTACT.items() if not _blank(lead.get(src))}
        mapped.update({name: lead[name] for name, spec in self._fields["Contacts"].items()
                       if spec["custom_field"] and name in self._fields["Leads"] and not _blank(lead.get(name))})
        linked = options.get("Contacts")
        if isinstance(linked, dict) and linked.get("id"):
            contact_id = str(linked["id"])
            if contact_id not in self._store["Contacts"]:
                return {}, _json_response(400, {"data": [_err("INVALID_DATA", "invalid data", api_name="Contacts",
                                                              json_path="$.data[0].Contacts.id")]})
        else:
            matches = self._matches("Contacts", "Email", lead.get("Email"))
            contact_id = matches[0] if matches else None
        if contact_id is None:
            return self._create("Contacts", mapped), None
        if options.get("overwrite"):  # without overwrite the existing contact keeps its values
            return self._apply("Contacts", contact_id, mapped), None
        return self._store["Contacts"][contact_id], None

    def _convert_account(self, lead: dict, linked: Any) -> dict | None:
        if isinstance(linked, dict) and linked.get("id"):
            known = next((a for a in self._accounts.values() if a["id"] == str(linked["id"])), None)
            return dict(known) if known else {"name": None, "id": str(linked["id"])}
        company = lead.get("Company")
        if _blank(company):
            return None
        key = _norm(company)
        if key not in self._accounts:  # Zoho matches an existing account by name before creating one
            self._accounts[key] = {"name": company, "id": self._new_id()}
        return dict(self._accounts[key])

    def _convert_deal(self, deal: Any) -> tuple[dict | None, _Response | None]:
        if not isinstance(deal, dict) or not deal:
            return None, None
        for name in ("Deal_Name", "Closing_Date", "Stage", "Pipeline"):
            if _blank(deal.get(name)):
                return None, _json_response(400, {"data": [_err("MANDATORY_NOT_FOUND", "required field not found",
                                                                api_name=name,
                                                                json_path=f"$.data[0].Deals.{name}")]})
        return {"name": deal["Deal_Name"], "id": self._new_id()}, None

    # --------------------------------------------------------------------------------------- bulk write

    def _h_upload(self, req: _Request, info: dict) -> _Response:
        if req.headers.get("feature") != "bulk-write" or req.headers.get("X-CRM-ORG") != self._zgid:
            return _json_response(400, {"ERROR_CODE": 400, "ERROR_MESSAGE": "Bad Request",
                                        "x-error": "check if headers [feature, X-CRM-ORG] are present and valid"})
        if len(req.body) > BULK_MAX_BYTES:
            return _json_response(413, _err("FILE_TOO_LARGE", "File size too large to process"))
        parts = _parse_multipart(req.headers.get("Content-Type") or "", req.body)
        if "file" not in parts:
            return _json_response(400, _err("MISSING_REQUIRED_KEY", "required key file is not found in request body.",
                                            param_name="file"))
        filename, payload = parts["file"]
        if not zipfile.is_zipfile(io.BytesIO(payload)):
            return _json_response(400, _err("INVALID_FILE_FORMAT", "invalid file format. only zip format is supported"))
        file_id, now = self._new_id(), time.time()
        with self._lock:
            self._files[file_id] = {"name": filename, "bytes": payload, "created": now}
        return _json_response(200, {"status": "success", "code": "FILE_UPLOAD_SUCCESS", "message": "file uploaded.",
                                    "details": {"file_id": file_id, "created_time": _iso(now)}})

    def _h_bulk_write(self, req: _Request, info: dict) -> _Response:
        try:
            body = req.json()
        except ValueError:
            return _json_response(400, _err("INVALID_DATA", "body", expected_data_type="jsonobject"))
        job, failure = self._bulk_job_from(body if isinstance(body, dict) else {})
        if failure is not None:
            return failure
        info["module"] = job["module"]
        info["records"] = len(job["rows"])
        if not self._scope_ok(self._request_scopes(req), _Route(job["write_op"], job["module"], None)):
            return _json_response(401, _SCOPE_MISMATCH)  # bulk write also needs the module's write scope
        with self._lock:
            self._jobs[job["id"]] = job
        threading.Thread(target=self._run_bulk_job, args=(job["id"],), name=f"bulk-{job['id']}", daemon=True).start()
        return _json_response(201, {"status": "success", "code": "SUCCESS", "message": "success",
                                    "details": {"id": job["id"], "created_by": {"id": self._user["id"],
                                                                                "name": self._user["name"]}}})

    def _request_scopes(self, req: _Request) -> set[str]:
        scopes, _ = self._authenticate(req)
        return scopes

    def _bulk_job_from(self, body: dict) -> tuple[dict, _Response | None]:
        """Validate a create-job body (doc §9 step 3) and read its CSV; the job runs later."""
        def bad(code: str, message: str, status: int = 400, **details: Any) -> tuple[dict, _Response]:
            return {}, _json_response(status, _err(code, message, **details))

        operation = body.get("operation")
        if operation not in ("insert", "update", "upsert"):
            return bad("MISSING_REQUIRED_KEY", "required key operation is not found in request body.",
                       api_name="operation")
        resources = body.get("resource")
        if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], dict):
            return bad("MISSING_REQUIRED_KEY", "required key resource is not found in request body.",
                       api_name="resource")
        resource = resources[0]
        module = self._module_name(str((resource.get("module") or {}).get("api_name", "")))
        if module not in MODULES:
            return bad("MODULE_NOT_AVAILABLE", f"Requested module '{module}' is not available.",
                       api_name="module", json_path="$.resource[0].module")
        with self._lock:
            upload = self._files.get(str(resource.get("file_id", "")))
        if upload is None:
            return bad("INVALID_FILE_ID", "improper file id", api_name="file_id",
                       json_path="$.resource[0].file_id")
        csv_name, header, rows, failure = _read_bulk_csv(upload["bytes"])
        if failure is not None:
            return {}, failure
        find_by = resource.get("find_by")
        if operation in ("update", "upsert") and not find_by:
            return bad("MANDATORY_NOT_FOUND", "required key find_by is not available", api_name="find_by",
                       json_path="$.resource[0].find_by")
        if find_by and find_by not in ("id", "Email", *self._unique_fields(module)):
            return bad("INVALID_DATA", "invalid data", api_name="find_by", json_path="$.resource[0].find_by")
        mappings, failure = self._bulk_mappings(module, header, resource.get("field_mappings"))
        if failure is not None:
            return {}, failure
        mapped = {m["api_name"] for m in mappings}
        if operation != "update" and not {"Last_Name"} <= mapped:
            return bad("MANDATORY_FIELDS_NOT_MAPPED", "All mandatory fields are not mapped for the layout")
        if find_by and find_by not in mapped:
            return bad("INVALID_DATA", "invalid data", api_name="find_by", json_path="$.resource[0].find_by")
        write_op = "update" if operation == "update" else "insert" if operation == "insert" else "upsert"
        return {"id": self._new_id(), "operation": operation, "write_op": write_op, "module": module,
                "find_by": find_by, "mappings": mappings, "header": header, "rows": rows,
                "ignore_empty": bool(resource.get("ignore_empty", body.get("ignore_empty", False))),
                "file_name": csv_name, "file_id": str(resource["file_id"]),
                "callback": body.get("callback"), "status": "ADDED", "created": time.time(),
                "counts": None, "result": None, "character_encoding": body.get("character_encoding") or "UTF-8"}, None

    def _bulk_mappings(self, module: str, header: list[str], given: Any) -> tuple[list[dict], _Response | None]:
        """field_mappings map columns by index; without them the CSV header names are the api names."""
        if given is None:
            given = [{"api_name": name, "index": i} for i, name in enumerate(header)]
        if not isinstance(given, list):
            return [], _json_response(400, _err("INVALID_DATA", "invalid data", api_name="field_mappings"))
        if len(given) > BULK_MAX_COLUMNS:
            return [], _json_response(400, _err("HEADER_LIMIT_EXCEEDED", "more than 200 fields mapped",
                                                limit=BULK_MAX_COLUMNS))
        out = []
        for m in given:
            name = m.get("api_name") if isinstance(m, dict) else None
            spec = self._fields[module].get(name or "")
            if name != "id" and (spec is None or spec["read_only"]):
                return [], _json_response(400, _err("INVALID_FIELD", f"invalid mapping. invalid api_name {name}.",
                                                    api_name=name))
            index, default = m.get("index"), (m.get("default_value") or {}).get("value")
            if index is None and default is None or (index is not None and not 0 <= int(index) < len(header)):
                message = f"required key index for field {name} is not found in request body."
                return [], _json_response(400, _err("COLUMN_INDEX_NOT_FOUND", message, api_name=name))
            out.append({"api_name": name, "index": None if index is None else int(index), "default": default,
                        "find_by": m.get("find_by")})
        return out, None

    def _run_bulk_job(self, job_id: str) -> None:
        """ADDED → IN PROGRESS → COMPLETED, with a pause at each step so pollers see the progression."""
        if self._stopping.wait(self.bulk_step_seconds):
            return
        with self._lock:
            job = self._jobs[job_id]
            job["status"] = "IN PROGRESS"
        if self._stopping.wait(self.bulk_step_seconds):
            return
        with self._lock:
            outcomes = [self._bulk_row(job, i, row) for i, row in enumerate(job["rows"])]
            job["counts"] = {key: sum(1 for o in outcomes if o[0] == key) for key in ("added", "updated", "skipped")}
            job["result"] = _bulk_result_zip(job, outcomes)
            job["status"] = "COMPLETED"

    def _bulk_row(self, job: dict, index: int, row: list[str]) -> tuple[str, str, str]:
        """One CSV row through the same validation as upsert; returns (STATUS, RECORD_ID, ERRORS)."""
        module, find_by = job["module"], job["find_by"]
        values, errors = _bulk_values(self._fields[module], job, row)
        if find_by == "id":
            record_id = str(values.pop("id", "") or "")
            match = record_id if record_id in self._store[module] else None
        else:
            values.pop("id", None)
            match = (self._matches(module, find_by, values.get(find_by)) or [None])[0] if find_by else None
        op = job["operation"]
        if op == "insert" and match is not None:
            return "skipped", "", f"DUPLICATE_DATA-{find_by}"
        if op == "update" and match is None:
            return "skipped", "", f"RESOURCE_NOT_FOUND-{find_by}"
        creating = match is None
        if creating:
            values = {k: v for k, v in values.items() if v is not None}
        checked, problems = self._validate_record(module, values, index, creating=creating)
        problems = problems or self._unique_errors(module, checked, index, match)
        errors += [(p["code"], p["details"].get("api_name", "")) for p in problems]
        if errors:
            return "skipped", match or "", _bulk_error_text(errors)
        if creating:
            return "added", self._create(module, checked)["id"], ""
        self._apply(module, match, checked)
        return "updated", match, ""

    def _h_bulk_status(self, req: _Request, info: dict, job_id: str) -> _Response:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return _json_response(404, _err("RESOURCE_NOT_FOUND", "The requested resource doesn't exist.",
                                                resource_path_index=0))
            info["module"] = job["module"]
            return _json_response(200, self._job_body(job))

    def _job_body(self, job: dict) -> dict:
        file_info: dict[str, Any] = {"status": job["status"], "name": job["file_name"]}
        if job["counts"] is not None:
            file_info.update({"added_count": job["counts"]["added"], "skipped_count": job["counts"]["skipped"],
                              "updated_count": job["counts"]["updated"], "total_count": len(job["rows"])})
        resource = {"status": job["status"], "type": "data", "module": {"api_name": job["module"]},
                    "file_id": job["file_id"], "file_names": [job["file_name"]],
                    "ignore_empty": job["ignore_empty"], "find_by": job["find_by"],
                    "field_mappings": [{"api_name": m["api_name"], "index": m["index"]} for m in job["mappings"]],
                    "file": file_info}
        body = {"status": job["status"], "character_encoding": job["character_encoding"], "resource": [resource],
                "id": job["id"], "created_by": {"id": self._user["id"], "name": self._user["name"]},
                "operation": job["operation"], "created_time": _iso(job["created"])}
        if job["callback"]:
            body["callback"] = job["callback"]
        if job["status"] == "COMPLETED":
            path = f"/crm/bulk/v8/write/{job['id']}/result"
            body["result"] = {"download_url": path if self.bulk_relative_download_url else f"{self.url}{path}"}
        return body

    def _h_bulk_download(self, req: _Request, info: dict, job_id: str) -> _Response:
        with self._lock:
            job = self._jobs.get(job_id)
            payload = job["result"] if job else None
        if payload is None:
            return _json_response(404, _err("RESOURCE_NOT_FOUND", "The requested resource doesn't exist."))
        return _Response(200, payload, {"Content-Disposition": f'attachment; filename="{job_id}.zip"'},
                         content_type="application/octet-stream")  # bulk_write.json: octet-stream


# ------------------------------------------------------------------------------------ module helpers


def _set_full_name(rec: dict) -> None:
    rec["Full_Name"] = " ".join(p for p in (rec.get("First_Name"), rec.get("Last_Name")) if p) or None


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form parts by name → (filename, bytes); the email parser copes with any RFC 7578 body."""
    if "multipart/form-data" not in content_type:
        return {}
    raw = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
    message = BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return parts


def _read_bulk_csv(payload: bytes) -> tuple[str, list[str], list[list[str]], _Response | None]:
    """The one CSV of a Contacts/Leads zip (name, header, rows); delimiter detected from the header (, ; : |)."""
    def bad(code: str, message: str) -> tuple[str, list[str], list[list[str]], _Response]:
        return "", [], [], _json_response(400, _err(code, message))

    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if len(names) != 1 or not names[0].lower().endswith(".csv"):
            return bad("FILE_NOT_SUPPORTED", "File not supported for bulk write")
        text = archive.read(names[0]).decode("utf-8-sig", errors="replace")
    first_line = text.splitlines()[0] if text else ""
    delimiter = max(",;|:", key=lambda d: (first_line.count(d), d == ","))
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        return bad("INVALID_FILE_FORMAT", "invalid file format. only zip format is supported")
    header, data = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    if len(header) > BULK_MAX_COLUMNS:
        return bad("HEADER_LIMIT_EXCEEDED", "more than 200 columns")
    if len(data) > BULK_MAX_ROWS:
        return bad("LIMIT_EXCEEDED", "more than 25000 records in the file")
    return names[0].rsplit("/", 1)[-1], header, data, None


def _csv_value(spec: dict | None, text: str) -> Any:
    """CSV text → typed value for a field; raises ValueError when it does not fit the type."""
    data_type = spec["data_type"] if spec else "text"
    if data_type == "integer":
        return int(text)
    if data_type in ("currency", "double"):
        return float(text)
    if data_type == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if data_type == "date" and "/" in text:  # bulk CSV dates default to MM/dd/yyyy
        return datetime.strptime(text, "%m/%d/%Y").date().isoformat()
    return text


def _bulk_values(specs: dict[str, dict], job: dict, row: list[str]) -> tuple[dict, list[tuple[str, str]]]:
    values: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for m in job["mappings"]:
        text = row[m["index"]].strip() if m["index"] is not None and m["index"] < len(row) else ""
        if not text and m["default"] is not None:
            text = str(m["default"])
        if not text:
            if not job["ignore_empty"]:
                values[m["api_name"]] = None  # an empty cell clears the field unless ignore_empty
            continue
        spec = specs.get(m["api_name"])
        if spec is not None and spec["data_type"] in ("lookup", "ownerlookup"):
            # a lookup cell names the related record by id (or name), as the mapping's find_by says
            values[m["api_name"]] = {"id" if (m.get("find_by") or "id") == "id" else "name": text}
            continue
        try:
            values[m["api_name"]] = _csv_value(spec, text)
        except ValueError:
            errors.append(("INVALID_DATA", m["api_name"]))
    return values, errors


def _bulk_error_text(errors: list[tuple[str, str]]) -> str:
    """Zoho's ERRORS cell: ``CODE-field1,field2:CODE2-field3``."""
    grouped: dict[str, list[str]] = {}
    for code, name in errors:
        if name not in grouped.setdefault(code, []):
            grouped[code].append(name)
    return ":".join(f"{code}-{','.join(names)}" for code, names in grouped.items())


def _bulk_result_zip(job: dict, outcomes: list[tuple[str, str, str]]) -> bytes:
    """Result CSV: the first three mapped columns plus STATUS, RECORD_ID, ERRORS (doc §9 step 5)."""
    columns = [m["index"] for m in job["mappings"] if m["index"] is not None][:3]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([job["header"][i] for i in columns] + ["STATUS", "RECORD_ID", "ERRORS"])
    for row, (status, record_id, errors) in zip(job["rows"], outcomes):
        writer.writerow([row[i] if i < len(row) else "" for i in columns] + [status, record_id, errors])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(job["file_name"], out.getvalue())
    return buffer.getvalue()


def _read_request(handler: BaseHTTPRequestHandler) -> _Request:
    parts = urlsplit(handler.path)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        body = _read_chunked(handler.rfile)
    else:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    return _Request(handler.command, parts.path, query, handler.headers, body)


def _read_chunked(stream: Any) -> bytes:
    chunks = []
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return b"".join(chunks)
        chunks.append(stream.read(size))
        stream.readline()


def _send(handler: BaseHTTPRequestHandler, resp: _Response) -> None:
    if resp.drop:  # fault "drop": close the socket without a byte of answer
        handler.close_connection = True
        return
    payload = b""
    if isinstance(resp.body, bytes):
        payload = resp.body
    elif resp.body is not None:
        payload = json.dumps(resp.body).encode("utf-8")
    handler.send_response(resp.status)
    for name, value in resp.headers.items():
        handler.send_header(name, value)
    if resp.status in (204, 304):
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    handler.send_header("Content-Type", resp.content_type)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


class _Handler(SandboxHandler):
    """Keep-alive, one buffered write per answer with TCP_NODELAY (as every sandbox: see SandboxHandler)."""

    server_version = "ZohoSandbox/1.0"

    def _any(self) -> None:
        self.server.sandbox._dispatch(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox in the foreground; ``--ready-file`` receives ``{"url": ...}`` once it listens."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--concurrency-limit", type=int)
    parser.add_argument("--daily-credits", type=int, default=100_000)
    parser.add_argument("--access-token-ttl", type=int, default=3600)
    args = parser.parse_args(argv)
    sandbox = ZohoSandbox(seed=args.seed, latency=args.latency, concurrency_limit=args.concurrency_limit,
                          daily_credits=args.daily_credits, access_token_ttl=args.access_token_ttl)
    # The process keeps every record it is sent (a reset: 100,000+ dicts); with the default thresholds the
    # cyclic GC rescans them all, often, and each pause stalls every call in flight (a real Zoho does not).
    gc.set_threshold(100_000, 50, 1_000)
    serve_until_stopped(sandbox, args.port, args.ready_file,
                        {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
                         "refresh_token": sandbox.refresh_token})


if __name__ == "__main__":
    main()
