"""The load: upsert planned changes to Zoho 100 at a time, and write each confirmed outcome to the state table.

The state is written per batch, only after Zoho answered. A crash between Zoho applying a batch and the
state write makes the next run send that batch again; upsert matched on email makes that harmless.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from zoho_store_sync.hooks.zoho_crm import RecordOutcome, ZohoCrmHook, ZohoError
from zoho_store_sync.settings import ZOHO_MAX_RECORDS_PER_WRITE
from zoho_store_sync.state import StateStore

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0
    failed: int = 0
    failed_retryable: int = 0
    sent: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    failure_codes: dict[str, int] = field(default_factory=dict)


def batches(changes: pd.DataFrame, size: int = ZOHO_MAX_RECORDS_PER_WRITE) -> list[pd.DataFrame]:
    """Changes split per module into write calls of at most ``size`` records."""
    out = []
    for module in sorted(changes["module"].unique()):
        rows = changes.loc[changes["module"] == module]
        out.extend(rows.iloc[start:start + size] for start in range(0, len(rows), size))
    return out


def _state_rows(batch: pd.DataFrame, outcomes: list[RecordOutcome]) -> list[dict[str, Any]]:
    rows = []
    for record, outcome in zip(batch.itertuples(index=False), outcomes):
        rows.append({
            "customer_key": record.customer_key,
            "email": record.email,
            "module": record.module,
            "zoho_id": outcome.zoho_id or (None if pd.isna(record.zoho_id) else record.zoho_id),
            "payload_hash": int(record.payload_hash),
            "status": "synced" if outcome.ok else "failed",
            "error_code": None if outcome.ok else outcome.code,
            "error_message": None if outcome.ok else outcome.describe()[:2000],
            "retryable": None if outcome.ok else outcome.retryable,
            "attempts": 0 if outcome.ok else int(record.attempts) + 1,
        })
    return rows


def send_changes(
    hook: ZohoCrmHook,
    store: StateStore,
    changes: pd.DataFrame,
    *,
    concurrency: int,
    trigger: list[str] | None = None,
    progress_every: int = 20,
) -> LoadResult:
    """Upsert every planned change; concurrent calls capped at ``concurrency``; state saved per batch.

    Record-level rejections are recorded and the load goes on. A systemic failure (auth, scope, Zoho
    down after retries) stops new batches, keeps what was confirmed, and is raised.
    """
    result = LoadResult()
    todo = batches(changes)
    total = len(todo)
    done = 0
    systemic: ZohoError | None = None

    def call(batch: pd.DataFrame) -> list[RecordOutcome]:
        records = [json.loads(p) for p in batch["payload"]]
        return hook.upsert(str(batch["module"].iloc[0]), records, duplicate_check_fields=("Email",), trigger=trigger)

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="zoho-upsert") as pool:
        pending: dict[Future, pd.DataFrame] = {}
        queue = iter(todo)
        while True:
            while systemic is None and len(pending) < concurrency:
                batch = next(queue, None)
                if batch is None:
                    break
                pending[pool.submit(call, batch)] = batch
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = pending.pop(future)
                try:
                    outcomes = future.result()
                except ZohoError as exc:
                    systemic = systemic or exc
                    continue
                store.save_outcomes(_state_rows(batch, outcomes))
                _count(result, batch, outcomes)
                done += 1
                if done % progress_every == 0 or done == total:
                    log.info("load progress: %d/%d batches (%.0f%%)", done, total, 100.0 * done / max(total, 1))
    if systemic is not None:
        raise systemic
    return result


def _count(result: LoadResult, batch: pd.DataFrame, outcomes: list[RecordOutcome]) -> None:
    for record, outcome in zip(batch.itertuples(index=False), outcomes):
        result.sent += 1
        if outcome.ok:
            if outcome.action == "insert":
                result.inserted += 1
            else:
                result.updated += 1
            continue
        result.failed += 1
        result.failed_retryable += int(outcome.retryable)
        result.failure_codes[outcome.code] = result.failure_codes.get(outcome.code, 0) + 1
        result.errors.append({
            "customer_key": record.customer_key, "email": record.email, "module": record.module,
            "code": outcome.code, "message": outcome.describe()[:2000], "retryable": outcome.retryable,
        })
