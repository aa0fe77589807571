"""The load: apply a plan to Zoho (convert, update by id, upsert, delete) and write each confirmed outcome.

Write-ahead: before a call, the state learns what it is about to do (an insert's module and email as
``unconfirmed``, a conversion as ``converting``, a deletion in ``zoho_sync_deletions``). Outcomes are
written only after Zoho answered, together (every 500 rows or quarter of a second, and when the calls end).
A crash anywhere makes the next run send the unconfirmed work again in the same module: upsert matched on
email, a repeated convert answering ``ID_ALREADY_CONVERTED`` and a repeated delete make that harmless, and a
Lead whose insert was never confirmed is converted (not doubled) once the customer buys.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import pandas as pd

from zoho_store_sync.adopt import DUPLICATE_LINKED
from zoho_store_sync.hooks.zoho_crm import (
    BULK_MAX_RECORDS,
    RecordJSON,
    RecordOutcome,
    ZohoCrmHook,
    ZohoError,
    choose_write_path,
    job_key,
)
from zoho_store_sync.settings import ZOHO_MAX_RECORDS_PER_WRITE
from zoho_store_sync.state import DELETED_IN_SOURCE, UNCONFIRMED, BulkJobStore, StateStore, is_missing

log = logging.getLogger(__name__)
# Answered outcomes are written together once this many state rows, or this much time, have piled up.
WRITE_EVERY_ROWS, WRITE_EVERY_S = 500, 0.25


@dataclass
class LoadResult:
    inserted: int = 0
    updated: int = 0
    converted: int = 0
    deleted_in_source: int = 0
    kept_in_zoho: int = 0
    vanished_in_zoho: int = 0
    failed: int = 0
    failed_retryable: int = 0
    linked: int = 0  # refused as duplicates of a record Zoho named: linked to it (``_duplicate_record``)
    sent: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    failure_codes: dict[str, int] = field(default_factory=dict)


class PlanRow(NamedTuple):
    """One row of a plan (diff.PLAN_COLUMNS) as the calls and the outcome bookkeeping read it."""

    customer_key: str
    email: str
    module: str
    action: str
    payload_hash: int
    zoho_id: Any  # None (or NaN) before Zoho gave the record an id
    attempts: int
    payload: str | None  # the record's JSON (None for a delete)


def plan_rows(changes: pd.DataFrame) -> list[PlanRow]:
    """The plan's rows, read a column at a time: no per-batch DataFrame in the dispatch loop, which a
    reset runs a thousand times (pandas slicing and ``itertuples`` were half of that thread's time)."""
    columns = [changes[name].tolist() for name in PlanRow._fields]
    return [PlanRow._make(values) for values in zip(*columns)]


def _payload(row: PlanRow) -> str:
    """The JSON a row sends: every row but a ``delete`` (or a ``release``, which sends nothing) has one."""
    assert row.payload is not None, f"a {row.action!r} row has no payload to send"
    return row.payload


def batches(rows: list[PlanRow], size: int = ZOHO_MAX_RECORDS_PER_WRITE) -> list[list[PlanRow]]:
    """Rows split per module (in module order) into write calls of at most ``size`` records."""
    out: list[list[PlanRow]] = []
    for module in sorted({row.module for row in rows}):
        mine = [row for row in rows if row.module == module]
        out.extend(mine[start : start + size] for start in range(0, len(mine), size))
    return out


UPSERT_ACTIONS = ("new", "changed", "retry")


def choose_write_paths(changes: pd.DataFrame) -> dict[str, str]:
    """Per module, "bulk" when its upserts cost fewer credits by Bulk Write than by batched upsert (the reset's
    rule, ``choose_write_path``): a first sync of a large tenant, or any run with more changes than the break-even."""
    upserts = changes.loc[changes["action"].isin(UPSERT_ACTIONS), "module"].value_counts()
    return {str(module): choose_write_path(int(n)) for module, n in upserts.items()}


def _vanished(outcome: RecordOutcome) -> bool:
    """Zoho no longer knows the id: the record was deleted (or merged) inside Zoho."""
    return (
        not outcome.ok
        and outcome.code in ("INVALID_DATA", "RESOURCE_NOT_FOUND")
        and (outcome.details.get("api_name") == "id" or "id given seems to be invalid" in outcome.message)
    )


def _state_row(record: PlanRow, outcome: RecordOutcome, *, success_status: str = "synced") -> dict[str, Any]:
    previous_id = None if is_missing(record.zoho_id) else record.zoho_id
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


def _write_ahead(record: PlanRow, status: str, module: str) -> dict[str, Any]:
    """The state row written before a call: what is about to happen, with no outcome yet."""
    return {
        "customer_key": record.customer_key,
        "email": record.email,
        "module": module,
        "zoho_id": None if is_missing(record.zoho_id) else record.zoho_id,
        "payload_hash": 0,
        "status": status,
        "error_code": None,
        "error_message": None,
        "retryable": None,
        "attempts": int(record.attempts),
    }


def write_ahead_inserts(store: StateStore, batch: list[PlanRow]) -> None:
    """Before upserts that may insert: each record's module and email, so a crash cannot hide an insert."""
    rows = [_write_ahead(r, UNCONFIRMED, r.module) for r in batch if is_missing(r.zoho_id)]
    if rows:
        store.write_ahead(rows)


class _WriteAheadWindows:
    """Writes ahead of the calls in windows of batches, on its own thread: a batch's call waits only until its
    window is written, so the state learns of every insert before it is sent while the writes overlap with
    the calls already in flight (one write before all the calls would hold them all back)."""

    BATCHES_PER_WINDOW = 20

    def __init__(
        self, batches: list[list[PlanRow]], write: Callable[[list[PlanRow]], None], stop: Callable[[], bool]
    ) -> None:
        self.windows = [
            batches[i : i + self.BATCHES_PER_WINDOW] for i in range(0, len(batches), self.BATCHES_PER_WINDOW)
        ]
        self.written = [threading.Event() for _ in self.windows]
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._write_all, args=(write, stop), name="zoho-write-ahead", daemon=True)
        self.thread.start()

    def _write_all(self, write: Callable[[list[PlanRow]], None], stop: Callable[[], bool]) -> None:
        try:
            for window, done in zip(self.windows, self.written):
                if stop():
                    break
                write([row for batch in window for row in batch])
                done.set()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting call, which then sends nothing
            self.failure = exc
        finally:
            for done in self.written:
                done.set()

    def wait_for(self, batch_index: int) -> None:
        """Return once the window of batch ``batch_index`` is written; raise if writing ahead failed."""
        self.written[batch_index // self.BATCHES_PER_WINDOW].wait()
        if self.failure is not None:
            raise self.failure


class _Runner:
    """Runs Zoho calls concurrently (at most ``concurrency`` in flight) and records the answered outcomes."""

    def __init__(self, store: StateStore, concurrency: int, result: LoadResult) -> None:
        self.store = store
        self.concurrency = max(1, concurrency)
        self.result = result
        self.systemic: ZohoError | None = None
        self.lock = threading.Lock()
        self.unwritten: list[dict[str, Any]] = []  # state rows of answered calls, not written yet
        self.written_at = time.monotonic()

    def run(
        self,
        label: str,
        work: Iterable[list[PlanRow]],
        call: Callable[[list[PlanRow]], list[RecordOutcome]],
        on_done: Callable[[list[PlanRow], list[RecordOutcome]], None],
        *,
        write_ahead: Callable[[list[PlanRow]], None] | None = None,
    ) -> None:
        """Every batch is queued at once: a worker that gets its answer takes the next batch itself, so a
        call never waits for this thread (busy counting and writing outcomes) to hand it out. With
        ``write_ahead``, no batch is sent before its rows were written ahead (``_WriteAheadWindows``)."""
        todo = list(work)
        total, done, started = len(todo), 0, time.monotonic()
        ahead = _WriteAheadWindows(todo, write_ahead, lambda: self.systemic is not None) if write_ahead else None

        def guarded(index: int, batch: list[PlanRow]) -> list[RecordOutcome] | None:
            if ahead is not None:
                ahead.wait_for(index)
            if self.systemic is not None:
                return None  # not sent: a systemic failure stopped the calls
            try:
                return call(batch)
            except ZohoError as exc:
                with self.lock:
                    self.systemic = self.systemic or exc  # before this worker takes its next batch
                raise

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="zoho") as pool:
            pending: dict[Future, list[PlanRow]] = {
                pool.submit(guarded, index, batch): batch for index, batch in enumerate(todo)
            }
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    batch = pending.pop(future)
                    try:
                        outcomes = future.result()
                    except ZohoError:
                        continue  # kept in self.systemic; what Zoho confirmed is still written
                    if outcomes is None:
                        continue
                    on_done(batch, outcomes)
                    done += 1
                    if done == total or done % 20 == 0:
                        _log_progress(label, done, total, started)
                self.write(force=not pending)

    def write(self, *, force: bool = False) -> None:
        """One transaction for the outcomes saved since the last write, once enough are waiting (or ``force``).

        Grouping bounds what a crash can lose to the outcomes of about a quarter of a second of answered
        calls (resent harmlessly next time), and spares a database round trip per call.
        """
        due = len(self.unwritten) >= WRITE_EVERY_ROWS or time.monotonic() - self.written_at >= WRITE_EVERY_S
        if self.unwritten and (force or due):
            self.store.save_outcomes(self.unwritten)
            self.unwritten = []
            self.written_at = time.monotonic()

    def save(self, batch: list[PlanRow], outcomes: list[RecordOutcome], *, success_status: str = "synced") -> None:
        """Count the outcomes now; their state rows wait for the next ``write``."""
        self.unwritten.extend(_state_row(r, o, success_status=success_status) for r, o in zip(batch, outcomes))
        for record, outcome in zip(batch, outcomes):
            self.result.sent += 1
            if outcome.ok:
                continue
            if _vanished(outcome):
                self.result.vanished_in_zoho += 1
                continue
            self.result.failed += 1
            self.result.failed_retryable += int(outcome.retryable)
            self.result.failure_codes[outcome.code] = self.result.failure_codes.get(outcome.code, 0) + 1
            self.result.errors.append(
                {
                    "customer_key": record.customer_key,
                    "email": record.email,
                    "module": record.module,
                    "code": outcome.code,
                    "message": outcome.describe()[:2000],
                    "retryable": outcome.retryable,
                }
            )


