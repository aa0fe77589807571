"""searchCriteria: parsed from PHP query arrays, filters compiled to row predicates; ``fields=`` filtering."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .faults import BAD_TYPE, REQUIRED, MagentoError

# Timestamps and codes compare byte-wise; skipping case folding on them keeps million-row scans fast.
VERBATIM_COLUMNS = frozenset({"created_at", "updated_at", "dob", "increment_id", "order_currency_code",
                              "base_currency_code"})


def _either(d: dict, *names: str) -> Any:
    """Magento maps snake_case and camelCase keys to the same setter, so accept both spellings."""
    for name in names:
        if name in d:
            return d[name]
    return None


@dataclass
class Filter:
    field: str
    value: str | None
    condition_type: str

    def echo(self) -> dict:
        out = {"field": self.field}
        if self.value is not None:
            out["value"] = self.value
        out["condition_type"] = self.condition_type
        return out


@dataclass
class SearchCriteria:
    filter_groups: list[list[Filter]] = field(default_factory=list)
    sort_orders: list[tuple[str, str | None]] = field(default_factory=list)
    page_size: int | None = None
    current_page: int | None = None

    def echo(self) -> dict:
        out: dict[str, Any] = {"filter_groups": [{"filters": [f.echo() for f in g]} for g in self.filter_groups]}
        if self.sort_orders:
            out["sort_orders"] = [{"field": f, **({"direction": d} if d else {})} for f, d in self.sort_orders]
        if self.page_size is not None:
            out["page_size"] = self.page_size
        if self.current_page is not None:
            out["current_page"] = self.current_page
        return out


def _int_param(raw: Any) -> int:
    if not isinstance(raw, str) or not re.fullmatch(r"\s*-?\d+\s*", raw):
        raise MagentoError(400, BAD_TYPE, [raw if isinstance(raw, str) else "array", "int"])
    return int(raw)


def _as_list(node: Any) -> list:
    return list(node.values()) if isinstance(node, dict) else []


def parse_search_criteria(params: dict) -> SearchCriteria:
    """Build SearchCriteria from decoded query params; `searchCriteria` itself is a required argument."""
    if "searchCriteria" not in params:
        raise MagentoError(400, REQUIRED, {"fieldName": "searchCriteria"})
    sc = params["searchCriteria"]
    sc = sc if isinstance(sc, dict) else {}  # "searchCriteria=" alone means "no criteria"
    criteria = SearchCriteria()
    for group in _as_list(_either(sc, "filter_groups", "filterGroups")):
        filters = []
        for f in _as_list(group.get("filters") if isinstance(group, dict) else None):
            if not isinstance(f, dict) or not f.get("field"):
                raise MagentoError(400, REQUIRED, {"fieldName": "field"})
            cond = _either(f, "condition_type", "conditionType") or "eq"
            filters.append(Filter(str(f["field"]), f.get("value"), str(cond).lower()))
        if filters:
            criteria.filter_groups.append(filters)
    for order in _as_list(_either(sc, "sort_orders", "sortOrders")):
        if isinstance(order, dict) and order.get("field"):
            direction = order.get("direction")
            if direction is not None and str(direction).upper() not in ("ASC", "DESC"):
                raise MagentoError(400, 'Sort order "%1" is not supported.', [direction])
            criteria.sort_orders.append((str(order["field"]), str(direction).upper() if direction else None))
    page_size = _either(sc, "pageSize", "page_size")
    current_page = _either(sc, "currentPage", "current_page")
    criteria.page_size = None if page_size is None else _int_param(page_size)
    criteria.current_page = None if current_page is None else _int_param(current_page)
    return criteria


def _like_regex(pattern: str) -> re.Pattern:
    """SQL LIKE (% and _, backslash escapes) as a regex; MySQL's default collation ignores case."""
    out, escaped = [], False
    for ch in pattern:
        if escaped:
            out.append(re.escape(ch))
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("".join(out), re.S | re.I)


def _number(raw: str | None) -> float | None:
    try:
        return float(str(raw).strip())
    except (TypeError, ValueError):
        return None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b, "moreq": lambda a, b: a >= b, "from": lambda a, b: a >= b,
    "lt": lambda a, b: a < b, "lteq": lambda a, b: a <= b, "to": lambda a, b: a <= b,
}


def compile_filter(f: Filter, column: str) -> Callable[[dict], bool]:
    """One filter as a row predicate with SQL semantics: NULL matches only null/notnull."""
    cond, raw = f.condition_type, f.value
    if cond == "null":
        return lambda row: row.get(column) is None
    if cond == "notnull":
        return lambda row: row.get(column) is not None
    if cond in ("in", "nin"):
        items = [] if raw is None or raw == "" else raw.split(",")
        wanted_num = {n for n in map(_number, items) if n is not None}
        wanted_str = {s.casefold() for s in items}
        positive = cond == "in"

        def member(row: dict) -> bool:
            v = row.get(column)
            if v is None:
                return False
            hit = v in wanted_num if isinstance(v, (int, float)) else str(v).casefold() in wanted_str
            return hit == positive
        return member
    if cond in ("like", "nlike"):
        rx, positive = _like_regex(raw or ""), cond == "like"
        return lambda row: (v := row.get(column)) is not None and bool(rx.fullmatch(str(v))) == positive
    if cond in ("finset", "nfinset"):
        positive = cond == "finset"
        return lambda row: (v := row.get(column)) is not None and (str(raw) in str(v).split(",")) == positive
    # Magento hands unknown condition types to the DB adapter as plain equality.
    op = _COMPARE.get(cond, _COMPARE["eq"])
    if raw is None:
        return lambda row: False  # "= NULL" is never true in SQL
    num, fold = _number(raw), column not in VERBATIM_COLUMNS
    text = raw.casefold() if fold else raw

    def compare(row: dict) -> bool:
        v = row.get(column)
        if v is None:
            return False
        if isinstance(v, str):
            return op(v.casefold() if fold else v, text)
        if isinstance(v, (int, float)):
            return num is not None and op(v, num)
        return op(str(v).casefold(), raw.casefold())
    return compare


def combine_groups(groups: list[list[Callable[[dict], bool]]]) -> Callable[[dict], bool] | None:
    """OR inside a group, AND across groups; None when there is nothing to filter."""
    preds = [g[0] if len(g) == 1 else (lambda row, g=g: any(p(row) for p in g)) for g in groups]
    if not preds:
        return None
    if len(preds) == 1:
        return preds[0]
    return lambda row: all(p(row) for p in preds)


# ---- fields= response filtering --------------------------------------------------------------------

_FIELD_NAME = re.compile(r"\s*([^,\[\]\s]*)\s*")


def parse_fields(spec: str) -> dict:
    """'items[id,email],total_count' -> {'items': {'id': None, 'email': None}, 'total_count': None}."""
    pos = 0

    def parse_list() -> dict:
        nonlocal pos
        out: dict = {}
        while pos < len(spec):
            m = _FIELD_NAME.match(spec, pos)
            name, pos = m.group(1), m.end()
            sub = None
            if pos < len(spec) and spec[pos] == "[":
                pos += 1
                sub = parse_list()
                pos += 1  # the closing bracket
            if name:
                out[name] = sub
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            break
        return out

    return parse_list()


def apply_fields(value: Any, spec: dict | None) -> Any:
    if spec is None:
        return value
    if isinstance(value, list):
        return [apply_fields(v, spec) for v in value]
    if isinstance(value, dict):
        return {k: apply_fields(value[k], sub) for k, sub in spec.items() if k in value}
    return value
