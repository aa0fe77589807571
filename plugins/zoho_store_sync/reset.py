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
from typing import TYPE_CHECKING, Any

from zoho_store_sync import pipeline, staging
from zoho_store_sync.config import get_tenant
from zoho_store_sync.errors import ResetNotConfirmed  # noqa: F401 - re-exported (dags/zoho_reset.py)
from zoho_store_sync.hooks.zoho_crm import choose_write_path, estimate_write_credits
from zoho_store_sync.loader import apply_plan

if TYPE_CHECKING:
    from zoho_store_sync.state import StateStore

log = logging.getLogger(__name__)
MAX_CHUNKS = 20
# Each chunk ends with a partly idle wave of calls: 200 calls a chunk keep that under ~5% of its time
# (bench reset_100k), while the loader logs progress inside a chunk every 20 calls.
CHUNK_RECORDS = 20_000


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
    tenant_id: str, run_id: str, planned: dict[str, Any], chunk_records: int = CHUNK_RECORDS
) -> list[dict[str, Any]]:
    """Cut the plan into chunks (files) for mapped send tasks, and pick upsert or bulk write per module."""
    changes = staging.read_frame(planned["changes"])
    counts = {str(m): int((changes["module"] == m).sum()) for m in changes["module"].unique()}
    paths = {m: choose_write_path(n) for m, n in counts.items()}
    n_chunks = min(MAX_CHUNKS, max(1, math.ceil(len(changes) / chunk_records)))
    chunks = []
    for index in range(n_chunks):
        part = changes.iloc[index::n_chunks]  # interleaved: every chunk gets both modules
        url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/chunk-{index:03d}.parquet", part)
        chunks.append(
            {
                "url": url,
                "index": index,
                "of": n_chunks,
                "records": len(part),
                "total": len(changes),
                "paths": paths,
                "counts": counts,
                "already_confirmed": planned.get("unchanged", 0),
            }
        )
    return chunks


def send_chunk(tenant_id: str, run_id: str, chunk: dict[str, Any], dry_run: bool) -> dict[str, Any]:
    """Send one chunk; logs done/total, percent and an estimate of the time left."""
    if dry_run:
        return {"records": chunk["records"], "inserted": 0, "updated": 0, "failed": 0, "api_calls": 0, "credits": 0}
    tenant = get_tenant(tenant_id)
    store = pipeline.state_store(tenant)
    hook = pipeline.zoho_hook(tenant, store)
    changes = staging.read_frame(chunk["url"])
    started = time.monotonic()
    result = apply_plan(
        hook,
        store,
        changes,
        concurrency=tenant.zoho_max_concurrency,
        trigger=None if tenant.zoho_workflow_triggers else [],
        write_paths=chunk["paths"],
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


def _log_overall_progress(
    store: StateStore, modules: tuple[str, ...], chunk: dict[str, Any], chunk_seconds: float
) -> None:
    """Done/total over the whole reset (chunks may run in parallel, or resume): read from the state table."""
    from zoho_store_sync.state import _aware, now_utc

    done = store.count_confirmed(modules)  # a count, not the state of a million customers loaded per chunk
    total = max(chunk["total"] + chunk.get("already_confirmed", 0), 1)
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
) -> dict[str, Any]:
    """Mark the reset done and record its summary (path used and what it cost)."""
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
    paths = chunks[0]["paths"] if chunks else {}
    counts = chunks[0]["counts"] if chunks else {}
    summary["reset"] = {
        "write_path": paths,
        "credits_estimate": {
            m: {"upsert": estimate_write_credits(n, "upsert"), "bulk": estimate_write_credits(n, "bulk")}
            for m, n in counts.items()
        },
    }
    log.info("%s%s", pipeline.SUMMARY_LOG_PREFIX, json.dumps(summary, ensure_ascii=False))
    store.record_run(run_id, "dry_run_reset" if dry_run else "reset", summary, None)
    if not dry_run:
        store.finish_reset()
        store.set_cursor(pipeline.SOURCE_CURSOR, extracted.get("cursor") or {})
    staging.remove_dir(staging.run_dir(tenant_id, run_id))
    return summary
