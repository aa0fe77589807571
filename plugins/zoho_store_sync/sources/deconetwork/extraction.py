"""DecoNetwork source: buyers from the Order Management API, everyone else from the customer export, merged.

DecoNetwork publishes an order API but no customer API (store-apis.md A.0), so a tenant's customers come
from two inputs, either or both (``DecoNetworkOptions``):

**(a) Orders** (``use_order_api``): ``/api/json/manage_orders/find`` gives every *buying* customer; which orders
count, and whose they are, is ``merge.py``'s docstring.

**(b) The customer export** (``customers_export_url``): a CSV file listing every customer, read and checked by
``export.py`` (whose docstring is the file's contract: its columns, and the files refused with
DecoNetworkExportError because they cannot be the complete customer list).

How the two inputs make one frame (which field comes from where, what each input alone gives): ``merge.py``.

**Incremental passes.** A full pass reads all orders (Date Modified >= 2000-01-01) and hands on every
customer; it runs on the first run, when the inputs changed, when ``full_every_hours`` passed since the
last one, or when the copy of the order table is gone. In between, orders are read with
``field=date_modified_field, condition=6 (>=), date1=<latest date_modified seen> - overlap_minutes`` (the
site's own clock, so no time zone or clock skew is involved), merged into a copy of the order table kept
as Parquet under ``state_url`` (so the complete order count and profile of each changed customer are known
without re-reading all orders), and the customers of those orders are handed on. The export is read on every
pass (it is one file); when its SHA-256 changed since the last pass, all its rows are handed on and the
pipeline's diff-hash finds the few that really changed. Without ``state_url`` every pass is full.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from zoho_store_sync.config import DecoNetworkOptions
from zoho_store_sync.customers import empty_customers
from zoho_store_sync.errors import DecoNetworkExportError  # noqa: F401 - re-exported
from zoho_store_sync.sources import SourceExtract
from zoho_store_sync.sources.deconetwork.export import (  # noqa: F401 - re-exported: the export was read here
    EXPORT_COLUMNS,
    NO_DATA_ROWS,
    _path,
    _read_fast,
    _read_strict,
    export_rows,
    parse_export,
    read_export,
)
from zoho_store_sync.sources.deconetwork.hook import GREATER_OR_EQUAL, DecoNetworkHook
from zoho_store_sync.sources.deconetwork.merge import (  # noqa: F401 - re-exported: the merge was done here
    CANCELLED_STATUS_NAMES,
    ORDER_COLUMNS,
    SITE_TS,
    _keys,
    _max_modified,
    _parse_site_ts,
    merge_customers,
    order_rows,
)

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
DEFAULT_PARALLELISM = 8  # order pages in flight at once (3P clients run up to 10 requests at once: store-apis A.6)
ALL_ORDERS_SINCE = "2000-01-01T00:00:00"  # a full pass: Date Modified >= this (a condition is mandatory)


# ---- the order copy between incremental passes ---------------------------------------------------------


def _read_copy(url: str | None) -> pd.DataFrame | None:
    if not url:
        return None
    path = _path(url)
    if not path.exists():
        return None
    with path.open("rb") as handle:
        frame = pd.read_parquet(handle)
    if list(frame.columns) != list(ORDER_COLUMNS):
        return None  # written by another version: rebuild with a full pass
    return frame


def _write_copy(state_url: str, orders: pd.DataFrame, now: datetime, keep: str | None) -> str:
    """A new file per pass: the cursor names the one it covers, so a failed run never leaves a bad copy."""
    folder = _path(state_url)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{state_url.rstrip('/')}/orders-{now.strftime('%Y%m%dT%H%M%S%f')}.parquet"
    with _path(url).open("wb") as handle:
        orders.to_parquet(handle, index=False)
    keep_names = {url.rsplit("/", 1)[-1], (keep or "").rsplit("/", 1)[-1]}
    for child in folder.iterdir():
        if re.fullmatch(r"orders-\d{8}T\d{12}\.parquet", child.name) and child.name not in keep_names:
            child.unlink()  # copies of older passes (or of a run whose cursor was never saved)
    return url


# ---- the extraction ------------------------------------------------------------------------------------


def _full_reason(
    cursor: dict[str, Any] | None, inputs: dict[str, Any], now: datetime, full_every_hours: float, state_url: str | None
) -> str | None:
    if not cursor:
        return "no cursor: first run, reset or forced"
    if cursor.get("version") != CURSOR_VERSION:
        return "cursor of another version"
    if cursor.get("inputs") != inputs:
        return "inputs changed"
    last_full = cursor.get("last_full_at")
    try:
        elapsed = now - datetime.fromisoformat(last_full) if last_full else None
    except ValueError:
        elapsed = None
    if elapsed is None or elapsed >= timedelta(hours=full_every_hours):
        return f"last full pass over {full_every_hours:g} h ago"
    if inputs["orders"] and not state_url:
        return "no state_url to keep the order copy"
    return None


def extract(
    hook: DecoNetworkHook | None,
    options: DecoNetworkOptions,
    cursor: dict[str, Any] | None,
    *,
    full_every_hours: float = 24.0,
    now: datetime | None = None,
    state_url: str | None = None,
    parallelism: int = DEFAULT_PARALLELISM,
) -> SourceExtract:
    """The tenant's customers: all of them on a full pass, those changed since ``cursor`` otherwise.

    :param state_url: an ObjectStoragePath folder, private to the tenant, where the copy of the order table
        is kept between passes (``<staging root>/<tenant>/deconetwork``); without it every pass is full.
    :param parallelism: order pages read at once (``DecoNetworkHook.find_orders``); 1: one at a time.
    """
    use_orders = options.use_order_api
    if use_orders and hook is None:
        raise ValueError("DecoNetwork options say use_order_api but no hook was given")
    if not use_orders and not options.customers_export_url:
        raise ValueError("DecoNetwork tenant reads nothing: set use_order_api or customers_export_url")
    now = now or datetime.now(UTC)
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    inputs = {
        "orders": use_orders,
        "export": options.customers_export_url,
        "date_modified_field": options.date_modified_field,
    }
    reason = _full_reason(cursor, inputs, now, full_every_hours, state_url)
    previous: pd.DataFrame | None = None
    if reason is None and use_orders:
        previous = _read_copy((cursor or {}).get("orders_copy"))
        if previous is None:
            reason = "order copy missing"
    full = reason is not None
    calls_before = hook.calls if hook is not None else 0

    export, checksum = read_export(options.customers_export_url) if options.customers_export_url else (None, None)
    # A header without rows is a well-formed file, but no store loses every customer at once: far more likely
    # an export made while the list was loading, or a filter left on. Its customers are unknown, not gone.
    incomplete = NO_DATA_ROWS if export is not None and export.empty else None
    orders: pd.DataFrame | None = None
    fetched = order_rows([])
    # A full pass that could not detect deletions does not count as one: the next run is full again.
    new_cursor: dict[str, Any] = {
        "version": CURSOR_VERSION,
        "inputs": inputs,
        "export_sha256": checksum,
        "last_full_at": now.isoformat() if full and not incomplete else (cursor or {}).get("last_full_at"),
    }
    if use_orders:
        assert hook is not None
        since = ALL_ORDERS_SINCE
        high_water = None if full else (cursor or {}).get("orders_modified_max")
        if high_water and (mark := _parse_site_ts(high_water)) is not None:
            since = max(
                mark - timedelta(minutes=options.overlap_minutes), datetime.fromisoformat(ALL_ORDERS_SINCE)
            ).strftime(SITE_TS)
        pages = hook.find_orders(
            [(options.date_modified_field, GREATER_OR_EQUAL, since, None, None)], parallelism=parallelism
        )
        fetched = order_rows(order for page in pages for order in page)
        if full or previous is None:
            orders = fetched
        else:
            orders = pd.concat([previous[~previous["order_id"].isin(fetched["order_id"])], fetched], ignore_index=True)
        orders = orders.drop_duplicates("order_id", keep="last").sort_values("order_id", kind="mergesort")
        orders = orders.reset_index(drop=True)
        new_cursor["orders_modified_max"] = _max_modified(orders) or (cursor or {}).get("orders_modified_max")
        new_cursor["orders_copy"] = (
            _write_copy(state_url, orders, now, (cursor or {}).get("orders_copy")) if state_url else None
        )

    customers = merge_customers(export, orders, hook.site_url if hook is not None else None)
    if not full:
        changed = _changed_keys(
            export, orders, previous, fetched, export_changed=checksum != (cursor or {}).get("export_sha256")
        )
        customers = customers[customers["customer_key"].isin(changed)].reset_index(drop=True)
    calls = (hook.calls - calls_before) if hook is not None else 0
    log.info(
        "deconetwork %s pass%s: %d orders read in %d calls, export %s, %d customers handed on",
        "full" if full else "incremental",
        f" ({reason})" if reason else "",
        len(fetched),
        calls,
        f"{len(export)} rows" if export is not None else "not used",
        len(customers),
    )
    if incomplete:
        log.warning(
            "customer export %s: %s; its customers are unknown, not deleted: no deletion is detected",
            options.customers_export_url,
            incomplete,
        )
    return SourceExtract(
        customers=customers if len(customers) else empty_customers(),
        full=full,
        cursor=new_cursor,
        # Absence from this list deletes (or flags) in Zoho: only a read that is provably the whole store gives it.
        all_customer_keys=customers["customer_key"].astype(str).tolist() if full and not incomplete else None,
        calls=calls,
        incomplete_reason=incomplete,
        customer_list_empty=export is not None and not len(export),
    )


def extract_tenant(
    tenant: TenantConfig, cursor: dict[str, Any] | None, *, state_url: str, full_every_hours: float
) -> SourceExtract:
    """The registry's entry point (``zoho_store_sync.sources.registry``): the tenant's site through its Connection
    (only when it reads the order API) and its ``deconetwork`` options. ``state_url`` keeps the copy of the order
    table between runs (the order API cannot search by customer)."""
    options = tenant.deconetwork
    hook = DecoNetworkHook(tenant.store_conn_id) if options.use_order_api else None
    return extract(
        hook,
        options,
        cursor,
        full_every_hours=full_every_hours,
        state_url=state_url,
        parallelism=tenant.store_parallelism,
    )


def _changed_keys(
    export: pd.DataFrame | None,
    orders: pd.DataFrame | None,
    previous: pd.DataFrame | None,
    fetched: pd.DataFrame,
    *,
    export_changed: bool,
) -> set[str]:
    """Customers whose data may have changed: of every order read (its customer now and before), and every
    export row when the export file changed."""
    changed: set[str] = set()
    if orders is not None and len(fetched):
        both = pd.concat(
            [fetched, previous[previous["order_id"].isin(fetched["order_id"])]] if previous is not None else [fetched],
            ignore_index=True,
        )
        # Resolve with the whole order table so an id-less export row adopts the same id as in the merge.
        export_keys, keys = _keys(export, pd.concat([orders, both], ignore_index=True))
        changed.update(keys.iloc[len(orders) :].dropna().astype(str))
    if export is not None and export_changed:
        export_keys, _ = _keys(export, orders if orders is not None else order_rows([]))
        assert export_keys is not None  # an export gives every row a key
        changed.update(export_keys.dropna().astype(str))
    return changed


__all__ = [
    "extract",
    "extract_tenant",
    "EXPORT_COLUMNS",
    "read_export",
    "parse_export",
    "export_rows",
    "order_rows",
    "merge_customers",
    "DecoNetworkExportError",
    "CANCELLED_STATUS_NAMES",
    "NO_DATA_ROWS",
]
