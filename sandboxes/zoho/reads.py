"""Record reads: list (page and page_token), one record, the record count, the deleted list and search."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import time
from typing import TYPE_CHECKING, Callable

from sandboxes._router import SandboxError
from sandboxes.zoho.faults import _INVALID_MODULE, ZohoError, answer
from sandboxes.zoho.routes import MODULES, all_scopes, any_scope, api, module_name, module_scope
from sandboxes.zoho.store import _iso, _norm, _parse_time

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox

MAX_PAGE_SIZE = 200
MAX_FIELDS_PARAM = 50
DISCRETE_PAGE_LIMIT = 2000
TOKEN_PAGE_LIMIT = 100_000
PAGE_TOKEN_TTL = 86_400.0


def _known_module(module: str) -> str:
    mod = module_name(module)
    if mod not in MODULES:
        raise SandboxError(400, _INVALID_MODULE)
    return mod


def _paging(query: dict) -> tuple[int, int]:
    try:
        page, per_page = int(query.get("page", 1)), int(query.get("per_page", MAX_PAGE_SIZE))
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "invalid data", param_name="page/per_page") from None
    if page < 1:
        raise ZohoError(400, "INVALID_DATA", "invalid data", param_name="page")
    if not 1 <= per_page <= MAX_PAGE_SIZE:
        raise ZohoError(400, "INVALID_DATA", "invalid data", param_name="per_page", maximum_length=MAX_PAGE_SIZE)
    return page, per_page


def _since_header(req: Request) -> float | None:
    header = req.headers.get("If-Modified-Since")
    if not header:
        return None
    since = _parse_time(header)
    if since is None:
        raise ZohoError(400, "INVALID_DATA", "invalid data", header_name="If-Modified-Since")
    return since


@api.route("GET", "/crm/v8/{module}", operation="get", scope=module_scope("READ"))
def get_records(sb: ZohoSandbox, req: Request, info: dict, module: str) -> Response:
    mod = _known_module(module)
    names = _fields_param(sb, mod, req.query.get("fields"))
    opts = _list_options(req)
    with sb._lock:
        rows = _select(sb, mod, opts)
    if opts["since"] is not None and not rows:
        return answer(304)  # nothing modified since If-Modified-Since
    start = opts["offset"]
    page_rows = rows[start:start + opts["per_page"]]
    info["records"] = len(page_rows)
    if not page_rows:
        return answer(204)
    more = len(rows) > start + len(page_rows)
    data = [{"id": rec["id"], **{n: copy.deepcopy(rec.get(n)) for n in names if n != "id"}} for rec in page_rows]
    return answer(200, {"data": data, "info": _list_info(opts, len(page_rows), more, start)})


def _fields_param(sb: ZohoSandbox, module: str, raw: str | None) -> list[str]:
    if not raw or not raw.strip():
        raise ZohoError(400, "REQUIRED_PARAM_MISSING", "required param is missing", param_name="fields")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > MAX_FIELDS_PARAM:
        raise ZohoError(400, "LIMIT_EXCEEDED", "Max field limit exceeded", limit=MAX_FIELDS_PARAM,
                        param_name="fields")
    unknown = [n for n in names if n != "id" and n not in sb._fields[module]]
    if unknown:
        raise ZohoError(400, "INVALID_DATA", "invalid data", api_name=unknown[0], param_name="fields")
    return names


def _list_options(req: Request) -> dict:
    q = req.query
    page, per_page = _paging(q)
    since = _since_header(req)
    opts = {"page": page, "per_page": per_page, "since": since, "sort_by": q.get("sort_by", "id"),
            "sort_order": q.get("sort_order", "desc"), "converted": q.get("converted", "false"),
            "ids": [i.strip() for i in q.get("ids", "").split(",") if i.strip()]}
    for key, allowed in (("sort_by", ("id", "Created_Time", "Modified_Time")), ("sort_order", ("asc", "desc")),
                         ("converted", ("true", "false", "both"))):
        if opts[key] not in allowed:
            raise ZohoError(400, "INVALID_DATA", "invalid data", param_name=key, supported_values=list(allowed))
    opts["bound"] = hashlib.sha256(json.dumps([req.path, sorted((k, v) for k, v in q.items()
                                   if k not in ("page", "page_token"))]).encode()).hexdigest()[:16]
    _resolve_offset(opts, q.get("page_token"))
    return opts


def _resolve_offset(opts: dict, token: str | None) -> None:
    """``page`` reaches the first 2,000 records; past that a ``page_token`` bound to the query is needed."""
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
        except ValueError:
            raise ZohoError(400, "INVALID_DATA", "invalid data", param_name="page_token") from None
        if state.get("b") != opts["bound"]:
            raise ZohoError(400, "TOKEN_BOUND_DATA_MISMATCH", "invalid data", param_name="page_token")
        if state.get("e", 0) < time.time():
            raise ZohoError(400, "EXPIRED_VALUE", "invalid data", param_name="page_token")
        opts["offset"] = int(state["o"])
        if opts["offset"] + opts["per_page"] > TOKEN_PAGE_LIMIT:
            raise ZohoError(400, "PAGINATION_LIMIT_EXCEEDED", "invalid data", limit=TOKEN_PAGE_LIMIT)
        return
    opts["offset"] = (opts["page"] - 1) * opts["per_page"]
    if opts["offset"] + opts["per_page"] > DISCRETE_PAGE_LIMIT:
        raise ZohoError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED", "invalid data", limit=DISCRETE_PAGE_LIMIT)


def _select(sb: ZohoSandbox, module: str, opts: dict) -> list[dict]:
    rows = list(sb._store[module].values())
    if opts["ids"]:
        wanted = set(opts["ids"])
        rows = [r for r in rows if r["id"] in wanted]
    elif module == "Leads" and opts["converted"] != "both":  # converted leads are hidden by default
        want = opts["converted"] == "true"
        rows = [r for r in rows if bool(r.get("Converted__s")) == want]
    if opts["since"] is not None:
        rows = [r for r in rows if int(sb._mtimes[r["id"]]) >= int(opts["since"])]
    key = {"id": lambda r: int(r["id"]), "Created_Time": lambda r: (r["Created_Time"], int(r["id"])),
           "Modified_Time": lambda r: (sb._mtimes[r["id"]], int(r["id"]))}[opts["sort_by"]]
    return sorted(rows, key=key, reverse=opts["sort_order"] == "desc")


def _list_info(opts: dict, count: int, more: bool, start: int) -> dict:
    next_token = None
    if more:
        state = {"o": start + count, "b": opts["bound"], "e": time.time() + PAGE_TOKEN_TTL}
        next_token = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
    return {"call": False, "per_page": opts["per_page"], "next_page_token": next_token, "count": count,
            "sort_by": opts["sort_by"], "page": opts["page"], "previous_page_token": None,
            "page_token_expiry": _iso(time.time() + PAGE_TOKEN_TTL), "sort_order": opts["sort_order"],
            "email": False, "more_records": more}


@api.route("GET", "/crm/v8/{module}/actions/count", operation="count", scope=module_scope("READ"))
def record_count(sb: ZohoSandbox, req: Request, info: dict, module: str) -> Response:
    """Record Count (OAS ``/crm/v8/{module}/actions/count``): ``{"count": n}``; converted Leads not counted."""
    mod = _known_module(module)
    with sb._lock:
        count = sum(1 for r in sb._store[mod].values() if not r.get("Converted__s"))
    return answer(200, {"count": count})


@api.route("GET", "/crm/v8/{module}/{record_id}", operation="get_record", scope=module_scope("READ"))
def get_record(sb: ZohoSandbox, req: Request, info: dict, module: str, record_id: str) -> Response:
    mod = _known_module(module)
    with sb._lock:
        rec = sb._store[mod].get(record_id)
        if rec is None or rec.get("Converted__s"):
            return answer(204)  # unknown, deleted and converted records answer no content
        names = [n.strip() for n in req.query.get("fields", "").split(",") if n.strip()] or list(sb._fields[mod])
        out = {"id": rec["id"], **{n: copy.deepcopy(rec.get(n)) for n in names if n != "id"}}
    info["records"] = 1
    return answer(200, {"data": [out]})


@api.route("GET", "/crm/v8/{module}/deleted", operation="deleted", scope=module_scope("READ"), cost=2)
def get_deleted(sb: ZohoSandbox, req: Request, info: dict, module: str) -> Response:
    mod = _known_module(module)
    kind = req.query.get("type", "all")
    if kind not in ("all", "recycle", "permanent"):
        raise ZohoError(400, "PATTERN_NOT_MATCHED", "Please check whether the input values are correct",
                        param_name="type")
    page, per_page = _paging(req.query)
    since = _since_header(req)
    with sb._lock:
        rows = [e for e in sb._deleted[mod] if kind == "all" or e["type"] == kind]
    if since is not None:  # second precision, inclusive: a client may see an entry twice, never miss one
        rows = [e for e in rows if int(e["_ts"]) >= int(since)]
    rows.sort(key=lambda e: e["_ts"], reverse=True)
    start = (page - 1) * per_page
    chunk = rows[start:start + per_page]
    info["records"] = len(chunk)
    if not chunk:
        return answer(204)
    data = [{k: copy.deepcopy(v) for k, v in e.items() if not k.startswith("_")} for e in chunk]
    return answer(200, {"data": data, "info": {"per_page": per_page, "count": len(chunk), "page": page,
                                               "more_records": len(rows) > start + len(chunk)}})


@api.route("GET", "/crm/v8/{module}/search", operation="search",
           scope=all_scopes(module_scope("READ"), any_scope("ZohoSearch.securesearch.READ",
                                                            "ZohoSearch.securesearch.ALL")))
def search(sb: ZohoSandbox, req: Request, info: dict, module: str) -> Response:
    """Minimal search: ``email`` (all email fields) or ``criteria`` with equals (as contains) / starts_with."""
    mod = _known_module(module)
    page, per_page = _paging(req.query)
    test = _search_predicate(sb, mod, req.query)
    with sb._lock:
        rows = [copy.deepcopy(r) for r in sb._store[mod].values() if not r.get("Converted__s") and test(r)]
    rows = rows[:DISCRETE_PAGE_LIMIT]
    chunk = rows[(page - 1) * per_page: page * per_page]
    info["records"] = len(chunk)
    if not chunk:
        return answer(204)
    more = len(rows) > page * per_page
    return answer(200, {"data": chunk, "info": {"per_page": per_page, "count": len(chunk), "page": page,
                                                "more_records": more}})


def _search_predicate(sb: ZohoSandbox, module: str, query: dict) -> Callable[[dict], bool]:
    if query.get("criteria"):
        conditions = re.findall(r"\(\(?([A-Za-z0-9_]+):(equals|starts_with):((?:\\.|[^)])*)\)", query["criteria"])
        if not conditions:
            raise ZohoError(400, "INVALID_QUERY", "invalid query formed", param_name="criteria")
        use_or = ")or(" in query["criteria"].replace(" ", "").lower()

        def match(rec: dict, cond: tuple[str, str, str]) -> bool:
            value, wanted = _norm(rec.get(cond[0]) or ""), _norm(cond[2].replace("\\", ""))
            return value.startswith(wanted) if cond[1] == "starts_with" else wanted in value  # equals = contains

        return lambda r: (any if use_or else all)(match(r, c) for c in conditions)
    if query.get("email"):
        wanted = _norm(query["email"])
        emails = [n for n, s in sb._fields[module].items() if s["data_type"] == "email"]
        return lambda r: any(_norm(r.get(n) or "") == wanted for n in emails)
    raise ZohoError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                    param_name="criteria/email/phone/word")
