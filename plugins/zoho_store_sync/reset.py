"""Full reset of one tenant: forget its sync state and resend every customer, resumable, with progress.

The reset is an ordinary plan against an empty state for the chosen record types, sent in chunks (one
mapped Airflow task each, so the grid shows progress). Every confirmed record is written to the state
table as it goes: if the reset dies, running it again resumes (the state is not forgotten twice) and
sends only what Zoho has not confirmed. Upserts match on email, so a reset never duplicates a record.
"""

from __future__ import annotations

import json
import logging
import math
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from zoho_store_sync import credits, pipeline, staging
from zoho_store_sync.config import get_tenant
from zoho_store_sync.errors import ResetNotConfirmed  # noqa: F401 - re-exported (dags/zoho_reset.py)
from zoho_store_sync.hooks.zoho_crm import BULK_MAX_RECORDS, choose_write_path, estimate_write_credits
from zoho_store_sync.loader import UPSERT_ACTIONS, apply_plan
from zoho_store_sync.reset_lanes import send_lane
from zoho_store_sync.state.health import record_reset_progress, state_counts
from zoho_store_sync.zoho.bulk import job_groups

if TYPE_CHECKING:
    from zoho_store_sync.state import StateStore

log = logging.getLogger(__name__)
MAX_CHUNKS = 20
# Each chunk ends with a partly idle wave of calls: 200 calls a chunk keep that under ~5% of its time
# (bench reset_100k), while the loader logs progress inside a chunk every 20 calls.
CHUNK_RECORDS = 20_000
# Records of one Bulk Write job, so of one bulk chunk: Zoho's limit per file (tests lower it to open several jobs).
JOB_RECORDS = BULK_MAX_RECORDS


def check_request(tenant_id: str, record_types: list[str], confirm: str) -> tuple[str, ...]:
    """Validate the trigger form; the record types the reset will resend."""
    tenant = get_tenant(tenant_id)
    if (confirm or "").strip() != tenant_id:
        raise ResetNotConfirmed(
            f"reset of {tenant_id!r} not confirmed: type the tenant id {tenant_id!r} in 'confirm'. Nothing was changed."
        )
    chosen = tuple(m for m in ("Contacts", "Leads") if m in (record_types or []))
    if not chosen:
        raise ResetNotConfirmed("choose at least one record type (Contacts, Leads). Nothing was changed.")
    not_synced = [m for m in chosen if m not in tenant.modules]
    if not_synced:
        raise ResetNotConfirmed(f"tenant {tenant_id!r} does not sync {', '.join(not_synced)}. Nothing was changed.")
    return chosen


def wait_for_lock(tenant_id: str, run_id: str, *, minutes: float, poll_seconds: float = 5.0) -> None:
    """Take the tenant's lock for the reset, waiting up to ``minutes`` for a running sync to finish."""
    deadline = time.monotonic() + minutes * 60
    while True:
        try:
            pipeline.acquire_tenant_lock(tenant_id, run_id, "reset")
            return
        except pipeline.TenantBusy as busy:
            if time.monotonic() >= deadline:
                raise pipeline.TenantBusy(
                    f"{busy}; gave up after {minutes:g} min: trigger the reset again later"
                ) from None
            log.info("waiting for the tenant's sync to finish: %s", busy)
            time.sleep(poll_seconds)


def begin(tenant_id: str, run_id: str, modules: tuple[str, ...], dry_run: bool) -> dict[str, Any]:
    """Forget the state of ``modules`` (or resume an unfinished reset); a dry run forgets nothing."""
    if dry_run:
        return {"resumed": False, "dry_run": True, "modules": list(modules)}
    store = pipeline.state_store(get_tenant(tenant_id))
    resumed = store.begin_reset(modules, run_id)
    log.info(
        "reset of %s for %s: %s",
        tenant_id,
        ", ".join(modules),
        "resuming the unfinished reset" if resumed else "state forgotten",
    )
    return {"resumed": resumed, "dry_run": False, "modules": list(modules)}


