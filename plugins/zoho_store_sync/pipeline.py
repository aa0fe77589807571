"""The tenant sync as plain functions, one per DAG task: extract → plan → load → report.

Each function reads the tenant's config at run time, works on files in the staging area, and returns
a small JSON-able dict for XCom. Nothing here touches Airflow's metadata database. Cursors (the store's
incremental high-water marks, the last deleted-in-Zoho check) are saved only by ``report``, once the
run's changes were sent: a failed run is simply done again.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd

from zoho_store_sync import staging
from zoho_store_sync.config import TenantConfig, get_tenant, load_tenants
from zoho_store_sync.customers import prepare, use_system_allocator
from zoho_store_sync.diff import plan_changes
from zoho_store_sync.errors import SyncThresholdExceeded, TenantBusy  # noqa: F401 - re-exported
from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook
from zoho_store_sync.loader import apply_plan
from zoho_store_sync.mapping import Mapping, MappingError, check_against_org, load_mapping, with_org_lengths
from zoho_store_sync.scope import scope_customers
from zoho_store_sync.sources import SourceExtract
from zoho_store_sync.state import DatabaseTokenCache, RefreshTokenStore, StateStore, engine_from_conn_id

log = logging.getLogger(__name__)
use_system_allocator()  # this module runs in task processes only (never at parse time)
SUMMARY_LOG_PREFIX = "ZOHO_SYNC_SUMMARY "
SOURCE_CURSOR = "source"
DELETED_CURSOR = "zoho.deleted"
# Deleted-records entries are read back from a little before the last check: clocks and commit delays.
DELETED_CHECK_OVERLAP = timedelta(minutes=5)


SYNC_LOCK_TTL = timedelta(hours=3)  # longer than a sync's task timeouts: a crashed run's lease ends by itself


def acquire_tenant_lock(tenant_id: str, run_id: str, holder: str, ttl: timedelta = SYNC_LOCK_TTL) -> None:
    """The scheduled sync and the reset of one tenant exclude each other, in either order."""
    tenant = get_tenant(tenant_id)
    store = state_store(tenant)
    store.create_schema()
    acquired, current = store.acquire_lock(holder, run_id, ttl)
    if not acquired:
        raise TenantBusy(f"tenant {tenant_id!r} is locked by a {current['holder']} run ({current['run_id']}) "
                         f"until {current['expires_at']}")


def release_tenant_lock(tenant_id: str, run_id: str, holder: str) -> None:
    state_store(get_tenant(tenant_id)).release_lock(holder, run_id)


def state_store(tenant: TenantConfig) -> StateStore:
    return StateStore(engine_from_conn_id(tenant.state_conn_id), tenant.tenant_id)


def zoho_hook(tenant: TenantConfig, store: StateStore) -> ZohoCrmHook:
    return ZohoCrmHook(tenant.zoho_conn_id, token_cache=DatabaseTokenCache(store.engine),
                       refresh_token_store=RefreshTokenStore(store.engine),
                       max_concurrency=tenant.zoho_max_concurrency, max_retries=tenant.zoho_max_retries)


def create_schema(tenant_id: str) -> None:
    tenant = get_tenant(tenant_id)
    state_store(tenant).create_schema()


def extract_source(tenant: TenantConfig, cursor: dict[str, Any] | None) -> SourceExtract:
    """The tenant's store, full pass or incremental from ``cursor``."""
    if tenant.source == "magento":
        from zoho_store_sync.hooks.magento import MagentoHook
        from zoho_store_sync.sources import magento

        hook = MagentoHook(tenant.store_conn_id, store_code=tenant.magento.store_code)
        return magento.extract(hook, tenant.magento, cursor, full_every_hours=tenant.full_sync_every_hours)
    from zoho_store_sync.hooks.deconetwork import DecoNetworkHook
    from zoho_store_sync.sources import deconetwork

    hook = DecoNetworkHook(tenant.store_conn_id) if tenant.deconetwork.use_order_api else None
    # The order table is kept between runs (the order API cannot search by customer): next to the staging files.
    return deconetwork.extract(hook, tenant.deconetwork, cursor, full_every_hours=tenant.full_sync_every_hours,
                               state_url=f"{staging.staging_root()}/{tenant.tenant_id}/deconetwork")


