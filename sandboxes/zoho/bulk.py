"""Bulk Write (doc §9): upload a zipped CSV, create the job, poll its status, download the result zip."""

from __future__ import annotations

import csv
import email.policy
import io
import threading
import time
import zipfile
from datetime import datetime
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from sandboxes._router import Response, SandboxError
from sandboxes.zoho.faults import _SCOPE_MISMATCH, ZohoError, answer
from sandboxes.zoho.routes import MODULES, ApiRoute, any_scope, api, module_name
from sandboxes.zoho.store import _iso

if TYPE_CHECKING:
    from sandboxes._router import Request
    from sandboxes.zoho.server import ZohoSandbox

BULK_MAX_ROWS = 25_000
BULK_MAX_COLUMNS = 200
BULK_MAX_BYTES = 25 * 1024 * 1024
_BULK_READ = any_scope("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.CREATE", "ZohoCRM.bulk.READ")


@api.route("POST", "/crm/v8/upload", operation="upload", scope=any_scope("ZohoFiles.files.ALL"))
def upload(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    if req.headers.get("feature") != "bulk-write" or req.headers.get("X-CRM-ORG") != sb._zgid:
        return answer(400, {"ERROR_CODE": 400, "ERROR_MESSAGE": "Bad Request",
                            "x-error": "check if headers [feature, X-CRM-ORG] are present and valid"})
    if len(req.body) > BULK_MAX_BYTES:
        raise ZohoError(413, "FILE_TOO_LARGE", "File size too large to process")
    parts = _parse_multipart(req.headers.get("Content-Type") or "", req.body)
    if "file" not in parts:
        raise ZohoError(400, "MISSING_REQUIRED_KEY", "required key file is not found in request body.",
                        param_name="file")
    filename, payload = parts["file"]
    if not zipfile.is_zipfile(io.BytesIO(payload)):
        raise ZohoError(400, "INVALID_FILE_FORMAT", "invalid file format. only zip format is supported")
    file_id, now = sb._new_id(), time.time()
    with sb._lock:
        sb._files[file_id] = {"name": filename, "bytes": payload, "created": now}
    return answer(200, {"status": "success", "code": "FILE_UPLOAD_SUCCESS", "message": "file uploaded.",
                        "details": {"file_id": file_id, "created_time": _iso(now)}})


@api.route("POST", "/crm/bulk/v8/write", operation="bulk_write",
           scope=any_scope("ZohoCRM.bulk.ALL", "ZohoCRM.bulk.CREATE"), cost=500)
def bulk_write(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    try:
        body = req.json()
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "body", expected_data_type="jsonobject") from None
    job = _job_from(sb, body if isinstance(body, dict) else {})
    info["module"] = job["module"]
    info["records"] = len(job["rows"])
    # bulk write also needs the module's write scope: the rule of the operation the job performs
    write = ApiRoute(job["write_op"], job["module"], sb.routes.find(operation=job["write_op"])[0])
    if not write.scope_ok(sb._request_scopes(req)):
        raise SandboxError(401, _SCOPE_MISMATCH)
    with sb._lock:
        sb._jobs[job["id"]] = job
    threading.Thread(target=_run_job, args=(sb, job["id"]), name=f"bulk-{job['id']}", daemon=True).start()
    return answer(201, {"status": "success", "code": "SUCCESS", "message": "success",
                        "details": {"id": job["id"], "created_by": {"id": sb._user["id"], "name": sb._user["name"]}}})


@api.route("GET", "/crm/bulk/v8/write/{job_id}", operation="bulk_status", scope=_BULK_READ)
def bulk_status(sb: ZohoSandbox, req: Request, info: dict, job_id: str) -> Response:
    with sb._lock:
        job = sb._jobs.get(job_id)
        if job is None:
            raise ZohoError(404, "RESOURCE_NOT_FOUND", "The requested resource doesn't exist.", resource_path_index=0)
        info["module"] = job["module"]
        return answer(200, _job_body(sb, job))


@api.route("GET", "/crm/bulk/v8/write/{job_id}/result", operation="bulk_download", scope=_BULK_READ)
def bulk_download(sb: ZohoSandbox, req: Request, info: dict, job_id: str) -> Response:
    with sb._lock:
        job = sb._jobs.get(job_id)
        payload = job["result"] if job and not job.get("expired") else None
    if payload is None:
        raise ZohoError(404, "RESOURCE_NOT_FOUND", "The requested resource doesn't exist.")
    return Response(200, payload, {"Content-Disposition": f'attachment; filename="{job_id}.zip"'},
                    content_type="application/octet-stream")  # bulk_write.json: octet-stream


# Zoho serves results from download-accl.zoho.<tld> on this path ("Download Bulk Write Result", SDK samples:
# https://download-accl.zoho.com/v2/crm/{org}/bulk-write/{job}/{job}.zip); the sandbox answers it on its own host.
@api.route("GET", "/v2/crm/{org}/bulk-write/{job_id}/{file_name}", operation="bulk_download", scope=_BULK_READ)
def bulk_download_real_path(sb: ZohoSandbox, req: Request, info: dict, org: str, job_id: str,
                            file_name: str) -> Response:
    if org != sb._zgid or file_name != f"{job_id}.zip":
        raise ZohoError(404, "RESOURCE_NOT_FOUND", "The requested resource doesn't exist.")
    return bulk_download(sb, req, info, job_id)


def expire_bulk_results(sb: ZohoSandbox) -> None:
    """Every finished job's result download answers 404 from now on, as Zoho's do once their link expired."""
    with sb._lock:
        for job in sb._jobs.values():
            job["expired"] = True


def bulk_jobs_created(sb: ZohoSandbox) -> list[dict]:
    """The Bulk Write jobs created so far: id, module, records, status (for tests counting paid jobs)."""
    with sb._lock:
        return [{"id": j["id"], "module": j["module"], "records": len(j["rows"]), "status": j["status"]}
                for j in sb._jobs.values()]


def _job_from(sb: ZohoSandbox, body: dict) -> dict:
    """Validate a create-job body (doc §9 step 3) and read its CSV; the job runs later."""
    operation = body.get("operation")
    if operation not in ("insert", "update", "upsert"):
        raise ZohoError(400, "MISSING_REQUIRED_KEY", "required key operation is not found in request body.",
                        api_name="operation")
    resources = body.get("resource")
    if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], dict):
        raise ZohoError(400, "MISSING_REQUIRED_KEY", "required key resource is not found in request body.",
                        api_name="resource")
    resource = resources[0]
    module = module_name(str((resource.get("module") or {}).get("api_name", "")))
    if module not in MODULES:
        raise ZohoError(400, "MODULE_NOT_AVAILABLE", f"Requested module '{module}' is not available.",
                        api_name="module", json_path="$.resource[0].module")
    with sb._lock:
        upload = sb._files.get(str(resource.get("file_id", "")))
    if upload is None:
        raise ZohoError(400, "INVALID_FILE_ID", "improper file id", api_name="file_id",
                        json_path="$.resource[0].file_id")
    csv_name, header, rows = _read_csv(upload["bytes"])
    find_by = resource.get("find_by")
    if operation in ("update", "upsert") and not find_by:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required key find_by is not available", api_name="find_by",
                        json_path="$.resource[0].find_by")
    if find_by and find_by not in ("id", "Email", *sb._unique_fields(module)):
        raise ZohoError(400, "INVALID_DATA", "invalid data", api_name="find_by", json_path="$.resource[0].find_by")
    mappings = _mappings(sb, module, header, resource.get("field_mappings"))
    mapped = {m["api_name"] for m in mappings}
    if operation != "update" and not {"Last_Name"} <= mapped:
        raise ZohoError(400, "MANDATORY_FIELDS_NOT_MAPPED", "All mandatory fields are not mapped for the layout")
    if find_by and find_by not in mapped:
        raise ZohoError(400, "INVALID_DATA", "invalid data", api_name="find_by", json_path="$.resource[0].find_by")
    write_op = "update" if operation == "update" else "insert" if operation == "insert" else "upsert"
    return {"id": sb._new_id(), "operation": operation, "write_op": write_op, "module": module,
            "find_by": find_by, "mappings": mappings, "header": header, "rows": rows,
            "ignore_empty": bool(resource.get("ignore_empty", body.get("ignore_empty", False))),
            "file_name": csv_name, "file_id": str(resource["file_id"]),
            "callback": body.get("callback"), "status": "ADDED", "created": time.time(),
            "counts": None, "result": None, "character_encoding": body.get("character_encoding") or "UTF-8"}


