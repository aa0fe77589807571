"""The store's tables (customers, orders, newsletter rows), its clock, and the edits admins and shoppers make."""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any, Sequence

from ..seed import BASE_CURRENCY, STORES, format_ts, parse_ts
from .faults import DUPLICATE_EMAIL, MagentoError
from .indexes import _gc_paused

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


class Tables:
    """MagentoSandbox's rows: every change replaces a row (copy-on-write) and tells the indexes (``_changed``)."""

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
