"""Local stand-in for the Adobe Commerce / Magento 2.4 REST API: a real HTTP server on 127.0.0.1, stdlib only."""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import gc
import hashlib
import heapq
import hmac
import json
import math
import operator
import random
import re
import string
import threading
import time
from bisect import bisect_left, bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from itertools import repeat
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from sandboxes.seed import BASE_CURRENCY, STORES, StoreData, format_ts, generate_store, parse_ts
from sandboxes._server import LoopbackServer, SandboxHandler, serve_until_stopped

__all__ = ["MagentoSandbox", "MagentoError", "parse_search_criteria", "parse_fields"]

ADMIN_TOKEN_LIFETIME = 4 * 3600  # Magento default: Admin Token Lifetime (hours) = 4
NO_ROUTE = "Request does not match any route."
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."
BAD_SIGN_IN = ("The account sign-in was incorrect or your account is disabled temporarily. "
               "Please wait and try again later.")
TWO_FA = "Please use the 2fa provider-specific endpoints to obtain a token."
REQUIRED = '"%fieldName" is required. Enter and try again.'
BAD_TYPE = "The \"%1\" value's type is invalid. The \"%2\" type was expected. Verify and try again."
MAX_PAGE = "Maximum SearchCriteria pageSize is %max"
NO_SUCH_ENTITY = "No such entity with %fieldName = %fieldValue"
ENTITY_MISSING = "The entity that was requested doesn't exist. Verify the entity and try again."
INTERNAL = "Internal Error. Details are available in Magento log file. Report ID: %1"
# OAuth 1.0a refusals, worded as Magento\Framework\Oauth\Oauth and NonceGenerator word them.
BAD_SIGNATURE = "The signature is invalid. Verify and try again."
NONCE_USED = "The nonce is already being used by the consumer with ID %1"
BAD_TIMESTAMP = "Incorrect timestamp value in the oauth_timestamp parameter"
UNKNOWN_CONSUMER = "A consumer having the specified key does not exist"
UNKNOWN_TOKEN = "Specified token does not exist"
BAD_OAUTH_VERSION = "The \"%1\" Oauth version isn't supported."
BAD_SIGNATURE_METHOD = "Signature method %1 is not supported"
DUPLICATE_EMAIL = "A customer with the same email address already exists in an associated website."
OAUTH_TIME_DEVIATION = 600  # seconds a timestamp may run ahead of the server (NonceGenerator::TIME_DEVIATION)
OAUTH_REQUIRED = ("oauth_consumer_key", "oauth_signature", "oauth_signature_method", "oauth_nonce",
                  "oauth_timestamp", "oauth_token")
INTEGRATION_CONSUMER_ID = 1
REQUEST_FAULTS = ("429", "503", "drop")  # the whole request fails
# A search answers 200 with a wrong page (seen in production: issue 12); `path` picks the endpoint.
PAGE_FAULTS = ("empty_page", "short_page", "total_drift", "skip_rows")
# Timestamps and codes compare byte-wise; skipping case folding on them keeps million-row scans fast.
VERBATIM_COLUMNS = frozenset({"created_at", "updated_at", "dob", "increment_id", "order_currency_code",
                              "base_currency_code"})
RES_CUSTOMER, RES_CUSTOMER_MANAGE = "Magento_Customer::customer", "Magento_Customer::manage"
RES_ORDERS, RES_STORE = "Magento_Sales::actions_view", "Magento_Backend::store"
STORE_CODES = {s["code"]: sid for sid, s in STORES.items()}
_STATE_OF_STATUS = {"pending": "new", "processing": "processing", "complete": "complete",
                    "canceled": "canceled", "closed": "closed", "holded": "holded"}

CUSTOMER_FIELDS = frozenset(
    "id group_id default_billing default_shipping confirmation created_at updated_at created_in dob email "
    "firstname lastname middlename prefix suffix gender store_id website_id taxvat disable_auto_group_change".split())
ORDER_FIELDS = frozenset(
    "entity_id increment_id state status store_id store_name customer_group_id customer_id customer_email "
    "customer_firstname customer_lastname customer_middlename customer_prefix customer_suffix customer_dob "
    "customer_gender customer_taxvat customer_note customer_is_guest grand_total base_grand_total subtotal "
    "base_subtotal tax_amount base_tax_amount shipping_amount base_shipping_amount discount_amount "
    "base_discount_amount total_paid base_total_paid total_refunded base_total_refunded total_canceled "
    "base_total_canceled total_invoiced base_total_invoiced total_due base_total_due total_item_count "
    "total_qty_ordered order_currency_code base_currency_code global_currency_code store_currency_code "
    "base_to_global_rate base_to_order_rate created_at updated_at quote_id protect_code remote_ip weight "
    "shipping_description coupon_code ext_order_id email_sent billing_address_id shipping_address_id "
    "is_virtual applied_rule_ids".split())


class MagentoError(Exception):
    """A Magento web API error: rendered as {"message": ..., "parameters": ...} with an HTTP status."""

    def __init__(self, status: int, message: str, parameters: list | dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.parameters = status, message, parameters

    def body(self) -> dict:
        out: dict[str, Any] = {"message": self.message}
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out


# ---- searchCriteria --------------------------------------------------------------------------------

def parse_php_query(query: str) -> dict:
    """Decode a PHP-style query string (a[b][0][c]=v) into nested dicts, keeping insertion order like PHP arrays."""
    root: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        head, _, rest = key.partition("[")
        parts = [head] + (re.findall(r"\[([^\]]*)\]", "[" + rest) if rest else [])
        node = root
        for part in parts[:-1]:
            part = part or str(len(node))  # "[]" appends, as in PHP
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1] or str(len(node))] = value
    return root


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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Full scans allocate a tuple per row; with millions of live rows the cyclic GC would rescan them all, often."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sort_key(column: str) -> Callable[[dict], tuple]:
    """NULLs first (ascending), strings compared case-insensitively like MySQL's default collation."""
    fold = column not in VERBATIM_COLUMNS

    def key(row: dict) -> tuple:
        v = row.get(column)
        if v is None:
            return (False, 0)
        return (True, v.casefold() if fold and isinstance(v, str) else v)
    return key


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


# ---- indexes and ordered matches -------------------------------------------------------------------

_RANGES = frozenset({"gt", "gteq", "moreq", "from", "lt", "lteq", "to"})
_AT_LEAST = frozenset({"gteq", "moreq", "from"})
_LOWER_BOUNDS = _AT_LEAST | {"gt"}


def _indexable(f: Filter, column: str) -> bool:
    """Whether an index can list a superset of the rows `f` matches; other filters need the table scan."""
    if not isinstance(f.value, str):
        return False
    if f.condition_type == "in":
        return column not in VERBATIM_COLUMNS  # `in` folds case even where `eq` compares verbatim
    return f.condition_type == "eq" or f.condition_type in _RANGES


