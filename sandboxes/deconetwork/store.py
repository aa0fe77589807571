"""The site's state: its clock, stores, customers and orders, the edits admins and shoppers make, the export."""

from __future__ import annotations

import copy
import csv
import io
import os
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from .data import EXPORT_COLUMNS, EXPORT_TOTAL_COLUMNS, ORDER_STATUSES, SITE_TS, _billing, _fmt, _order


class Store:
    """DecoNetworkSandbox's data, all behind ``_lock``; every change moves the clock one second on."""

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

