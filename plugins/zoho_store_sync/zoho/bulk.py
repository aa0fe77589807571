"""Zoho Bulk Write (zoho-crm-api.md §9): CSV → zip → upload → job → poll → result CSV, and its credit maths."""

from __future__ import annotations

import csv
import io
import logging
import math
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
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


# ---- which path costs less --------------------------------------------------------------------------------
def estimate_write_credits(n_records: int, path: str) -> int:
    """Credits to write ``n_records`` by ``path``: "upsert" (100 a call, 1 per 10 records) or "bulk".

    Bulk: the org lookup (zgid), then per job of at most 25,000 records an upload, the 500-credit job,
    ``BULK_POLLS_ESTIMATE`` status polls and the result download.
    """
    if n_records <= 0:
        return 0
    if path == "upsert":
        full, rest = divmod(n_records, ZOHO_MAX_RECORDS_PER_WRITE)
        return full * write_credits(ZOHO_MAX_RECORDS_PER_WRITE) + (write_credits(rest) if rest else 0)
    if path == "bulk":
        jobs = math.ceil(n_records / BULK_MAX_RECORDS)
        per_job = ZOHO_CREDITS["bulk_write_job"] + 2 * ZOHO_CREDITS["default"] + BULK_POLLS_ESTIMATE
        return ZOHO_CREDITS["default"] + jobs * per_job
    raise ValueError(f"unknown write path {path!r}: expected 'upsert' or 'bulk'")


def choose_write_path(n_records: int) -> str:
    """ "bulk" when Bulk Write costs fewer credits than batched upsert (above ~5,000 records), else "upsert"."""
    return (
        "bulk" if estimate_write_credits(n_records, "bulk") < estimate_write_credits(n_records, "upsert") else "upsert"
    )


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
    ) -> list[RecordOutcome]:
        """Upsert through Bulk Write: CSV → zip → upload → job → poll → result CSV; one outcome per record.

        At most 25,000 records per job (larger inputs run several jobs). Costs 500 credits per job plus an
        upload, the polls and a download, so use it only when ``choose_write_path`` says "bulk".
        """
        if not records:
            return []
        if any(find_by not in record for record in records):
            raise ValueError(f"bulk_upsert: every record needs the find_by field {find_by!r}")
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(records), BULK_MAX_RECORDS):
            outcomes += self._upsert_uniform(
                module, list(records[start : start + BULK_MAX_RECORDS]), find_by, poll_interval, timeout
            )
        return outcomes

    def _upsert_uniform(
        self, module: str, records: list[dict[str, Any]], find_by: str, poll_interval: float, timeout: float
    ) -> list[RecordOutcome]:
        # In a CSV an empty cell either clears the field or (ignore_empty) leaves it: upsert semantics need
        # one of the two for the whole file. Records that both omit keys and clear others go in groups.
        columns = _columns(records)
        uniform = all(len(record) == len(columns) for record in records)
        clears = any(_blank_cell(value) for record in records for value in record.values())
        if uniform or not clears:
            return self._job(module, records, columns, find_by, not uniform, poll_interval, timeout)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, record in enumerate(records):
            groups.setdefault(tuple(record), []).append(i)
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        for positions in groups.values():
            part = [records[i] for i in positions]
            for i, outcome in zip(
                positions, self._job(module, part, _columns(part), find_by, False, poll_interval, timeout)
            ):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _job(
        self,
        module: str,
        records: list[dict[str, Any]],
        columns: list[str],
        find_by: str,
        ignore_empty: bool,
        poll_interval: float,
        timeout: float,
    ) -> list[RecordOutcome]:
        csv_name = f"{module}.csv"
        payload, mappings = bulk_csv_zip(records, columns, csv_name)
        if len(payload) > BULK_MAX_ZIP_BYTES and len(records) > 1:  # Zoho takes at most 25 MB per zip
            half = len(records) // 2
            return self._job(
                module, records[:half], columns, find_by, ignore_empty, poll_interval, timeout
            ) + self._job(module, records[half:], columns, find_by, ignore_empty, poll_interval, timeout)
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
                    "find_by": find_by,
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
        log.info("zoho bulk write job %s: %d %s records", job_id, len(records), module)
        job = self.wait(job_id, poll_interval, timeout)
        download_url = (job.get("result") or {}).get("download_url")
        if str(job.get("status", "")).upper() != "COMPLETED" or not download_url:
            log.warning("zoho bulk write job %s ended %s without a result", job_id, job.get("status"))
            return [
                RecordOutcome(False, "BULK_JOB_FAILED", f"bulk write job {job_id} ended {job.get('status')}")
                for _ in records
            ]
        return parse_bulk_result(self.download(str(download_url)), records, find_by)

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

    def wait(self, job_id: str, poll_interval: float, timeout: float) -> dict[str, Any]:
        """Poll the job until COMPLETED or FAILED; each poll costs a credit, so the interval grows."""
        transport = self._client.transport
        deadline = transport.clock() + timeout
        interval = max(poll_interval, 0.0)
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
            interval = min(interval * 1.5, max(poll_interval, 0.0) * 8)

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
