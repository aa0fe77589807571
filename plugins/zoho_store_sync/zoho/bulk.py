"""Zoho Bulk Write (zoho-crm-api.md §9): CSV → zip → upload → job → poll → result CSV, and its credit maths."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from zoho_store_sync.errors import ZohoRequestError, ZohoUnavailable
from zoho_store_sync.settings import ZOHO_API_VERSION, ZOHO_CREDITS, ZOHO_MAX_RECORDS_PER_WRITE
from zoho_store_sync.zoho.records import RecordOutcome, json_body, raise_for_request_error, write_credits, zoho_time

if TYPE_CHECKING:
    from zoho_store_sync.zoho.client import ZohoClient

log = logging.getLogger(__name__)

BULK_MAX_RECORDS = 25_000  # per file (Leads, Contacts, custom modules)
BULK_MAX_ZIP_BYTES = 25 * 1024 * 1024
BULK_POLLS_ESTIMATE = 10  # status polls budgeted per job when choosing a path (1 credit each)
# A job's life in the state (zoho_sync_bulk_jobs.status): see state.bulk_jobs.
UPLOADING, CREATED, COMPLETED, READ, ABANDONED = "uploading", "created", "completed", "read", "abandoned"


@dataclass(frozen=True)
class _JobOptions:
    module: str
    find_by: str
    poll_interval: float
    timeout: float
    ledger: BulkJobLedger | None
    run_id: str


# ---- which path costs less --------------------------------------------------------------------------------
# Credits of one job besides its 500: the org lookup (zgid; each send task has its own client), the upload, the
# result download, and ``BULK_POLLS_ESTIMATE`` status polls budgeted (1 credit each).
BULK_CREDITS_PER_JOB = ZOHO_CREDITS["bulk_write_job"] + 3 * ZOHO_CREDITS["default"] + BULK_POLLS_ESTIMATE


def bulk_jobs_for(n_records: int, job_records: int = BULK_MAX_RECORDS) -> int:
    """Jobs a module's ``n_records`` take: one per ``job_records`` (at most 25,000, Zoho's limit per file)."""
    return math.ceil(n_records / max(1, min(job_records, BULK_MAX_RECORDS))) if n_records > 0 else 0


def estimate_write_credits(n_records: int, path: str, *, jobs: int | None = None) -> int:
    """Credits to write ``n_records`` of one module by ``path``: "upsert" (100 a call, 1 per 10 records) or "bulk".

    Bulk: ``jobs`` jobs (default: one per 25,000 records), each ``BULK_CREDITS_PER_JOB``.
    """
    if n_records <= 0:
        return 0
    if path == "upsert":
        full, rest = divmod(n_records, ZOHO_MAX_RECORDS_PER_WRITE)
        return full * write_credits(ZOHO_MAX_RECORDS_PER_WRITE) + (write_credits(rest) if rest else 0)
    if path == "bulk":
        return (bulk_jobs_for(n_records) if jobs is None else jobs) * BULK_CREDITS_PER_JOB
    raise ValueError(f"unknown write path {path!r}: expected 'upsert' or 'bulk'")


def choose_write_path(n_records: int) -> str:
    """ "bulk" when Bulk Write costs fewer credits than batched upsert (above ~5,000 records), else "upsert"."""
    return (
        "bulk" if estimate_write_credits(n_records, "bulk") < estimate_write_credits(n_records, "upsert") else "upsert"
    )


def job_groups(records: Sequence[dict[str, Any]]) -> list[list[int]]:
    """The positions of ``records`` each job carries (at most 25,000 a job is the caller's split).

    In a CSV an empty cell either clears the field or (ignore_empty) leaves it: upsert semantics need one of the two
    for the whole file. Records that both omit keys and clear others go in groups of the same keys, a job each.
    """
    columns = _columns(records)
    uniform = all(len(record) == len(columns) for record in records)
    clears = any(_blank_cell(value) for record in records for value in record.values())
    if uniform or not clears:
        return [list(range(len(records)))] if records else []
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(tuple(record), []).append(i)
    return list(groups.values())


def job_key(*parts: Any) -> str:
    """A job's key in the state (``zoho_sync_bulk_jobs``): a hash of what it sends, stable across task retries."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()


class BulkJobLedger(Protocol):
    """Where the jobs a tenant paid for are kept (``state.BulkJobStore``)."""

    def get(self, job_key: str) -> dict[str, Any] | None: ...

    def begin(self, job_key: str, run_id: str, module: str, records: int) -> None: ...

    def created(self, job_key: str, job_id: str) -> None: ...

    def set_status(self, job_key: str, status: str) -> None: ...


# ---- the job ----------------------------------------------------------------------------------------------
class ZohoBulkWrite:
    """Bulk Write upserts through one client: its calls, org, hosts, clock and sleep."""

    def __init__(self, client: ZohoClient) -> None:
        self._client = client

    def upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any]],
        *,
        find_by: str = "Email",
        poll_interval: float = 2.0,
        timeout: float = 3600.0,
        key: str | None = None,
        ledger: BulkJobLedger | None = None,
        run_id: str = "",
    ) -> list[RecordOutcome]:
        """Upsert through Bulk Write: CSV → zip → upload → job → poll → result CSV; one outcome per record.

        At most 25,000 records per job (larger inputs run several jobs). Costs 500 credits per job plus an
        upload, the polls and a download, so use it only when ``choose_write_path`` says "bulk".

        With ``key`` and ``ledger``, each job is recorded before it is bought and its id once Zoho created it:
        called again with the same key (a retried task), a job already paid for is resumed (polled, its result
        downloaded) instead of bought again; one that failed at Zoho, or whose result expired, is bought anew.
        """
        if not records:
            return []
        if any(find_by not in record for record in records):
            raise ValueError(f"bulk_upsert: every record needs the find_by field {find_by!r}")
        options = _JobOptions(module, find_by, poll_interval, timeout, ledger if key else None, run_id)
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(records), BULK_MAX_RECORDS):
            part = list(records[start : start + BULK_MAX_RECORDS])
            part_key = key if start == 0 or key is None else job_key(key, start)
            outcomes += self._upsert_uniform(part, options, part_key)
        return outcomes

    def _upsert_uniform(
        self, records: list[dict[str, Any]], options: _JobOptions, key: str | None
    ) -> list[RecordOutcome]:
        groups = job_groups(records)
        if len(groups) == 1:
            columns = _columns(records)
            uniform = all(len(record) == len(columns) for record in records)
            return self._job(records, columns, not uniform, options, key)
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        for index, positions in enumerate(groups):
            part = [records[i] for i in positions]
            part_key = None if key is None else job_key(key, "group", index)
            for i, outcome in zip(positions, self._job(part, _columns(part), False, options, part_key)):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _job(
        self,
        records: list[dict[str, Any]],
        columns: list[str],
        ignore_empty: bool,
        options: _JobOptions,
        key: str | None,
    ) -> list[RecordOutcome]:
        module = options.module
        csv_name = f"{module}.csv"
        payload, mappings = bulk_csv_zip(records, columns, csv_name)
        if len(payload) > BULK_MAX_ZIP_BYTES and len(records) > 1:  # Zoho takes at most 25 MB per zip
            half = len(records) // 2
            first, second = (None, None) if key is None else (job_key(key, "a"), job_key(key, "b"))
            return self._job(records[:half], columns, ignore_empty, options, first) + self._job(
                records[half:], columns, ignore_empty, options, second
            )
        ledger = options.ledger if key is not None else None
        if ledger is not None and key is not None:
            known = ledger.get(key)
            if known and known.get("job_id") and known.get("status") in (CREATED, COMPLETED, READ):
                resumed = self._resume(str(known["job_id"]), records, options, key)
                if resumed is not None:
                    return resumed
            elif known and known.get("status") == UPLOADING:
                log.warning(
                    "zoho bulk write: an earlier attempt stopped before Zoho answered its job creation for these "
                    "%d %s records; creating the job again",
                    len(records),
                    module,
                )
            ledger.begin(key, options.run_id, module, len(records))
        file_id = self.upload(payload, f"{module}.zip")
        job_body = {
            "operation": "upsert",
            "ignore_empty": ignore_empty,
            "character_encoding": "UTF-8",
            "resource": [
                {
                    "type": "data",
                    "module": {"api_name": module},
                    "file_id": file_id,
                    "file_names": [csv_name],
                    "find_by": options.find_by,
                    "field_mappings": mappings,
                }
            ],
        }
        response = self._client.request(
            "POST",
            f"/crm/bulk/{ZOHO_API_VERSION}/write",
            operation="bulk_write",
            write=True,
            credits=ZOHO_CREDITS["bulk_write_job"],
            json=job_body,
            module=module,
        )
        body = json_body(response) or {}
        if response.status_code not in (200, 201) or not (body.get("details") or {}).get("id"):
            raise ZohoRequestError(
                f"bulk write job: HTTP {response.status_code} {body.get('code', '')} "
                f"{body.get('message', '')}".rstrip(),
                code=body.get("code"),
                status=response.status_code,
            )
        job_id = str(body["details"]["id"])
        if ledger is not None and key is not None:
            ledger.created(key, job_id)  # paid for: a retried task resumes this job
        log.info("zoho bulk write job %s: %d %s records", job_id, len(records), module)
        job = self.wait(job_id, options.poll_interval, options.timeout)
        download_url = (job.get("result") or {}).get("download_url")
        if str(job.get("status", "")).upper() != "COMPLETED" or not download_url:
            log.warning("zoho bulk write job %s ended %s without a result", job_id, job.get("status"))
            if ledger is not None and key is not None:
                ledger.set_status(key, ABANDONED)
            return [
                RecordOutcome(False, "BULK_JOB_FAILED", f"bulk write job {job_id} ended {job.get('status')}")
                for _ in records
            ]
        return self._read_result(str(download_url), records, options, key)

    def _read_result(
        self, download_url: str, records: list[dict[str, Any]], options: _JobOptions, key: str | None
    ) -> list[RecordOutcome]:
        payload = self.download(download_url)
        if options.ledger is not None and key is not None:
            options.ledger.set_status(key, COMPLETED)
        outcomes = parse_bulk_result(payload, records, options.find_by)
        if options.ledger is not None and key is not None:
            options.ledger.set_status(key, READ)
        return outcomes

    def _resume(
        self, job_id: str, records: list[dict[str, Any]], options: _JobOptions, key: str
    ) -> list[RecordOutcome] | None:
        """The outcomes of a job an earlier attempt paid for; None when it must be bought again."""
        assert options.ledger is not None
        log.info(
            "zoho bulk write job %s: resuming the job an earlier attempt paid for (%d records)", job_id, len(records)
        )
        try:
            job = self.wait(job_id, 0.0, options.timeout, first_wait=False)
        except ZohoRequestError as exc:
            if exc.status != 404:
                raise
            job = {"status": "UNKNOWN TO ZOHO"}
        download_url = (job.get("result") or {}).get("download_url")
        if str(job.get("status", "")).upper() == "COMPLETED" and download_url:
            try:
                return self._read_result(str(download_url), records, options, key)
            except ZohoRequestError as exc:
                if exc.status not in (404, 410):
                    raise
                job = {"status": "COMPLETED, result expired"}
        log.warning("zoho bulk write job %s: %s; creating a new job for its records", job_id, job.get("status"))
        options.ledger.set_status(key, ABANDONED)
        return None

    def upload(self, payload: bytes, file_name: str) -> str:
        """The zip to Zoho's file-upload host; its file id."""
        zgid = self._client.records.zgid()
        response = self._client.request(
            "POST",
            f"/crm/{ZOHO_API_VERSION}/upload",
            operation="upload",
            write=True,
            base_url=self._file_upload_base(),
            headers={"feature": "bulk-write", "X-CRM-ORG": zgid},
            files={"file": (file_name, payload, "application/zip")},
        )
        body = json_body(response) or {}
        file_id = (body.get("details") or {}).get("file_id") if isinstance(body, dict) else None
        if response.status_code != 200 or not file_id:
            code = body.get("code") or body.get("ERROR_CODE") if isinstance(body, dict) else None
            message = (body.get("message") or body.get("x-error") or "") if isinstance(body, dict) else ""
            raise ZohoRequestError(
                f"bulk upload: HTTP {response.status_code} {code or ''} {message}".rstrip(),
                code=str(code) if code else None,
                status=response.status_code,
            )
        return str(file_id)

    def _file_upload_base(self) -> str:
        if self._client.settings.environment == "custom":
            return self._client.oauth.access_token().api_domain
        return self._client.settings.file_upload_url

    def wait(self, job_id: str, poll_interval: float, timeout: float, *, first_wait: bool = True) -> dict[str, Any]:
        """Poll the job until COMPLETED or FAILED; each poll costs a credit, so the interval grows."""
        transport = self._client.transport
        deadline = transport.clock() + timeout
        interval = max(poll_interval, 0.0)
        if not first_wait:  # a resumed job may be long done: ask at once, then poll at the usual pace
            interval, poll_interval = 0.0, 2.0
        while True:
            transport.sleep(interval)  # a job is never done the moment it is created
            response = self._client.request(
                "GET", f"/crm/bulk/{ZOHO_API_VERSION}/write/{job_id}", operation="bulk_status"
            )
            raise_for_request_error(response, "bulk status")
            job = response.json() or {}
            status = str(job.get("status", "")).upper()
            if status in ("COMPLETED", "FAILED"):
                return job
            if transport.clock() + interval > deadline:
                raise ZohoUnavailable(
                    f"bulk write job {job_id} not finished after {timeout:.0f} s (status {status}); "
                    "its records are not confirmed"
                )
            interval = min(max(interval * 1.5, poll_interval), max(poll_interval, 0.0) * 8)

    def download(self, download_url: str) -> bytes:
        """The result zip, from the data centre's download host (a relative URL included)."""
        settings = self._client.settings
        parts = urlsplit(download_url)
        if parts.scheme and parts.netloc:
            base, path = f"{parts.scheme}://{parts.netloc}", download_url[len(f"{parts.scheme}://{parts.netloc}") :]
        elif settings.environment == "custom":
            base, path = self._client.oauth.access_token().api_domain, download_url
        else:  # a relative download_url (v7 samples) is served by the download host
            base, path = settings.download_url, download_url
        response = self._client.request(
            "GET", path if path.startswith("/") else f"/{path}", operation="bulk_download", base_url=base
        )
        if response.status_code != 200:
            raise_for_request_error(response, "bulk download")
            raise ZohoRequestError(f"bulk download: HTTP {response.status_code}", status=response.status_code)
        return response.content


