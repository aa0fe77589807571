"""Test and demo endpoints under /__sandbox__ (not Zoho's): state, calls, faults, UI deletions, tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandboxes.zoho.faults import answer
from sandboxes.zoho.routes import MODULES, control

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox


def handle_control(sb: ZohoSandbox, req: Request) -> Response:
    """No auth, not counted as calls; a bad body or argument answers 400 ``{"error": ...}``."""
    try:
        body = req.json() if req.body else {}
    except ValueError:
        return answer(400, {"error": "body is not JSON"})
    found = control.match(req.path)
    endpoint = found[0].get(req.method) if found else None
    if endpoint is None:
        return answer(404, {"error": "unknown sandbox endpoint"})
    try:
        return answer(200, endpoint.handler(sb, body or {}))
    except (KeyError, TypeError, ValueError) as exc:
        return answer(400, {"error": str(exc)})


@control.route("GET", "/__sandbox__/state")
def state(sb: ZohoSandbox, body: Any) -> Any:
    with sb._lock:
        out = {"records": {m: sb.records(m) for m in MODULES}, "credits_used": sb.credits_used(),
               "peak_concurrency": sb.peak_concurrency,
               "deleted": {m: sb.deleted_records(m) for m in MODULES}, "zgid": sb._zgid}
    return out


@control.route("GET", "/__sandbox__/calls")
def calls(sb: ZohoSandbox, body: Any) -> Any:
    return {"calls": sb.calls()}


@control.route("POST", "/__sandbox__/reset_calls")
def reset_calls(sb: ZohoSandbox, body: Any) -> Any:
    sb.reset_calls()
    return {"status": "success"}


@control.route("POST", "/__sandbox__/faults")
def faults(sb: ZohoSandbox, body: Any) -> Any:
    if "probability" in body:
        sb.set_fault_rate(body["kind"], float(body["probability"]))
    else:
        sb.inject_fault(body["kind"], times=int(body.get("times", 1)), operation=body.get("operation"),
                        status=body.get("status"), retry_after=body.get("retry_after"))
    return {"status": "success"}


@control.route("POST", "/__sandbox__/delete_in_ui")
def delete_in_ui(sb: ZohoSandbox, body: Any) -> Any:
    sb.delete_record_in_ui(body["module"], str(body["id"]), bool(body.get("permanent", False)))
    return {"status": "success"}


@control.route("POST", "/__sandbox__/grant_code")
def grant_code(sb: ZohoSandbox, body: Any) -> Any:
    code = sb.issue_grant_code(body.get("client_id", sb.client_id), tuple(body["scopes"]),
                               float(body.get("ttl_seconds", 120.0)))
    return {"code": code}


@control.route("POST", "/__sandbox__/refresh_token")
def refresh_token(sb: ZohoSandbox, body: Any) -> Any:
    token = sb.add_refresh_token(body.get("client_id", sb.client_id), tuple(body["scopes"]))
    return {"refresh_token": token}