def split(
    tenant_id: str,
    run_id: str,
    planned: dict[str, Any],
    chunk_records: int = CHUNK_RECORDS,
    job_records: int | None = None,
) -> list[dict[str, Any]]:
    """Cut the plan into chunks (files) for mapped send tasks, and pick upsert or bulk write per module.

    A module on Bulk Write is cut into chunks of one module and at most ``job_records`` (25,000, Zoho's limit per
    job) records: one chunk is one job, paid once. The rest goes in chunks of ``chunk_records``, both modules
    interleaved. Each chunk says how many jobs it will open (``jobs``), which the summary's estimate adds up.
    """
    job_records = max(1, min(job_records or JOB_RECORDS, BULK_MAX_RECORDS))
    changes = staging.read_frame(planned["changes"])
    counts = {str(m): int((changes["module"] == m).sum()) for m in changes["module"].unique()}
    paths = {m: choose_write_path(n) for m, n in counts.items()}
    on_bulk = changes["module"].isin([m for m, path in paths.items() if path == "bulk"]) & changes["action"].isin(
        UPSERT_ACTIONS
    )
    parts: list[tuple[Any, int]] = []
    for module in sorted({str(m) for m in changes.loc[on_bulk, "module"]}):
        rows = changes.loc[on_bulk & (changes["module"] == module)]
        for start in range(0, len(rows), job_records):
            part = rows.iloc[start : start + job_records]
            records = [json.loads(payload) for payload in part["payload"]]
            parts.append((part, len(job_groups(records))))  # the jobs ZohoBulkWrite will open for it
    rest = changes.loc[~on_bulk]
    n_rest = min(MAX_CHUNKS, math.ceil(len(rest) / chunk_records)) if len(rest) else 0
    parts += [(rest.iloc[index::n_rest], 0) for index in range(n_rest)]  # interleaved: both modules
    if not parts:
        parts = [(changes, 0)]
    chunks = []
    for index, (part, jobs) in enumerate(parts):
        url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/chunk-{index:03d}.parquet", part)
        chunks.append(
            {
                "url": url,
                "index": index,
                "of": len(parts),
                "records": len(part),
                "total": len(changes),
                "paths": paths,
                "counts": counts,
                "module": str(part["module"].iloc[0]) if jobs else None,
                "jobs": jobs,
                "already_confirmed": planned.get("unchanged", 0),
            }
        )
    return chunks


def credits_estimate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the reset's writes cost in credits, per module and path, counting Bulk Write jobs as ``split`` cut
    them (one job a chunk, each ``BULK_CREDITS_PER_JOB``)."""
    counts = chunks[0]["counts"] if chunks else {}
    paths = chunks[0]["paths"] if chunks else {}
    jobs = {m: sum(c.get("jobs", 0) for c in chunks if c.get("module") == m) for m in counts}
    per_module = {
        m: {
            "upsert": estimate_write_credits(n, "upsert"),
            "bulk": estimate_write_credits(n, "bulk", jobs=jobs[m] if paths.get(m) == "bulk" else None),
        }
        for m, n in counts.items()
    }
    return {
        "per_module": per_module,
        "bulk_jobs": {m: n for m, n in jobs.items() if n},
        "bulk": sum(per_module[m]["bulk"] for m, path in paths.items() if path == "bulk"),
        "total": sum(per_module[m][paths[m]] for m in per_module),
    }


def check_credits(tenant_id: str, chunks: list[dict[str, Any]]) -> None:
    """Defer the reset (``CreditBudgetExceeded``, not retried) when its estimate exceeds what the org's day has left
    for this tenant; nothing has been sent yet."""
    tenant = get_tenant(tenant_id)
    store = pipeline.state_store(tenant)
    credits.check_budget(tenant, store, int(credits_estimate(chunks)["total"]), what="reset")


def route_chunks(tenant_id: str, chunks: list[dict[str, Any]], lanes: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The chunks per send lane: all of them on the tenant's (pool, slots) lane, none on the others."""
    tenant = get_tenant(tenant_id)
    lane = send_lane(tenant.zoho_pool, tenant.zoho_max_concurrency)
    if lane not in lanes:
        raise ResetNotConfirmed(
            f"tenant {tenant_id!r}: the reset DAG has no send task for its pool {tenant.zoho_pool!r} with "
            f"{tenant.zoho_max_concurrency} slots yet (the tenants Variable changed since the DAG file was parsed): "
            "trigger the reset again in a minute. Nothing was sent."
        )
    return {name: list(chunks) if name == lane else [] for name in lanes}


