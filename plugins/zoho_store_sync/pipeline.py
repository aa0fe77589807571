"""The tenant sync as plain functions, one per DAG task: extract → plan → load → report.

Each function reads the tenant's config at run time, works on files in the staging area, and returns
a small JSON-able dict for XCom. Nothing here touches Airflow's metadata database.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from zoho_store_sync import staging
from zoho_store_sync.config import TenantConfig, get_tenant
from zoho_store_sync.customers import prepare
from zoho_store_sync.diff import plan_changes
from zoho_store_sync.hooks.magento import MagentoHook
from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook
from zoho_store_sync.loader import send_changes
from zoho_store_sync.mapping import load_mapping
from zoho_store_sync.sources.magento import extract_customers
from zoho_store_sync.state import DatabaseTokenCache, RefreshTokenStore, StateStore, engine_from_conn_id

log = logging.getLogger(__name__)
SUMMARY_LOG_PREFIX = "ZOHO_SYNC_SUMMARY "


class SyncThresholdExceeded(RuntimeError):
    """More records failed than the tenant's failure_threshold allows."""


def state_store(tenant: TenantConfig) -> StateStore:
    return StateStore(engine_from_conn_id(tenant.state_conn_id), tenant.tenant_id)


def zoho_hook(tenant: TenantConfig, store: StateStore) -> ZohoCrmHook:
    return ZohoCrmHook(tenant.zoho_conn_id, token_cache=DatabaseTokenCache(store.engine),
                       refresh_token_store=RefreshTokenStore(store.engine),
                       max_concurrency=tenant.zoho_max_concurrency)


def create_schema(tenant_id: str) -> None:
    tenant = get_tenant(tenant_id)
    state_store(tenant).create_schema()


def extract(tenant_id: str, run_id: str) -> dict[str, Any]:
    """Read the tenant's customers from its store into a staging file."""
    tenant = get_tenant(tenant_id)
    started = time.monotonic()
    hook = MagentoHook(tenant.store_conn_id, store_code=tenant.magento.store_code)
    customers = extract_customers(hook, tenant.magento)
    url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/customers.parquet", customers)
    log.info("extracted %d customers in %.1f s with %d store calls", len(customers), time.monotonic() - started, hook.calls)
    return {"customers": url, "extracted": len(customers), "store_calls": hook.calls}


def plan(tenant_id: str, run_id: str, extracted: dict[str, Any]) -> dict[str, Any]:
    """Validate, de-duplicate, classify, map, hash and diff against the state table."""
    tenant = get_tenant(tenant_id)
    mapping = load_mapping(tenant)
    customers = staging.read_frame(extracted["customers"])
    prepared = prepare(customers)
    for row in prepared.invalid.head(20).itertuples(index=False):
        log.warning("not sent: customer %s: %s", row.customer_key, row.reason)
    store = state_store(tenant)
    result = plan_changes(prepared.valid, store.load(), mapping, tenant.modules)
    url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/changes.parquet", result.changes)
    counts = {**result.counts, "invalid": len(prepared.invalid), "duplicates": prepared.duplicates,
              "invalid_reasons": prepared.invalid["reason"].value_counts().to_dict()}
    log.info("plan: %s", json.dumps(counts, sort_keys=True))
    return {"changes": url, "to_send": len(result.changes), **counts}


def load(tenant_id: str, run_id: str, planned: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Upsert the planned changes; a dry run stops here and reports what would be sent."""
    tenant = get_tenant(tenant_id)
    if dry_run:
        log.info("dry run: %d records would be sent, nothing written to Zoho", planned["to_send"])
        return {"dry_run": True, "inserted": 0, "updated": 0, "failed": 0, "api_calls": 0, "write_calls": 0,
                "credits": 0}
    store = state_store(tenant)
    changes = staging.read_frame(planned["changes"])
    hook = zoho_hook(tenant, store)
    trigger = None if tenant.zoho_workflow_triggers else []
    try:
        result = send_changes(hook, store, changes, concurrency=tenant.zoho_max_concurrency, trigger=trigger)
    finally:
        log.info("zoho calls: %s", json.dumps(hook.stats.as_dict(), sort_keys=True))
    store.record_errors(run_id, result.errors)
    for error in result.errors[:20]:
        log.warning("rejected by Zoho: customer %s (%s): %s", error["customer_key"], error["module"], error["message"])
    stats = hook.stats.as_dict()
    return {"dry_run": False, "inserted": result.inserted, "updated": result.updated, "failed": result.failed,
            "failed_retryable": result.failed_retryable, "failure_codes": result.failure_codes, "sent": result.sent,
            "api_calls": stats["api_calls"], "write_calls": stats["write_calls"], "credits": stats["credits"],
            "token_calls": stats["token_calls"], "credits_remaining": stats["credits_remaining"]}


def build_summary(tenant_id: str, run_id: str, extracted: dict[str, Any], planned: dict[str, Any],
                  loaded: dict[str, Any], duration_s: float | None = None) -> dict[str, Any]:
    dry = bool(loaded.get("dry_run"))
    summary = {
        "tenant": tenant_id,
        "run": run_id,
        "dry_run": dry,
        "extracted": extracted["extracted"],
        "invalid": planned["invalid"],
        "duplicates": planned["duplicates"],
        "contacts": planned["contacts"],
        "leads": planned["leads"],
        "inserted": loaded["inserted"],
        "updated": loaded["updated"],
        "unchanged": planned["unchanged"],
        "converted": 0,
        "skipped": planned["skipped_failed"] + planned["skipped_deleted"] + planned["skipped_record_type"],
        "failed": loaded["failed"],
        "api_calls": loaded["api_calls"],
        "write_calls": loaded["write_calls"],
        "credits": loaded["credits"],
    }
    if dry:
        summary["would_send"] = {"new": planned["new"], "changed": planned["changed"], "retry": planned["retry"]}
    if duration_s is not None:
        summary["duration_s"] = round(duration_s, 3)
    return summary


def report(tenant_id: str, run_id: str, extracted: dict[str, Any], planned: dict[str, Any],
           loaded: dict[str, Any], started_at: datetime | None = None) -> dict[str, Any]:
    """Log the run summary (one JSON line), store it in the run history, apply the failure threshold."""
    tenant = get_tenant(tenant_id)
    duration = (datetime.now(started_at.tzinfo) - started_at).total_seconds() if started_at else None
    summary = build_summary(tenant_id, run_id, extracted, planned, loaded, duration)
    log.info("%s%s", SUMMARY_LOG_PREFIX, json.dumps(summary, sort_keys=False, ensure_ascii=False))
    store = state_store(tenant)
    store.record_run(run_id, "dry_run" if summary["dry_run"] else "sync", summary, started_at)
    staging.remove_dir(staging.run_dir(tenant_id, run_id))
    sent = max(loaded.get("sent", 0), 1)
    if loaded["failed"] and loaded["failed"] / sent > tenant.failure_threshold:
        raise SyncThresholdExceeded(
            f"tenant {tenant_id!r}: {loaded['failed']} of {sent} records failed "
            f"(> failure_threshold {tenant.failure_threshold:.0%}); see zoho_sync_errors for Zoho's reasons"
        )
    return summary