# ---- the CSVs ---------------------------------------------------------------------------------------------
def _columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """Field API names in first-seen order: the CSV header."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


def _blank_cell(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _csv_cell(value: Any) -> str:
    """A JSON value as Zoho's bulk CSV expects it: booleans true/false, lookups by id, multi-select with ';'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        text = repr(value)
        return format(value, "f") if "e" in text else text
    if isinstance(value, datetime):
        return zoho_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return str(value.get("id") or value.get("name") or "")
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def bulk_csv_zip(records: Sequence[dict[str, Any]], columns: Sequence[str], csv_name: str) -> tuple[bytes, list[dict]]:
    """The zipped CSV of ``records`` (header = API names) and the job's field_mappings (by index)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(name)) for name in columns])
    mappings: list[dict[str, Any]] = []
    for index, name in enumerate(columns):
        mapping: dict[str, Any] = {"api_name": name, "index": index}
        lookup = next((r[name] for r in records if isinstance(r.get(name), dict)), None)
        if lookup is not None:  # lookups are matched by the related record's id (or its name)
            mapping["find_by"] = "id" if lookup.get("id") else "name"
        mappings.append(mapping)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(csv_name, text.getvalue().encode("utf-8"))
    return buffer.getvalue(), mappings


def parse_bulk_errors(text: str) -> list[tuple[str, list[str]]]:
    """Zoho's ERRORS cell ``CODE-field1,field2:CODE2-field3`` → [(CODE, [field1, field2]), (CODE2, [field3])]."""
    out: list[tuple[str, list[str]]] = []
    for part in (text or "").split(":"):
        part = part.strip()
        if not part:
            continue
        code, _, names = part.partition("-")
        out.append((code.strip(), [n.strip() for n in names.split(",") if n.strip()]))
    return out


