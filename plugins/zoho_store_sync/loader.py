"""The load: apply a plan to Zoho (convert, update by id, upsert, delete) and write each confirmed outcome.

The state is written per batch, only after Zoho answered. A crash between Zoho applying a batch and the
state write makes the next run send that batch again; upsert matched on email (and a repeated convert
answering ``ID_ALREADY_CONVERTED``) makes that harmless.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pandas as pd

from zoho_store_sync.hooks.zoho_crm import RecordOutcome, ZohoCrmHook, ZohoError
from zoho_store_sync.settings import ZOHO_MAX_RECORDS_PER_WRITE
from zoho_store_sync.state import StateStore

log = logging.getLogger(__name__)


@dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0
    converted: int = 0
    deleted_in_source: int = 0
    vanished_in_zoho: int = 0
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


def _vanished(outcome: RecordOutcome) -> bool:
    """Zoho no longer knows the id: the record was deleted (or merged) inside Zoho."""
    return (not outcome.ok and outcome.code in ("INVALID_DATA", "RESOURCE_NOT_FOUND")
            and (outcome.details.get("api_name") == "id" or "id given seems to be invalid" in outcome.message))


def _state_row(record: Any, outcome: RecordOutcome, *, success_status: str = "synced") -> dict[str, Any]:
    previous_id = None if pd.isna(record.zoho_id) else record.zoho_id
    if _vanished(outcome):
        status = "deleted_in_zoho"
    else:
        status = success_status if outcome.ok else "failed"
    return {
        "customer_key": record.customer_key,
        "email": record.email,
        "module": record.module,
        "zoho_id": outcome.zoho_id or previous_id,
        "payload_hash": int(record.payload_hash),
        "status": status,
        "error_code": None if outcome.ok else outcome.code,
        "error_message": None if outcome.ok else outcome.describe()[:2000],
        "retryable": None if outcome.ok or status == "deleted_in_zoho" else outcome.retryable,
        "attempts": 0 if outcome.ok else int(record.attempts) + 1,
    }


class _Runner:
    """Runs Zoho calls concurrently (at most ``concurrency`` in flight) and records outcomes per batch."""

    def __init__(self, store: StateStore, concurrency: int, result: LoadResult) -> None:
        self.store = store
        self.concurrency = max(1, concurrency)
        self.result = result
        self.systemic: ZohoError | None = None

    def run(self, label: str, work: Iterable[pd.DataFrame], call: Callable[[pd.DataFrame], list[RecordOutcome]],
            on_done: Callable[[pd.DataFrame, list[RecordOutcome]], None]) -> None:
        todo = list(work)
        total, done, started = len(todo), 0, time.monotonic()
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="zoho") as pool:
            pending: dict[Future, pd.DataFrame] = {}
            queue = iter(todo)
            while True:
                while self.systemic is None and len(pending) < self.concurrency:
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
                        self.systemic = self.systemic or exc  # stop new calls; keep what was confirmed
                        continue
                    on_done(batch, outcomes)
                    done += 1
                    if done == total or done % 20 == 0:
                        _log_progress(label, done, total, started)

    def save(self, batch: pd.DataFrame, outcomes: list[RecordOutcome], *, success_status: str = "synced") -> None:
        self.store.save_outcomes([_state_row(r, o, success_status=success_status)
                                  for r, o in zip(batch.itertuples(index=False), outcomes)])
        for record, outcome in zip(batch.itertuples(index=False), outcomes):
            self.result.sent += 1
            if outcome.ok:
                continue
            if _vanished(outcome):
                self.result.vanished_in_zoho += 1
                continue
            self.result.failed += 1
            self.result.failed_retryable += int(outcome.retryable)
            self.result.failure_codes[outcome.code] = self.result.failure_codes.get(outcome.code, 0) + 1
            self.result.errors.append({
                "customer_key": record.customer_key, "email": record.email, "module": record.module,
                "code": outcome.code, "message": outcome.describe()[:2000], "retryable": outcome.retryable,
            })


def _log_progress(label: str, done: int, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    left = elapsed / done * (total - done) if done else 0.0
    log.info("%s: %d/%d calls (%.0f%%), about %.0f s left", label, done, total, 100.0 * done / max(total, 1), left)


def apply_plan(
    hook: ZohoCrmHook,
    store: StateStore,
    changes: pd.DataFrame,
    *,
    concurrency: int,
    trigger: list[str] | None = None,
    write_paths: dict[str, str] | None = None,
) -> LoadResult:
    """Send a plan: conversions first, then updates by id, upserts, and source deletions.

    Record-level rejections are recorded and the load goes on. A systemic failure (auth, scope, Zoho
    down after retries) stops new calls, keeps what Zoho confirmed, and is raised.
    """
    result = LoadResult()
    runner = _Runner(store, concurrency, result)
    to_upsert = [changes.loc[changes["action"].isin(["new", "changed", "retry"])]]

    converts = changes.loc[changes["action"] == "convert"]
    if len(converts):
        converted: list[pd.DataFrame] = []

        def convert(row: pd.DataFrame) -> list[RecordOutcome]:
            return [hook.convert_lead(str(row["zoho_id"].iloc[0]))]

        def after_convert(row: pd.DataFrame, outcomes: list[RecordOutcome]) -> None:
            outcome = outcomes[0]
            if outcome.ok or outcome.code == "ID_ALREADY_CONVERTED":  # a crashed run may have converted it
                result.converted += int(outcome.ok)
                converted.append(row.assign(zoho_id=outcome.zoho_id or None))
            else:
                # the Lead keeps its state (and a failed status) until the convert works
                runner.save(row.assign(module="Leads"), outcomes)

        runner.run("convert", [converts.iloc[[i]] for i in range(len(converts))], convert, after_convert)
        to_upsert.extend(converted)

    by_id = changes.loc[changes["action"].isin(["email_changed", "flag_deleted"])]
    if len(by_id) and runner.systemic is None:
        def update(batch: pd.DataFrame) -> list[RecordOutcome]:
            records = [{**json.loads(p), "id": str(i)} for p, i in zip(batch["payload"], batch["zoho_id"])]
            return hook.update_records(str(batch["module"].iloc[0]), records, trigger=trigger)

        def after_update(batch: pd.DataFrame, outcomes: list[RecordOutcome]) -> None:
            flagged = batch["action"].eq("flag_deleted").all()
            runner.save(batch, outcomes, success_status="deleted_in_source" if flagged else "synced")
            if flagged:
                result.deleted_in_source += sum(o.ok for o in outcomes)
            else:
                result.updated += sum(o.ok for o in outcomes)

        work = batches(by_id.loc[by_id["action"] == "email_changed"]) + batches(by_id.loc[by_id["action"] == "flag_deleted"])
        runner.run("update by id", work, update, after_update)

    upserts = pd.concat(to_upsert, ignore_index=True) if to_upsert else changes.iloc[0:0]
    bulk_modules = [m for m, path in (write_paths or {}).items() if path == "bulk"]
    bulk = upserts.loc[upserts["module"].isin(bulk_modules)]
    upserts = upserts.loc[~upserts["module"].isin(bulk_modules)]
    if len(bulk) and runner.systemic is None:
        # Bulk Write: asynchronous jobs of up to 25,000 records, cheaper in credits for large loads.
        def bulk_write(batch: pd.DataFrame) -> list[RecordOutcome]:
            records = [json.loads(p) for p in batch["payload"]]
            return hook.bulk_upsert(str(batch["module"].iloc[0]), records, find_by="Email")

        def after_bulk(batch: pd.DataFrame, outcomes: list[RecordOutcome]) -> None:
            runner.save(batch, outcomes)
            result.inserted += sum(1 for o in outcomes if o.ok and o.action == "insert")
            result.updated += sum(1 for o in outcomes if o.ok and o.action != "insert")

        runner.run("bulk write", batches(bulk, size=25_000), bulk_write, after_bulk)
    if len(upserts) and runner.systemic is None:
        def upsert(batch: pd.DataFrame) -> list[RecordOutcome]:
            records = [json.loads(p) for p in batch["payload"]]
            return hook.upsert(str(batch["module"].iloc[0]), records, duplicate_check_fields=("Email",), trigger=trigger)

        def after_upsert(batch: pd.DataFrame, outcomes: list[RecordOutcome]) -> None:
            runner.save(batch, outcomes)
            result.inserted += sum(1 for o in outcomes if o.ok and o.action == "insert")
            result.updated += sum(1 for o in outcomes if o.ok and o.action != "insert")

        runner.run("upsert", batches(upserts), upsert, after_upsert)

    deletes = changes.loc[changes["action"] == "delete"]
    if len(deletes) and runner.systemic is None:
        def delete(batch: pd.DataFrame) -> list[RecordOutcome]:
            return hook.delete_records(str(batch["module"].iloc[0]), [str(i) for i in batch["zoho_id"]])

        def after_delete(batch: pd.DataFrame, outcomes: list[RecordOutcome]) -> None:
            # "record not deleted" for an id Zoho no longer has: it is gone, which is what we wanted
            outcomes = [RecordOutcome(ok=True, code="SUCCESS", zoho_id=o.zoho_id)
                        if o.code == "INVALID_DATA" and "not deleted" in o.message else o for o in outcomes]
            runner.save(batch, outcomes, success_status="deleted_in_source")
            result.deleted_in_source += sum(o.ok for o in outcomes)

        runner.run("delete", batches(deletes), delete, after_delete)

    if runner.systemic is not None:
        raise runner.systemic
    return result
