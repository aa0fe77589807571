"""Magento 2 source: customers with their order count and total order value, as the canonical frame.

The order rules (which orders count, for whom, what they are worth; guest orders as Leads) and the rows they
make: ``rows.py``.

Extraction (``extract``): a **full pass** reads every customer of the tenant's websites and every order,
and lists every customer key (for deletion detection); an **incremental pass** reads the customers with
``updated_at >= cursor - overlap`` plus the customers whose orders changed in the same window, de-duplicated
by id, each with the aggregates of ALL their orders. Newsletter changes and hard deletes do not move
``updated_at``: the periodic full pass (``full_every_hours``) catches them.

The cursor's high-water marks are Magento's own ``updated_at`` values ("YYYY-MM-DD HH:MM:SS", UTC), never
the worker's clock: the newest value the store had before paging began, and never more than the newest
actually read. A row changed while paging therefore has an ``updated_at`` at or after the mark and is read
again by the next run; the overlap window covers transactions that committed late.

A full pass of a large store reads its customers and orders in id ranges, ``parallelism`` pages at a time
(``ranges.py``: how, and why no row is lost or repeated while rows change).

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
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from zoho_store_sync.config import MagentoOptions
from zoho_store_sync.sources import SourceExtract
from zoho_store_sync.sources.magento.hook import MagentoHook, PagingReport, Probe, SourceIncompleteError
from zoho_store_sync.sources.magento.ranges import DEFAULT_PARALLELISM, KeysetRead, read_all
from zoho_store_sync.sources.magento.rows import (  # noqa: F401 - re-exported: the rows were made here
    EXCLUDED_ORDER_STATES,
    GUEST_KEY_PREFIX,
    _frame,
    customer_rows,
    guest_rows,
    normalise_email,
    order_aggregates,
    order_counts,
    order_value,
)

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig

log = logging.getLogger(__name__)

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

FilterGroups = Sequence[Sequence[tuple[str, Any, str]]]


# ---- filters ---------------------------------------------------------------------------------------


def _website_filter(options: MagentoOptions) -> FilterGroups:
    if not options.website_ids:
        return []
    return [[("website_id", ",".join(str(w) for w in options.website_ids), "in")]]


# ---- reading ---------------------------------------------------------------------------------------


def _all(
    hook: MagentoHook,
    resource: str,
    *,
    filter_groups: FilterGroups = (),
    fields: str,
    page_size: int,
    id_field: str,
    report: PagingReport | None = None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for page in hook.search(
        resource, filter_groups=filter_groups, fields=fields, page_size=page_size, id_field=id_field, report=report
    ):
        rows.extend(page)
    return rows


def _require(hook: MagentoHook, resource: str, problem: str | None) -> None:
    """A read whose loss would change what is sent (order counts, changed rows) fails instead of going on."""
    if problem:
        raise SourceIncompleteError(
            f"Magento store {hook.store_url}: the read of {resource} is not provably complete: {problem}. Nothing "
            "was planned, sent or deleted on it. What to do: nothing if the next run passes (rows changed or the "
            "store was busy while it was read); if it persists, look for errors in the store's "
            "var/log/exception.log and its database, and try a smaller magento.page_size."
        )


def _probe_row_read(probe: Probe, rows: Iterable[dict[str, Any]], id_field: str, since: str | None) -> str | None:
    """The probe's newest row matches the read's filter (updated_at >= since): it must be among the rows read."""
    if probe.newest_id is None or (since and str(probe.newest) < since):
        return None
    if any(r.get(id_field) == probe.newest_id for r in rows):
        return None
    return f"the newest row before paging ({id_field} {probe.newest_id}, updated {probe.newest}) was not read"


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _customers_by_id(hook: MagentoHook, options: MagentoOptions, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(ids), ID_CHUNK):
        rows += _all(
            hook,
            "customers/search",
            filter_groups=[*_website_filter(options), [("id", ",".join(map(str, chunk)), "in")]],
            fields=CUSTOMER_FIELDS,
            page_size=options.page_size,
            id_field="id",
        )
    return rows


def _orders_of_customers(hook: MagentoHook, options: MagentoOptions, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(ids), ID_CHUNK):
        rows += _all(
            hook,
            "orders",
            filter_groups=[[("customer_id", ",".join(map(str, chunk)), "in")]],
            fields=ORDER_FIELDS,
            page_size=options.page_size,
            id_field="entity_id",
        )
    return rows


def _guest_orders_of(hook: MagentoHook, options: MagentoOptions, emails: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(emails), EMAIL_CHUNK):
        rows += _all(
            hook,
            "orders",
            filter_groups=[[("customer_email", e, "eq") for e in chunk], [("customer_is_guest", 1, "eq")]],
            fields=ORDER_FIELDS,
            page_size=options.page_size,
            id_field="entity_id",
        )
    return rows


def _registered_among(hook: MagentoHook, options: MagentoOptions, emails: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(emails), EMAIL_CHUNK):
        rows = _all(
            hook,
            "customers/search",
            filter_groups=[*_website_filter(options), [("email", e, "eq") for e in chunk]],
            fields="items[id,email],total_count",
            page_size=options.page_size,
            id_field="id",
        )
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
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


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


def extract(
    hook: MagentoHook,
    options: MagentoOptions,
    cursor: dict[str, Any] | None,
    *,
    full_every_hours: float = 24.0,
    now: datetime | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
) -> SourceExtract:
    """A full pass or an incremental one from ``cursor``, by the rules in the module docstring.

    :param parallelism: requests in flight at once to the store during a full pass (1: one page at a time).
    """
    now = _utc(now or datetime.now(UTC))
    hook.store_code = options.store_code
    if needs_full_pass(cursor, now, full_every_hours):
        return _full_pass(hook, options, now, last_full_at=(cursor or {}).get("last_full_at"), parallelism=parallelism)
    return _incremental_pass(hook, options, cursor or {})


def extract_tenant(
    tenant: TenantConfig, cursor: dict[str, Any] | None, *, state_url: str, full_every_hours: float
) -> SourceExtract:
    """The registry's entry point (``zoho_store_sync.sources.registry``): the tenant's store through its Connection
    and ``magento`` options. Magento keeps nothing between runs but the cursor: ``state_url`` is not used."""
    hook = MagentoHook(tenant.store_conn_id, store_code=tenant.magento.store_code)
    return extract(
        hook, tenant.magento, cursor, full_every_hours=full_every_hours, parallelism=tenant.store_parallelism
    )


def _full_pass(
    hook: MagentoHook,
    options: MagentoOptions,
    now: datetime,
    last_full_at: str | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
) -> SourceExtract:
    store_url = hook.store_url
    websites = _website_filter(options)
    customers_probe = hook.probe("customers/search", filter_groups=websites)
    orders_probe = hook.probe("orders", id_field="entity_id")
    customers_before, orders_before = customers_probe.newest, orders_probe.newest
    # The probes' counts are what the store had before paging: an empty first page must not pass for "none".
    # Large stores are read in id ranges by `parallelism` threads (the guarantees: ``ranges``' docstring).
    (customers, customers_read), (orders, orders_read) = read_all(
        hook,
        [
            KeysetRead("customers/search", websites, CUSTOMER_FIELDS, options.page_size, "id", customers_probe.total),
            KeysetRead("orders", (), ORDER_FIELDS, options.page_size, "entity_id", orders_probe.total),
        ],
        parallelism,
    )
    _require(hook, "orders", orders_read.incomplete_reason)
    guests: list[dict[str, Any]] = []
    if options.guest_orders_as_leads:
        registered = {normalise_email(c.get("email")) for c in customers}
        guests = guest_rows(
            orders, store_url, _website_of_store(hook), website_ids=options.website_ids, registered_emails=registered
        )
    frame = _frame(customer_rows(customers, store_url), orders, guests)
    reason = customers_read.incomplete_reason
    if reason:
        log.warning(
            "Magento store %s: the full pass read %d customers (the store reported %s) but is not provably "
            "complete, so no deletion is detected this run and the next run reads everything again: %s",
            store_url,
            customers_read.read,
            customers_read.first_total,
            reason,
        )
    next_cursor = {
        "customers_updated_at": _mark(None, customers_before, _newest(c.get("updated_at") for c in customers)),
        "orders_updated_at": _mark(None, orders_before, _newest(o.get("updated_at") for o in orders)),
        # Only a provably complete pass counts as the periodic full pass.
        "last_full_at": now.isoformat() if reason is None else last_full_at,
    }
    return SourceExtract(
        frame,
        full=True,
        cursor=next_cursor,
        all_customer_keys=frame["customer_key"].tolist() if reason is None else None,
        calls=hook.calls,
        incomplete_reason=reason,
    )


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
    changed = _all(
        hook,
        "customers/search",
        filter_groups=[*websites, *since],
        fields=CUSTOMER_FIELDS,
        page_size=options.page_size,
        id_field="id",
    )
    _require(hook, "customers/search", _probe_row_read(customers_probe, changed, "id", customers_since))
    orders_filter = [[("updated_at", orders_since, "gteq")]] if orders_since else []
    changed_orders = _all(
        hook,
        "orders",
        filter_groups=orders_filter,
        fields=ORDER_CHANGE_FIELDS,
        page_size=options.page_size,
        id_field="entity_id",
    )
    _require(hook, "orders", _probe_row_read(orders_probe, changed_orders, "entity_id", orders_since))

    by_id = {c["id"]: c for c in changed}
    via_orders = {o["customer_id"] for o in changed_orders if o.get("customer_id") is not None} - by_id.keys()
    for c in _customers_by_id(hook, options, sorted(via_orders)):  # outside the tenant's websites: not returned
        by_id.setdefault(c["id"], c)
    orders = _orders_of_customers(hook, options, sorted(by_id))
    # Free check of the per-customer order reads: every changed order of a customer read must be among them.
    read_orders = {o.get("entity_id") for o in orders}
    lost = sorted(
        o["entity_id"]
        for o in changed_orders
        if o.get("customer_id") in by_id and o.get("entity_id") not in read_orders
    )
    _require(
        hook,
        "orders",
        f"{len(lost)} changed orders of the customers read (entity_id "
        f"{', '.join(map(str, lost[:10]))}) were missing from their orders"
        if lost
        else None,
    )

    guests: list[dict[str, Any]] = []
    if options.guest_orders_as_leads:
        emails = sorted(
            {
                normalise_email(o.get("customer_email"))
                for o in changed_orders
                if o.get("customer_is_guest") == 1 and "customer_id" not in o
            }
            - {""}
        )
        if emails:
            registered = _registered_among(hook, options, emails)
            guests = guest_rows(
                _guest_orders_of(hook, options, emails),
                store_url,
                _website_of_store(hook),
                website_ids=options.website_ids,
                registered_emails=registered,
            )

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
