"""Magento 2 source: customers with their order count and total order value, as the canonical frame.

Order rules: an order counts when its state is not ``canceled`` or ``closed`` (closed = fully refunded);
its value is ``base_grand_total - base_total_refunded`` in the store's base currency, so store views in
other currencies add up correctly. Guest orders (no customer account) are not customers.
"""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from zoho_store_sync.config import MagentoOptions
from zoho_store_sync.customers import conform
from zoho_store_sync.hooks.magento import MagentoHook

EXCLUDED_ORDER_STATES = ("canceled", "closed")
CUSTOMER_FIELDS = (
    "items[id,email,firstname,lastname,prefix,website_id,store_id,created_in,created_at,updated_at,"
    "default_billing,addresses,extension_attributes],total_count"
)
ORDER_FIELDS = (
    "items[entity_id,customer_id,customer_is_guest,state,status,base_grand_total,base_total_refunded],total_count"
)


def _website_filter(options: MagentoOptions) -> list[list[tuple[str, Any, str]]]:
    if not options.website_ids:
        return []
    return [[("website_id", ",".join(str(w) for w in options.website_ids), "in")]]


def _pick_address(customer: dict[str, Any]) -> dict[str, Any]:
    addresses = customer.get("addresses") or []
    billing_id = customer.get("default_billing")
    for address in addresses:
        if address.get("default_billing") or (billing_id is not None and str(address.get("id")) == str(billing_id)):
            return address
    return addresses[0] if addresses else {}


def customer_rows(customers: Iterable[dict[str, Any]], store_url: str) -> list[dict[str, Any]]:
    """Flatten Magento customers (null keys omitted by Magento) to canonical rows."""
    rows = []
    for c in customers:
        address = _pick_address(c)
        street = ", ".join(s for s in address.get("street") or [] if s)
        region = address.get("region") or {}
        first, last = c.get("firstname"), c.get("lastname")
        rows.append({
            "customer_key": str(c["id"]),
            "email": c.get("email"),
            "firstname": first,
            "lastname": last,
            "full_name": " ".join(p for p in (first, last) if p) or None,
            "salutation": c.get("prefix"),
            "company": address.get("company"),
            "address": street or None,
            "city": address.get("city"),
            "state": region.get("region") if isinstance(region, dict) else None,
            "zip": address.get("postcode"),
            "country_name": address.get("country_id"),
            "phone_number": address.get("telephone"),
            "store": c.get("created_in"),
            "store_url": store_url,
            "store_id": str(c["website_id"]) if c.get("website_id") is not None else None,
            "store_is_mine": True,  # Magento has no affiliate stores
            "newsletter": bool((c.get("extension_attributes") or {}).get("is_subscribed", False)),
            "deleted": False,  # Magento deletes customers outright: they are absent, not flagged
            "registered": True,
            "source_updated_at": c.get("updated_at"),
            "website_id": c.get("website_id"),
        })
    return rows


def order_aggregates(orders: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """order_count and total_order_value per customer_key, by the rules in the module docstring."""
    rows = [
        (str(o["customer_id"]), float(o.get("base_grand_total") or 0.0) - float(o.get("base_total_refunded") or 0.0))
        for o in orders
        if o.get("customer_id") is not None and o.get("state") not in EXCLUDED_ORDER_STATES
    ]
    frame = pd.DataFrame(rows, columns=["customer_key", "value"])
    grouped = frame.groupby("customer_key", sort=False)["value"].agg(["count", "sum"])
    return grouped.rename(columns={"count": "order_count", "sum": "total_order_value"}).reset_index()


def extract_customers(hook: MagentoHook, options: MagentoOptions) -> pd.DataFrame:
    """Every customer of the tenant's websites with order aggregates (a full pass)."""
    hook.store_code = options.store_code
    filters = _website_filter(options)
    hook._session  # resolve the base URL once
    store_url = hook.base_url.rstrip("/")
    customers: list[dict[str, Any]] = []
    for page in hook.search("customers/search", filter_groups=filters, fields=CUSTOMER_FIELDS,
                            page_size=options.page_size, id_field="id"):
        customers.extend(customer_rows(page, store_url))
    orders: list[dict[str, Any]] = []
    for page in hook.search("orders", fields=ORDER_FIELDS, page_size=options.page_size, id_field="entity_id"):
        orders.extend(page)
    frame = pd.DataFrame(customers)
    if frame.empty:
        return conform(frame)
    aggregates = order_aggregates(orders)
    frame = frame.merge(aggregates, on="customer_key", how="left")
    frame["total_order_value"] = frame["total_order_value"].fillna(0.0).round(2)
    return conform(frame)
