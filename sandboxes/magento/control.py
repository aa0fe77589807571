"""Sandbox control endpoints under /__sandbox__/ (not Magento's): state, calls, store edits, clock, faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._router import Response, Router, SandboxError
from .faults import NO_ROUTE
from .rest import json_body

if TYPE_CHECKING:
    from .._router import Request
    from .server import MagentoSandbox

# Paths match exactly (no trailing slash); endpoints: ``fn(sandbox, body, **path_params) -> 200 body``.
control = Router(strict_slashes=True)


def handle_control(sb: MagentoSandbox, req: Request) -> Response:
    """A bad argument answers 400, an unknown id 404, both as ``{"message": ...}``."""
    try:
        body = json_body(req.body) or {}
        found = control.match(req.path)
        endpoint = found[0].get(req.method) if found else None
        if endpoint is None:
            return Response(404, {"message": NO_ROUTE})
        status, out = 200, endpoint.handler(sb, body, **found[1])
    except SandboxError as err:
        status, out = err.status, err.body()
    except KeyError as err:
        status, out = 404, {"message": str(err.args[0] if err.args else err)}
    except (TypeError, ValueError) as err:
        status, out = 400, {"message": str(err)}
    return Response(status, out)


@control.route("GET", "/__sandbox__/state")
def state(sb: MagentoSandbox, body: Any) -> Any:
    return sb.state()


@control.route("GET", "/__sandbox__/calls")
def calls(sb: MagentoSandbox, body: Any) -> Any:
    return sb.calls()


@control.route("POST", "/__sandbox__/customers")
def add_customer(sb: MagentoSandbox, body: Any) -> Any:
    return sb.add_customer(str(body.pop("email")), **body)


@control.route("POST", "/__sandbox__/orders")
def add_order(sb: MagentoSandbox, body: Any) -> Any:
    return sb.add_order(body.get("customer_id"), **{k: v for k, v in body.items() if k != "customer_id"})


@control.route("POST", "/__sandbox__/clock")
def clock(sb: MagentoSandbox, body: Any) -> Any:
    sb.advance_clock(int(body.get("advance", 0)))
    return sb.state()


@control.route("POST", "/__sandbox__/faults")
def inject_fault(sb: MagentoSandbox, body: Any) -> Any:
    times = body.get("times", 1)
    sb.inject_fault(str(body.get("kind")), None if times is None else int(times), path=body.get("path"),
                    after_pages=int(body.get("after_pages", 0)),
                    rows=None if body.get("rows") is None else int(body["rows"]), drift=int(body.get("drift", 0)))
    return {"ok": True}


@control.route("GET", "/__sandbox__/faults")
def applied_faults(sb: MagentoSandbox, body: Any) -> Any:
    return sb.applied_faults()


@control.route("DELETE", "/__sandbox__/faults")
def clear_faults(sb: MagentoSandbox, body: Any) -> Any:
    sb.clear_faults()
    return {"ok": True}


@control.route("POST", "/__sandbox__/customers/{customer_id:int}/subscription")
def set_subscribed(sb: MagentoSandbox, body: Any, customer_id: int) -> Any:
    sb.set_subscribed(customer_id, bool(body["subscribed"]))
    return {"ok": True}


@control.route("POST", "/__sandbox__/customers/{customer_id:int}")
def update_customer(sb: MagentoSandbox, body: Any, customer_id: int) -> Any:
    return sb.update_customer(customer_id, **body)


@control.route("DELETE", "/__sandbox__/customers/{customer_id:int}")
def delete_customer(sb: MagentoSandbox, body: Any, customer_id: int) -> Any:
    sb.delete_customer(customer_id)
    return {"ok": True}