def _bulk_outcome(row: dict[str, str]) -> RecordOutcome:
    status = (row.get("STATUS") or "").strip().lower()
    record_id = (row.get("RECORD_ID") or "").strip() or None
    if status in ("added", "updated"):
        return RecordOutcome(
            True,
            "SUCCESS",
            "record added" if status == "added" else "record updated",
            action="insert" if status == "added" else "update",
            zoho_id=record_id,
        )
    errors = parse_bulk_errors(row.get("ERRORS") or "")
    details: dict[str, Any] = {
        "bulk_status": status or None,
        "errors": [{"code": code, "api_names": names} for code, names in errors],
    }
    if record_id:
        details["id"] = record_id
    if errors:
        code = errors[0][0]
        if errors[0][1]:
            details["api_name"] = errors[0][1][0]
        message = "; ".join(f"{c} ({', '.join(names)})" if names else c for c, names in errors)
    elif status == "unprocessed":
        code, message = "UNPROCESSED", "the bulk job did not process this row"
    else:
        code, message = "SKIPPED", f"bulk write row {status or 'without status'}"
    return RecordOutcome(False, code, message, details=details)


def parse_bulk_result(payload: bytes, records: Sequence[dict[str, Any]], find_by: str = "Email") -> list[RecordOutcome]:
    """Outcomes from a Bulk Write result zip, positionally (row i is record i), checked on ``find_by``."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ZohoRequestError("bulk result: the zip holds no CSV")
            text = archive.read(names[0]).decode("utf-8-sig")
    except zipfile.BadZipFile:
        raise ZohoRequestError("bulk result: the download is not a zip") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    outcomes = [_bulk_outcome(row) for row in rows]
    if find_by in (reader.fieldnames or []):

        def key(value: Any) -> str:
            return _csv_cell(value).strip().lower()

        if any(key(row.get(find_by)) != key(record.get(find_by)) for row, record in zip(rows, records)):
            # Not in input order after all: match rows to records by the find_by value instead.
            by_value: dict[str, list[RecordOutcome]] = {}
            for row, outcome in zip(rows, outcomes):
                by_value.setdefault(key(row.get(find_by)), []).append(outcome)
            outcomes = [(by_value.get(key(r.get(find_by))) or [_missing_row()]).pop(0) for r in records]
    outcomes = outcomes[: len(records)]
    return outcomes + [_missing_row() for _ in range(len(records) - len(outcomes))]


def _missing_row() -> RecordOutcome:
    return RecordOutcome(False, "UNPROCESSED", "the bulk result has no row for this record")
