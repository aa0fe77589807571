"""DecoNetwork's orders as rows, and the canonical frame of customers merged from them and the export's rows.

**Orders** (``order_rows``, read from ``/api/json/manage_orders/find`` when ``use_order_api``). An order
*counts* when it was ordered (``date_ordered`` set: a quote is not a purchase) and is not cancelled
(``order_status_name`` Cancelled/Canceled/Void/Voided; DecoNetwork's status numbers are undocumented, so
numbers alone never exclude an order). ``order_count`` is the number of counted orders and
``total_order_value`` the sum of their ``billable_amount`` (what the customer was invoiced: items, shipping,
tax and fees, less discounts, coupons and gift certificates; store credit used still counts as spend).
A buyer's profile (name, company, phone, address) comes from the billing details of their most recently
placed order. The customer is ``customer_id`` (else ``billing_details.user_id``); an order without an id (a
guest checkout) belongs to the export row with its email, else to a guest keyed ``email:<address>``.

**Which field comes from where** when both inputs are read: ``order_count`` and ``total_order_value`` from
the orders; ``store``, ``store_url``, ``store_id``, store ownership, ``newsletter``, ``deleted``, ``balance``
and registration from the export; name, salutation, company and phone from the export, a blank export
cell filled from the latest order; the address as one block (street, city, state, zip, country), from the
export when the row has any part of an address, else from the latest order, so parts are never mixed.
A buyer the export does not list (a guest, or a customer added after the export was made) has the site
URL as ``store_url``, no store id, and counts as the site owner's.

**Only one input**: orders only gives the customers who placed orders: buyers (Contacts), and accounts
whose orders are all quotes or cancelled (registered without a purchase: Leads); no newsletter-only
subscribers, no registered customers who never ordered, no deleted flag, balance or store (affiliate
tenants need the export to know their stores). Export only gives order figures only from the
export's optional ``order_count``/``total_order_value`` columns; without them every customer has 0 orders
and nobody is a Contact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pandas as pd

from zoho_store_sync.customers import conform, normalise_email

SITE_TS = "%Y-%m-%dT%H:%M:%S"  # the doc's example format
CANCELLED_STATUS_NAMES = frozenset({"cancelled", "canceled", "void", "voided"})
ADDRESS_FIELDS = ("address", "city", "state", "zip", "country_name")
PROFILE_FIELDS = ("firstname", "lastname", "company", "phone_number", *ADDRESS_FIELDS)
ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "email",
    *PROFILE_FIELDS,
    "date_ordered",
    "date_modified",
    "counted",
    "value",
)


# ---- orders -------------------------------------------------------------------------------------------------


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _customer_id(order: dict[str, Any]) -> str | None:
    billing = order.get("billing_details") or {}
    for value in (order.get("customer_id"), billing.get("user_id") if isinstance(billing, dict) else None):
        text = _str_or_none(value)
        if text and text != "0":  # 0: no account
            return text
    return None


def _amount(value: Any) -> float:
    try:
        return float(str(value).replace(",", "")) if value not in (None, "") else 0.0
    except ValueError:
        return 0.0


def order_rows(orders: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per order with what the customers need: id, customer, billing profile, dates, counted, value."""
    rows = []
    for o in orders:
        billing = details if isinstance(details := o.get("billing_details"), dict) else {}
        status_name = str(o.get("order_status_name") or "").strip().lower()
        ordered = _str_or_none(o.get("date_ordered"))
        rows.append(
            (
                str(o.get("order_id")),
                _customer_id(o),
                _str_or_none(billing.get("email")),
                _str_or_none(billing.get("firstname")),
                _str_or_none(billing.get("lastname")),
                _str_or_none(billing.get("company")),
                _str_or_none(billing.get("ph_number")),
                _str_or_none(billing.get("street")),
                _str_or_none(billing.get("city")),
                _str_or_none(billing.get("state")),
                _str_or_none(billing.get("postcode")),
                _str_or_none(billing.get("country_code")),
                ordered,
                _str_or_none(o.get("date_modified")),
                ordered is not None and status_name not in CANCELLED_STATUS_NAMES,
                _amount(o.get("billable_amount")),
            )
        )
    frame = pd.DataFrame(rows, columns=list(ORDER_COLUMNS))
    for column in ORDER_COLUMNS[:-2]:
        frame[column] = frame[column].astype("string")
    frame["counted"] = frame["counted"].astype(bool)
    frame["value"] = frame["value"].astype("float64")
    return frame


def _parse_site_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=None)  # the site's wall clock, as the API compares it


def _max_modified(orders: pd.DataFrame) -> str | None:
    stamps = [t for t in (_parse_site_ts(v) for v in orders["date_modified"].dropna()) if t is not None]
    return max(stamps).strftime(SITE_TS) if stamps else None


# ---- merging -------------------------------------------------------------------------------------------


def _email_key(emails: pd.Series) -> pd.Series:
    return ("email:" + normalise_email(emails)).astype("string")


