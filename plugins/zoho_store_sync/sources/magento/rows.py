"""Magento 2's customers and orders as rows of the canonical frame, with each customer's order figures.

Order rules (what ``order_count`` and ``total_order_value`` mean for a Magento customer):

* An order counts unless its state is ``canceled`` or ``closed`` (closed = fully refunded). ``new``,
  ``pending_payment``, ``processing``, ``holded``, ``payment_review`` and ``complete`` all count.
* Its value is ``base_grand_total - base_total_refunded``: the store's base currency, so orders placed in
  store views with other currencies add up, and partial refunds are taken off.
* Orders belong to the customer in their ``customer_id``. Orders of a hard-deleted customer have lost
  ``customer_id`` (Magento's foreign key sets it NULL): they are attributed to no one.
* Guest orders (``customer_is_guest`` = 1, no account) are not customers. With the tenant option
  ``guest_orders_as_leads`` each guest email becomes one **Lead** row: ``customer_key`` = ``guest:<email>``,
  ``registered`` False, ``newsletter`` False, ``order_count`` 0 (so it is never a Contact: a Contact is a
  person with an account who bought) and ``total_order_value`` = the value of their counted guest orders
  (what they did buy, for the CRM user to see). A guest email that belongs to a registered customer of the
  tenant's websites is that customer, never a second Lead. Guest rows need the store list
  (``GET /V1/store/storeViews``, ACL ``Magento_Backend::store``) to know each order's website.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import pandas as pd

from zoho_store_sync.customers import conform, empty_customers

EXCLUDED_ORDER_STATES = ("canceled", "closed")
GUEST_KEY_PREFIX = "guest:"


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
        rows.append(
            {
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
            }
        )
    return rows


def order_counts(order: dict[str, Any]) -> bool:
    return order.get("state") not in EXCLUDED_ORDER_STATES


def order_value(order: dict[str, Any]) -> float:
    return float(order.get("base_grand_total") or 0.0) - float(order.get("base_total_refunded") or 0.0)


def order_aggregates(orders: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """order_count and total_order_value per customer_key, by the rules in the module docstring."""
    rows = [
        (str(o["customer_id"]), order_value(o)) for o in orders if o.get("customer_id") is not None and order_counts(o)
    ]
    frame = pd.DataFrame(rows, columns=["customer_key", "value"])
    grouped = frame.groupby("customer_key", sort=False)["value"].agg(["count", "sum"])
    return grouped.rename(columns={"count": "order_count", "sum": "total_order_value"}).reset_index()


def normalise_email(email: Any) -> str:
    return str(email or "").strip().lower()


def guest_rows(
    orders: Iterable[dict[str, Any]],
    store_url: str,
    website_of_store: Mapping[Any, int],  # store id -> website id, looked up with an order's store_id as read
    *,
    website_ids: Sequence[int] | None = None,
    registered_emails: AbstractSet[str] = frozenset(),
) -> list[dict[str, Any]]:
    """One Lead row per guest email, by the guest rules in the module docstring.

    ``orders`` must hold ALL the guest orders of each email it mentions, or the total is partial.
    """
    by_email: dict[str, list[dict[str, Any]]] = {}
    for o in orders:
        email = normalise_email(o.get("customer_email"))
        if o.get("customer_is_guest") != 1 or "customer_id" in o or not email or email in registered_emails:
            continue
        website = website_of_store.get(o.get("store_id"))
        if website_ids and website not in website_ids:
            continue
        by_email.setdefault(email, []).append(o)
    rows = []
    for email, own in sorted(by_email.items()):
        latest = max(own, key=lambda o: (o.get("updated_at") or "", o.get("entity_id") or 0))
        first, last = latest.get("customer_firstname"), latest.get("customer_lastname")
        website = website_of_store.get(latest.get("store_id"))
        rows.append(
            {
                "customer_key": GUEST_KEY_PREFIX + email,
                "email": email,
                "firstname": first,
                "lastname": last,
                "full_name": " ".join(p for p in (first, last) if p) or None,
                "store": _store_view_name(latest.get("store_name")),
                "store_url": store_url,
                "store_id": str(website) if website is not None else None,
                "store_is_mine": True,
                "newsletter": False,
                "deleted": False,
                "registered": False,
                "order_count": 0,  # no account: a Lead, never a Contact (see the module docstring)
                "total_order_value": round(sum(order_value(o) for o in own if order_counts(o)), 2),
                "source_updated_at": latest.get("updated_at"),
            }
        )
    return rows


def _store_view_name(store_name: Any) -> str | None:
    """An order's ``store_name`` is "Website\\nStore\\nStore View": the view, as ``created_in`` names it."""
    lines = [line.strip() for line in str(store_name or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _frame(
    customers: list[dict[str, Any]], orders: Iterable[dict[str, Any]], guests: list[dict[str, Any]]
) -> pd.DataFrame:
    parts = []
    if customers:
        frame = pd.DataFrame(customers).merge(order_aggregates(orders), on="customer_key", how="left")
        frame["total_order_value"] = frame["total_order_value"].fillna(0.0).round(2)
        parts.append(conform(frame))
    if guests:
        parts.append(conform(pd.DataFrame(guests)))
    if not parts:
        return empty_customers()
    return conform(pd.concat(parts, ignore_index=True)) if len(parts) > 1 else parts[0]
