"""COQL: POST /crm/v8/coql with the subset of Zoho's query language the product uses (select by Email in/=).

Zoho's rules modelled (COQL overview and limitations pages, v7/v8; Kaizen #183 for the v7+ IN limit):
* ``{"select_query": "select f1, f2 from Module where Email in ('a','b') limit 200 offset 0"}``; keywords in
  any case; LIMIT defaults to 200, at most 2,000; LIMIT + OFFSET reach at most 100,000 records;
* ``in`` / ``not in`` take at most 100 values (50 before v7); at most 50 fields selected here (Zoho: 500 in v7+,
  the product never selects more than a few);
* credits by LIMIT: 1 up to 200, 2 up to 1,000, 3 up to 2,000;
* answer ``{"data": [...], "info": {"count": n, "more_records": bool}}``; nothing found: 204;
* converted Leads are left out (as in Zoho's default Leads views); sorted by id ascending (Zoho's default).
Scope: ``ZohoCRM.coql.READ`` plus read access to the module.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from sandboxes.zoho.faults import ZohoError, answer
from sandboxes.zoho.routes import MODULES, any_scope, api, module_name
from sandboxes.zoho.store import _norm

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox

MAX_LIMIT = 2000
DEFAULT_LIMIT = 200
MAX_REACH = 100_000
MAX_IN_VALUES = 100
MAX_SELECT_FIELDS = 50

_QUERY = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<module>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+limit\s+(?P<limit>\d+)(?:\s*,\s*(?P<limit2>\d+))?)?"
    r"(?:\s+offset\s+(?P<offset>\d+))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"^\(?\s*(?P<field>\w+)\s+(?:(?P<op>=|!=|in|not\s+in)\s+(?P<value>'(?:[^']|'')*'|\((?P<list>.*)\))"
    r"|(?P<null>is\s+(?:not\s+)?null))\s*\)?$",
    re.IGNORECASE | re.DOTALL,
)
_STRING = re.compile(r"\s*'((?:[^']|'')*)'\s*(?:,|$)")


def _syntax(message: str, clause: str) -> ZohoError:
    return ZohoError(400, "SYNTAX_ERROR", message, clause=clause)


def coql_cost(req: Request) -> int:
    """Credits by the query's LIMIT (doc §8.1): 1 up to 200, 2 up to 1,000, 3 up to 2,000."""
    try:
        query = (req.json() or {}).get("select_query", "")
        match = _QUERY.match(query) if isinstance(query, str) else None
    except (ValueError, AttributeError):
        return 1
    limit = _limit(match) if match else DEFAULT_LIMIT
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


def _limit(match: re.Match) -> int:
    if match.group("limit2") is not None:  # "limit offset, count"
        return int(match.group("limit2"))
    return int(match.group("limit")) if match.group("limit") else DEFAULT_LIMIT


def _values(text: str) -> list[str]:
    values, pos = [], 0
    while pos < len(text):
        found = _STRING.match(text, pos)
        if not found:
            raise _syntax("invalid query formed", "where")
        values.append(found.group(1).replace("''", "'"))
        pos = found.end()
    return values


def _split_and(text: str) -> list[str]:
    """Split on ``and`` outside quoted values."""
    return re.split(r"\s+and\s+(?=(?:[^']*'[^']*')*[^']*$)", text, flags=re.IGNORECASE)


def _conditions(where: str) -> list[re.Match]:
    """``A``, ``(A and B)``: at most two criteria here (Zoho wants brackets past two)."""
    text = where.strip()
    parts = _split_and(text)
    if len(parts) > 2:
        raise _syntax("invalid query formed", "where")
    if len(parts) == 2:
        if not (text.startswith("(") and text.endswith(")")):
            raise _syntax("invalid query formed", "where")
        parts = _split_and(text[1:-1])
    found = []
    for part in parts:
        match = _CONDITION.match(part.strip())
        if not match:
            raise _syntax("invalid query formed", "where")
        found.append(match)
    return found


def _predicate(sb: ZohoSandbox, module: str, cond: re.Match) -> Any:
    name = cond.group("field")
    if name != "id" and name not in sb._fields[module]:
        raise ZohoError(400, "INVALID_QUERY", "invalid query formed", column_name=name, clause="where",
                        reason="column given seems to be invalid")
    if cond.group("null"):
        wants_null = "not" not in cond.group("null").lower()
        return lambda rec: (rec.get(name) in (None, "")) == wants_null
    op = re.sub(r"\s+", " ", cond.group("op").lower())
    if op in ("in", "not in"):
        values = _values(cond.group("list") or "")
        if not values:
            raise _syntax("invalid query formed", "where")
        if len(values) > MAX_IN_VALUES:
            raise ZohoError(400, "LIMIT_EXCEEDED", "the number of values given for the in operator exceeds the limit",
                            limit=MAX_IN_VALUES, operator=op, clause="where")
        wanted = {_norm(v) for v in values}
        if op == "in":
            return lambda rec: rec.get(name) is not None and _norm(rec[name]) in wanted
        return lambda rec: rec.get(name) is None or _norm(rec[name]) not in wanted
    value = _norm(cond.group("value")[1:-1].replace("''", "'"))
    if op == "=":
        return lambda rec: rec.get(name) is not None and _norm(rec[name]) == value
    return lambda rec: rec.get(name) is None or _norm(rec[name]) != value


@api.route("POST", "/crm/v8/coql", operation="coql", scope=any_scope("ZohoCRM.coql.READ"), cost=coql_cost)
def coql(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    try:
        body = req.json()
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "body", expected_data_type="jsonobject") from None
    query = body.get("select_query") if isinstance(body, dict) else None
    if not isinstance(query, str) or not query.strip():
        raise ZohoError(400, "REQUIRED_PARAM_MISSING", "required param is missing", param_name="select_query")
    match = _QUERY.match(query)
    if not match:
        raise _syntax("invalid query formed", "select")
    module = module_name(match.group("module"))
    info["module"] = module
    if module not in MODULES:
        raise ZohoError(400, "INVALID_QUERY", "invalid query formed", reason="invalid module", clause="from")
    fields = [f.strip() for f in match.group("fields").split(",") if f.strip()]
    if not fields or len(fields) > MAX_SELECT_FIELDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "the number of fields exceeds the limit", limit=MAX_SELECT_FIELDS,
                        clause="select")
    for name in fields:
        if name != "id" and name not in sb._fields[module]:
            raise ZohoError(400, "INVALID_QUERY", "invalid query formed", column_name=name, clause="select",
                            reason="column given seems to be invalid")
    limit = _limit(match)
    offset = int(match.group("limit") if match.group("limit2") is not None else match.group("offset") or 0)
    if not 1 <= limit <= MAX_LIMIT:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", limit=MAX_LIMIT, clause="limit")
    if offset + limit > MAX_REACH:
        raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", limit=MAX_REACH, clause="offset")
    predicates = [_predicate(sb, module, c) for c in _conditions(match.group("where"))] if match.group("where") else []
    with sb._lock:
        rows = [rec for rid, rec in sorted(sb._store[module].items(), key=lambda item: int(item[0]))
                if not rec.get("Converted__s") and all(p(rec) for p in predicates)]
        page = [{name: copy.deepcopy(rec.get(name)) for name in ["id", *[f for f in fields if f != "id"]]}
                for rec in rows[offset:offset + limit]]
    info["records"] = len(page)
    if not page:
        return answer(204)
    return answer(200, {"data": page, "info": {"count": len(page), "more_records": len(rows) > offset + limit}})