def _keys(export: pd.DataFrame | None, orders: pd.DataFrame) -> tuple[pd.Series | None, pd.Series]:
    """customer_key of every export row and of every order (the rules in the module docstring)."""
    order_email = normalise_email(orders["email"])
    export_keys = None
    by_email: dict[str, str] = {}
    if export is not None:
        email = normalise_email(export["email"])
        # An export row without an id takes the id its buyer has in the orders, if any.
        ids_by_email = (
            pd.DataFrame({"email": order_email, "id": orders["customer_id"]})
            .dropna()
            .drop_duplicates("email")
            .set_index("email")["id"]
        )
        known_ids = set(export["customer_id"].dropna())
        adopted = email.map(ids_by_email).astype("string")
        adopted = adopted.mask(adopted.isin(known_ids))
        export_keys = export["customer_id"].fillna(adopted).fillna(_email_key(export["email"]))
        export_keys = export_keys.fillna(
            pd.Series([f"export-row:{i}" for i in export.index], index=export.index, dtype="string")
        )
        for e, k in sorted(zip(email.dropna(), export_keys[email.notna()])):
            by_email.setdefault(e, k)  # an email in several stores: the guest order goes to the first
    fallback = order_email.map(by_email).astype("string").fillna(_email_key(orders["email"]))
    fallback = fallback.fillna(("order:" + orders["order_id"]).astype("string"))
    return export_keys, orders["customer_id"].fillna(fallback).astype("string")


def _order_customers(orders: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """Per customer_key: order_count, total_order_value, the latest order's profile, last modification."""
    frame = orders.assign(
        customer_key=keys,
        _id=pd.to_numeric(orders["order_id"], errors="coerce"),
        _ordered=orders["date_ordered"].fillna(""),
    )
    counted = frame[frame["counted"]]
    totals = (
        counted.groupby("customer_key")["value"]
        .agg(["count", "sum"])
        .rename(columns={"count": "order_count", "sum": "total_order_value"})
    )
    latest = (
        frame.sort_values(["customer_key", "_ordered", "_id", "order_id"], kind="mergesort")
        .drop_duplicates("customer_key", keep="last")
        .set_index("customer_key")
    )
    out = latest[["email", *PROFILE_FIELDS]].copy()
    out["orders_updated_at"] = frame.groupby("customer_key")["date_modified"].max()
    out = out.join(totals)
    out["order_count"] = out["order_count"].fillna(0).astype("int64")
    out["total_order_value"] = out["total_order_value"].fillna(0.0).round(2)
    return out


def merge_customers(export: pd.DataFrame | None, orders: pd.DataFrame | None, site_url: str | None) -> pd.DataFrame:
    """The canonical frame of every customer from the export rows and/or the order rows."""
    orders = orders if orders is not None else order_rows([])
    export_keys, order_keys = _keys(export, orders)
    buyers = _order_customers(orders, order_keys) if len(orders) else None
    if export is not None:
        frame = export.assign(customer_key=export_keys).drop_duplicates("customer_key").set_index("customer_key")
    else:
        frame = pd.DataFrame(index=pd.Index([], dtype="string", name="customer_key"))
    if buyers is not None:
        frame = frame.join(buyers.add_prefix("o_"), how="outer")
        only_orders = frame["o_email"].notna() & ~frame.index.isin(export_keys if export_keys is not None else [])
        for column in ("email", "firstname", "lastname", "company", "phone_number"):
            frame[column] = _col(frame, column).fillna(frame[f"o_{column}"])
        # The address is one block: the export's when it has any part of one, else the latest order's.
        has_address = pd.concat([_col(frame, c).notna() for c in ADDRESS_FIELDS], axis=1).any(axis=1)
        for column in ADDRESS_FIELDS:
            frame[column] = _col(frame, column).where(has_address, frame[f"o_{column}"])
        frame["order_count"] = frame["o_order_count"].fillna(0).astype("int64")
        frame["total_order_value"] = frame["o_total_order_value"].fillna(0.0)
        frame["store_url"] = _col(frame, "store_url").mask(only_orders, site_url)
        frame["store_is_mine"] = _col(frame, "store_is_mine").mask(only_orders, True)
        # A buyer with an account id is registered even when the export does not (yet) list them.
        registered = ~frame.index.to_series().str.contains(":", regex=False)
        frame["registered"] = _col(frame, "registered").mask(only_orders, registered)
        frame["source_updated_at"] = _later(_col(frame, "export_updated_at"), frame["o_orders_updated_at"])
    else:
        frame["order_count"] = _col(frame, "export_order_count").fillna(0)
        frame["total_order_value"] = _col(frame, "export_total_order_value").fillna(0.0)
        frame["source_updated_at"] = _col(frame, "export_updated_at")
    frame["full_name"] = _full_name(_col(frame, "firstname"), _col(frame, "lastname"))
    frame = frame.reset_index().rename(columns={"index": "customer_key"})
    if "customer_key" not in frame.columns:
        frame["customer_key"] = pd.Series(dtype="string")
    return conform(frame.sort_values("customer_key", kind="mergesort"))


def _col(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column] if column in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="object")


def _later(a: pd.Series, b: pd.Series) -> pd.Series:
    """The later of two ISO timestamp columns (strings of one format compare in time order)."""
    a, b = a.astype("string").fillna(""), b.astype("string").fillna("")
    later = a.where(a >= b, b)
    return later.mask(later == "")


def _full_name(first: pd.Series, last: pd.Series) -> pd.Series:
    joined = (first.astype("string").fillna("") + " " + last.astype("string").fillna("")).str.strip()
    return joined.mask(joined == "")
