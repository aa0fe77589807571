"""Magento 2 source: customers with their order count and total order value, as the canonical frame.

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

Extraction (``extract``): a **full pass** reads every customer of the tenant's websites and every order,
and lists every customer key (for deletion detection); an **incremental pass** reads the customers with
``updated_at >= cursor - overlap`` plus the customers whose orders changed in the same window, de-duplicated
by id, each with the aggregates of ALL their orders. Newsletter changes and hard deletes do not move
``updated_at``: the periodic full pass (``full_every_hours``) catches them.

The cursor's high-water marks are Magento's own ``updated_at`` values ("YYYY-MM-DD HH:MM:SS", UTC), never
the worker's clock: the newest value the store had before paging began, and never more than the newest
actually read. A row changed while paging therefore has an ``updated_at`` at or after the mark and is read
again by the next run; the overlap window covers transactions that committed late.

Partial answers (issue 12): a page that is empty or short before the store's ``total_count`` is reached fails
the extraction (``SourceIncompleteError``, from the hook) for customers and orders alike. A full pass must also
prove itself complete (``PagingReport``): the orders read must, or the extraction fails (missing orders would
lower order counts and turn buyers into Leads); a customers read that is not provably complete still yields
what it read (true, so sent) but no ``all_customer_keys`` (nothing is deleted), an ``incomplete_reason`` and a
cursor that does not record a full pass, so the next run tries the full pass again. An incremental pass checks
for free that the newest row of each probe, and every changed order, came back in its reads.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import pandas as pd

from zoho_store_sync.config import MagentoOptions
from zoho_store_sync.customers import conform, empty_customers
from zoho_store_sync.sources.magento.hook import MagentoHook, PagingReport, Probe, SourceIncompleteError
from zoho_store_sync.sources import SourceExtract

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig

log = logging.getLogger(__name__)

EXCLUDED_ORDER_STATES = ("canceled", "closed")
CUSTOMER_FIELDS = (
    "items[id,email,firstname,lastname,prefix,website_id,store_id,created_in,created_at,updated_at,"
    "default_billing,addresses,extension_attributes],total_count"
)
ORDER_FIELDS = (
    "items[entity_id,customer_id,customer_is_guest,customer_email,customer_firstname,customer_lastname,state,"
    "status,store_id,store_name,base_grand_total,base_total_refunded,updated_at],total_count"
)
ORDER_CHANGE_FIELDS = "items[entity_id,customer_id,customer_is_guest,customer_email,updated_at],total_count"
ID_CHUNK = 100  # ids per `in` filter: keeps the URL short (Magento has no documented cap on filter values)
EMAIL_CHUNK = 20  # emails per OR-group of `eq` filters (an `in` list would split an email holding a comma)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
GUEST_KEY_PREFIX = "guest:"

FilterGroups = list[list[tuple[str, Any, str]]]


# ---- rows ------------------------------------------------------------------------------------------

def _website_filter(options: MagentoOptions) -> FilterGroups:
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


def order_counts(order: dict[str, Any]) -> bool:
    return order.get("state") not in EXCLUDED_ORDER_STATES


def order_value(order: dict[str, Any]) -> float:
    return float(order.get("base_grand_total") or 0.0) - float(order.get("base_total_refunded") or 0.0)


def order_aggregates(orders: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """order_count and total_order_value per customer_key, by the rules in the module docstring."""
    rows = [(str(o["customer_id"]), order_value(o)) for o in orders
            if o.get("customer_id") is not None and order_counts(o)]
    frame = pd.DataFrame(rows, columns=["customer_key", "value"])
    grouped = frame.groupby("customer_key", sort=False)["value"].agg(["count", "sum"])
    return grouped.rename(columns={"count": "order_count", "sum": "total_order_value"}).reset_index()


def normalise_email(email: Any) -> str:
    return str(email or "").strip().lower()


def guest_rows(orders: Iterable[dict[str, Any]], store_url: str, website_of_store: dict[int, int], *,
               website_ids: Sequence[int] | None = None,
               registered_emails: set[str] = frozenset()) -> list[dict[str, Any]]:
    """One Lead row per guest email, by the guest rules in the module docstring.

    ``orders`` must hold ALL the guest orders of each email it mentions, or the total is partial.
    """
    by_email: dict[str, list[dict[str, Any]]] = {}
    for o in orders:
        email = normalise_email(o.get("customer_email"))
        if o.get("customer_is_guest") != 1 or "customer_id" in o or not email or email in registered_emails:
            continue
        website = website_of_store.get(o.get("store_id"))  # type: ignore[arg-type]
        if website_ids and website not in website_ids:
            continue
        by_email.setdefault(email, []).append(o)
    rows = []
    for email, own in sorted(by_email.items()):
        latest = max(own, key=lambda o: (o.get("updated_at") or "", o.get("entity_id") or 0))
        first, last = latest.get("customer_firstname"), latest.get("customer_lastname")
        website = website_of_store.get(latest.get("store_id"))  # type: ignore[arg-type]
        rows.append({
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
        })
    return rows


def _store_view_name(store_name: Any) -> str | None:
    """An order's ``store_name`` is "Website\\nStore\\nStore View": the view, as ``created_in`` names it."""
    lines = [line.strip() for line in str(store_name or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _frame(customers: list[dict[str, Any]], orders: Iterable[dict[str, Any]], guests: list[dict[str, Any]]) -> pd.DataFrame:
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


# ---- reading ---------------------------------------------------------------------------------------

def _all(hook: MagentoHook, resource: str, *, filter_groups: FilterGroups = (), fields: str, page_size: int,
         id_field: str, report: PagingReport | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for page in hook.search(resource, filter_groups=filter_groups, fields=fields, page_size=page_size,
                            id_field=id_field, report=report):
        rows.extend(page)
    return rows


def _require(hook: MagentoHook, resource: str, problem: str | None) -> None:
    """A read whose loss would change what is sent (order counts, changed rows) fails instead of going on."""
    if problem:
        raise SourceIncompleteError(
            f"Magento store {hook.store_url}: the read of {resource} is not provably complete: {problem}. Nothing "
            "was planned, sent or deleted on it. What to do: nothing if the next run passes (rows changed or the "
            "store was busy while it was read); if it persists, look for errors in the store's "
            "var/log/exception.log and its database, and try a smaller magento.page_size.")


def _probe_row_read(probe: Probe, rows: Iterable[dict[str, Any]], id_field: str, since: str | None) -> str | None:
    """The probe's newest row matches the read's filter (updated_at >= since): it must be among the rows read."""
    if probe.newest_id is None or (since and str(probe.newest) < since):
        return None
    if any(r.get(id_field) == probe.newest_id for r in rows):
        return None
    return f"the newest row before paging ({id_field} {probe.newest_id}, updated {probe.newest}) was not read"


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _customers_by_id(hook: MagentoHook, options: MagentoOptions, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(ids), ID_CHUNK):
        rows += _all(hook, "customers/search",
                     filter_groups=[*_website_filter(options), [("id", ",".join(map(str, chunk)), "in")]],
                     fields=CUSTOMER_FIELDS, page_size=options.page_size, id_field="id")
    return rows


def _orders_of_customers(hook: MagentoHook, options: MagentoOptions, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(ids), ID_CHUNK):
        rows += _all(hook, "orders", filter_groups=[[("customer_id", ",".join(map(str, chunk)), "in")]],
                     fields=ORDER_FIELDS, page_size=options.page_size, id_field="entity_id")
    return rows


def _guest_orders_of(hook: MagentoHook, options: MagentoOptions, emails: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(emails), EMAIL_CHUNK):
        rows += _all(hook, "orders",
                     filter_groups=[[("customer_email", e, "eq") for e in chunk], [("customer_is_guest", 1, "eq")]],
                     fields=ORDER_FIELDS, page_size=options.page_size, id_field="entity_id")
    return rows


def _registered_among(hook: MagentoHook, options: MagentoOptions, emails: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(emails), EMAIL_CHUNK):
        rows = _all(hook, "customers/search",
                    filter_groups=[*_website_filter(options), [("email", e, "eq") for e in chunk]],
                    fields="items[id,email],total_count", page_size=options.page_size, id_field="id")
        found.update(normalise_email(r.get("email")) for r in rows)
    return found


def _website_of_store(hook: MagentoHook) -> dict[int, int]:
    return {int(v["id"]): int(v["website_id"]) for v in hook.get("store/storeViews") or [] if "id" in v}


# ---- the cursor --------------------------------------------------------------------------------------

def _shift(ts: str | None, seconds: int) -> str | None:
    """A Magento timestamp moved back by ``seconds`` (the overlap window)."""
    if not ts:
        return None
    return (datetime.strptime(ts[:19], TS_FORMAT) - timedelta(seconds=seconds)).strftime(TS_FORMAT)


def _newest(values: Iterable[Any]) -> str | None:
    return max((v for v in values if v), default=None)


def _mark(old: str | None, before_paging: str | None, seen: str | None) -> str | None:
    """The new high-water mark: at most the newest before paging and the newest read, never behind ``old``."""
    bound = min((v for v in (before_paging, seen) if v), default=None)
    return max((v for v in (old, bound) if v), default=None)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def needs_full_pass(cursor: dict[str, Any] | None, now: datetime, full_every_hours: float) -> bool:
    """No cursor, no full pass on record, or the last one is older than ``full_every_hours``."""
    if not cursor or not cursor.get("last_full_at"):
        return True
    try:
        last_full = _utc(datetime.fromisoformat(str(cursor["last_full_at"])))
    except ValueError:
        return True
    return _utc(now) - last_full >= timedelta(hours=full_every_hours)


# ---- extraction --------------------------------------------------------------------------------------

def extract(hook: MagentoHook, options: MagentoOptions, cursor: dict[str, Any] | None, *,
            full_every_hours: float = 24.0, now: datetime | None = None) -> SourceExtract:
    """A full pass or an incremental one from ``cursor``, by the rules in the module docstring."""
    now = _utc(now or datetime.now(timezone.utc))
    hook.store_code = options.store_code
    if needs_full_pass(cursor, now, full_every_hours):
        return _full_pass(hook, options, now, last_full_at=(cursor or {}).get("last_full_at"))
    return _incremental_pass(hook, options, cursor or {})


def extract_tenant(tenant: TenantConfig, cursor: dict[str, Any] | None, *, state_url: str,
                   full_every_hours: float) -> SourceExtract:
    """The registry's entry point (``zoho_store_sync.sources.registry``): the tenant's store through its Connection
    and ``magento`` options. Magento keeps nothing between runs but the cursor: ``state_url`` is not used."""
    hook = MagentoHook(tenant.store_conn_id, store_code=tenant.magento.store_code)
    return extract(hook, tenant.magento, cursor, full_every_hours=full_every_hours)


def _full_pass(hook: MagentoHook, options: MagentoOptions, now: datetime,
               last_full_at: str | None = None) -> SourceExtract:
    store_url = hook.store_url
    websites = _website_filter(options)
    customers_probe = hook.probe("customers/search", filter_groups=websites)
    orders_probe = hook.probe("orders", id_field="entity_id")
    customers_before, orders_before = customers_probe.newest, orders_probe.newest
    # The probes' counts are what the store had before paging: an empty first page must not pass for "none".
    customers_read = PagingReport(expected=customers_probe.total)
    orders_read = PagingReport(expected=orders_probe.total)
    customers = _all(hook, "customers/search", filter_groups=websites, fields=CUSTOMER_FIELDS,
                     page_size=options.page_size, id_field="id", report=customers_read)
    orders = _all(hook, "orders", fields=ORDER_FIELDS, page_size=options.page_size, id_field="entity_id",
                  report=orders_read)
    _require(hook, "orders", orders_read.incomplete_reason)
    guests: list[dict[str, Any]] = []
    if options.guest_orders_as_leads:
        registered = {normalise_email(c.get("email")) for c in customers}
        guests = guest_rows(orders, store_url, _website_of_store(hook), website_ids=options.website_ids,
                            registered_emails=registered)
    frame = _frame(customer_rows(customers, store_url), orders, guests)
    reason = customers_read.incomplete_reason
    if reason:
        log.warning("Magento store %s: the full pass read %d customers (the store reported %s) but is not provably "
                    "complete, so no deletion is detected this run and the next run reads everything again: %s",
                    store_url, customers_read.read, customers_read.first_total, reason)
    next_cursor = {
        "customers_updated_at": _mark(None, customers_before, _newest(c.get("updated_at") for c in customers)),
        "orders_updated_at": _mark(None, orders_before, _newest(o.get("updated_at") for o in orders)),
        # Only a provably complete pass counts as the periodic full pass.
        "last_full_at": now.isoformat() if reason is None else last_full_at,
    }
    return SourceExtract(frame, full=True, cursor=next_cursor,
                         all_customer_keys=frame["customer_key"].tolist() if reason is None else None,
                         calls=hook.calls, incomplete_reason=reason)


def _incremental_pass(hook: MagentoHook, options: MagentoOptions, cursor: dict[str, Any]) -> SourceExtract:
    store_url = hook.store_url
    websites = _website_filter(options)
    old_customers, old_orders = cursor.get("customers_updated_at"), cursor.get("orders_updated_at")
    customers_since = _shift(old_customers, options.overlap_seconds)
    orders_since = _shift(old_orders, options.overlap_seconds)
    customers_probe = hook.probe("customers/search", filter_groups=websites)
    orders_probe = hook.probe("orders", id_field="entity_id")
    customers_before, orders_before = customers_probe.newest, orders_probe.newest

    since = [[("updated_at", customers_since, "gteq")]] if customers_since else []
    changed = _all(hook, "customers/search", filter_groups=[*websites, *since], fields=CUSTOMER_FIELDS,
                   page_size=options.page_size, id_field="id")
    _require(hook, "customers/search", _probe_row_read(customers_probe, changed, "id", customers_since))
    orders_filter = [[("updated_at", orders_since, "gteq")]] if orders_since else []
    changed_orders = _all(hook, "orders", filter_groups=orders_filter, fields=ORDER_CHANGE_FIELDS,
                          page_size=options.page_size, id_field="entity_id")
    _require(hook, "orders", _probe_row_read(orders_probe, changed_orders, "entity_id", orders_since))

    by_id = {c["id"]: c for c in changed}
    via_orders = {o["customer_id"] for o in changed_orders if o.get("customer_id") is not None} - by_id.keys()
    for c in _customers_by_id(hook, options, sorted(via_orders)):  # outside the tenant's websites: not returned
        by_id.setdefault(c["id"], c)
    orders = _orders_of_customers(hook, options, sorted(by_id))
    # Free check of the per-customer order reads: every changed order of a customer read must be among them.
    read_orders = {o.get("entity_id") for o in orders}
    lost = sorted(o["entity_id"] for o in changed_orders
                  if o.get("customer_id") in by_id and o.get("entity_id") not in read_orders)
    _require(hook, "orders", f"{len(lost)} changed orders of the customers read (entity_id "
                             f"{', '.join(map(str, lost[:10]))}) were missing from their orders" if lost else None)

    guests: list[dict[str, Any]] = []
    if options.guest_orders_as_leads:
        emails = sorted({normalise_email(o.get("customer_email")) for o in changed_orders
                         if o.get("customer_is_guest") == 1 and "customer_id" not in o} - {""})
        if emails:
            registered = _registered_among(hook, options, emails)
            guests = guest_rows(_guest_orders_of(hook, options, emails), store_url, _website_of_store(hook),
                                website_ids=options.website_ids, registered_emails=registered)

    frame = _frame(customer_rows([by_id[k] for k in sorted(by_id)], store_url), orders, guests)
    next_cursor = {
        "customers_updated_at": _mark(old_customers, customers_before, _newest(c.get("updated_at") for c in changed)),
        "orders_updated_at": _mark(old_orders, orders_before, _newest(o.get("updated_at") for o in changed_orders)),
        "last_full_at": cursor.get("last_full_at"),
    }
    return SourceExtract(frame, full=False, cursor=next_cursor, all_customer_keys=None, calls=hook.calls)


def extract_customers(hook: MagentoHook, options: MagentoOptions) -> pd.DataFrame:
    """Every customer of the tenant's websites with order aggregates (a full pass)."""
    return extract(hook, options, None).customers