def _mappings(sb: ZohoSandbox, module: str, header: list[str], given: Any) -> list[dict]:
    """field_mappings map columns by index; without them the CSV header names are the api names."""
    if given is None:
        given = [{"api_name": name, "index": i} for i, name in enumerate(header)]
    if not isinstance(given, list):
        raise ZohoError(400, "INVALID_DATA", "invalid data", api_name="field_mappings")
    if len(given) > BULK_MAX_COLUMNS:
        raise ZohoError(400, "HEADER_LIMIT_EXCEEDED", "more than 200 fields mapped", limit=BULK_MAX_COLUMNS)
    out = []
    for m in given:
        name = m.get("api_name") if isinstance(m, dict) else None
        spec = sb._fields[module].get(name or "")
        if name != "id" and (spec is None or spec["read_only"]):
            raise ZohoError(400, "INVALID_FIELD", f"invalid mapping. invalid api_name {name}.", api_name=name)
        index, default = m.get("index"), (m.get("default_value") or {}).get("value")
        if index is None and default is None or (index is not None and not 0 <= int(index) < len(header)):
            message = f"required key index for field {name} is not found in request body."
            raise ZohoError(400, "COLUMN_INDEX_NOT_FOUND", message, api_name=name)
        out.append({"api_name": name, "index": None if index is None else int(index), "default": default,
                    "find_by": m.get("find_by")})
    return out