def _span(keys: list, condition: str, value: Any) -> tuple[int, int]:
    """The slice of the sorted `keys` that satisfy `key <condition> value`."""
    if condition == "eq":
        return bisect_left(keys, value), bisect_right(keys, value)
    if condition == "gt":
        return bisect_right(keys, value), len(keys)
    if condition in _AT_LEAST:
        return bisect_left(keys, value), len(keys)
    if condition == "lt":
        return 0, bisect_left(keys, value)
    return 0, bisect_right(keys, value)  # lteq, to


def _sorted_pairs(keys: list, pks: list[int]) -> tuple[list, list[int]]:
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [keys[i] for i in order], [pks[i] for i in order]


class _ColumnIndex:
    """One column's values in sorted arrays, as a B-tree holds them: `eq`, `in` and ranges by bisection.

    Strings and numbers are kept apart because compile_filter compares them apart; strings are case-folded
    unless the column compares verbatim. Rows holding any other type are candidates for every lookup.
    """

    def __init__(self, rows: Iterable[tuple[int, dict]], column: str) -> None:
        self.fold = column not in VERBATIM_COLUMNS
        text_keys: list[str] = []
        text_pks: list[int] = []
        number_keys: list[float] = []
        number_pks: list[int] = []
        self.others: list[int] = []
        for pk, row in rows:
            v = row.get(column)
            if isinstance(v, str):
                text_keys.append(v.casefold() if self.fold else v)
                text_pks.append(pk)
            elif isinstance(v, (int, float)):
                if v == v:  # NaN matches no filter
                    number_keys.append(v)
                    number_pks.append(pk)
            elif v is not None:
                self.others.append(pk)
        self.texts = _sorted_pairs(text_keys, text_pks)
        self.numbers = _sorted_pairs(number_keys, number_pks)

    def lookup(self, f: Filter) -> list[int]:
        """Primary keys (unordered, maybe repeated) of a superset of the rows an _indexable filter matches."""
        raw, condition = f.value, f.condition_type
        if condition == "in":
            items = raw.split(",") if raw else []
            probes = [(self.texts, "eq", item.casefold()) for item in items]
            probes += [(self.numbers, "eq", n) for n in map(_number, items) if n is not None]
        else:
            probes = [(self.texts, condition, raw.casefold() if self.fold else raw)]
            num = _number(raw)
            if num is not None:
                probes.append((self.numbers, condition, num))
        found = list(self.others)
        for (keys, pks), probe_condition, value in probes:
            lo, hi = _span(keys, probe_condition, value)
            found += pks[lo:hi]
        return found


class _Index:
    """A _ColumnIndex kept current without a rebuild: rows changed since it was built sit in a small delta."""

    def __init__(self, table: dict[int, dict], column: str) -> None:
        self.table, self.column = table, column
        self.built = _ColumnIndex(table.items(), column)
        self.stale: set[int] = set()  # added, replaced or deleted since `built`
        self.delta: _ColumnIndex | None = None  # the current rows of `stale`, indexed when first needed

    def changed(self, pks: Iterable[int]) -> None:
        self.stale.update(pks)
        self.delta = None

    def lookup(self, f: Filter) -> list[int]:
        found = self.built.lookup(f)
        if not self.stale:
            return found
        if self.delta is None:
            self.delta = _ColumnIndex(((pk, self.table[pk]) for pk in self.stale if pk in self.table), self.column)
        return [pk for pk in found if pk not in self.stale] + self.delta.lookup(f)


def _sorted_rows(rows: list[dict], sorts: list[tuple[str, str | None]]) -> list[dict]:
    """Stable sorts from the last key to the first over id order: ties always break by id ascending.

    Direction defaults to DESC (Magento's SortingProcessor); NULLs come first ascending, last descending.
    """
    rows = list(rows)
    with _gc_paused():
        for column, direction in reversed(sorts):
            rows.sort(key=_sort_key(column), reverse=(direction or "DESC") == "DESC")
    return rows


def _top(rows: list[dict], column: str, direction: str | None, count: int) -> list[dict] | None:
    """The first `count` rows of _sorted_rows(rows, [(column, direction)]) without sorting them all.

    Only where the sort key is the bare value: every row has one, and all are ints or all strings compared
    verbatim. None otherwise: the full sort does the work (and fails, as ever, on values that do not compare).
    """
    values = list(map(dict.get, rows, repeat(column)))
    kinds = set(map(type, values))
    if not (kinds == {int} or kinds == {str} and column in VERBATIM_COLUMNS):
        return None
    # Both are documented as sorted(...)[:count], which is stable: ties keep their id order, as in the full sort.
    pick = heapq.nsmallest if direction == "ASC" else heapq.nlargest
    return [rows[i] for i in pick(count, range(len(values)), key=values.__getitem__)]


class _Matches:
    """The rows a search matches, in its order, sorted only when (and as far as) a page needs it.

    The matches are `rows[start:]` (a keyset page starts past the last id); without sorts they are in
    primary-key order, the order of a table scan.
    """

    def __init__(self, rows: list[dict], sorts: Sequence[tuple[str, str | None]] = (), *, start: int = 0,
                 top_k: bool = False) -> None:
        self.rows, self.sorts, self.start = rows, list(sorts), start
        self.total = len(rows) - start
        self._top_k = top_k
        self._sorted: list[dict] | None = None if sorts else rows
        self._head: list[dict] = []  # the first rows in order, from a top-k selection
        self._pks: list[int] | None = None

    def pks(self, primary_key: str) -> list[int]:
        if self._pks is None:
            self._pks = list(map(operator.itemgetter(primary_key), self.rows))
        return self._pks

    def window(self, offset: int, count: int | None) -> list[dict]:
        """`count` matches from `offset` on (count None: all the rest)."""
        if self._sorted is None:
            first_page = offset == 0 and count is not None
            if first_page and count <= len(self._head):
                return self._head[:count]
            # One small first page (newest(): pageSize 1) is a top-k; paging on through a sort sorts once.
            if first_page and self._top_k and len(self.sorts) == 1 and count * 8 <= self.total:
                head = _top(self.rows, *self.sorts[0], count)
                if head is not None:
                    self._head = head
                    return head
            self._sorted = _sorted_rows(self.rows, self.sorts)
        begin = self.start + offset
        return self._sorted[begin:None if count is None else begin + count]


def _cache_key(entity: _Entity, groups: list[list[Filter]], sort_orders: Iterable[tuple]) -> tuple:
    return (entity.name, tuple(tuple((f.field, f.value, f.condition_type) for f in g) for g in groups),
            tuple(sort_orders))


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


# ---- OAuth 1.0a (RFC 5849), verified independently of any client code --------------------------------

_OAUTH_DIGESTS = {"HMAC-SHA256": hashlib.sha256, "HMAC-SHA1": hashlib.sha1}