def _log_progress(label: str, done: int, total: int, started: float) -> None:
    elapsed = time.monotonic() - started
    left = elapsed / done * (total - done) if done else 0.0
    log.info("%s: %d/%d calls (%.0f%%), about %.0f s left", label, done, total, 100.0 * done / max(total, 1), left)


def _duplicate_record(outcome: RecordOutcome) -> tuple[str, str] | None:
    """(module, id) of the existing record a ``DUPLICATE_DATA`` on Email names (Zoho's duplicate-check preferences
    refuse a new record whose Email a Lead or Contact already has, and name that record)."""
    if outcome.ok or outcome.code != "DUPLICATE_DATA" or outcome.details.get("api_name") != "Email":
        return None
    record = outcome.details.get("duplicate_record")
    module = (record.get("module") or {}).get("api_name") if isinstance(record, dict) else None
    if isinstance(record, dict) and record.get("id") and module in ("Contacts", "Leads"):
        return str(module), str(record["id"])
    return None


def _linked_row(record: PlanRow, module: str, zoho_id: str) -> dict[str, Any]:
    """The state row of a customer linked to the record Zoho named: a pending retry (the next run reads the whole
    store and sends it again, an update of that record or the conversion of that Lead), never a permanent failure."""
    return {
        "customer_key": record.customer_key,
        "email": record.email,
        "module": module,
        "zoho_id": zoho_id,
        "payload_hash": int(record.payload_hash),
        "status": "failed",
        "error_code": DUPLICATE_LINKED,
        "error_message": f"Zoho has this email as {module} {zoho_id} (duplicate-check preferences): linked to it, "
        "written there on the next run",
        "retryable": True,
        "attempts": int(record.attempts),
    }