def _run_job(sb: ZohoSandbox, job_id: str) -> None:
    """ADDED → IN PROGRESS → COMPLETED, with a pause at each step so pollers see the progression."""
    if sb._stopping.wait(sb.bulk_step_seconds):
        return
    with sb._lock:
        job = sb._jobs[job_id]
        job["status"] = "IN PROGRESS"
    if sb._stopping.wait(sb.bulk_step_seconds):
        return
    with sb._lock:
        outcomes = [_run_row(sb, job, i, row) for i, row in enumerate(job["rows"])]
        job["counts"] = {key: sum(1 for o in outcomes if o[0] == key) for key in ("added", "updated", "skipped")}
        job["result"] = _result_zip(job, outcomes)
        job["status"] = "COMPLETED"


def _run_row(sb: ZohoSandbox, job: dict, index: int, row: list[str]) -> tuple[str, str, str]:
    """One CSV row through the same validation as upsert; returns (STATUS, RECORD_ID, ERRORS)."""
    module, find_by = job["module"], job["find_by"]
    values, errors = _row_values(sb._fields[module], job, row)
    if find_by == "id":
        record_id = str(values.pop("id", "") or "")
        match = record_id if record_id in sb._store[module] else None
    else:
        values.pop("id", None)
        match = (sb._matches(module, find_by, values.get(find_by)) or [None])[0] if find_by else None
    op = job["operation"]
    if op == "insert" and match is not None:
        return "skipped", "", f"DUPLICATE_DATA-{find_by}"
    if op == "update" and match is None:
        return "skipped", "", f"RESOURCE_NOT_FOUND-{find_by}"
    creating = match is None
    if creating:
        values = {k: v for k, v in values.items() if v is not None}
    checked, problems = sb._validate_record(module, values, index, creating=creating)
    problems = problems or sb._unique_errors(module, checked, index, match)
    errors += [(p["code"], p["details"].get("api_name", "")) for p in problems]
    if errors:
        return "skipped", match or "", _error_text(errors)
    if creating:
        return "added", sb._create(module, checked)["id"], ""
    sb._apply(module, match, checked)
    return "updated", match, ""


def _job_body(sb: ZohoSandbox, job: dict) -> dict:
    file_info: dict[str, Any] = {"status": job["status"], "name": job["file_name"]}
    if job["counts"] is not None:
        file_info.update({"added_count": job["counts"]["added"], "skipped_count": job["counts"]["skipped"],
                          "updated_count": job["counts"]["updated"], "total_count": len(job["rows"])})
    resource = {"status": job["status"], "type": "data", "module": {"api_name": job["module"]},
                "file_id": job["file_id"], "file_names": [job["file_name"]],
                "ignore_empty": job["ignore_empty"], "find_by": job["find_by"],
                "field_mappings": [{"api_name": m["api_name"], "index": m["index"]} for m in job["mappings"]],
                "file": file_info}
    body = {"status": job["status"], "character_encoding": job["character_encoding"], "resource": [resource],
            "id": job["id"], "created_by": {"id": sb._user["id"], "name": sb._user["name"]},
            "operation": job["operation"], "created_time": _iso(job["created"])}
    if job["callback"]:
        body["callback"] = job["callback"]
    if job["status"] == "COMPLETED":
        if sb.bulk_relative_download_url:
            body["result"] = {"download_url": f"/crm/bulk/v8/write/{job['id']}/result"}
        else:  # Zoho's real path, on the sandbox's own host (it serves every host on 127.0.0.1)
            body["result"] = {"download_url": f"{sb.url}/v2/crm/{sb._zgid}/bulk-write/{job['id']}/{job['id']}.zip"}
    return body


