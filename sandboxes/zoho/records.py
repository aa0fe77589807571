"""Record writes: insert, update, upsert (duplicate check) and delete, with Zoho's per-record results."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

from sandboxes._router import SandboxError
from sandboxes.zoho.faults import _INVALID_MODULE, ZohoError, _err, answer
from sandboxes.zoho.routes import MODULES, api, control, module_name, module_scope
from sandboxes.zoho.store import _norm, _parse_time

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox

MAX_WRITE_RECORDS = 100


def write_cost(req: Request) -> int:
    """Writes cost 1 credit per 10 records (doc §8.1)."""
    try:
        body = req.json()
    except ValueError:
        return 1
    data = body.get("data") if isinstance(body, dict) else None
    return max(1, math.ceil((len(data) if isinstance(data, list) else 0) / 10))


def _write_status(items: list[dict], all_ok: int) -> int:
    """All success → ``all_ok``; mixed → 207; all failed → 400 (body still ``{"data": [...]}``)."""
    ok = sum(1 for item in items if item.get("status") == "success")
    if ok == len(items):
        return all_ok
    return 207 if ok else 400


def _write_payload(req: Request, module: str, info: dict) -> tuple[str, list]:
    """Common checks of insert/update/upsert bodies: module, JSON, ``data`` present, at most 100."""
    mod = module_name(module)
    if mod not in MODULES:
        raise SandboxError(400, {"data": [_INVALID_MODULE]})
    try:
        body = req.json()
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "body", expected_data_type="jsonobject") from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found", api_name="data", json_path="$.data")
    info["records"] = len(data)
    if "trigger" in body:  # calls() shows which automation a write asked for (absent: Zoho's default, all of it)
        info["trigger"] = body["trigger"]
    if len(data) > MAX_WRITE_RECORDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "Record count exceeded", limit=MAX_WRITE_RECORDS, api_name="data",
                        json_path="$.data")
    return mod, data


def _unmodified_since(req: Request) -> float | None:
    header = req.headers.get("If-Unmodified-Since")
    if not header:
        return None
    since = _parse_time(header)
    if since is None:
        raise ZohoError(400, "INVALID_DATA", "invalid data", header_name="If-Unmodified-Since")
    return since


def _items_response(items: list[dict]) -> Response:
    if any(item["code"] == "ALREADY_MODIFIED" for item in items):
        return answer(412, {"data": items})
    return answer(_write_status(items, 200), {"data": items})


@api.route("POST", "/crm/v8/{module}", operation="insert", scope=module_scope("CREATE", "WRITE"), cost=write_cost)
def insert(sb: ZohoSandbox, req: Request, info: dict, module: str) -> Response:
    mod, data = _write_payload(req, module, info)
    items = []
    with sb._lock:
        for i, rec in enumerate(data):
            values, errors = sb._validate_record(mod, rec, i, creating=True)
            errors = errors or sb._unique_errors(mod, values, i, None) or _preference_errors(sb, mod, values, i)
            if errors:
                items.append(errors[0])
                continue
            new = sb._create(mod, values)
            items.append({"code": "SUCCESS", "details": sb._success_details(new),
                          "message": "record added", "status": "success"})
    return answer(_write_status(items, 201), {"data": items})


@api.route("PUT", "/crm/v8/{module}", operation="update", scope=module_scope("UPDATE", "WRITE"), cost=write_cost)
@api.route("PUT", "/crm/v8/{module}/{record_id}", operation="update", scope=module_scope("UPDATE", "WRITE"),
           cost=write_cost)
def update(sb: ZohoSandbox, req: Request, info: dict, module: str, record_id: str | None = None) -> Response:
    mod, data = _write_payload(req, module, info)
    since = _unmodified_since(req)
    if record_id is not None:  # PUT /{module}/{id}: the id comes from the path, one record
        data = [{**data[0], "id": record_id}] if isinstance(data[0], dict) else data[:1]
    with sb._lock:
        items = [_update_one(sb, mod, rec, i, since) for i, rec in enumerate(data)]
    return _items_response(items)


def _update_one(sb: ZohoSandbox, module: str, rec: Any, index: int, since: float | None) -> dict:
    record_id = str(rec.get("id")) if isinstance(rec, dict) and rec.get("id") is not None else None
    if record_id is None:
        return _err("MANDATORY_NOT_FOUND", "required field not found", api_name="id", json_path=f"$.data[{index}].id")
    existing = sb._store[module].get(record_id)
    if existing is None:
        return _err("INVALID_DATA", "the id given seems to be invalid", api_name="id",
                    json_path=f"$.data[{index}].id")
    if existing.get("Converted__s"):
        return _err("CONVERTED_RECORD", "can't update the converted record", id=record_id)
    values, errors = sb._validate_record(module, rec, index, creating=False)
    errors = errors or sb._unique_errors(module, values, index, record_id)
    stale = sb._stale(record_id, since, index)
    if errors or stale:
        return errors[0] if errors else stale
    updated = sb._apply(module, record_id, values)
    return {"code": "SUCCESS", "details": sb._success_details(updated), "message": "record updated",
            "status": "success"}


@api.route("POST", "/crm/v8/{module}/upsert", operation="upsert", scope=module_scope("CREATE", "WRITE"),
           cost=write_cost)
def upsert(sb: ZohoSandbox, req: Request, info: dict, module: str) -> Response:
    mod, data = _write_payload(req, module, info)
    since = _unmodified_since(req)
    order = _duplicate_order(sb, mod, req.json().get("duplicate_check_fields"))
    with sb._lock:
        items = [_upsert_one(sb, mod, rec, i, order, since) for i, rec in enumerate(data)]
    return _items_response(items)


def _duplicate_order(sb: ZohoSandbox, module: str, requested: Any) -> list[str]:
    """Matching order of doc §4.3: given fields first, then the other unique fields; the system
    field (Email) is used only when no list is given or the list names it."""
    unique = sb._unique_fields(module)
    if requested is None:
        return ["Email"] + [f for f in unique if f != "Email"]
    if not isinstance(requested, list) or not all(isinstance(f, str) for f in requested):
        raise ZohoError(400, "INVALID_DATA", "invalid data", expected_data_type="jsonarray",
                        api_name="duplicate_check_fields")
    for i, name in enumerate(requested):
        if name != "Email" and name not in unique:
            raise ZohoError(400, "INVALID_DATA", "invalid data", api_name=name,
                            json_path=f"$.duplicate_check_fields[{i}]")
    return list(requested) + [f for f in unique if f not in requested]


def _find_match(sb: ZohoSandbox, module: str, rec: dict, order: list[str]) -> tuple[str | None, str | None]:
    for name in order:
        ids = sb._matches(module, name, rec.get(name))
        if ids:
            return ids[0], name  # several matches (insert allows duplicates): the oldest is updated
    return None, None


def _upsert_one(sb: ZohoSandbox, module: str, rec: Any, index: int, order: list[str], since: float | None) -> dict:
    match_id, duplicate_field = _find_match(sb, module, rec, order) if isinstance(rec, dict) else (None, None)
    values, errors = sb._validate_record(module, rec, index, creating=match_id is None)
    errors = errors or sb._unique_errors(module, values, index, match_id)
    if match_id is None:  # upsert matches its own module first; a new record meets the duplicate-check preferences
        errors = errors or _preference_errors(sb, module, values, index)
    stale = sb._stale(match_id, since, index) if match_id else None
    if errors or stale:
        return errors[0] if errors else stale
    if match_id is None:
        saved, action, message = sb._create(module, values), "insert", "record added"
    else:
        saved, action, message = sb._apply(module, match_id, values), "update", "record updated"
    return {"code": "SUCCESS", "duplicate_field": duplicate_field, "action": action,
            "details": sb._success_details(saved), "message": message, "status": "success"}


@api.route("DELETE", "/crm/v8/{module}", operation="delete", scope=module_scope("DELETE"))
@api.route("DELETE", "/crm/v8/{module}/{record_id}", operation="delete", scope=module_scope("DELETE"))
def delete(sb: ZohoSandbox, req: Request, info: dict, module: str, record_id: str | None = None) -> Response:
    mod = module_name(module)
    if mod not in MODULES:
        raise SandboxError(400, _INVALID_MODULE)
    ids = [record_id] if record_id else [i.strip() for i in req.query.get("ids", "").split(",") if i.strip()]
    info["records"] = len(ids)
    if not ids:
        raise ZohoError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", param_name="ids")
    if len(ids) > MAX_WRITE_RECORDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "Record count exceeded", limit=MAX_WRITE_RECORDS, param_name="ids")
    items = []
    with sb._lock:
        for rid in ids:
            if rid in sb._store[mod]:
                sb._remove(mod, rid, "recycle")
                items.append({"code": "SUCCESS", "details": {"id": rid}, "message": "record deleted",
                              "status": "success"})
            else:
                items.append(_err("INVALID_DATA", "record not deleted", id=rid))
    return answer(_write_status(items, 200), {"data": items})


# --- duplicate-check preferences (Kaizen #177) and records made "in the UI" -------------------------------------

def _preference_errors(sb: ZohoSandbox, module: str, values: dict, index: int) -> list[dict]:
    """DUPLICATE_DATA naming the existing record when a new record's value is taken in a module the org's
    duplicate-check preferences name. Knob: ``sb.duplicate_check = {"Contacts": {"Email": ["Contacts", "Leads"]}}``
    (for new Contacts, check Email against Contacts and Leads); off by default, as in a new org."""
    for name, modules in (getattr(sb, "duplicate_check", None) or {}).get(module, {}).items():
        for other in modules:
            found = sb._matches(other, name, values.get(name))
            if found:
                return [_err("DUPLICATE_DATA", "duplicate data", api_name=name, json_path=f"$.data[{index}].{name}",
                             duplicate_record={"id": found[0], "module": {"api_name": other, "id": None},
                                               "Owner": {"name": sb._user["name"], "id": sb._user["id"]}},
                             more_records=len(found) > 1)]
    return []


def create_in_ui(sb: ZohoSandbox, module: str, values: dict) -> dict:
    """A record someone made in Zoho (a web form, an earlier integration): no API call, no credits, no checks
    but the module's. Returns the record (with its id)."""
    with sb._lock:
        return copy.deepcopy(sb._create(module_name(module), dict(values)))


def create_account_in_ui(sb: ZohoSandbox, name: str) -> dict:
    """An Account that already exists in the org (conversion matches the lead's Company against these)."""
    with sb._lock:
        key = _norm(name)
        sb._accounts.setdefault(key, {"name": name, "id": sb._new_id()})
        return dict(sb._accounts[key])


@control.route("POST", "/__sandbox__/records")
def seed_record(sb: ZohoSandbox, body: Any) -> Any:
    return {"record": create_in_ui(sb, body["module"], body["values"])}


@control.route("POST", "/__sandbox__/duplicate_check")
def set_duplicate_check(sb: ZohoSandbox, body: Any) -> Any:
    sb.duplicate_check = dict(body)
    return {"status": "success"}
