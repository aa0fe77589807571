"""Sandbox control endpoints under /__sandbox__/ (not DecoNetwork's): state, the export, edits, clock, faults."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._router import Response, Router

if TYPE_CHECKING:
    from .._router import Request
    from .server import DecoNetworkSandbox

# Paths match exactly; endpoints: ``fn(sandbox, body, **path_params) -> 200 body`` (``raw=True``: no JSON body
# is read, the endpoint answers a Response of its own).
control = Router(strict_slashes=True)


def handle_control(sb: DecoNetworkSandbox, req: Request) -> Response:
    """A bad argument answers 400, an unknown id 404, both as ``{"message": ...}``."""
    found = control.match(req.path)
    endpoint = found[0].get(req.method) if found else None
    try:
        if endpoint is not None and endpoint.options.get("raw"):
            return endpoint.handler(sb, None, **found[1])
        body = json.loads(req.body) if req.body.strip() else {}
        if endpoint is None:
            return Response(404, {"message": "unknown sandbox endpoint"})
        status, out = 200, endpoint.handler(sb, body, **found[1])
    except KeyError as err:
        status, out = 404, {"message": str(err.args[0] if err.args else err)}
    except (TypeError, ValueError) as err:
        status, out = 400, {"message": str(err)}
    return Response(status, out)


@control.route("GET", "/__sandbox__/export.csv", raw=True)
def export_csv(sb: DecoNetworkSandbox, body: None) -> Response:
    return Response(200, sb.export_csv().encode("utf-8"), content_type="text/csv; charset=utf-8")


@control.route("GET", "/__sandbox__/state")
def state(sb: DecoNetworkSandbox, body: Any) -> Any:
    return sb.state()


@control.route("GET", "/__sandbox__/calls")
def calls(sb: DecoNetworkSandbox, body: Any) -> Any:
    return sb.calls()


@control.route("GET", "/__sandbox__/stores")
def stores(sb: DecoNetworkSandbox, body: Any) -> Any:
    return sb.stores()


@control.route("POST", "/__sandbox__/orders")
def add_order(sb: DecoNetworkSandbox, body: Any) -> Any:
    return sb.add_order(body.pop("customer_id", None), **body)


@control.route("POST", "/__sandbox__/orders/{order_id:int}")
def modify_order(sb: DecoNetworkSandbox, body: Any, order_id: int) -> Any:
    return sb.modify_order(order_id, **body)


@control.route("POST", "/__sandbox__/customers/{customer_id:int}")
def update_customer(sb: DecoNetworkSandbox, body: Any, customer_id: int) -> Any:
    return sb.update_customer(customer_id, **body)


@control.route("POST", "/__sandbox__/clock")
def clock(sb: DecoNetworkSandbox, body: Any) -> Any:
    sb.advance_clock(int(body.get("advance", 0)))
    return sb.state()


@control.route("POST", "/__sandbox__/faults")
def inject_fault(sb: DecoNetworkSandbox, body: Any) -> Any:
    sb.inject_fault(str(body.get("kind")), int(body.get("times", 1)))
    return {"ok": True}
