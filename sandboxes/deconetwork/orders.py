"""``manage_orders/find``: PHP-style conditions matched against orders, ``limit``/``offset`` paging."""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .._router import Response, Router
from .data import SITE_TS
from .faults import _HTML_LOGIN, HTML, DecoApiError

if TYPE_CHECKING:
    from .._router import Request
    from .server import DecoNetworkSandbox

FIND_PATH = "/api/json/manage_orders/find"
LOGIN_PATH = "/login"
MAX_LIMIT = 100
_DATE_FIELDS = {1: "date_ordered", 2: "date_production_files_ready", 5: "date_due", 8: "date_modified"}

# The site's pages, GET or POST: ``fn(sandbox, request, params) -> Response``; with ``api=True`` a JSON API
# endpoint (faults, credentials and the API switch checked first) answering the envelope as a dict.
site = Router()


def _parse_site_date(raw: Any) -> tuple[datetime, bool] | None:
    """A date as the doc and 3P clients send it; the flag says it was a bare date (a whole day)."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    for fmt, bare in (("%Y-%m-%dT%H:%M:%S", False), ("%Y-%m-%d %H:%M:%S", False), ("%Y-%m-%d", True)):
        try:
            return datetime.strptime(text, fmt), bare
        except ValueError:
            continue
    return None


def _int(raw: Any) -> int | None:
    if isinstance(raw, str) and re.fullmatch(r"\s*-?\d+\s*", raw):
        return int(raw)
    return None


@dataclass
class _Condition:
    column: str
    op: int
    value: Any  # datetime, int or str
    bare: bool = False
    value2: Any = None
    bare2: bool = False

    def matches(self, order: dict) -> bool:
        raw = order.get(self.column)
        if raw is None:
            return False  # SQL: NULL matches nothing
        if isinstance(self.value, datetime):
            v = _site_ts(raw)
            lo = self.value
            if self.op == 7:
                hi = self.value2 + timedelta(days=1, seconds=-1) if self.bare2 else self.value2
                return lo <= v <= hi
            if self.bare and self.op in (1, 2):
                same = v.date() == lo.date()
                return same if self.op == 1 else not same
            return _compare(self.op, v, lo)
        if isinstance(self.value, int):
            return _compare(self.op, int(raw), self.value)
        return _compare(self.op, str(raw).casefold(), str(self.value).casefold())


@functools.lru_cache(maxsize=1 << 20)
def _site_ts(raw: str) -> datetime:
    """An order's stored date, parsed once: every search tests every order (a table scan, as the site's SQL)."""
    return datetime.strptime(raw, SITE_TS)


def _compare(op: int, a: Any, b: Any) -> bool:
    return {1: a == b, 2: a != b, 3: a < b, 4: a > b, 5: a <= b, 6: a >= b}.get(op, False)


class Orders:
    """DecoNetworkSandbox's API side: credentials and the find query."""

    def find_orders(self, params: dict) -> dict:
        """``manage_orders/find`` on already-authenticated, decoded parameters."""
        conditions = self._conditions(params)
        limit = _int(params.get("limit")) if "limit" in params else MAX_LIMIT
        offset = _int(params.get("offset")) if "offset" in params else 0
        if limit is None or offset is None or not 0 <= limit <= MAX_LIMIT or offset < 0:
            raise DecoApiError(50004)
        with self._lock:
            rows = self._matching(conditions)
            page = [copy.deepcopy(o) for o in rows[offset: offset + limit]]
        return {"response_status": {"code": 10001, "severity": "SUCCESS", "description": "."},
                "total": len(rows), "orders": page}

    def _matching(self, conditions: list[_Condition]) -> list[dict]:
        """The orders matching every condition, in order id order; kept until the next change (every change moves
        the clock), so paging through one search scans the table once, as the site's query cache would."""
        key = (tuple((c.column, c.op, c.value, c.bare, c.value2, c.bare2) for c in conditions), self._now,
               len(self._orders))
        rows = self._match_cache.get(key)
        if rows is None:
            if len(self._match_cache) >= 8:
                self._match_cache.clear()
            rows = self._match_cache[key] = [o for o in self._orders.values() if all(c.matches(o) for c in conditions)]
        return rows

    def _conditions(self, params: dict) -> list[_Condition]:
        raw = params.get("conditions")
        if isinstance(raw, dict) and raw:
            items = [(str(n), c if isinstance(c, dict) else {}) for n, c in raw.items()]
        elif "field" in params or "condition" in params:
            items = [("1", {k: params.get(k) for k in ("field", "condition", "date1", "date2", "string")
                            if k in params})]
        else:
            raise DecoApiError(50002)
        return [self._condition(n, c) for n, c in items]

    def _condition(self, n: str, c: dict) -> _Condition:
        for name in ("field", "condition"):
            if c.get(name) in (None, ""):
                raise DecoApiError(50003, f"Condition {n} '{name}' missing")
        fld, op = _int(c.get("field")), _int(c.get("condition"))
        if fld not in range(1, 9) or op not in range(1, 8):
            raise DecoApiError(50005, f"Invalid request parameters: condition {n} field or condition")
        if fld in self.date_fields:
            first = _parse_site_date(c.get("date1"))
            if first is None:
                raise DecoApiError(50003, f"Condition {n} date1 invalid")
            cond = _Condition(self.date_fields[fld], op, first[0], first[1])
            if op == 7:
                second = _parse_site_date(c.get("date2"))
                if second is None:
                    raise DecoApiError(50003, f"Condition {n} date2 invalid")
                cond.value2, cond.bare2 = second
            return cond
        text = c.get("string")
        if not isinstance(text, str) or not text.strip() or op == 7:
            raise DecoApiError(50005, f"Invalid request parameters: condition {n} string")
        if fld == 4:
            status = _int(text)
            if status is None:
                raise DecoApiError(50005, f"Invalid request parameters: condition {n} string")
            return _Condition("order_status", op, status)
        return _Condition("order_id", op, text.strip())  # 3: invoice number

    def _authenticate(self, params: dict) -> str:
        """"ok", "login" (no credentials: the site's login page) or "bad" (wrong credentials)."""
        username, password = params.get("username"), params.get("password")
        if not username and not password:
            return "login"
        return "ok" if (username, password) == (self.username, self.password) else "bad"



@site.route(("GET", "POST"), LOGIN_PATH, strict_slashes=True)
def login_page(sb: DecoNetworkSandbox, req: Request, params: dict) -> Response:
    return Response(200, _HTML_LOGIN, content_type=HTML)


@site.route(("GET", "POST"), FIND_PATH, api=True)
def find(sb: DecoNetworkSandbox, req: Request, params: dict) -> dict:
    return sb.find_orders(params)
