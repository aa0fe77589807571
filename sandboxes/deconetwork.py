"""Local stand-in for a DecoNetwork site: the JSON Order Management API over real HTTP, plus its customer export.

What it plays (store-apis.md A.2-A.4, D):

* ``/api/json/manage_orders/find`` (GET query or POST form, PHP-style ``conditions[n][...]``), with
  ``username``/``password`` on every request, ``skip_login_token`` accepted and ignored, ``limit`` 0..100
  (else 50004), ``offset`` paging, the ``{"response_status", "total", "orders"}`` envelope and the codes
  10001, 30001, 31000, 50002, 50003, 50004, 50005 (HTTP 200 with the code in the body).
* HTML where 3P clients report HTML: an HTML 404 page for unknown paths, and the site's HTML login page
  (a 302 to ``/login``) when a request carries no credentials at all. A wrong password is the documented
  JSON 30001; ``bad_login_html=True`` answers it with the login page instead, as some 3P clients report.
* The customer export: DecoNetwork publishes no customer API (A.0), so the export CSV is a contract of this
  project (see ``zoho_store_sync.sources.deconetwork``); ``write_export`` writes it.

Assumptions of the sandbox (UNVERIFIED against a live site, kept in one place): dates are the site's
local time as ``YYYY-MM-DDTHH:MM:SS``; orders come back in ``order_id`` order; ``order_status`` numbers
and the 3P ``order_status_name``/``billing_details`` fields follow ``ORDER_STATUSES`` below; a quote not
yet ordered has no ``date_ordered``; guest orders have ``customer_id`` null.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import os
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandboxes.magento import parse_php_query
from sandboxes.seed import LOCALES
from sandboxes._server import LoopbackServer, SandboxHandler, serve_until_stopped

__all__ = ["DecoNetworkSandbox", "DecoStoreData", "generate_deconetwork_store", "EXPORT_COLUMNS", "ORDER_STATUSES"]

SITE_TS = "%Y-%m-%dT%H:%M:%S"
FIND_PATH = "/api/json/manage_orders/find"
LOGIN_PATH = "/login"
MAX_LIMIT = 100
# Order status numbers as this sandbox models them (a 3P client: 1 placed, 2 produced, 3 shipped).
ORDER_STATUSES = {0: "Quote", 1: "Order Placed", 2: "Produced", 3: "Shipped", 9: "Cancelled"}
# The customer export contract (zoho_store_sync.sources.deconetwork); totals are optional columns.
EXPORT_COLUMNS = ("customer_id", "login", "email", "salutation", "firstname", "lastname", "company", "phone_number",
                  "address", "city", "state", "zip", "country", "date_added", "date_modified", "store", "store_url",
                  "store_id", "store_owner", "newsletter", "deleted", "balance")
EXPORT_TOTAL_COLUMNS = ("order_count", "total_order_value")
COUNTRY_NAMES = {"US": "United States", "GB": "United Kingdom", "DE": "Germany", "FR": "France", "ES": "Spain",
                 "PL": "Poland", "BG": "Bulgaria", "RU": "Russia", "GR": "Greece", "JP": "Japan", "CN": "China",
                 "AE": "United Arab Emirates", "IN": "India"}
DEFAULT_STORES = (
    {"store_id": "1", "name": "Acme Decoration", "url": "https://shop.acme-decoration.example", "owner": "me"},
    {"store_id": "2", "name": "Northside FC Team Store", "url": "https://northside-fc.acme-decoration.example",
     "owner": "affiliate"},
    {"store_id": "3", "name": "Riverside High Spirit Wear", "url": "https://riverside-high.acme-decoration.example",
     "owner": "affiliate"},
    {"store_id": "4", "name": "Lakeside Brewing Merch", "url": "https://lakeside-brewing.acme-decoration.example",
     "owner": "affiliate"},
)
_STORE_WEIGHTS = (55, 15, 15, 15)
_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")
# store -> locale mix: the main store sells worldwide, the affiliates are local clubs and schools
_STORE_LOCALES = {
    "1": ("en_US", "en_US", "en_US", "de_DE", "fr_FR", "es_ES", "ja_JP", "zh_CN", "ar_AE", "hi_IN", "el_GR"),
    "2": ("en_GB", "en_GB", "en_GB", "pl_PL", "bg_BG"),
    "3": ("en_US", "en_US", "es_ES", "ru_RU"),
    "4": ("de_DE", "de_DE", "en_US", "fr_FR"),
}

_CODE_TEXT = {
    10001: ("SUCCESS", "."),
    30001: ("ERROR", "Authentication failed"),
    31000: ("ERROR", "API not enabled on your site"),
    50002: ("ERROR", "No conditions specified"),
    50004: ("ERROR", "Invalid limit or offset"),
    50005: ("ERROR", "Invalid request parameters"),
}
_DATE_FIELDS = {1: "date_ordered", 2: "date_production_files_ready", 5: "date_due", 8: "date_modified"}
_HTML_404 = (b"<!DOCTYPE html>\n<html><head><title>Page Not Found</title></head>"
             b"<body><h1>404 - Page Not Found</h1><p>The page you requested could not be found.</p></body></html>")
_HTML_LOGIN = (b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body><h1>Sign in</h1>"
               b"<form method=\"post\" action=\"/login\"><input name=\"login\"><input type=\"password\" "
               b"name=\"password\"><button>Sign in</button></form></body></html>")


class DecoApiError(Exception):
    """A DecoNetwork status code with its description, answered as HTTP 200 with the envelope."""

    def __init__(self, code: int, description: str | None = None) -> None:
        severity, text = _CODE_TEXT.get(code, ("ERROR", "Error"))
        super().__init__(description or text)
        self.code, self.severity, self.description = code, severity, description or text


# ---- data ------------------------------------------------------------------------------------------------

@dataclass
class DecoStoreData:
    """Stores, customers (export rows, Python types) and orders (exactly as the API returns them)."""

    stores: list[dict] = field(default_factory=list)
    customers: list[dict] = field(default_factory=list)
    orders: list[dict] = field(default_factory=list)


def _fmt(ts: datetime | None) -> str | None:
    return ts.strftime(SITE_TS) if ts is not None else None


def _phone(rng: random.Random, pattern: str) -> str:
    return re.sub(r"#", lambda _: str(int(rng.random() * 10)), pattern)


def generate_deconetwork_store(n_customers: int = 300, seed: int = 0, *,
                               start: str = "2024-01-01T00:00:00") -> DecoStoreData:
    """A deterministic DecoNetwork site: a main store and three affiliate stores, customers in several scripts.

    About 10% are newsletter-only subscribers (no login), half of the registered customers buy, 5% are
    deleted, 12% hold store credit; a few emails are malformed or shared between stores; some buyers changed
    their billing address on a later order; a few orders are quotes, cancelled, or guest checkouts.
    """
    rng = random.Random(seed)
    t0 = datetime.strptime(start, SITE_TS)
    span = timedelta(days=400)
    stores = [dict(s) for s in DEFAULT_STORES]
    by_id = {s["store_id"]: s for s in stores}
    cum = [sum(_STORE_WEIGHTS[: i + 1]) for i in range(len(_STORE_WEIGHTS))]
    customers: list[dict] = []
    used_emails: set[str] = set()
    for i in range(n_customers):
        store = stores[next(k for k, c in enumerate(cum) if rng.random() * cum[-1] < c)]
        loc = LOCALES[rng.choice(_STORE_LOCALES[store["store_id"]])]
        female = rng.random() < 0.5
        first, first_latin = rng.choice(loc["female" if female else "male"])
        last, last_latin = rng.choice(loc["last"])
        local = f"{first_latin}.{last_latin}"
        email = f"{local}@{rng.choice(_DOMAINS)}"
        if email in used_emails:
            email = f"{local}.{1000 + i}@{rng.choice(_DOMAINS)}"
        used_emails.add(email)
        newsletter_only = rng.random() < 0.10
        added = t0 + timedelta(seconds=int(span.total_seconds() * (i + rng.random()) / max(n_customers, 1)))
        city, postcode, _code, region, _rid = rng.choice(loc["cities"])
        with_address = not newsletter_only and rng.random() < 0.85
        street = loc["street_fmt"].format(n=1 + int(rng.random() * 300), s=rng.choice(loc["streets"]))
        customers.append({
            "customer_id": 1001 + i,
            "login": "" if newsletter_only else (email if rng.random() < 0.7 else f"{first_latin}{1000 + i}"),
            "email": email,
            "salutation": (rng.choice(("Mrs.", "Ms.")) if female else rng.choice(("Mr.", "Dr.")))
            if rng.random() < 0.15 else "",
            "firstname": first,
            "lastname": "" if newsletter_only and rng.random() < 0.5 else last,
            "company": rng.choice(loc["companies"]) if not newsletter_only and rng.random() < 0.2 else "",
            "phone_number": _phone(rng, loc["phone"]) if not newsletter_only and rng.random() < 0.7 else "",
            "address": street if with_address else "",
            "city": city if with_address else "",
            "state": (region or "") if with_address else "",
            "zip": (postcode or "") if with_address else "",
            "country": COUNTRY_NAMES[loc["country"]] if with_address else "",
            "date_added": _fmt(added),
            "date_modified": _fmt(added + timedelta(days=int(rng.random() * 30)) if rng.random() < 0.3 else added),
            "store": store["name"],
            "store_url": store["url"],
            "store_id": store["store_id"],
            "store_owner": store["owner"],
            "newsletter": newsletter_only or rng.random() < 0.25,
            "deleted": rng.random() < 0.05,
            "balance": rng.choice((5.0, 10.0, 12.5, 25.0, 50.0)) if not newsletter_only and rng.random() < 0.12
            else 0.0,
            "_buyer": not newsletter_only and rng.random() < 0.5,
            "_added": added,
        })
    _make_messy(rng, customers, by_id)
    orders = _orders(rng, customers, t0 + span)
    for c in customers:
        c.pop("_buyer")
        c.pop("_added")
    return DecoStoreData(stores=stores, customers=customers, orders=orders)


def _make_messy(rng: random.Random, customers: list[dict], stores: dict[str, dict]) -> None:
    """A few malformed emails, and one person registered in the main store and in an affiliate store."""
    if len(customers) < 20:
        return
    for c, fn in zip(rng.sample(customers, 3), (lambda e: e.replace("@", "."), lambda e: e.replace("@", "@@"),
                                                 lambda e: " " + e.upper() + " ")):
        c["email"] = fn(c["email"])
    main = [c for c in customers if c["store_id"] == "1" and "@" in c["email"] and c["email"].strip() == c["email"]]
    affiliate = [c for c in customers if c["store_id"] != "1"]
    if main and affiliate:
        a, b = rng.choice(main), rng.choice(affiliate)
        b.update(email=a["email"], firstname=a["firstname"], lastname=a["lastname"])


def _orders(rng: random.Random, customers: list[dict], t_end: datetime) -> list[dict]:
    pending: list[tuple[datetime, int, dict]] = []
    for c in customers:
        if not c["_buyer"]:
            continue
        n = 1 + min(5, int(rng.expovariate(0.8)))
        moved = rng.random() < 0.1  # a later order billed to a new address
        for k in range(n):
            ts = c["_added"] + timedelta(seconds=int((t_end - c["_added"]).total_seconds() * rng.random()))
            billing = _billing(c, moved and k == n - 1)
            pending.append((ts, len(pending), {"customer_id": c["customer_id"], "billing": billing}))
    guests = max(3, len(customers) // 50)
    for g in range(guests):
        ts = t_end - timedelta(days=int(rng.random() * 300))
        email = f"guest.buyer{g}@{rng.choice(_DOMAINS)}"
        billing = {"user_id": None, "company": "", "firstname": "Guest", "lastname": f"Buyer {g}", "email": email,
                   "ph_number": "", "country_code": "US", "state": "New York", "city": "New York",
                   "street": f"{10 + g} Broadway", "postcode": "10001"}
        pending.append((ts, len(pending), {"customer_id": None, "billing": billing}))
    pending.sort(key=lambda p: (p[0], p[1]))
    return [_order(rng, 5001 + i, ts, p["customer_id"], p["billing"]) for i, (ts, _, p) in enumerate(pending)]


def _billing(c: dict, moved: bool) -> dict:
    return {"user_id": c["customer_id"], "company": c["company"], "firstname": c["firstname"],
            "lastname": c["lastname"], "email": c["email"].strip().lower(), "ph_number": c["phone_number"],
            "country_code": next((k for k, v in COUNTRY_NAMES.items() if v == c["country"]), ""),
            "state": c["state"], "city": "Springfield" if moved else c["city"],
            "street": "742 Evergreen Terrace" if moved else c["address"], "postcode": "49007" if moved else c["zip"]}


def _order(rng: random.Random, order_id: int, ts: datetime, customer_id: int | None, billing: dict) -> dict:
    r = rng.random()
    status = 0 if r < 0.04 else 9 if r < 0.12 else 1 if r < 0.25 else 2 if r < 0.35 else 3
    items = round(rng.lognormvariate(4.5, 0.7), 2)
    shipping = round(rng.choice((0.0, 9.95, 14.5, 24.0)), 2)
    tax = round(items * 0.08, 2)
    discount = round(items * 0.1, 2) if rng.random() < 0.15 else 0.0
    coupon = 5.0 if rng.random() < 0.05 else 0.0
    billable = round(items + shipping + tax - discount - coupon, 2)
    ordered = None if status == 0 else ts
    produced = ts + timedelta(days=3) if status in (2, 3) else None
    shipped = ts + timedelta(days=5) if status == 3 else None
    modified = max(d for d in (ts, produced, shipped, ts + timedelta(hours=1) if status == 9 else None) if d)
    paid = status == 3 or rng.random() < 0.5
    return {
        "order_id": order_id,
        "job_name": f"Job {order_id}",
        "customer_id": customer_id,
        "customer_po_number": f"PO-{order_id}" if rng.random() < 0.2 else "",
        "order_status": status,
        "order_status_name": ORDER_STATUSES[status],
        "account_terms": "",
        "item_amount": items,
        "shipping_amount": shipping,
        "tax_amount": tax,
        "tax_names": "Sales Tax",
        "taxes": [{"id": 1, "name": "Sales Tax", "amount": tax}],
        "discount_amount": discount,
        "coupon_discount_amount": coupon,
        "gift_certificate_amount": 0.0,
        "credit_used": 0.0,
        "billable_amount": billable,
        "outstanding_balance": 0.0 if paid else billable,
        "total_weight": round(rng.random() * 5, 2),
        "rush_order_fee": 0,
        "rush_order_fee_amount": 0.0,
        "quote_pdf_url": f"https://shop.acme-decoration.example/quotes/{order_id}.pdf",
        "production_pdf_url": f"https://shop.acme-decoration.example/production/{order_id}.pdf",
        "date_started": _fmt(ts - timedelta(hours=2)),
        "date_ordered": _fmt(ordered),
        "date_production_files_ready": _fmt(ts + timedelta(days=1)) if ordered else None,
        "date_produced": _fmt(produced),
        "date_shipped": _fmt(shipped),
        "date_invoiced": _fmt(ordered),
        "date_modified": _fmt(modified),
        "date_due": _fmt(ts + timedelta(days=10)),
        "shipping_method": {"id": 1, "name": "Ground"},
        "shipments": [{"id": order_id, "date": _fmt(shipped), "tracking": f"1Z{order_id:010d}"}] if shipped else [],
        "billing_details": dict(billing),
    }


# ---- condition matching --------------------------------------------------------------------------------

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
            v = datetime.strptime(raw, SITE_TS)
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


def _compare(op: int, a: Any, b: Any) -> bool:
    return {1: a == b, 2: a != b, 3: a < b, 4: a > b, 5: a <= b, 6: a >= b}.get(op, False)


# ---- the sandbox ----------------------------------------------------------------------------------------

class DecoNetworkSandbox(LoopbackServer):
    """An in-memory DecoNetwork site served over HTTP on 127.0.0.1; all state behind one lock."""

    thread_name = "deconetwork-sandbox"

    def _handler(self) -> type:
        return _Handler

    def __init__(self, data: DecoStoreData | None = None, *, username: str = "api-user",
                 password: str = "sandbox-deco-password-123", api_enabled: bool = True, seed: int = 0,
                 bad_login_html: bool = False, legacy_codes: bool = False, field6: str = "date_invoiced",
                 latency: float = 0.0) -> None:
        self.username, self.password = username, password
        # The codes some 3P clients handle instead (10002 auth failed, 10005 API not enabled): undocumented.
        self.legacy_codes = legacy_codes
        self.api_enabled = api_enabled
        self.bad_login_html = bad_login_html
        # Versions of DecoNetwork's page disagree whether 6 is Date Invoiced or Date Shipped.
        other = "date_shipped" if field6 == "date_invoiced" else "date_invoiced"
        self.date_fields = {**_DATE_FIELDS, 6: field6, 7: other}
        self.latency = latency
        self.url = ""
        self._lock = threading.RLock()
        data = data if data is not None else generate_deconetwork_store(300, seed)
        self._stores = {s["store_id"]: dict(s) for s in data.stores}
        self._customers: dict[int, dict] = {c["customer_id"]: dict(c) for c in data.customers}
        self._orders: dict[int, dict] = {o["order_id"]: copy.deepcopy(o) for o in sorted(data.orders,
                                                                                         key=lambda o: o["order_id"])}
        stamps = [o["date_modified"] for o in self._orders.values() if o.get("date_modified")]
        self._now = (max(datetime.strptime(s, SITE_TS) for s in stamps) if stamps
                     else datetime(2024, 1, 1)) + timedelta(seconds=1)
        self._calls: list[dict] = []
        self._faults: deque[str] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------
    # ---- clock -----------------------------------------------------------------------------------------
    def now(self) -> str:
        """The site clock (local time, the API's date format)."""
        with self._lock:
            return _fmt(self._now)  # type: ignore[return-value]

    def advance_clock(self, seconds: int) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._now += timedelta(seconds=int(seconds))

    def _tick(self) -> str:
        """Every change happens one second after the previous one, so date_modified strictly grows."""
        self._now += timedelta(seconds=1)
        return _fmt(self._now)  # type: ignore[return-value]

    # ---- inspection ------------------------------------------------------------------------------------
    def stores(self) -> list[dict]:
        with self._lock:
            return [dict(s) for s in self._stores.values()]

    def customers(self) -> list[dict]:
        with self._lock:
            return [dict(c) for c in self._customers.values()]

    def orders(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._orders.values()]

    def calls(self) -> list[dict]:
        with self._lock:
            return [dict(c, params=dict(c["params"]), headers=list(c["headers"]),
                         query_keys=list(c["query_keys"])) for c in self._calls]

    def state(self) -> dict:
        with self._lock:
            return {"stores": len(self._stores), "customers": len(self._customers), "orders": len(self._orders),
                    "now": _fmt(self._now), "api_enabled": self.api_enabled}

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """The next ``times`` API requests fail: "429", "503" (an HTML error page) or "drop" (no response)."""
        if kind not in ("429", "503", "drop"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.extend([kind] * times)

    # ---- changes (what admins and shoppers do) ---------------------------------------------------------
    def add_order(self, customer_id: int | None, *, billable_amount: float = 100.0, status: int = 1,
                  billing: dict | None = None, **fields: Any) -> dict:
        """A new order placed now; billing details default to the customer's export row."""
        with self._lock:
            stamp = self._tick()
            if billing is None:
                if customer_id is None:
                    raise ValueError("a guest order needs billing details (an email at least)")
                billing = _billing(self._require_customer(customer_id), moved=False)
            order_id = 1 + max(self._orders, default=5000)
            order = _order(random.Random(order_id), order_id, datetime.strptime(stamp, SITE_TS), customer_id,
                           {"user_id": customer_id, **billing})
            order.update(order_status=status, order_status_name=ORDER_STATUSES.get(status, str(status)),
                         billable_amount=float(billable_amount), date_ordered=None if status == 0 else stamp,
                         date_modified=stamp, **fields)
            self._orders[order_id] = order
            return copy.deepcopy(order)

    def modify_order(self, order_id: int, **fields: Any) -> dict:
        """Edit an order's fields (``status=`` also sets the status name); bumps ``date_modified``."""
        with self._lock:
            if order_id not in self._orders:
                raise KeyError(f"no order {order_id}")
            order = copy.deepcopy(self._orders[order_id])
            if "status" in fields:
                status = int(fields.pop("status"))
                order.update(order_status=status, order_status_name=ORDER_STATUSES.get(status, str(status)))
            billing = fields.pop("billing", None)
            if billing:
                order["billing_details"] = {**order["billing_details"], **billing}
            order.update(fields)
            order["date_modified"] = self._tick()
            self._orders[order_id] = order
            return copy.deepcopy(order)

    def _require_customer(self, customer_id: int) -> dict:
        row = self._customers.get(customer_id)
        if row is None:
            raise KeyError(f"no customer {customer_id}")
        return row

    def update_customer(self, customer_id: int, **fields: Any) -> dict:
        """Edit a customer's export row (seen by the sync only through the next export file)."""
        with self._lock:
            row = dict(self._require_customer(customer_id))
            unknown = set(fields) - set(EXPORT_COLUMNS) - {"customer_id"}
            if unknown or "customer_id" in fields:
                raise ValueError(f"cannot set {sorted(unknown) or ['customer_id']}")
            if "store_id" in fields:
                store = self._stores[str(fields["store_id"])]
                row.update(store=store["name"], store_url=store["url"], store_owner=store["owner"])
            row.update(fields)
            row["date_modified"] = self._tick()
            self._customers[customer_id] = row
            return dict(row)

    def add_customer(self, *, email: str, store_id: str = "1", **fields: Any) -> dict:
        """A new export row (a registration or, with ``login=""``, a newsletter sign-up)."""
        with self._lock:
            customer_id = 1 + max(self._customers, default=1000)
            store = self._stores[str(store_id)]
            stamp = self._tick()
            row = {column: "" for column in EXPORT_COLUMNS}
            row.update(customer_id=customer_id, login=email, email=email, date_added=stamp, date_modified=stamp,
                       store=store["name"], store_url=store["url"], store_id=store["store_id"],
                       store_owner=store["owner"], newsletter=False, deleted=False, balance=0.0)
            row.update(fields)
            self._customers[customer_id] = row
            return dict(row)

    # ---- the customer export ---------------------------------------------------------------------------
    def order_totals(self) -> dict[int, tuple[int, float]]:
        """order count and value per customer id, by the source's rule (ordered, not cancelled)."""
        totals: dict[int, tuple[int, float]] = {}
        with self._lock:
            for o in self._orders.values():
                if o["customer_id"] is None or not o.get("date_ordered") or o["order_status"] == 9:
                    continue
                count, value = totals.get(o["customer_id"], (0, 0.0))
                totals[o["customer_id"]] = (count + 1, round(value + float(o["billable_amount"]), 2))
        return totals

    def export_csv(self, *, include_order_totals: bool = False, bom: bool = True) -> str:
        """The customer export as CSV text (UTF-8; the BOM spreadsheet tools expect)."""
        columns = EXPORT_COLUMNS + (EXPORT_TOTAL_COLUMNS if include_order_totals else ())
        totals = self.order_totals() if include_order_totals else {}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(columns)
        for row in self.customers():
            out = dict(row, newsletter=int(bool(row["newsletter"])), deleted=int(bool(row["deleted"])),
                       balance=f"{float(row['balance'] or 0):.2f}")
            if include_order_totals:
                count, value = totals.get(row["customer_id"], (0, 0.0))
                out.update(order_count=count, total_order_value=f"{value:.2f}")
            writer.writerow(["" if out.get(c) is None else out.get(c) for c in columns])
        return ("\ufeff" if bom else "") + buffer.getvalue()

    def write_export(self, path: str | os.PathLike, *, include_order_totals: bool = False) -> Path:
        """Write the export file atomically (a reader never sees half a file)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(self.export_csv(include_order_totals=include_order_totals), encoding="utf-8", newline="")
        os.replace(tmp, target)
        return target

    # ---- the API ---------------------------------------------------------------------------------------
    def find_orders(self, params: dict) -> dict:
        """``manage_orders/find`` on already-authenticated, decoded parameters."""
        conditions = self._conditions(params)
        limit = _int(params.get("limit")) if "limit" in params else MAX_LIMIT
        offset = _int(params.get("offset")) if "offset" in params else 0
        if limit is None or offset is None or not 0 <= limit <= MAX_LIMIT or offset < 0:
            raise DecoApiError(50004)
        with self._lock:
            rows = [o for o in self._orders.values() if all(c.matches(o) for c in conditions)]
            page = [copy.deepcopy(o) for o in rows[offset: offset + limit]]
        return {"response_status": {"code": 10001, "severity": "SUCCESS", "description": "."},
                "total": len(rows), "orders": page}

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

    # ---- HTTP bookkeeping ------------------------------------------------------------------------------
    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, method: str, path: str, params: dict, status: int, code: int | None,
                headers: list[str], query_keys: list[str]) -> None:
        flat = {k: ("***" if k == "password" else v) for k, v in params.items()}  # never keep the secret
        with self._lock:
            self._calls.append({"method": method, "path": path, "params": flat, "query_keys": query_keys,
                                "status": status, "code": code, "headers": headers, "ts": time.time()})


def _flat_params(query: str, body: str) -> tuple[dict, dict]:
    """PHP's $_REQUEST: query then form body (the body wins); nested for conditions, flat for the record."""
    nested = _merge(parse_php_query(query), parse_php_query(body))
    flat = dict(parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True))
    return nested, flat


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


class _Handler(SandboxHandler):
    """Routes the API, the login page and /__sandbox__/... control endpoints."""

    sandbox: DecoNetworkSandbox
    server_version = "Apache"

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        raw = self._body()
        if parts.path.startswith("/__sandbox__/"):
            self._control(method, parts.path, raw)
            return
        if self.sandbox.latency:
            time.sleep(self.sandbox.latency)
        ctype = self.headers.get("Content-Type", "")
        body = raw.decode("utf-8", "replace") if "application/x-www-form-urlencoded" in ctype else ""
        nested, flat = _flat_params(parts.query, body)
        status, payload, content_type, headers, code = self._site(method, parts.path, nested)
        self.sandbox._record(method, parts.path, flat, status, code, sorted(self.headers.keys()),
                             [k for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
        if status == 0:
            self.close_connection = True  # "drop": the connection closes without an answer
            return
        self._send(status, payload, content_type, headers)

    def _site(self, method: str, path: str, params: dict) -> tuple[int, bytes, str, dict, int | None]:
        html = "text/html; charset=UTF-8"
        if path == LOGIN_PATH:
            return 200, _HTML_LOGIN, html, {}, None
        if path.rstrip("/") != FIND_PATH:
            return 404, _HTML_404, html, {}, None
        fault = self.sandbox._take_fault()
        if fault == "drop":
            return 0, b"", "", {}, None
        if fault == "429":
            return 429, b"<html><body><h1>429 Too Many Requests</h1></body></html>", html, {"Retry-After": "1"}, None
        if fault == "503":
            return 503, b"<html><body><h1>Service Unavailable</h1></body></html>", html, {"Retry-After": "1"}, None
        sb = self.sandbox
        auth = sb._authenticate(params)
        if auth == "login" or (auth == "bad" and sb.bad_login_html):
            return 302, b"", html, {"Location": LOGIN_PATH}, None
        try:
            if auth == "bad":
                raise DecoApiError(10002, "Login failed") if sb.legacy_codes else DecoApiError(30001)
            if not sb.api_enabled:
                raise DecoApiError(10005, "API disabled") if sb.legacy_codes else DecoApiError(31000)
            body = sb.find_orders(params)
        except DecoApiError as err:
            body = {"response_status": {"code": err.code, "severity": err.severity, "description": err.description}}
        # PHP's json_encode: non-ASCII as \u escapes, "/" escaped.
        text = json.dumps(body, separators=(",", ":")).replace("/", "\\/")
        return 200, text.encode("ascii"), "application/json", {}, body["response_status"]["code"]

    # ---- sandbox control (not part of DecoNetwork) -----------------------------------------------------
    def _control(self, method: str, path: str, raw: bytes) -> None:
        try:
            if method == "GET" and path == "/__sandbox__/export.csv":
                self._send(200, self.sandbox.export_csv().encode("utf-8"), "text/csv; charset=utf-8")
                return
            body = json.loads(raw) if raw.strip() else {}
            status, out = self._control_route(method, path, body)
        except KeyError as err:
            status, out = 404, {"message": str(err.args[0] if err.args else err)}
        except (TypeError, ValueError) as err:
            status, out = 400, {"message": str(err)}
        self._send(status, json.dumps(out).encode(), "application/json")

    def _control_route(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        sb = self.sandbox
        if method == "GET" and path == "/__sandbox__/state":
            return 200, sb.state()
        if method == "GET" and path == "/__sandbox__/calls":
            return 200, sb.calls()
        if method == "GET" and path == "/__sandbox__/stores":
            return 200, sb.stores()
        if method == "POST" and path == "/__sandbox__/orders":
            return 200, sb.add_order(body.pop("customer_id", None), **body)
        if method == "POST" and (m := re.fullmatch(r"/__sandbox__/orders/(\d+)", path)):
            return 200, sb.modify_order(int(m.group(1)), **body)
        if method == "POST" and (m := re.fullmatch(r"/__sandbox__/customers/(\d+)", path)):
            return 200, sb.update_customer(int(m.group(1)), **body)
        if method == "POST" and path == "/__sandbox__/clock":
            sb.advance_clock(int(body.get("advance", 0)))
            return 200, sb.state()
        if method == "POST" and path == "/__sandbox__/faults":
            sb.inject_fault(str(body.get("kind")), int(body.get("times", 1)))
            return 200, {"ok": True}
        return 404, {"message": "unknown sandbox endpoint"}


# ---- CLI ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.deconetwork", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ready-file", help="write {\"url\": ..., \"export\": ...} here once the server listens")
    parser.add_argument("--export", help="write the customer export CSV here at start")
    parser.add_argument("--api-disabled", action="store_true")
    args = parser.parse_args(argv)
    sandbox = DecoNetworkSandbox(generate_deconetwork_store(args.customers, args.seed),
                                 api_enabled=not args.api_disabled)
    if args.export:
        sandbox.write_export(args.export)
    serve_until_stopped(sandbox, args.port, args.ready_file, {"export": args.export, "username": sandbox.username})


if __name__ == "__main__":
    main()
