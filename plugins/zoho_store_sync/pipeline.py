"""The tenant sync as plain functions, one per DAG task: extract → plan → load → report.

(Over 400 lines: one function per DAG task and the tenant lock they all hold, read best side by side; the
data-safety checks are ``safety.py``, the calls and their outcomes ``loader.py``.)

Each function reads the tenant's config at run time, works on files in the staging area, and returns
a small JSON-able dict for XCom. Nothing here touches Airflow's metadata database. Cursors (the store's
incremental high-water marks, the last deleted-in-Zoho check) are saved only by ``report``, once the
run's changes were sent: a failed run is simply done again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd

from zoho_store_sync import credits, field_values, safety, staging
from zoho_store_sync.adopt import adopt_existing
from zoho_store_sync.config import TenantConfig, get_tenant, load_tenants
from zoho_store_sync.customers import prepare, use_system_allocator
from zoho_store_sync.diff import plan_changes
from zoho_store_sync.errors import (  # noqa: F401 - re-exported
    MassDeletionRefused,
    SyncThresholdExceeded,
    TenantBusy,
)
from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook
from zoho_store_sync.loader import apply_plan, choose_write_paths
from zoho_store_sync.mapping import Mapping, MappingError, check_against_org, load_mapping, with_org_lengths
from zoho_store_sync.scope import scope_customers
from zoho_store_sync.sources import SourceExtract
from zoho_store_sync.state import (
    DELETED_IN_ZOHO,
    DatabaseTokenCache,
    RefreshTokenStore,
    StateStore,
    engine_from_conn_id,
)
from zoho_store_sync.state.health import state_counts

log = logging.getLogger(__name__)
use_system_allocator()  # this module runs in task processes only (never at parse time)
SUMMARY_LOG_PREFIX = "ZOHO_SYNC_SUMMARY "
SOURCE_CURSOR = "source"
DELETED_CURSOR = "zoho.deleted"
# Deleted-records entries are read back from a little before the last check: clocks and commit delays.
DELETED_CHECK_OVERLAP = timedelta(minutes=5)


# The tenant lock is a lease: every task of the run that holds it pushes it forward while it works
# (``hold_tenant_lock``), so a crashed run, or one whose release failed, frees the tenant within this time.
LOCK_LEASE = timedelta(minutes=15)
LOCK_HEARTBEAT_S = 60.0
SYNC_LOCK_TTL = LOCK_LEASE


def acquire_tenant_lock(tenant_id: str, run_id: str, holder: str, ttl: timedelta = LOCK_LEASE) -> None:
    """One run per tenant, whatever its kind (sync, dry run, reset): any other run is refused while the
    holder's lease runs."""
    tenant = get_tenant(tenant_id)
    store = state_store(tenant)
    store.check_schema()  # StateSchemaError names the migrate command; tasks never change the schema
    acquired, current = store.acquire_lock(holder, run_id, ttl)
    if not acquired:
        assert current is not None  # the row of the run holding the lock
        raise TenantBusy(
            f"tenant {tenant_id!r} is locked by a {current['holder']} run ({current['run_id']}) "
            f"until {current['expires_at']}"
        )


