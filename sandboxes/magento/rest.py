"""Magento's REST endpoints, one decorated function each; ``resource`` is the ACL resource a caller needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .._router import Router
from ..seed import BASE_CURRENCY, STORES
from .auth import RES_CUSTOMER, RES_CUSTOMER_MANAGE, RES_ORDERS, RES_STORE
from .criteria import apply_fields, parse_fields, parse_search_criteria
from .faults import NO_SUCH_ENTITY, MagentoError
from .tables import _CUSTOMERS, _ORDERS

if TYPE_CHECKING:
    from .._router import Request
    from .server import MagentoSandbox

# Matched on the route after /rest and the store code (Magento's PathProcessor); a known path called with
# another method is no route either. Endpoints: ``fn(sandbox, request, params, **path_params) -> body``.
rest = Router()
STORE_CODES = {s["code"]: sid for sid, s in STORES.items()}


def json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise MagentoError(400, "Decoding error: %1", ["Syntax error"]) from None


def strip_store(path: str) -> str:
    """Magento's PathProcessor: a known store code (or `all`) is dropped; anything else stays in the route."""
    first, _, rest_ = path.lstrip("/").partition("/")
    if first in STORE_CODES or first == "all":
        return "/" + rest_
    return path


def with_fields(body: Any, params: dict) -> Any:
    spec = params.get("fields")
    return apply_fields(body, parse_fields(spec)) if isinstance(spec, str) and spec else body


@rest.route("POST", "/V1/integration/admin/token")
def admin_token(sb: MagentoSandbox, req: Request, params: dict) -> Any:
    return sb.issue_admin_token(json_body(req.body))


@rest.route("GET", "/V1/customers/search", resource=RES_CUSTOMER)
def search_customers(sb: MagentoSandbox, req: Request, params: dict) -> Any:
    return with_fields(sb.search(_CUSTOMERS, parse_search_criteria(params)), params)


@rest.route("GET", "/V1/orders", resource=RES_ORDERS)
def search_orders(sb: MagentoSandbox, req: Request, params: dict) -> Any:
    return with_fields(sb.search(_ORDERS, parse_search_criteria(params)), params)


@rest.route("GET", "/V1/customers/{customer_id:int}", resource=RES_CUSTOMER)
def get_customer(sb: MagentoSandbox, req: Request, params: dict, customer_id: int) -> Any:
    return with_fields(sb.get_customer(customer_id), params)


@rest.route("DELETE", "/V1/customers/{customer_id:int}", resource=RES_CUSTOMER_MANAGE)
def delete_customer(sb: MagentoSandbox, req: Request, params: dict, customer_id: int) -> Any:
    try:
        sb.delete_customer(customer_id)
    except KeyError:
        raise MagentoError(404, NO_SUCH_ENTITY, {"fieldName": "customerId", "fieldValue": customer_id}) from None
    return True


@rest.route("GET", "/V1/orders/{entity_id:int}", resource=RES_ORDERS)
def get_order(sb: MagentoSandbox, req: Request, params: dict, entity_id: int) -> Any:
    return with_fields(sb.get_order(entity_id), params)


@rest.route("GET", "/V1/store/storeViews", resource=RES_STORE)
def store_views(sb: MagentoSandbox, req: Request, params: dict) -> Any:
    views = [{"id": 0, "code": "admin", "name": "Admin", "website_id": 0, "store_group_id": 0, "is_active": 1}]
    return views + [{"id": sid, "code": s["code"], "name": s["name"], "website_id": s["website_id"],
                     "store_group_id": s["website_id"], "is_active": 1} for sid, s in STORES.items()]


@rest.route("GET", "/V1/store/websites", resource=RES_STORE)
def websites(sb: MagentoSandbox, req: Request, params: dict) -> Any:
    admin = {"id": 0, "code": "admin", "name": "Admin", "default_group_id": 0}
    names = {1: "Main Website", 2: "EU Website"}
    return [admin] + [{"id": s["website_id"], "code": s["website_code"], "name": names[s["website_id"]],
                       "default_group_id": s["website_id"]} for s in STORES.values()]


@rest.route("GET", "/V1/store/storeConfigs", resource=RES_STORE)
def store_configs(sb: MagentoSandbox, req: Request, params: dict) -> Any:
    base_url = sb.url
    return [{"id": sid, "code": s["code"], "website_id": s["website_id"], "locale": "en_US",
             "base_currency_code": BASE_CURRENCY, "default_display_currency_code": s["order_currency"],
             "timezone": "UTC", "weight_unit": "lbs", "base_url": f"{base_url}/",
             "base_link_url": f"{base_url}/", "secure_base_url": f"{base_url}/"} for sid, s in STORES.items()]