def send_chunk(
    tenant_id: str, run_id: str, chunk: dict[str, Any], dry_run: bool, fire_workflows: bool = False
) -> dict[str, Any]:
    """Send one chunk; logs done/total, percent and an estimate of the time left.

    The writes carry ``trigger: []`` (no workflow, approval or blueprint fires for the resent records) unless
    ``fire_workflows``; then the tenant's own setting (``zoho_workflow_triggers``) applies, as in its sync.
    """
    if dry_run:
        return {"records": chunk["records"], "inserted": 0, "updated": 0, "failed": 0, "api_calls": 0, "credits": 0}
    tenant = get_tenant(tenant_id)
    store = pipeline.state_store(tenant)
    hook = pipeline.zoho_hook(tenant, store)
    changes = staging.read_frame(chunk["url"])
    started = time.monotonic()
    # the sync page's progress bar knows the total from the first chunk on (done: counted after each chunk)
    record_reset_progress(store.engine, tenant_id, total=_reset_total(chunk))
    unsent = partial(credits.unconfirmed_credits, store, changes, chunk["paths"])
    with credits.metered(tenant, store, hook, run_id, unsent=unsent, what="reset"):
        result = apply_plan(
            hook,
            store,
            changes,
            concurrency=tenant.zoho_max_concurrency,
            trigger=None if fire_workflows and tenant.zoho_workflow_triggers else [],
            write_paths=chunk["paths"],
            run_id=run_id,
            lead_conversion_account=tenant.lead_conversion_account,
        )
    store.record_errors(run_id, result.errors)
    stats = hook.stats.as_dict()
    _log_overall_progress(store, tuple(chunk["paths"]), chunk, time.monotonic() - started)
    return {
        "records": chunk["records"],
        "inserted": result.inserted,
        "updated": result.updated,
        "failed": result.failed,
        "api_calls": stats["api_calls"],
        "write_calls": stats["write_calls"],
        "credits": stats["credits"],
        "by_operation": stats["by_operation"],
    }


def _reset_total(chunk: dict[str, Any]) -> int:
    """The records the whole reset confirms: what it sends, and what an earlier attempt already had confirmed."""
    return max(chunk["total"] + chunk.get("already_confirmed", 0), 1)


def _log_overall_progress(
    store: StateStore, modules: tuple[str, ...], chunk: dict[str, Any], chunk_seconds: float
) -> None:
    """Done/total over the whole reset (chunks may run in parallel, or resume): read from the state table, logged
    and written on the reset's row (the sync page's progress bar)."""
    from zoho_store_sync.state import _aware, now_utc

    done = store.count_confirmed(modules)  # a count, not the state of a million customers loaded per chunk
    total = _reset_total(chunk)
    record_reset_progress(store.engine, store.tenant_id, total=total, done=min(done, total))
    started = store.reset_in_progress()
    elapsed = (now_utc() - _aware(started["started_at"])).total_seconds() if started else None
    rate = done / elapsed if elapsed and done else None
    left = f"about {(total - done) / rate:.0f} s left" if rate else "time left unknown"
    log.info(
        "reset progress: %d/%d records confirmed (%.0f%%), chunk %d/%d took %.1f s, %s",
        min(done, total),
        total,
        100.0 * min(done, total) / total,
        chunk["index"] + 1,
        chunk["of"],
        chunk_seconds,
        left,
    )


def finish(
    tenant_id: str,
    run_id: str,
    extracted: dict[str, Any],
    planned: dict[str, Any],
    chunks: list[dict[str, Any]],
    sent: list[dict[str, Any]],
    dry_run: bool,
    fire_workflows: bool = False,
) -> dict[str, Any]:
    """Mark the reset done and record its summary (path used, its estimate and what it cost)."""
    tenant = get_tenant(tenant_id)
    store = pipeline.state_store(tenant)
    loaded = {
        "dry_run": dry_run,
        "inserted": sum(s["inserted"] for s in sent),
        "updated": sum(s["updated"] for s in sent),
        "failed": sum(s["failed"] for s in sent),
        "api_calls": sum(s["api_calls"] for s in sent),
        "write_calls": sum(s.get("write_calls", 0) for s in sent),
        "credits": sum(s["credits"] for s in sent),
        "sent": sum(s["records"] for s in sent),
    }
    summary = pipeline.build_summary(tenant_id, run_id, extracted, planned, loaded)
    summary["ok"] = True  # a failed chunk fails the run before this step
    if not dry_run:
        summary["state"] = state_counts(store.engine, tenant_id, tenant.modules)
    running = None if dry_run else store.reset_in_progress()
    estimate = credits_estimate(chunks)
    summary["reset"] = {
        "write_path": chunks[0]["paths"] if chunks else {},
        "credits_estimate": estimate["per_module"],
        "bulk_jobs": estimate["bulk_jobs"],
        "bulk_credits_estimate": estimate["bulk"],
        "writes_credits_estimate": estimate["total"],
        "fire_workflows": fire_workflows,
    }
    log.info("%s%s", pipeline.SUMMARY_LOG_PREFIX, json.dumps(summary, ensure_ascii=False))
    store.record_run(
        run_id, "dry_run_reset" if dry_run else "reset", summary, running["started_at"] if running else None
    )
    if not dry_run:
        store.finish_reset()
        store.set_cursor(pipeline.SOURCE_CURSOR, extracted.get("cursor") or {})
    staging.remove_dir(staging.run_dir(tenant_id, run_id))
    return summary