def apply_plan(
    hook: ZohoCrmHook,
    store: StateStore,
    changes: pd.DataFrame,
    *,
    concurrency: int,
    trigger: list[str] | None = None,
    write_paths: dict[str, str] | None = None,
    run_id: str | None = None,
    lead_conversion_account: str = "real_company",
) -> LoadResult:
    """Send a plan: conversions first, then updates by id, upserts, and source deletions.

    ``lead_conversion_account`` (the tenant's option): whether a conversion may create an Account
    (``conversion.convert_leads``).

    ``write_paths``: "bulk" for the modules sent through Bulk Write (``choose_write_paths``); with ``run_id``, a
    retried task resumes the Bulk Write jobs it already paid for (``zoho_sync_bulk_jobs``).

    Record-level rejections are recorded and the load goes on. A systemic failure (auth, scope, Zoho
    down after retries) stops new calls, keeps what Zoho confirmed, and is raised.
    """
    result = LoadResult()
    runner = _Runner(store, concurrency, result)
    rows = plan_rows(changes)
    upserts = [row for row in rows if row.action in ("new", "changed", "retry")]

    converts = [row for row in rows if row.action == "convert"]
    if converts:
        from zoho_store_sync.conversion import convert_leads  # it builds on this module's runner

        convert_leads(
            hook, store, runner, converts, upserts, changes, trigger=trigger, account_rule=lead_conversion_account
        )

    email_changed = [row for row in rows if row.action == "email_changed"]
    flag_deleted = [row for row in rows if row.action == "flag_deleted"]
    if (email_changed or flag_deleted) and runner.systemic is None:

        def update(batch: list[PlanRow]) -> list[RecordOutcome]:
            records = [{**json.loads(_payload(row)), "id": str(row.zoho_id)} for row in batch]
            return hook.update_records(batch[0].module, records, trigger=trigger)

        def after_update(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
            flagged = all(row.action == "flag_deleted" for row in batch)
            runner.save(batch, outcomes, success_status="deleted_in_source" if flagged else "synced")
            if flagged:
                result.deleted_in_source += sum(o.ok for o in outcomes)
            else:
                result.updated += sum(o.ok for o in outcomes)

        runner.run("update by id", batches(email_changed) + batches(flag_deleted), update, after_update)

    bulk_modules = {m for m, path in (write_paths or {}).items() if path == "bulk"}
    bulk = [row for row in upserts if row.module in bulk_modules]
    upserts = [row for row in upserts if row.module not in bulk_modules]
    if bulk and runner.systemic is None:
        # Bulk Write: asynchronous jobs of up to 25,000 records of one module, cheaper in credits for large loads.
        jobs = BulkJobStore(store.engine, store.tenant_id) if run_id else None

        def bulk_write(batch: list[PlanRow]) -> list[RecordOutcome]:
            records = [json.loads(_payload(row)) for row in batch]
            if jobs is None:
                return hook.bulk_upsert(batch[0].module, records, find_by="Email")
            # Same run, same records: same key, so a retried task finds the job it paid for.
            key = job_key(run_id, batch[0].module, *(f"{r.customer_key}:{r.payload_hash}" for r in batch))
            return hook.bulk_upsert(batch[0].module, records, find_by="Email", key=key, ledger=jobs, run_id=str(run_id))

        def after_bulk(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
            runner.save(batch, outcomes)
            result.inserted += sum(1 for o in outcomes if o.ok and o.action == "insert")
            result.updated += sum(1 for o in outcomes if o.ok and o.action != "insert")

        runner.run(
            "bulk write",
            batches(bulk, size=BULK_MAX_RECORDS),
            bulk_write,
            after_bulk,
            write_ahead=partial(write_ahead_inserts, store),
        )
    if upserts and runner.systemic is None:

        def upsert(batch: list[PlanRow]) -> list[RecordOutcome]:
            records = [RecordJSON(row.payload) for row in batch]  # the plan's JSON, sent as it is
            return hook.upsert(batch[0].module, records, duplicate_check_fields=("Email",), trigger=trigger)

        def after_upsert(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
            named = [_duplicate_record(outcome) for outcome in outcomes]
            if any(named):  # the org's duplicate-check preferences named the record it has: link, never stuck
                linked = [_linked_row(row, *found) for row, found in zip(batch, named) if found]
                runner.unwritten.extend(linked)
                result.sent += len(linked)
                result.linked += len(linked)
                batch = [row for row, found in zip(batch, named) if not found]
                outcomes = [outcome for outcome, found in zip(outcomes, named) if not found]
            runner.save(batch, outcomes)
            result.inserted += sum(1 for o in outcomes if o.ok and o.action == "insert")
            result.updated += sum(1 for o in outcomes if o.ok and o.action != "insert")

        runner.run("upsert", batches(upserts), upsert, after_upsert, write_ahead=partial(write_ahead_inserts, store))

    released = [row for row in rows if row.action == "release"]
    if released:
        # Another tenant of the same org still syncs these people: this tenant lets go, Zoho keeps the record.
        runner.save(
            released, [RecordOutcome(ok=True, code="SUCCESS") for _ in released], success_status=DELETED_IN_SOURCE
        )
        result.sent -= len(released)
        result.kept_in_zoho += len(released)
        runner.write(force=True)

    deletes = [row for row in rows if row.action == "delete"]
    if deletes and runner.systemic is None:

        def delete(batch: list[PlanRow]) -> list[RecordOutcome]:
            store.record_own_deletions((str(row.zoho_id), row.customer_key, row.module) for row in batch)
            return hook.delete_records(batch[0].module, [str(row.zoho_id) for row in batch])

        def after_delete(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
            # "record not deleted" for an id Zoho no longer has: it is gone, which is what we wanted
            outcomes = [
                RecordOutcome(ok=True, code="SUCCESS", zoho_id=o.zoho_id)
                if o.code == "INVALID_DATA" and "not deleted" in o.message
                else o
                for o in outcomes
            ]
            runner.save(batch, outcomes, success_status="deleted_in_source")
            result.deleted_in_source += sum(o.ok for o in outcomes)

        runner.run("delete", batches(deletes), delete, after_delete)

    if runner.systemic is not None:
        raise runner.systemic
    return result