def extract(tenant_id: str, run_id: str, *, full: bool = False) -> dict[str, Any]:
    """Read the tenant's customers from its store into a staging file (``full`` forces a full pass)."""
    tenant = get_tenant(tenant_id)
    store = state_store(tenant)
    started = time.monotonic()
    cursor = None if full else store.get_cursor(SOURCE_CURSOR)
    if cursor and store.count_retryable_failures():
        # An incremental pass would not bring back unchanged customers whose send failed transiently:
        # a full pass does, so they are retried on the next run as promised.
        log.info("retryable failures pending: full pass")
        cursor = None
    result = extract_source(tenant, cursor)
    # Sync option and affiliate stores; deletion detection keeps the unscoped keys (out of scope ≠ deleted).
    customers, scoped = scope_customers(result.customers, tenant, load_tenants().tenants)
    log.info("scope %s: %s", tenant.sync_option, scoped)
    run = staging.run_dir(tenant_id, run_id)
    url = staging.write_frame(f"{run}/customers.parquet", customers)
    keys_url = None
    if result.all_customer_keys is not None:
        keys_url = staging.write_frame(f"{run}/all_keys.parquet",
                                       pd.DataFrame({"customer_key": pd.Series(result.all_customer_keys, dtype="string")}))
    log.info("extracted %d customers (%s pass) in %.1f s", len(customers), "full" if result.full else "incremental",
             time.monotonic() - started)
    return {"customers": url, "all_keys": keys_url, "extracted": len(result.customers), "in_scope": len(customers),
            "scope": scoped, "full": result.full, "cursor": result.cursor, "store_calls": result.calls}


def _mark_deleted_in_zoho(hook: ZohoCrmHook, store: StateStore, state: pd.DataFrame, modules: tuple[str, ...],
                          apply: bool, whole_state: bool) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """Read Zoho's deleted-records list since the last check and mark those records (in the table unless dry).

    ``state`` is the tenant's whole state (``whole_state``) or the rows of the customers being planned (an
    incremental pass): the table is marked through its own query, so rows not loaded are marked too.
    """
    checked_at = datetime.now(timezone.utc)
    cursor = store.get_cursor(DELETED_CURSOR) or {}
    if whole_state and (state.empty or state["zoho_id"].isna().all()):
        return state, {"checked_at": checked_at.isoformat()}, 0  # nothing synced yet: nothing to look up
    since = datetime.fromisoformat(cursor["checked_at"]) - DELETED_CHECK_OVERLAP if cursor.get("checked_at") else None
    deleted_ids: set[str] = set()
    for module in modules:
        deleted_ids.update(str(item["id"]) for item in hook.deleted_records(module, since=since))
    if not deleted_ids:
        return state, {"checked_at": checked_at.isoformat()}, 0
    newly = store.mark_deleted_in_zoho(deleted_ids, apply=apply)
    hit = state["zoho_id"].isin(deleted_ids) & (state["status"] != "deleted_in_zoho")
    if hit.any():
        state = state.copy()
        state.loc[hit, "status"] = "deleted_in_zoho"
    return state, {"checked_at": checked_at.isoformat()}, len(newly)


FIELDS_CURSOR = "zoho.fields"
FIELDS_MAX_AGE = timedelta(hours=24)