# ------------------------------------------------------------------------------------------ files


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form parts by name → (filename, bytes); the email parser copes with any RFC 7578 body."""
    if "multipart/form-data" not in content_type:
        return {}
    raw = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
    message = BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            parts[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return parts


def _read_csv(payload: bytes) -> tuple[str, list[str], list[list[str]]]:
    """The one CSV of a Contacts/Leads zip (name, header, rows); delimiter detected from the header (, ; : |)."""
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if len(names) != 1 or not names[0].lower().endswith(".csv"):
            raise ZohoError(400, "FILE_NOT_SUPPORTED", "File not supported for bulk write")
        text = archive.read(names[0]).decode("utf-8-sig", errors="replace")
    first_line = text.splitlines()[0] if text else ""
    delimiter = max(",;|:", key=lambda d: (first_line.count(d), d == ","))
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    if not rows:
        raise ZohoError(400, "INVALID_FILE_FORMAT", "invalid file format. only zip format is supported")
    header, data = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    if len(header) > BULK_MAX_COLUMNS:
        raise ZohoError(400, "HEADER_LIMIT_EXCEEDED", "more than 200 columns")
    if len(data) > BULK_MAX_ROWS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "more than 25000 records in the file")
    return names[0].rsplit("/", 1)[-1], header, data


def _csv_value(spec: dict | None, text: str) -> Any:
    """CSV text → typed value for a field; raises ValueError when it does not fit the type."""
    data_type = spec["data_type"] if spec else "text"
    if data_type == "integer":
        return int(text)
    if data_type in ("currency", "double"):
        return float(text)
    if data_type == "boolean":
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if data_type == "date" and "/" in text:  # bulk CSV dates default to MM/dd/yyyy
        return datetime.strptime(text, "%m/%d/%Y").date().isoformat()
    return text


def _row_values(specs: dict[str, dict], job: dict, row: list[str]) -> tuple[dict, list[tuple[str, str]]]:
    values: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for m in job["mappings"]:
        text = row[m["index"]].strip() if m["index"] is not None and m["index"] < len(row) else ""
        if not text and m["default"] is not None:
            text = str(m["default"])
        if not text:
            if not job["ignore_empty"]:
                values[m["api_name"]] = None  # an empty cell clears the field unless ignore_empty
            continue
        spec = specs.get(m["api_name"])
        if spec is not None and spec["data_type"] in ("lookup", "ownerlookup"):
            # a lookup cell names the related record by id (or name), as the mapping's find_by says
            values[m["api_name"]] = {"id" if (m.get("find_by") or "id") == "id" else "name": text}
            continue
        try:
            values[m["api_name"]] = _csv_value(spec, text)
        except ValueError:
            errors.append(("INVALID_DATA", m["api_name"]))
    return values, errors


def _error_text(errors: list[tuple[str, str]]) -> str:
    """Zoho's ERRORS cell: ``CODE-field1,field2:CODE2-field3``."""
    grouped: dict[str, list[str]] = {}
    for code, name in errors:
        if name not in grouped.setdefault(code, []):
            grouped[code].append(name)
    return ":".join(f"{code}-{','.join(names)}" for code, names in grouped.items())


def _result_zip(job: dict, outcomes: list[tuple[str, str, str]]) -> bytes:
    """Result CSV: the first three mapped columns plus STATUS, RECORD_ID, ERRORS (doc §9 step 5)."""
    columns = [m["index"] for m in job["mappings"] if m["index"] is not None][:3]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([job["header"][i] for i in columns] + ["STATUS", "RECORD_ID", "ERRORS"])
    for row, (status, record_id, errors) in zip(job["rows"], outcomes):
        writer.writerow([row[i] if i < len(row) else "" for i in columns] + [status, record_id, errors])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(job["file_name"], out.getvalue())
    return buffer.getvalue()