def _rfc3986(value: str) -> str:
    return quote(value, safe="~")


def parse_oauth_header(value: str) -> dict[str, str]:
    """`k="v",k2="v2"` after "OAuth ": rawurldecoded names and values (Magento's Helper\\Request::_processHeader)."""
    out: dict[str, str] = {}
    for part in value.split(","):
        name, sep, raw = part.strip().partition("=")
        if sep and name.startswith("oauth_"):
            out[unquote(name)] = unquote(raw.strip().strip('"'))
    return out


def oauth1_base_string(method: str, url: str, params: list[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1: method, normalised URL, and the encoded pairs sorted byte-wise."""
    parts = urlsplit(url)
    scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    pairs = sorted((_rfc3986(k), _rfc3986(v)) for k, v in params)
    normalised = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), _rfc3986(f"{scheme}://{netloc}{parts.path}"), _rfc3986(normalised)))


@dataclass
class SignedRequest:
    """What an OAuth 1.0a signature covers: method, URL, query and a form-encoded body."""

    method: str
    url: str
    query: str
    content_type: str
    body: bytes

    def params(self) -> list[tuple[str, str]]:
        # Magento's Helper\Request::_extractQueryStringParams: split on & and =, keep pairs of exactly two,
        # rawurldecode (a "+" stays a plus), and never take protocol parameters from the query.
        out = []
        for chunk in self.query.split("&") if self.query else ():
            pieces = chunk.split("=")
            if len(pieces) == 2 and not pieces[0].startswith("oauth_"):
                out.append((unquote(pieces[0]), unquote(pieces[1])))
        if self.content_type.startswith("application/x-www-form-urlencoded") and self.body:
            out += [(k, v) for k, v in parse_qsl(self.body.decode(), keep_blank_values=True)
                    if not k.startswith("oauth_")]
        return out


# ---- the sandbox ----------------------------------------------------------------------------------

@dataclass
class _Entity:
    name: str
    fields: frozenset
    aliases: dict
    unknown_field_status: int  # EAV customers: 400 "Invalid attribute name"; flat orders: SQL error -> 500
    primary_key: str
    indexed: frozenset  # columns searched through an index, like MySQL's keys on these tables


_CUSTOMERS = _Entity("customers", CUSTOMER_FIELDS, {"entity_id": "id"}, 400, primary_key="id",
                     indexed=frozenset({"id", "email", "updated_at"}))
_ORDERS = _Entity("orders", ORDER_FIELDS, {}, 500, primary_key="entity_id",
                  indexed=frozenset({"entity_id", "customer_id", "customer_email", "updated_at"}))


def _by(rows: list[dict], key: str) -> list[dict]:
    """Rows in primary-key order (the order a table scan returns them); generated data already is."""
    keys = list(map(operator.itemgetter(key), rows))
    return rows if keys == sorted(keys) else sorted(rows, key=operator.itemgetter(key))


class MagentoSandbox(LoopbackServer):
    """In-memory Magento store served over HTTP; all state sits behind one lock."""

    thread_name = "magento-sandbox"

    def _handler(self) -> type:
        return _Handler

    def __init__(self, data: StoreData | None = None, *, admin_username: str = "sync-admin",
                 admin_password: str = "sandbox-admin-password-123",
                 integration_token: str = "sandbox-integration-token-0123456789", two_factor_auth: bool = False,
                 input_limit_enabled: bool = False, max_page_size: int = 300, default_page_size: int = 20,
                 legacy_last_page_repeat: bool = False, latency: float = 0.0, seed: int = 0,
                 consumer_key: str = "sandbox-consumer-key-0123456789ab",
                 consumer_secret: str = "sandbox-consumer-secret-0123456789",
                 access_token_secret: str = "sandbox-token-secret-0123456789ab",
                 allow_integration_bearer: bool = True, integration_resources: Iterable[str] | None = None) -> None:
        self.admin_username, self.admin_password = admin_username, admin_password
        self.integration_token = integration_token
        # The integration's OAuth 1.0a credentials; `integration_token` is its access token.
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token_secret = access_token_secret
        # Magento 2.4.4+ default is False: the access token alone (Bearer) is refused, only signed requests pass.
        self.allow_integration_bearer = allow_integration_bearer
        # ACL resources granted to the integration (None: all); admins always have all.
        self.integration_resources = None if integration_resources is None else frozenset(integration_resources)
        # Called with {"method", "path", "query"} before each REST request is answered: tests change data here
        # to play an admin editing the store between two pages of a client's paging.
        self.on_request: Callable[[dict], None] | None = None
        self._nonces: set[tuple[str, str]] = set()
        self.two_factor_auth = two_factor_auth
        self.input_limit_enabled = input_limit_enabled
        self.max_page_size, self.default_page_size = max_page_size, default_page_size
        self.legacy_last_page_repeat = legacy_last_page_repeat
        self.latency = latency
        self.url = ""
        self._rng = random.Random(seed)  # admin tokens and report ids
        self._lock = threading.RLock()
        with _gc_paused():
            self._load(data if data is not None else generate_store())
        self._admin_tokens: dict[str, int] = {}  # token -> expiry (sandbox clock)
        self._calls: list[dict] = []
        self._faults: deque[str] = deque()
        self._page_faults: list[dict] = []  # see inject_fault
        self._applied_faults: list[dict] = []
        self._cache: OrderedDict[tuple, _Matches] = OrderedDict()
        self._indexes: dict[tuple[str, str], _Index] = {}  # (entity, column) -> index, built on first use
        # Indexes, keyset bisection and top-k on: tests turn them off to compare with plain scans and sorts.
        self._fast_paths = True
        self._orders_by_customer: dict[int, list[int]] | None = None  # built on first delete
        self._increment_seq: dict[int, int] | None = None  # built on first add_order
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _load(self, data: StoreData) -> None:
        # Caller's dicts are shared, never mutated: every change replaces a row (copy-on-write).
        self._customers: dict[int, dict] = {c["id"]: c for c in _by(data.customers, "id")}
        self._orders: dict[int, dict] = {o["entity_id"]: o for o in _by(data.orders, "entity_id")}
        self._subscribed: dict[int, int] = {  # newsletter_subscriber: customer id -> status (1 subscribed, 3 not)
            c["id"]: 1 for c in data.customers if c.get("extension_attributes", {}).get("is_subscribed")}
        self._now = self._initial_clock()
        self._next_entity_id = 1 + max(self._orders, default=0)
        self._next_customer_id = 1 + max(self._customers, default=0)
        self._next_address_id = 0  # found on first use: one more scan of a million rows is not free

    # ---- lifecycle --------------------------------------------------------------------------------
    # ---- clock --------------------------------------------------------------------------------------
    def _initial_clock(self) -> int:
        stamps = [max((r.get("updated_at", "") for r in table.values()), default="")
                  for table in (self._customers, self._orders)]
        latest = max(stamps)
        return parse_ts(latest) + 1 if latest else parse_ts("2024-01-01 00:00:00")

    def now(self) -> str:
        """The sandbox clock as Magento writes it (UTC)."""
        with self._lock:
            return format_ts(self._now)

    def advance_clock(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._now += int(seconds)

    # ---- inspection -----------------------------------------------------------------------------
    def customers(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(self._public_customer(c)) for c in self._customers.values()]

    def orders(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._orders.values()]

    def calls(self) -> list[dict]:
        with self._lock:
            return [dict(c, query=dict(c["query"])) for c in self._calls]

    def state(self) -> dict:
        with self._lock:
            return {"customers": len(self._customers), "orders": len(self._orders), "now": format_ts(self._now)}

    def inject_fault(self, kind: str, times: int | None = 1, *, path: str | None = None, after_pages: int = 0,
                     rows: int | None = None, drift: int = 0) -> None:
        """Make the store misbehave.

        Request faults: the next `times` REST requests fail: "429" (rate limited), "503" (maintenance) or
        "drop" (no response).

        Page faults answer a search (`path` "customers" or "orders"; None: either) with HTTP 200 and a wrong
        page, after the first `after_pages` matching searches since the fault was set were answered right
        (a `newest`-style probe counts as one), for the next `times` searches (None: until `clear_faults`):

        * "empty_page": exactly ``{"items": [], "total_count": 0}``, whatever remains;
        * "short_page": only the first `rows` items (default: half of them), total_count unchanged;
        * "total_drift": the right items, total_count moved by `drift` (the count query ran at another moment);
        * "skip_rows": a page that leaves out `rows` rows (default 1) from its middle and fills up with the
          following ones, so it still looks full (a read replica behind its primary).
        """
        if kind not in REQUEST_FAULTS + PAGE_FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {REQUEST_FAULTS + PAGE_FAULTS}")
        if kind in REQUEST_FAULTS:
            with self._lock:
                self._faults.extend([kind] * (times or 1))
            return
        entity = {None: None, "customers": _CUSTOMERS, "customers/search": _CUSTOMERS, "orders": _ORDERS}.get(path, "?")
        if entity == "?":
            raise ValueError(f"unknown path {path!r}: use 'customers' or 'orders'")
        if kind == "total_drift" and not drift:
            raise ValueError("a total_drift fault needs a non-zero drift")
        if times is not None and times < 1 or after_pages < 0 or rows is not None and rows < 0:
            raise ValueError("times must be at least 1 (or None), after_pages and rows at least 0")
        with self._lock:
            self._page_faults.append({"kind": kind, "entity": entity, "skip": int(after_pages), "times": times,
                                      "rows": rows, "drift": int(drift)})

    def clear_faults(self) -> None:
        """Every queued fault, request or page, is dropped: the store answers right again."""
        with self._lock:
            self._faults.clear()
            self._page_faults.clear()

    def applied_faults(self) -> list[dict]:
        """The page faults answered so far, in order: {"kind", "path", "total_count"} (the true total)."""
        with self._lock:
            return [dict(f) for f in self._applied_faults]

    def _take_page_fault(self, entity: _Entity) -> dict | None:
        """The page fault for this search, if one is due; every matching fault still waiting counts the page."""
        chosen = None
        for fault in list(self._page_faults):
            if fault["entity"] not in (None, entity):
                continue
            if fault["skip"] > 0:
                fault["skip"] -= 1
            elif chosen is None:
                chosen = fault
                if fault["times"] is not None:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self._page_faults.remove(fault)
        return chosen

    # ---- mutation helpers (admin edits) -------------------------------------------------------------
    def _changed(self, entity: _Entity, pks: Sequence[int]) -> None:
        """Rows were added, replaced or deleted: cached answers go; the table's indexes note which rows moved."""
        self._cache.clear()
        table = self._table(entity)
        for column in entity.indexed:
            index = self._indexes.get((entity.name, column))
            if index is None:
                continue
            index.changed(pks)
            if len(index.stale) * 32 > len(table):  # past this, a rebuild costs less than carrying the delta
                del self._indexes[(entity.name, column)]

    def _table(self, entity: _Entity) -> dict[int, dict]:
        return self._customers if entity is _CUSTOMERS else self._orders

    def update_customer(self, customer_id: int, **fields: Any) -> dict:
        """Edit top-level fields (None removes a field) or `address=` (the default address); bumps updated_at."""
        if "id" in fields:
            raise ValueError("a customer's id cannot change")
        with self._lock:
            row = dict(self._require_customer(customer_id))
            address = fields.pop("address", None)
            extension = fields.pop("extension_attributes", None) or {}
            for key, value in fields.items():
                if value is None:
                    row.pop(key, None)
                else:
                    row[key] = value
            if address is not None:
                self._replace_default_address(row, address)
            if "is_subscribed" in extension:
                self._subscribed[customer_id] = 1 if extension["is_subscribed"] else 3
            row["updated_at"] = format_ts(self._now)
            self._customers[customer_id] = row
            self._changed(_CUSTOMERS, (customer_id,))
            return copy.deepcopy(self._public_customer(row))

    def _replace_default_address(self, row: dict, changes: dict) -> None:
        addresses = [dict(a) for a in row.get("addresses", [])]
        target = next((a for a in addresses if str(a.get("id")) == row.get("default_billing")), None)
        if target is None and addresses:
            target = addresses[0]
        if target is None:
            if not self._next_address_id:
                self._next_address_id = 1 + max(
                    (a["id"] for c in self._customers.values() for a in c.get("addresses", ())), default=0)
            target = {"id": self._next_address_id, "customer_id": row["id"],
                      "default_shipping": True, "default_billing": True}
            self._next_address_id += 1
            addresses.append(target)
            row["default_billing"] = row["default_shipping"] = str(target["id"])
        for key, value in changes.items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        row["addresses"] = addresses

    def set_subscribed(self, customer_id: int, subscribed: bool) -> None:
        """Newsletter rows live in their own table: customer_entity.updated_at does not move."""
        with self._lock:
            self._require_customer(customer_id)
            self._subscribed[customer_id] = 1 if subscribed else 3

    def add_customer(self, email: str, *, firstname: str = "New", lastname: str = "Customer", website_id: int = 1,
                     subscribed: bool = False, **fields: Any) -> dict:
        """Register a customer now (next auto-increment id); (email, website) is unique, as in customer_entity."""
        with self._lock:
            if website_id not in {s["website_id"] for s in STORES.values()}:
                raise ValueError(f"no website with id {website_id}")
            folded = email.strip().casefold()
            if any(c.get("website_id") == website_id and str(c.get("email", "")).strip().casefold() == folded
                   for c in self._customers.values()):
                raise MagentoError(400, DUPLICATE_EMAIL)
            store_id = next(sid for sid, s in STORES.items() if s["website_id"] == website_id)
            now = format_ts(self._now)
            row = {"id": self._next_customer_id, "group_id": 1, "created_at": now, "updated_at": now,
                   "created_in": STORES[store_id]["name"], "email": email, "firstname": firstname,
                   "lastname": lastname, "store_id": store_id, "website_id": website_id, "addresses": [],
                   "disable_auto_group_change": 0, "extension_attributes": {"is_subscribed": False}}
            row.update({k: v for k, v in fields.items() if v is not None and k != "id"})
            self._customers[row["id"]] = row
            self._next_customer_id += 1
            if subscribed:
                self._subscribed[row["id"]] = 1
            self._changed(_CUSTOMERS, (row["id"],))
            return copy.deepcopy(self._public_customer(row))

    def add_order(self, customer_id: int | None, *, base_grand_total: float, status: str = "complete",
                  email: str | None = None, store_id: int | None = None, firstname: str | None = None,
                  lastname: str | None = None) -> dict:
        """Place an order now; customer_id None makes a guest order (email required)."""
        with self._lock:
            if customer_id is not None:
                c = self._require_customer(customer_id)
                store_id = store_id or c.get("store_id", 1)
                email = email or c.get("email")
                firstname, lastname = firstname or c.get("firstname"), lastname or c.get("lastname")
            elif not email:
                raise ValueError("a guest order needs an email")
            store_id = store_id or 1
            order = self._new_order(customer_id, store_id, email, firstname, lastname, float(base_grand_total), status)
            self._orders[order["entity_id"]] = order
            self._next_entity_id += 1
            if customer_id is not None and self._orders_by_customer is not None:
                self._orders_by_customer.setdefault(customer_id, []).append(order["entity_id"])
            self._changed(_ORDERS, (order["entity_id"],))
            return copy.deepcopy(order)

    def _new_order(self, customer_id: int | None, store_id: int, email: str | None, firstname: str | None,
                   lastname: str | None, base_total: float, status: str) -> dict:
        store = STORES[store_id]
        seq = self._next_increment(store_id)
        grand_total = round(base_total * store["rate"], 2)
        now = format_ts(self._now)
        order = {"entity_id": self._next_entity_id,
                 "increment_id": f"{store['increment_prefix']}{seq:09d}",
                 "state": _STATE_OF_STATUS.get(status, status), "status": status, "store_id": store_id,
                 "store_name": store["order_store_name"], "customer_id": customer_id, "customer_email": email,
                 "customer_firstname": firstname, "customer_lastname": lastname,
                 "customer_is_guest": 0 if customer_id is not None else 1,
                 "grand_total": grand_total, "base_grand_total": round(base_total, 2)}
        if status == "closed":  # fully refunded
            order["total_refunded"], order["base_total_refunded"] = grand_total, round(base_total, 2)
        order.update({"order_currency_code": store["order_currency"], "base_currency_code": BASE_CURRENCY,
                      "created_at": now, "updated_at": now})
        return {k: v for k, v in order.items() if v is not None}

    def _next_increment(self, store_id: int) -> int:
        if self._increment_seq is None:
            self._increment_seq = {sid: 0 for sid in STORES}
            for o in self._orders.values():
                sid, inc = o.get("store_id"), str(o.get("increment_id", ""))
                if sid in self._increment_seq and inc[-9:].isdigit():
                    self._increment_seq[sid] = max(self._increment_seq[sid], int(inc[-9:]))
        self._increment_seq[store_id] += 1
        return self._increment_seq[store_id]

    def delete_customer(self, customer_id: int) -> None:
        """Hard delete: the row goes, its newsletter row goes, its orders keep everything but customer_id."""
        with self._lock:
            self._require_customer(customer_id)
            del self._customers[customer_id]
            self._subscribed.pop(customer_id, None)
            orphaned = []
            for entity_id in self._customer_orders().pop(customer_id, []):
                order = self._orders.get(entity_id)
                if order is not None and order.get("customer_id") == customer_id:
                    # FK ON DELETE SET NULL; null keys vanish from the JSON.
                    self._orders[entity_id] = {k: v for k, v in order.items() if k != "customer_id"}
                    orphaned.append(entity_id)
            self._changed(_CUSTOMERS, (customer_id,))
            self._changed(_ORDERS, orphaned)

    def _customer_orders(self) -> dict[int, list[int]]:
        if self._orders_by_customer is None:
            index: dict[int, list[int]] = {}
            with _gc_paused():
                for o in self._orders.values():
                    if "customer_id" in o:
                        index.setdefault(o["customer_id"], []).append(o["entity_id"])
            self._orders_by_customer = index
        return self._orders_by_customer

    def _require_customer(self, customer_id: int) -> dict:
        row = self._customers.get(customer_id)
        if row is None:
            raise KeyError(f"no customer with id {customer_id}")
        return row

    def _public_customer(self, row: dict) -> dict:
        # The Newsletter plugin (afterGetList/afterGetById) sets is_subscribed on every customer it returns.
        out = dict(row)
        out["extension_attributes"] = {**row.get("extension_attributes", {}),
                                       "is_subscribed": self._subscribed.get(row["id"]) == 1}
        return out

    # ---- auth ---------------------------------------------------------------------------------------
    def issue_admin_token(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise MagentoError(400, REQUIRED, {"fieldName": "username"})
        for name in ("username", "password"):
            if body.get(name) in (None, ""):
                raise MagentoError(400, REQUIRED, {"fieldName": name})
        if body["username"] != self.admin_username or body["password"] != self.admin_password:
            raise MagentoError(401, BAD_SIGN_IN)
        if self.two_factor_auth:
            # Magento_TwoFactorAuth (2.4) blocks this endpoint for admins.
            raise MagentoError(400, TWO_FA, {"active_providers": ["google"]})
        with self._lock:
            token = "".join(self._rng.choice(string.ascii_lowercase + string.digits) for _ in range(32))
            self._admin_tokens[token] = self._now + ADMIN_TOKEN_LIFETIME
        return token

    def authorize(self, header: str | None, resource: str, request: SignedRequest | None = None) -> None:
        """Admin token or integration (Bearer if allowed, or OAuth 1.0a signed); then the ACL resource."""
        denied = MagentoError(401, NOT_AUTHORIZED, {"resources": resource})
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "oauth" and request is not None:
            self.verify_oauth1(token, request)
            self._integration_may(resource, denied)
            return
        if scheme.lower() != "bearer" or not token:
            raise denied
        if token == self.integration_token:
            if not self.allow_integration_bearer:
                raise denied  # 2.4.4+: the integration is not identified, so nothing is authorised
            self._integration_may(resource, denied)
            return
        with self._lock:
            expiry = self._admin_tokens.get(token)
            if expiry is None or self._now >= expiry:
                raise denied

    def _integration_may(self, resource: str, denied: MagentoError) -> None:
        if self.integration_resources is not None and resource not in self.integration_resources:
            raise denied

    def verify_oauth1(self, header_params: str, request: SignedRequest) -> None:
        """Check an OAuth 1.0a request the way Magento\\Framework\\Oauth\\Oauth::validateAccessTokenRequest does."""
        params = parse_oauth_header(header_params)
        for name in OAUTH_REQUIRED:
            if not params.get(name):
                raise MagentoError(400, REQUIRED, {"fieldName": name})
        if params.get("oauth_version", "1.0") != "1.0":
            raise MagentoError(400, BAD_OAUTH_VERSION, [params["oauth_version"]])
        method = params["oauth_signature_method"]
        if method not in _OAUTH_DIGESTS:
            raise MagentoError(400, BAD_SIGNATURE_METHOD, [method])
        if not hmac.compare_digest(params["oauth_consumer_key"], self.consumer_key):
            raise MagentoError(401, UNKNOWN_CONSUMER)
        if not hmac.compare_digest(params["oauth_token"], self.integration_token):
            raise MagentoError(401, UNKNOWN_TOKEN)
        timestamp = params["oauth_timestamp"]
        # Checked against the real clock: clients sign with theirs, not with the sandbox's data clock.
        if not timestamp.isdigit() or not 0 < int(timestamp) <= time.time() + OAUTH_TIME_DEVIATION:
            raise MagentoError(400, BAD_TIMESTAMP)
        with self._lock:  # the nonce is spent before the signature is checked, as in Magento
            key = (params["oauth_consumer_key"], params["oauth_nonce"])
            if key in self._nonces:
                raise MagentoError(401, NONCE_USED, [INTEGRATION_CONSUMER_ID])
            self._nonces.add(key)
        signed = [(k, v) for k, v in params.items() if k != "oauth_signature"] + request.params()
        base = oauth1_base_string(request.method, request.url, signed)
        key_bytes = f"{_rfc3986(self.consumer_secret)}&{_rfc3986(self.access_token_secret)}".encode()
        expected = base64.b64encode(hmac.new(key_bytes, base.encode(), _OAUTH_DIGESTS[method]).digest()).decode()
        if not hmac.compare_digest(expected, params["oauth_signature"]):
            raise MagentoError(401, BAD_SIGNATURE)

    # ---- search -------------------------------------------------------------------------------------
    def search(self, entity: _Entity, criteria: SearchCriteria) -> dict:
        page_size = criteria.page_size
        if self.input_limit_enabled:
            if page_size is not None and page_size > self.max_page_size:
                raise MagentoError(400, MAX_PAGE, {"max": self.max_page_size})
            if page_size is None:
                page_size = criteria.page_size = self.default_page_size  # DefaultPageSizeSetter
        with self._lock:
            matches = self._matching(entity, criteria)
            fault = self._take_page_fault(entity) if self._page_faults else None
            if fault is not None and fault["kind"] == "skip_rows":
                page_rows = self._page_skipping(matches, page_size, criteria.current_page, fault["rows"] or 1)
            else:
                page_rows = self._page(matches, page_size, criteria.current_page)
            if entity is _CUSTOMERS:
                items = [self._public_customer(r) for r in page_rows]
            else:
                items = list(page_rows)
            if fault is not None:
                self._applied_faults.append({"kind": fault["kind"], "path": entity.name, "total_count": matches.total})
                if fault["kind"] == "empty_page":
                    return {"items": [], "total_count": 0}  # exactly as seen: no search_criteria either
                if fault["kind"] == "short_page":
                    items = items[:len(items) // 2 if fault["rows"] is None else fault["rows"]]
                if fault["kind"] == "total_drift":
                    return {"items": items, "search_criteria": criteria.echo(),
                            "total_count": max(0, matches.total + fault["drift"])}
        return {"items": items, "search_criteria": criteria.echo(), "total_count": matches.total}

    def _page_skipping(self, matches: _Matches, page_size: int | None, current_page: int | None,
                       skip: int) -> list[dict]:
        """A page as `_page` reads it, but `skip` rows from its middle left out and the following rows moved up."""
        if not page_size:
            rows = matches.window(0, None)
            middle = max(0, (len(rows) - skip) // 2)
            return rows[:middle] + rows[middle + skip:]
        offset = (max(1, current_page or 1) - 1) * max(1, page_size)
        rows = matches.window(offset, max(1, page_size) + skip)
        middle = max(0, (min(len(rows), page_size) - skip) // 2)
        return rows[:middle] + rows[middle + skip:]

    def _page(self, matches: _Matches, page_size: int | None, current_page: int | None) -> list[dict]:
        if not page_size:  # unset or 0: the collection applies no LIMIT
            return matches.window(0, None)
        page_size = max(1, page_size)  # Zend's limitPage() turns a negative count into 1
        page = max(1, current_page or 1)
        if self.legacy_last_page_repeat and matches.total:
            page = min(page, math.ceil(matches.total / page_size))  # <=2.3 clamped getCurPage()
        return matches.window((page - 1) * page_size, page_size)

    def _column(self, entity: _Entity, name: str) -> str:
        column = entity.aliases.get(name, name)
        if column in entity.fields:
            return column
        if entity.unknown_field_status == 400:
            raise MagentoError(400, "Invalid attribute name: %1", [name])
        raise MagentoError(500, INTERNAL, [f"webapi-{self._rng.getrandbits(52):013x}"])

    def _compiled(self, entity: _Entity, f: Filter) -> tuple[str, Callable[[dict], bool]]:
        column = self._column(entity, f.field)
        return column, compile_filter(f, column)

    def _matching(self, entity: _Entity, criteria: SearchCriteria) -> _Matches:
        """What the search matches, found as MySQL would: keyset pages by bisection, selective filters by index.

        Answers, their order and errors are those of a scan of the whole table: the fast paths only skip rows
        that cannot match. Cached per criteria until the next change, so pages by number reuse one search.
        """
        groups = criteria.filter_groups
        key = _cache_key(entity, groups, criteria.sort_orders)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # Resolved and compiled in the scan's order, so a bad search fails the way it always did.
        compiled = [[self._compiled(entity, f) for f in g] for g in groups]
        sorts = [(self._column(entity, f), d) for f, d in criteria.sort_orders]
        keyset = self._keyset_bound(entity, groups, compiled, sorts)
        if keyset is not None:
            condition, bound = keyset
            base = self._base(entity, groups[:-1], compiled[:-1])
            cut = (bisect_right if condition == "gt" else bisect_left)(base.pks(entity.primary_key), bound)
            return _Matches(base.rows, start=cut)
        base = self._base(entity, groups, compiled)
        if not sorts or self._fast_paths and sorts == [(entity.primary_key, "ASC")]:
            return base  # already in primary-key order
        matches = _Matches(base.rows, sorts, top_k=self._fast_paths)
        self._remember(key, matches)
        return matches

    def _keyset_bound(self, entity: _Entity, groups: list[list[Filter]], compiled: list[list[tuple]],
                      sorts: list[tuple[str, str | None]]) -> tuple[str, float] | None:
        """(condition, bound) when the last group is a keyset page's lone `pk > bound` (or >=) in pk order.

        Primary keys are ints (auto-increment ids), so bisecting them with the bound is the filter's comparison.
        """
        if not self._fast_paths or not groups or len(groups[-1]) != 1:
            return None
        f, (column, _) = groups[-1][0], compiled[-1][0]
        pk = entity.primary_key
        if column != pk or f.condition_type not in _LOWER_BOUNDS or sorts not in ([], [(pk, "ASC")]):
            return None
        bound = _number(f.value)
        if bound is None or bound != bound:  # no number, or NaN: leave the odd cases to the scan
            return None
        return f.condition_type, bound

    def _base(self, entity: _Entity, groups: list[list[Filter]], compiled: list[list[tuple]]) -> _Matches:
        """The rows matching `groups` in primary-key order (a table scan's order), cached until the next change."""
        key = _cache_key(entity, groups, ())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        table = self._table(entity)
        predicate = combine_groups([[p for _, p in g] for g in compiled])
        candidates = self._candidates(entity, groups, compiled, len(table)) if self._fast_paths else None
        with _gc_paused():
            source = table.values() if candidates is None else map(table.__getitem__, candidates)
            rows = list(source) if predicate is None else [r for r in source if predicate(r)]
        matches = _Matches(rows)
        self._remember(key, matches)
        return matches

    def _candidates(self, entity: _Entity, groups: list[list[Filter]], compiled: list[list[tuple]],
                    table_size: int) -> list[int] | None:
        """Ascending primary keys of a superset of the rows `groups` match, from the most selective index.

        A group can use indexes when each of its filters can; None when no group can, or when the best keeps
        so much of the table that scanning it is as fast. The table's dict order is primary-key order.
        """
        best: list[int] | None = None
        for group, pairs in zip(groups, compiled):
            columns = [column for column, _ in pairs]
            if not all(c in entity.indexed and _indexable(f, c) for f, c in zip(group, columns)):
                continue
            found: list[int] = []
            for f, column in zip(group, columns):
                found += self._index(entity, column).lookup(f)
            if best is None or len(found) < len(best):
                best = found
        if best is None or len(best) * 4 > table_size:
            return None
        return sorted(set(best))

    def build_indexes(self) -> None:
        """Build every index now, as a database has its keys before the first query (else: on first use)."""
        with self._lock:
            for entity in (_CUSTOMERS, _ORDERS):
                for column in sorted(entity.indexed):
                    self._index(entity, column)

    def _index(self, entity: _Entity, column: str) -> _Index:
        index = self._indexes.get((entity.name, column))
        if index is None:
            with _gc_paused():
                index = self._indexes[(entity.name, column)] = _Index(self._table(entity), column)
        return index

    def _remember(self, key: tuple, matches: _Matches) -> None:
        self._cache[key] = matches
        if len(self._cache) > 16:
            self._cache.popitem(last=False)

    def get_customer(self, customer_id: int) -> dict:
        with self._lock:
            row = self._customers.get(customer_id)
            if row is None:
                raise MagentoError(404, NO_SUCH_ENTITY, {"fieldName": "customerId", "fieldValue": customer_id})
            return self._public_customer(row)

    def get_order(self, entity_id: int) -> dict:
        with self._lock:
            order = self._orders.get(entity_id)
            if order is None:
                raise MagentoError(404, ENTITY_MISSING)
            return order

    # ---- HTTP bookkeeping ---------------------------------------------------------------------------
    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, method: str, path: str, query: str, status: int, headers: dict | None = None) -> None:
        with self._lock:
            self._calls.append({"method": method, "path": path, "query": dict(parse_qsl(query, keep_blank_values=True)),
                                "status": status, "ts": time.time(), "headers": dict(headers or {})})


# ---- HTTP layer --------------------------------------------------------------------------------------

def _store_views() -> list[dict]:
    views = [{"id": 0, "code": "admin", "name": "Admin", "website_id": 0, "store_group_id": 0, "is_active": 1}]
    return views + [{"id": sid, "code": s["code"], "name": s["name"], "website_id": s["website_id"],
                     "store_group_id": s["website_id"], "is_active": 1} for sid, s in STORES.items()]


def _websites() -> list[dict]:
    admin = {"id": 0, "code": "admin", "name": "Admin", "default_group_id": 0}
    names = {1: "Main Website", 2: "EU Website"}
    return [admin] + [{"id": s["website_id"], "code": s["website_code"], "name": names[s["website_id"]],
                       "default_group_id": s["website_id"]} for s in STORES.values()]


def _store_configs(base_url: str) -> list[dict]:
    return [{"id": sid, "code": s["code"], "website_id": s["website_id"], "locale": "en_US",
             "base_currency_code": BASE_CURRENCY, "default_display_currency_code": s["order_currency"],
             "timezone": "UTC", "weight_unit": "lbs", "base_url": f"{base_url}/",
             "base_link_url": f"{base_url}/", "secure_base_url": f"{base_url}/"} for sid, s in STORES.items()]


class _Handler(SandboxHandler):
    """Routes /rest/... like Magento's webapi router and /__sandbox__/... to the control helpers."""

    sandbox: MagentoSandbox
    server_version = "nginx"

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _json_body(self, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise MagentoError(400, "Decoding error: %1", ["Syntax error"]) from None

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        raw = self._body()
        if parts.path.startswith("/__sandbox__/"):
            self._control(method, parts.path, raw)
            return
        status, payload, content_type, headers = self._rest(method, parts.path, parts.query, raw)
        # Record before answering, so a client that just got its response always finds its call logged.
        self.sandbox._record(method, parts.path, parts.query, status, dict(self.headers.items()))
        if status == 0:
            self.close_connection = True  # "drop": the client sees the connection close with no response
            return
        self._send(status, payload, content_type, headers)

    # ---- Magento REST -----------------------------------------------------------------------------
    def _rest(self, method: str, path: str, query: str, raw: bytes) -> tuple[int, bytes, str, dict]:
        hook = self.sandbox.on_request
        if hook is not None:
            hook({"method": method, "path": path, "query": dict(parse_qsl(query, keep_blank_values=True))})
        fault = self.sandbox._take_fault()
        if fault == "drop":
            return 0, b"", "", {}
        if fault == "429":  # the 2.4.7 backpressure limiter or a CDN in front of the store
            return 429, b'{"message":"Too Many Requests"}', "application/json; charset=utf-8", {"Retry-After": "1"}
        if fault == "503":  # maintenance mode or an overloaded PHP-FPM pool
            page = b"<html><body><h1>Service Temporarily Unavailable</h1></body></html>"
            return 503, page, "text/html; charset=UTF-8", {"Retry-After": "1"}
        if self.sandbox.latency:
            time.sleep(self.sandbox.latency)
        try:
            status, body = self._route(method, path, query, raw)
        except MagentoError as err:
            status, body = err.status, err.body()
        except Exception:  # noqa: BLE001 - a sandbox bug must still answer like Magento's production mode
            status, body = 500, {"message": INTERNAL, "parameters": ["webapi-sandbox"]}
        # PHP's json_encode escapes non-ASCII and "/" by default; Magento's REST renderer uses it.
        text = json.dumps(body, separators=(",", ":")).replace("/", "\\/")
        return status, text.encode("ascii"), "application/json; charset=utf-8", {}

    def _route(self, method: str, path: str, query: str, raw: bytes) -> tuple[int, Any]:
        if not path.startswith("/rest/"):
            raise MagentoError(404, NO_ROUTE)
        route = self._strip_store(path[len("/rest"):]).rstrip("/")
        params = parse_php_query(query)
        sb = self.sandbox
        auth = self.headers.get("Authorization")
        signed = SignedRequest(method, f"http://{self.headers.get('Host', '')}{path}", query,
                               self.headers.get("Content-Type", ""), raw)
        if method == "POST" and route == "/V1/integration/admin/token":
            return 200, sb.issue_admin_token(self._json_body(raw))
        if method == "GET" and route == "/V1/customers/search":
            sb.authorize(auth, RES_CUSTOMER, signed)
            return 200, self._search(_CUSTOMERS, params)
        if method == "GET" and route == "/V1/orders":
            sb.authorize(auth, RES_ORDERS, signed)
            return 200, self._search(_ORDERS, params)
        if m := re.fullmatch(r"/V1/customers/(\d+)", route):
            if method == "GET":
                sb.authorize(auth, RES_CUSTOMER, signed)
                return 200, self._fields(sb.get_customer(int(m.group(1))), params)
            if method == "DELETE":
                sb.authorize(auth, RES_CUSTOMER_MANAGE, signed)
                return 200, self._delete(int(m.group(1)))
        if method == "GET" and (m := re.fullmatch(r"/V1/orders/(\d+)", route)):
            sb.authorize(auth, RES_ORDERS, signed)
            return 200, self._fields(sb.get_order(int(m.group(1))), params)
        stores = {"/V1/store/storeViews": _store_views, "/V1/store/websites": _websites,
                  "/V1/store/storeConfigs": lambda: _store_configs(sb.url)}
        if method == "GET" and route in stores:
            sb.authorize(auth, RES_STORE, signed)
            return 200, stores[route]()
        raise MagentoError(404, NO_ROUTE)

    @staticmethod
    def _strip_store(path: str) -> str:
        """Magento's PathProcessor: a known store code (or `all`) is dropped; anything else stays in the route."""
        first, _, rest = path.lstrip("/").partition("/")
        if first in STORE_CODES or first == "all":
            return "/" + rest
        return path

    def _search(self, entity: _Entity, params: dict) -> Any:
        result = self.sandbox.search(entity, parse_search_criteria(params))
        return self._fields(result, params)

    @staticmethod
    def _fields(body: Any, params: dict) -> Any:
        spec = params.get("fields")
        return apply_fields(body, parse_fields(spec)) if isinstance(spec, str) and spec else body

    def _delete(self, customer_id: int) -> bool:
        try:
            self.sandbox.delete_customer(customer_id)
        except KeyError:
            raise MagentoError(404, NO_SUCH_ENTITY, {"fieldName": "customerId", "fieldValue": customer_id}) from None
        return True

    # ---- sandbox control (not part of Magento) ----------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> None:
        try:
            status, body = self._control_route(method, path, self._json_body(raw) or {})
        except MagentoError as err:
            status, body = err.status, err.body()
        except KeyError as err:
            status, body = 404, {"message": str(err.args[0] if err.args else err)}
        except (TypeError, ValueError) as err:
            status, body = 400, {"message": str(err)}
        self._send(status, json.dumps(body).encode(), "application/json")

    def _control_route(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        sb = self.sandbox
        if method == "GET" and path == "/__sandbox__/state":
            return 200, sb.state()
        if method == "GET" and path == "/__sandbox__/calls":
            return 200, sb.calls()
        if method == "POST" and path == "/__sandbox__/customers":
            return 200, sb.add_customer(str(body.pop("email")), **body)
        if method == "POST" and path == "/__sandbox__/orders":
            return 200, sb.add_order(body.get("customer_id"), **{k: v for k, v in body.items() if k != "customer_id"})
        if method == "POST" and path == "/__sandbox__/clock":
            sb.advance_clock(int(body.get("advance", 0)))
            return 200, sb.state()
        if method == "POST" and path == "/__sandbox__/faults":
            times = body.get("times", 1)
            sb.inject_fault(str(body.get("kind")), None if times is None else int(times), path=body.get("path"),
                            after_pages=int(body.get("after_pages", 0)),
                            rows=None if body.get("rows") is None else int(body["rows"]),
                            drift=int(body.get("drift", 0)))
            return 200, {"ok": True}
        if method == "GET" and path == "/__sandbox__/faults":
            return 200, sb.applied_faults()
        if method == "DELETE" and path == "/__sandbox__/faults":
            sb.clear_faults()
            return 200, {"ok": True}
        if m := re.fullmatch(r"/__sandbox__/customers/(\d+)(/subscription)?", path):
            customer_id = int(m.group(1))
            if method == "POST" and m.group(2):
                sb.set_subscribed(customer_id, bool(body["subscribed"]))
                return 200, {"ok": True}
            if method == "POST":
                return 200, sb.update_customer(customer_id, **body)
            if method == "DELETE" and not m.group(2):
                sb.delete_customer(customer_id)
                return 200, {"ok": True}
        return 404, {"message": NO_ROUTE}


# ---- CLI -----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.magento", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ready-file", help="write {\"url\": ...} here once the server listens")
    parser.add_argument("--two-factor-auth", action="store_true")
    parser.add_argument("--input-limit-enabled", action="store_true")
    parser.add_argument("--legacy-last-page-repeat", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--no-integration-bearer", action="store_true",
                        help="refuse the integration token as a Bearer token (Magento 2.4.4+ default): OAuth 1.0a only")
    args = parser.parse_args(argv)
    sandbox = MagentoSandbox(generate_store(args.customers, seed=args.seed), two_factor_auth=args.two_factor_auth,
                             input_limit_enabled=args.input_limit_enabled,
                             legacy_last_page_repeat=args.legacy_last_page_repeat, latency=args.latency,
                             allow_integration_bearer=not args.no_integration_bearer)
    sandbox.build_indexes()
    gc.freeze()  # this process owns the data set: keep the cyclic GC from rescanning millions of rows
    serve_until_stopped(sandbox, args.port, args.ready_file, {})


if __name__ == "__main__":
    main()