def org_fields(hook: ZohoCrmHook, store: StateStore, modules: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The org's field metadata per module, read at most once a day (kept with the cursors)."""
    cached = store.get_cursor(FIELDS_CURSOR) or {}
    fresh = cached.get("read_at") and datetime.now(timezone.utc) - datetime.fromisoformat(cached["read_at"]) < FIELDS_MAX_AGE
    if fresh and all(m in cached.get("modules", {}) for m in modules):
        return {m: cached["modules"][m] for m in modules}
    keep = ("api_name", "data_type", "length", "read_only", "field_read_only", "system_mandatory")
    fields = {m: [{k: f.get(k) for k in keep} for f in hook.get_fields(m)] for m in modules}
    store.set_cursor(FIELDS_CURSOR, {"read_at": datetime.now(timezone.utc).isoformat(), "modules": fields})
    return fields


def checked_mapping(tenant: TenantConfig, hook: ZohoCrmHook, store: StateStore, modules: tuple[str, ...]) -> Mapping:
    """The tenant's mapping, checked against the org's real fields before anything is sent."""
    mapping = load_mapping(tenant)
    fields = org_fields(hook, store, modules)
    problems = [p for m in modules for p in check_against_org(mapping, m, fields[m])]
    if problems:
        message = f"tenant {tenant.tenant_id!r}: the mapping does not fit the Zoho org: " + "; ".join(problems)
        log.error("%s", message)
        raise MappingError(message)
    return with_org_lengths(mapping, fields)


def plan(tenant_id: str, run_id: str, extracted: dict[str, Any], dry_run: bool = False,
         modules: tuple[str, ...] | None = None, forget: bool = False) -> dict[str, Any]:
    """Validate, de-duplicate, classify, map, hash and diff against the state table.

    ``modules`` narrows the record types (a reset of Leads only); ``forget`` plans as if their state
    were empty (a dry-run reset, which must not delete anything).
    """
    tenant = get_tenant(tenant_id)
    load_mapping(tenant)  # a broken mapping file fails before any call
    customers = staging.read_frame(extracted["customers"])
    all_keys = staging.read_frame(extracted["all_keys"])["customer_key"].tolist() if extracted.get("all_keys") else None
    prepared = prepare(customers)
    for row in prepared.invalid.head(20).itertuples(index=False):
        log.warning("not sent: customer %s: %s", row.customer_key, row.reason)
    store = state_store(tenant)
    hook = zoho_hook(tenant, store)
    modules = modules or tenant.modules
    mapping = checked_mapping(tenant, hook, store, modules)
    # An incremental pass plans only the customers it read: their state rows are all it needs (the cost of a
    # run follows the changes, not the store). A full pass also finds the customers gone from the store.
    whole_state = bool(extracted.get("full", True)) or forget
    state = store.load() if whole_state else store.load(customer_keys=prepared.valid["customer_key"].tolist())
    if forget:
        state = state.loc[~state["module"].isin(list(modules))]
    state, deleted_cursor, newly_deleted = _mark_deleted_in_zoho(hook, store, state, modules, apply=not dry_run,
                                                                 whole_state=whole_state)
    result = plan_changes(prepared.valid, state, mapping, modules, source_deletions=tenant.source_deletions,
                          all_customer_keys=all_keys, email_hashes=prepared.email_hashes)
    url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/changes.parquet", result.changes)
    counts = {**result.counts, "invalid": len(prepared.invalid), "duplicates": prepared.duplicates,
              "invalid_reasons": prepared.invalid["reason"].value_counts().to_dict(),
              "deleted_in_zoho": newly_deleted}
    log.info("plan: %s", json.dumps(counts, sort_keys=True))
    stats = hook.stats.as_dict()
    return {"changes": url, "to_send": len(result.changes), **counts, "deleted_cursor": deleted_cursor,
            "zoho": {k: stats[k] for k in ("api_calls", "write_calls", "credits")}}


def load(tenant_id: str, run_id: str, planned: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Apply the plan to Zoho; a dry run stops here and reports what would be sent."""
    tenant = get_tenant(tenant_id)
    if dry_run:
        log.info("dry run: %d records would be sent, nothing written to Zoho", planned["to_send"])
        return {"dry_run": True, "inserted": 0, "updated": 0, "converted": 0, "deleted_in_source": 0, "failed": 0,
                "api_calls": 0, "write_calls": 0, "credits": 0, "sent": 0}
    store = state_store(tenant)
    changes = staging.read_frame(planned["changes"])
    hook = zoho_hook(tenant, store)
    trigger = None if tenant.zoho_workflow_triggers else []
    try:
        result = apply_plan(hook, store, changes, concurrency=tenant.zoho_max_concurrency, trigger=trigger)
    finally:
        log.info("zoho calls: %s", json.dumps(hook.stats.as_dict(), sort_keys=True))
    store.record_errors(run_id, result.errors)
    for error in result.errors[:20]:
        log.warning("rejected by Zoho: customer %s (%s): %s", error["customer_key"], error["module"], error["message"])
    stats = hook.stats.as_dict()
    return {"dry_run": False, "inserted": result.inserted, "updated": result.updated, "converted": result.converted,
            "deleted_in_source": result.deleted_in_source, "vanished_in_zoho": result.vanished_in_zoho,
            "failed": result.failed, "failed_retryable": result.failed_retryable,
            "failure_codes": result.failure_codes, "sent": result.sent,
            "api_calls": stats["api_calls"], "write_calls": stats["write_calls"], "credits": stats["credits"],
            "token_calls": stats["token_calls"], "credits_remaining": stats["credits_remaining"]}


def build_summary(tenant_id: str, run_id: str, extracted: dict[str, Any], planned: dict[str, Any],
                  loaded: dict[str, Any], duration_s: float | None = None) -> dict[str, Any]:
    """The run summary: the same dict is logged, stored in zoho_sync_runs and printed by the demo."""
    dry = bool(loaded.get("dry_run"))
    plan_calls = planned.get("zoho", {})
    summary = {
        "tenant": tenant_id,
        "run": run_id,
        "dry_run": dry,
        "full_pass": bool(extracted.get("full", True)),
        "extracted": extracted["extracted"],
        "out_of_scope": extracted["extracted"] - extracted.get("in_scope", extracted["extracted"]),
        "invalid": planned["invalid"],
        "duplicates": planned["duplicates"],
        "contacts": planned["contacts"],
        "leads": planned["leads"],
        "inserted": loaded["inserted"],
        "updated": loaded["updated"],
        "unchanged": planned["unchanged"],
        "converted": loaded.get("converted", 0),
        "skipped": planned["skipped_failed"] + planned["skipped_deleted"] + planned["skipped_record_type"],
        "deleted_in_zoho": planned.get("deleted_in_zoho", 0) + loaded.get("vanished_in_zoho", 0),
        "deleted_in_source": loaded.get("deleted_in_source", 0),
        "failed": loaded["failed"],
        "api_calls": plan_calls.get("api_calls", 0) + loaded["api_calls"],
        "write_calls": plan_calls.get("write_calls", 0) + loaded["write_calls"],
        "credits": plan_calls.get("credits", 0) + loaded["credits"],
    }
    if dry:
        # A converted Lead's Contact is then upserted (an update of the Contact the convert made or linked).
        summary["would"] = {"insert": planned["new"], "update": planned["changed"] + planned["retry"]
                            + planned["email_changed"] + planned["convert"], "convert": planned["convert"],
                            "delete_or_flag": planned.get("source_deleted", 0), "skip": summary["skipped"],
                            "reject_invalid": planned["invalid"]}
    if duration_s is not None:
        summary["duration_s"] = round(duration_s, 3)
    return summary


def report(tenant_id: str, run_id: str, extracted: dict[str, Any], planned: dict[str, Any],
           loaded: dict[str, Any], started_at: datetime | None = None) -> dict[str, Any]:
    """Log the run summary (one JSON line), store it, save the cursors, apply the failure threshold."""
    tenant = get_tenant(tenant_id)
    duration = (datetime.now(started_at.tzinfo) - started_at).total_seconds() if started_at else None
    summary = build_summary(tenant_id, run_id, extracted, planned, loaded, duration)
    log.info("%s%s", SUMMARY_LOG_PREFIX, json.dumps(summary, ensure_ascii=False))
    store = state_store(tenant)
    store.record_run(run_id, "dry_run" if summary["dry_run"] else "sync", summary, started_at)
    if not summary["dry_run"]:
        # Safe only now: every change up to these marks was planned and its outcome recorded.
        store.set_cursor(SOURCE_CURSOR, extracted.get("cursor") or {})
        store.set_cursor(DELETED_CURSOR, planned.get("deleted_cursor") or {})
    staging.remove_dir(staging.run_dir(tenant_id, run_id))
    sent = max(loaded.get("sent", 0), 1)
    if loaded["failed"] and loaded["failed"] / sent > tenant.failure_threshold:
        raise SyncThresholdExceeded(
            f"tenant {tenant_id!r}: {loaded['failed']} of {sent} records failed "
            f"(> failure_threshold {tenant.failure_threshold:.0%}); see zoho_sync_errors for Zoho's reasons"
        )
    return summary
