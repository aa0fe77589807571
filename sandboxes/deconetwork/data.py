"""A generated DecoNetwork site: stores, customers (export rows) and orders exactly as the API returns them."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..seed import LOCALES

SITE_TS = "%Y-%m-%dT%H:%M:%S"
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