@contextlib.contextmanager
def hold_tenant_lock(
    tenant_id: str, run_id: str, holder: str, lease: timedelta = LOCK_LEASE, heartbeat_s: float = LOCK_HEARTBEAT_S
) -> Iterator[None]:
    """Run a step of the run that holds the tenant's lock: check it still does, and keep the lease alive
    while the step works. A run whose lease ended (and another run took the tenant) stops with TenantBusy."""
    store = state_store(get_tenant(tenant_id))
    if not store.renew_lock(holder, run_id, lease):
        current = store.lock_holder()
        raise TenantBusy(
            f"tenant {tenant_id!r}: this {holder} run ({run_id}) no longer holds the tenant's lock"
            + (f" (held by a {current['holder']} run, {current['run_id']})" if current else "")
            + "; it stops here without writing anything more"
        )
    stop, lost = threading.Event(), threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                if not store.renew_lock(holder, run_id, lease):
                    lost.set()
                    return
            except Exception:  # noqa: BLE001 - a missed beat is retried; the lease outlives several
                log.warning("could not renew the tenant lock's lease; retrying", exc_info=True)

    thread = threading.Thread(target=beat, name="tenant-lock-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if lost.is_set():
        raise TenantBusy(f"tenant {tenant_id!r}: the {holder} run {run_id} lost the tenant's lock while it worked")


def release_tenant_lock(tenant_id: str, run_id: str, holder: str) -> None:
    """Release the lock and remove the run's staging files (success or failure; see staging retention)."""
    tenant = get_tenant(tenant_id)
    try:
        staging.clean_up_run(tenant_id, run_id)
    finally:
        state_store(tenant).release_lock(holder, run_id)


def state_store(tenant: TenantConfig) -> StateStore:
    return StateStore(engine_from_conn_id(tenant.state_conn_id), tenant.tenant_id)


def zoho_hook(tenant: TenantConfig, store: StateStore) -> ZohoCrmHook:
    return ZohoCrmHook(
        tenant.zoho_conn_id,
        token_cache=DatabaseTokenCache(store.engine),
        refresh_token_store=RefreshTokenStore(store.engine),
        max_concurrency=tenant.zoho_max_concurrency,
        max_retries=tenant.zoho_max_retries,
    )


def check_schema(tenant_id: str) -> None:
    """StateSchemaError unless the state database is at this code's revision (SQLite: migrated here)."""
    state_store(get_tenant(tenant_id)).check_schema()


def extract_source(tenant: TenantConfig, cursor: dict[str, Any] | None) -> SourceExtract:
    """The tenant's store (its plug-in in ``sources.registry``; an unknown one fails there), full pass or
    incremental from ``cursor``. What a store keeps between runs (DecoNetwork: its order table) goes in its own
    folder next to the tenant's staging files."""
    from zoho_store_sync.sources import registry

    source = registry.get(tenant.source)
    return source.extract(
        tenant,
        cursor,
        state_url=f"{staging.staging_root()}/{tenant.tenant_id}/{source.name}",
        full_every_hours=tenant.full_sync_every_hours,
    )


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
    if not result.full and safety.duplicate_winner_may_change(store, result.customers):
        # The other holders of an old or new email are not in an incremental read: read everyone, so the
        # email's winner is chosen again among all of them in this run.
        log.info("an email shared with another customer changed hands: full pass")
        result = extract_source(tenant, None)
    safety.check_complete(tenant, store, result)
    # Sync option and affiliate stores; deletion detection keeps the unscoped keys (out of scope ≠ deleted).
    customers, scoped = scope_customers(result.customers, tenant, load_tenants().tenants)
    log.info("scope %s: %s", tenant.sync_option, scoped)
    run = staging.run_dir(tenant_id, run_id)
    url = staging.write_frame(f"{run}/customers.parquet", customers)
    keys_url = None
    if result.all_customer_keys is not None:
        keys_url = staging.write_frame(
            f"{run}/all_keys.parquet",
            pd.DataFrame({"customer_key": pd.Series(result.all_customer_keys, dtype="string")}),
        )
    log.info(
        "extracted %d customers (%s pass) in %.1f s",
        len(customers),
        safety.pass_kind(result),
        time.monotonic() - started,
    )
    return {
        "customers": url,
        "all_keys": keys_url,
        "extracted": len(result.customers),
        "in_scope": len(customers),
        "scope": scoped,
        "full": result.full,
        "cursor": result.cursor,
        "store_calls": result.calls,
        "incomplete_reason": getattr(result, "incomplete_reason", None),
    }


def _mark_deleted_in_zoho(
    hook: ZohoCrmHook, store: StateStore, state: pd.DataFrame, modules: tuple[str, ...], apply: bool, whole_state: bool
) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """Read Zoho's deleted-records list since the last check and mark those records (in the table unless dry).

    ``state`` is the tenant's whole state (``whole_state``) or the rows of the customers being planned (an
    incremental pass): the table is marked through its own query, so rows not loaded are marked too.
    """
    checked_at = datetime.now(UTC)
    cursor = store.get_cursor(DELETED_CURSOR) or {}
    if whole_state and (state.empty or state["zoho_id"].isna().all()):
        return state, {"checked_at": checked_at.isoformat()}, 0  # nothing synced yet: nothing to look up
    since = datetime.fromisoformat(cursor["checked_at"]) - DELETED_CHECK_OVERLAP if cursor.get("checked_at") else None
    deleted_ids: set[str] = set()
    for module in modules:
        deleted_ids.update(str(item["id"]) for item in hook.deleted_records(module, since=since))
    if not deleted_ids:
        return state, {"checked_at": checked_at.isoformat()}, 0
    marked = store.mark_deleted_in_zoho(deleted_ids, apply=apply)
    if len(marked):
        # the loaded rows get what the table got (status, and a cleared id for a record to send again)
        state = state.copy()
        update = marked.set_index("customer_key")
        at = state["customer_key"].isin(update.index)
        keys = state.loc[at, "customer_key"]
        for column in ("status", "zoho_id", "retryable", "error_code"):
            state.loc[at, column] = update.loc[keys, column].to_numpy()
    return state, {"checked_at": checked_at.isoformat()}, int((marked["status"] == DELETED_IN_ZOHO).sum())


FIELDS_CURSOR = "zoho.fields"
FIELDS_MAX_AGE = timedelta(hours=24)


FIELDS_CACHE_VERSION = 2  # 2: with the layouts' ``required`` and the picklists' display values


def org_fields(hook: ZohoCrmHook, store: StateStore, modules: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """The org's field metadata per module, with ``required`` from its layouts and picklists' display values,
    read at most once a day (kept with the cursors)."""
    cached = store.get_cursor(FIELDS_CURSOR) or {}
    fresh = cached.get("read_at") and datetime.now(UTC) - datetime.fromisoformat(cached["read_at"]) < FIELDS_MAX_AGE
    current = cached.get("version") == FIELDS_CACHE_VERSION and cached.get("layouts_read")
    if fresh and current and all(m in cached.get("modules", {}) for m in modules):
        return {m: cached["modules"][m] for m in modules}
    keep = ("api_name", "data_type", "length", "read_only", "field_read_only", "system_mandatory")
    fields = {
        m: [{k: f.get(k) for k in keep} | field_values.picklist_of(f) for f in hook.get_fields(m)] for m in modules
    }
    layouts_read = field_values.mark_layout_required(hook, fields)
    state = {"read_at": datetime.now(UTC).isoformat(), "modules": fields, "version": FIELDS_CACHE_VERSION}
    store.set_cursor(FIELDS_CURSOR, {**state, "layouts_read": layouts_read})
    return fields


def checked_mapping(tenant: TenantConfig, hook: ZohoCrmHook, store: StateStore, modules: tuple[str, ...]) -> Mapping:
    """The tenant's mapping, checked against the org's real fields before anything is sent."""
    mapping = load_mapping(tenant)
    fields = org_fields(hook, store, modules)
    problems = [p for m in modules for p in check_against_org(mapping, m, fields[m])]
    problems += [p for m in modules for p in field_values.unfilled_required(tenant, mapping, m, fields[m])]
    if problems:
        message = f"tenant {tenant.tenant_id!r}: the mapping does not fit the Zoho org: " + "; ".join(problems)
        log.error("%s", message)
        raise MappingError(message)
    return with_org_lengths(mapping, fields)


def plan(
    tenant_id: str,
    run_id: str,
    extracted: dict[str, Any],
    dry_run: bool = False,
    modules: tuple[str, ...] | None = None,
    forget: bool = False,
    allow_deletions: int = 0,
) -> dict[str, Any]:
    """Validate, de-duplicate, classify, map, hash and diff against the state table.

    ``modules`` narrows the record types (a reset of Leads only); ``forget`` plans as if their state
    were empty (a dry-run reset, which must not delete anything). ``allow_deletions``: this run may delete
    or flag up to that many records above the tenant's mass-deletion limit.
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
    # Every Zoho call of the plan (fields, layouts, deleted list, adoption lookups) goes in the org's credit ledger.
    with credits.metered(tenant, store, hook, run_id, what="plan"):
        modules = modules or tenant.modules
        mapping = checked_mapping(tenant, hook, store, modules)
        # Layout-required fields filled, phones in E.164, picklist values checked: before anything is hashed.
        # A full pass over every module sees all the store's numbers: the phone book then drops the others.
        full_pass = bool(extracted.get("full", True)) and set(modules) >= set(tenant.modules)
        book = field_values.phone_book(tenant.tenant_id, full_pass=full_pass)
        prepared, mapping, fitted = field_values.fit_to_org(
            tenant, prepared, mapping, org_fields(hook, store, modules), modules, phone_book=book
        )
        # An incremental pass plans only the customers it read: their state rows are all it needs (the cost of a
        # run follows the changes, not the store). A full pass also finds the customers gone from the store.
        whole_state = bool(extracted.get("full", True)) or forget
        state = store.load() if whole_state else store.load(customer_keys=prepared.valid["customer_key"].tolist())
        if forget:
            state = state.loc[~state["module"].isin(list(modules))]
        state, deleted_cursor, newly_deleted = _mark_deleted_in_zoho(
            hook, store, state, modules, apply=not dry_run, whole_state=whole_state
        )
        adopted: dict[str, Any] = {}
        if tenant.adopt_existing_records and whole_state:
            # First sync or reset (a full pass: an incremental one loads only its customers' rows): link the org's
            # existing Leads and Contacts by email instead of creating twins.
            state, adopted = adopt_existing(
                hook, store, prepared.valid, state, modules, forget=forget, apply=not dry_run
            )
        result = plan_changes(
            prepared.valid,
            state,
            mapping,
            modules,
            source_deletions=tenant.source_deletions,
            all_customer_keys=all_keys,
            email_hashes=prepared.email_hashes,
        )
        changes = safety.keep_what_other_tenants_sync(store, result.changes)
        read = len(customers)
        invalid_share = len(prepared.invalid) / read if read else 0.0
        changes, refused = safety.guard_deletions(tenant, store, changes, invalid_share, allow_deletions)
        if not dry_run:
            store.record_invalid(
                run_id,
                prepared.invalid,
                None if whole_state and all_keys is not None else customers["customer_key"].astype("string").tolist(),
            )
        if "company_is_fallback" in prepared.valid and len(changes):
            # The loader's conversions: no Account from a fallback Company (tenant.lead_conversion_account)
            flags = prepared.valid.set_index("customer_key")["company_is_fallback"]
            changes = changes.assign(company_is_fallback=changes["customer_key"].map(flags).fillna(False).astype(bool))
        url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/changes.parquet", changes)
        counts = {
            **result.counts,
            "invalid": len(prepared.invalid),
            "duplicates": prepared.duplicates,
            "invalid_reasons": {str(k): int(v) for k, v in prepared.invalid["reason"].value_counts().items()},
            "invalid_share": round(invalid_share, 4),
            "deleted_in_zoho": newly_deleted,
            "kept_in_zoho": int((changes["action"] == "release").sum()),
            **fitted,  # values_left_out, required_filled
            **adopted,
        }
        if refused:
            counts["source_deleted"] = 0
        log.info("plan: %s", json.dumps(counts, sort_keys=True))
        stats = hook.stats.as_dict()
        return {
            "changes": url,
            "to_send": len(changes),
            **counts,
            "deleted_cursor": deleted_cursor,
            "deletions_refused": refused,
            "zoho": {k: stats[k] for k in ("api_calls", "write_calls", "credits")},
        }


def load(tenant_id: str, run_id: str, planned: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    """Apply the plan to Zoho; a dry run stops here and reports what would be sent."""
    tenant = get_tenant(tenant_id)
    if dry_run:
        log.info("dry run: %d records would be sent, nothing written to Zoho", planned["to_send"])
        return {
            "dry_run": True,
            "inserted": 0,
            "updated": 0,
            "converted": 0,
            "deleted_in_source": 0,
            "failed": 0,
            "api_calls": 0,
            "write_calls": 0,
            "credits": 0,
            "sent": 0,
        }
    store = state_store(tenant)
    changes = staging.read_frame(planned["changes"])
    hook = zoho_hook(tenant, store)
    trigger: list[str] | None = None if tenant.zoho_workflow_triggers else []
    # Chosen on the whole plan, so a retry keeps the path (and resumes a Bulk Write job it already paid for).
    write_paths = choose_write_paths(changes)  # Bulk Write per module above the break-even (the reset's rule)
    # A retried task sends only what no earlier attempt of this run got confirmed; the budget is checked on that.
    changes, already_confirmed = credits.unsent_changes(store, run_id, changes)
    estimate = credits.estimate_changes(changes, write_paths)
    credits.check_budget(tenant, store, estimate, hook=hook, what="sync")  # CreditBudgetExceeded: deferred
    unsent = partial(credits.unconfirmed_credits, store, changes, write_paths)
    try:
        with credits.metered(tenant, store, hook, run_id, unsent=unsent, what="sync"):
            result = apply_plan(
                hook,
                store,
                changes,
                concurrency=tenant.zoho_max_concurrency,
                trigger=trigger,
                write_paths=write_paths,
                run_id=run_id,
                lead_conversion_account=tenant.lead_conversion_account,
            )
    finally:
        log.info("zoho calls: %s", json.dumps(hook.stats.as_dict(), sort_keys=True))
    store.record_errors(run_id, result.errors)
    for error in result.errors[:20]:
        log.warning("rejected by Zoho: customer %s (%s): %s", error["customer_key"], error["module"], error["message"])
    stats = hook.stats.as_dict()
    return {
        "dry_run": False,
        "inserted": result.inserted,
        "updated": result.updated,
        "converted": result.converted,
        "deleted_in_source": result.deleted_in_source,
        "vanished_in_zoho": result.vanished_in_zoho,
        "kept_in_zoho": result.kept_in_zoho,
        "failed": result.failed,
        "failed_retryable": result.failed_retryable,
        "failure_codes": result.failure_codes,
        "sent": result.sent,
        "api_calls": stats["api_calls"],
        "write_calls": stats["write_calls"],
        "credits": stats["credits"],
        "token_calls": stats["token_calls"],
        "credits_remaining": stats["credits_remaining"],
        "credits_estimate": estimate,
        "already_confirmed": already_confirmed,
        "by_module": figures_by_module(changes, result.errors),  # the Asset events' per-module figures
    }


def figures_by_module(changes: pd.DataFrame, errors: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per Zoho module: the plan's records sent (releases only let go: nothing is sent), and those Zoho rejected,
    by code. The loader counts inserted and updated for the whole run only."""
    sent = changes.loc[changes["action"] != "release", "module"].astype(str).value_counts() if len(changes) else {}
    figures: dict[str, dict[str, Any]] = {
        str(m): {"sent": int(n), "failed": 0, "failure_codes": {}} for m, n in dict(sent).items()
    }
    for error in errors:
        module = figures.setdefault(str(error["module"]), {"sent": 0, "failed": 0, "failure_codes": {}})
        module["failed"] += 1
        module["failure_codes"][error["code"]] = module["failure_codes"].get(error["code"], 0) + 1
    return figures


def _org_key(tenant_id: str) -> str | None:
    """The tenant's org as the credit ledger names it (from its Zoho Connection, no call); None if unreadable."""
    try:
        return credits.org_key_for(get_tenant(tenant_id))
    except Exception:  # noqa: BLE001 - the summary is written whatever the Connection looks like now
        log.warning("could not name the tenant's Zoho org for the summary", exc_info=True)
        return None


def build_summary(
    tenant_id: str,
    run_id: str,
    extracted: dict[str, Any],
    planned: dict[str, Any],
    loaded: dict[str, Any],
    duration_s: float | None = None,
) -> dict[str, Any]:
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
        "kept_in_zoho": loaded.get("kept_in_zoho", 0),
        "deletions_refused": (planned.get("deletions_refused") or {}).get("count", 0),
        "failed": loaded["failed"],
        "sent": loaded.get("sent", 0),  # records sent to Zoho (each write's records, accepted or not)
        "failure_codes": loaded.get("failure_codes", {}),
        "invalid_reasons": planned.get("invalid_reasons", {}),
        "values_left_out": planned.get("values_left_out", {}),
        "required_filled": planned.get("required_filled", {}),
        "api_calls": plan_calls.get("api_calls", 0) + loaded["api_calls"],
        "write_calls": plan_calls.get("write_calls", 0) + loaded["write_calls"],
        "credits": plan_calls.get("credits", 0) + loaded["credits"],
        **credits.summary_fields(loaded),  # the load's estimate, Zoho's last remaining count, a retry's skips
        "org_key": _org_key(tenant_id),  # the credit ledger's org: the sync page shows its budget
    }
    if dry:
        # A converted Lead's Contact is then upserted (an update of the Contact the convert made or linked).
        summary["would"] = {
            "insert": planned["new"],
            "update": planned["changed"] + planned["retry"] + planned["email_changed"] + planned["convert"],
            "convert": planned["convert"],
            "delete_or_flag": planned.get("source_deleted", 0),
            "skip": summary["skipped"],
            "reject_invalid": planned["invalid"],
        }
    if duration_s is not None:
        summary["duration_s"] = round(duration_s, 3)
    return summary


def report(
    tenant_id: str,
    run_id: str,
    extracted: dict[str, Any],
    planned: dict[str, Any],
    loaded: dict[str, Any],
    started_at: datetime | None = None,
) -> dict[str, Any]:
    """Log the run summary (one JSON line), store it, save the cursors, apply the failure threshold.

    The summary carries ``ok`` (False: the run turns red below) and, unless a dry run, ``state``: the tenant's
    state rows counted by status after the run (one grouped query), which the sync page shows for every tenant
    without counting anything itself."""
    tenant = get_tenant(tenant_id)
    duration = (datetime.now(started_at.tzinfo) - started_at).total_seconds() if started_at else None
    summary = build_summary(tenant_id, run_id, extracted, planned, loaded, duration)
    refused = planned.get("deletions_refused")
    problems = []
    if refused:
        problems.append(refused["message"])
    sent = max(loaded.get("sent", 0), 1)
    if loaded["failed"] and loaded["failed"] / sent > tenant.failure_threshold:
        codes = ", ".join(f"{code} {n}" for code, n in sorted(loaded.get("failure_codes", {}).items()))
        problems.append(
            f"{loaded['failed']} of {sent} records were rejected by Zoho (> failure_threshold "
            f"{tenant.failure_threshold:.0%}; {codes}): see zoho_sync_errors (kind 'rejected')"
        )
    read = extracted.get("in_scope", extracted["extracted"])
    if planned["invalid"] and read and planned["invalid"] / read > tenant.failure_threshold:
        reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(planned.get("invalid_reasons", {}).items()))
        problems.append(
            f"{planned['invalid']} of {read} customers read are invalid and were not sent (> "
            f"failure_threshold {tenant.failure_threshold:.0%}; {reasons}): see zoho_sync_errors "
            "(kind 'invalid')"
        )
    summary["ok"] = not problems
    store = state_store(tenant)
    if not summary["dry_run"]:
        summary["state"] = state_counts(store.engine, tenant_id, tenant.modules)
    log.info("%s%s", SUMMARY_LOG_PREFIX, json.dumps(summary, ensure_ascii=False))
    store.record_run(run_id, "dry_run" if summary["dry_run"] else "sync", summary, started_at)
    if not summary["dry_run"]:
        # Safe only now: every change up to these marks was planned and its outcome recorded. A run whose
        # deletions were refused keeps the old source mark: the next run reads the whole store again.
        if not refused:
            store.set_cursor(SOURCE_CURSOR, extracted.get("cursor") or {})
        store.set_cursor(DELETED_CURSOR, planned.get("deleted_cursor") or {})
    if refused:
        raise MassDeletionRefused(f"tenant {tenant_id!r}: " + " ".join(problems))
    if problems:
        raise SyncThresholdExceeded(f"tenant {tenant_id!r}: " + " ".join(problems))
    return summary
