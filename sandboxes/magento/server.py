"""Local stand-in for the Adobe Commerce / Magento 2.4 REST API: a real HTTP server on 127.0.0.1, stdlib only."""

from __future__ import annotations

import argparse
import copy
import gc
import random
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Iterable
from urllib.parse import parse_qsl

from .._php import parse_php_query, php_json
from .._router import Request, Response, SandboxError
from .._server import LoopbackServer, RequestHandler, serve_until_stopped
from ..seed import StoreData, format_ts, generate_store
from .auth import Auth, SignedRequest
from .control import handle_control
from .faults import INTERNAL, NO_ROUTE, Faults, MagentoError
from .indexes import _gc_paused, _Index, _Matches
from .rest import rest, strip_store
from .search import Search
from .tables import Tables, _by

JSON = "application/json; charset=utf-8"


class MagentoSandbox(Faults, Auth, Tables, Search, LoopbackServer):
    """In-memory Magento store served over HTTP; all state sits behind one lock.

    ``routes`` is this instance's REST router: ``sandbox.routes.route(...)`` adds an endpoint to it alone.
    """

    thread_name = "magento-sandbox"

    def _handler(self) -> type:
        return _Handler

    def __init__(self, data: StoreData | None = None, *, admin_username: str = "sync-admin",
                 admin_password: str = "sandbox-admin-password-123",
                 integration_token: str = "sandbox-integration-token-0123456789", two_factor_auth: bool = False,
                 input_limit_enabled: bool = False, max_page_size: int = 300, default_page_size: int = 20,
                 legacy_last_page_repeat: bool = False, latency: float = 0.0, seed: int = 0,
                 consumer_key: str = "sandbox-consumer-key-0123456789ab",
                 consumer_secret: str = "sandbox-consumer-secret-0123456789",
                 access_token_secret: str = "sandbox-token-secret-0123456789ab",
                 allow_integration_bearer: bool = True, integration_resources: Iterable[str] | None = None) -> None:
        self.admin_username, self.admin_password = admin_username, admin_password
        self.integration_token = integration_token
        # The integration's OAuth 1.0a credentials; `integration_token` is its access token.
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token_secret = access_token_secret
        # Magento 2.4.4+ default is False: the access token alone (Bearer) is refused, only signed requests pass.
        self.allow_integration_bearer = allow_integration_bearer
        # ACL resources granted to the integration (None: all); admins always have all.
        self.integration_resources = None if integration_resources is None else frozenset(integration_resources)
        # Called with {"method", "path", "query"} before each REST request is answered: tests change data here
        # to play an admin editing the store between two pages of a client's paging.
        self.on_request: Callable[[dict], None] | None = None
        self._nonces: set[tuple[str, str]] = set()
        self.two_factor_auth = two_factor_auth
        self.input_limit_enabled = input_limit_enabled
        self.max_page_size, self.default_page_size = max_page_size, default_page_size
        self.legacy_last_page_repeat = legacy_last_page_repeat
        self.latency = latency  # seconds from a REST request to its answer (its own work included), if longer
        self.url = ""
        self.routes = rest.copy()
        self._rng = random.Random(seed)  # admin tokens and report ids
        self._lock = threading.RLock()
        with _gc_paused():
            self._load(data if data is not None else generate_store())
        self._admin_tokens: dict[str, int] = {}  # token -> expiry (sandbox clock)
        self._calls: list[dict] = []
        self._faults: deque[str] = deque()
        self._page_faults: list[dict] = []  # see inject_fault
        self._applied_faults: list[dict] = []
        self._cache: OrderedDict[tuple, _Matches] = OrderedDict()
        self._indexes: dict[tuple[str, str], _Index] = {}  # (entity, column) -> index, built on first use
        # Indexes, keyset bisection and top-k on: tests turn them off to compare with plain scans and sorts.
        self._fast_paths = True
        self._orders_by_customer: dict[int, list[int]] | None = None  # built on first delete
        self._increment_seq: dict[int, int] | None = None  # built on first add_order

    def _load(self, data: StoreData) -> None:
        # Caller's dicts are shared, never mutated: every change replaces a row (copy-on-write).
        self._customers: dict[int, dict] = {c["id"]: c for c in _by(data.customers, "id")}
        self._orders: dict[int, dict] = {o["entity_id"]: o for o in _by(data.orders, "entity_id")}
        self._subscribed: dict[int, int] = {  # newsletter_subscriber: customer id -> status (1 subscribed, 3 not)
            c["id"]: 1 for c in data.customers if c.get("extension_attributes", {}).get("is_subscribed")}
        self._now = self._initial_clock()
        self._next_entity_id = 1 + max(self._orders, default=0)
        self._next_customer_id = 1 + max(self._customers, default=0)
        self._next_address_id = 0  # found on first use: one more scan of a million rows is not free

    # ---- inspection ---------------------------------------------------------------------------------
    def customers(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(self._public_customer(c)) for c in self._customers.values()]

    def orders(self) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for o in self._orders.values()]

    def calls(self) -> list[dict]:
        with self._lock:
            return [dict(c, query=dict(c["query"])) for c in self._calls]

    def state(self) -> dict:
        with self._lock:
            return {"customers": len(self._customers), "orders": len(self._orders), "now": format_ts(self._now)}

    def _record(self, method: str, path: str, query: str, status: int, headers: dict | None = None) -> None:
        with self._lock:
            self._calls.append({"method": method, "path": path, "query": dict(parse_qsl(query, keep_blank_values=True)),
                                "status": status, "ts": time.time(), "headers": dict(headers or {})})

    # ---- HTTP ---------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        """/rest/... like Magento's webapi router; /__sandbox__/... to the control endpoints."""
        if req.path.startswith("/__sandbox__/"):
            return handle_control(self, req)
        resp = self._rest(req)
        # Record before answering, so a client that just got its response always finds its call logged.
        self._record(req.method, req.path, req.raw_query, 0 if resp.drop else resp.status, dict(req.headers.items()))
        return resp

    def _rest(self, req: Request) -> Response:
        arrived = time.monotonic()
        hook = self.on_request
        if hook is not None:
            hook({"method": req.method, "path": req.path,
                  "query": dict(parse_qsl(req.raw_query, keep_blank_values=True))})
        fault = self._take_fault()
        if fault == "drop":
            return Response(0, drop=True)
        if fault == "429":  # the 2.4.7 backpressure limiter or a CDN in front of the store
            return Response(429, b'{"message":"Too Many Requests"}', {"Retry-After": "1"}, JSON)
        if fault == "503":  # maintenance mode or an overloaded PHP-FPM pool
            page = b"<html><body><h1>Service Temporarily Unavailable</h1></body></html>"
            return Response(503, page, {"Retry-After": "1"}, "text/html; charset=UTF-8")
        try:
            status, body = 200, self._call(req)
        except SandboxError as err:
            status, body = err.status, err.body()
        except Exception:  # noqa: BLE001 - a sandbox bug must still answer like Magento's production mode
            status, body = 500, {"message": INTERNAL, "parameters": ["webapi-sandbox"]}
        # PHP's json_encode escapes non-ASCII and "/" by default; Magento's REST renderer uses it.
        payload = php_json(body)
        if self.latency:  # a store's response time includes its own work: only the rest is waited
            time.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
        return Response(status, payload, {}, JSON)

    def _call(self, req: Request) -> object:
        """The endpoint's answer, once the caller holds its ACL resource; any other path is no route."""
        if not req.path.startswith("/rest/"):
            raise MagentoError(404, NO_ROUTE)
        found = self.routes.match(strip_store(req.path[len("/rest"):]).rstrip("/"))
        endpoint = found[0].get(req.method) if found else None
        if endpoint is None:
            raise MagentoError(404, NO_ROUTE)
        resource = endpoint.options.get("resource")
        if resource is not None:
            headers = req.headers
            signed = SignedRequest(req.method, f"http://{headers.get('Host', '')}{req.path}", req.raw_query,
                                   headers.get("Content-Type", ""), req.body)
            self.authorize(headers.get("Authorization"), resource, signed)
        return endpoint.handler(self, req, parse_php_query(req.raw_query), **found[1])


class _Handler(RequestHandler):
    server_version = "nginx"
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = RequestHandler.serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.magento", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ready-file", help="write {\"url\": ...} here once the server listens")
    parser.add_argument("--two-factor-auth", action="store_true")
    parser.add_argument("--input-limit-enabled", action="store_true")
    parser.add_argument("--legacy-last-page-repeat", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds from a REST request to its answer, the store's own work included")
    parser.add_argument("--no-integration-bearer", action="store_true",
                        help="refuse the integration token as a Bearer token (Magento 2.4.4+ default): OAuth 1.0a only")
    args = parser.parse_args(argv)
    sandbox = MagentoSandbox(generate_store(args.customers, seed=args.seed), two_factor_auth=args.two_factor_auth,
                             input_limit_enabled=args.input_limit_enabled,
                             legacy_last_page_repeat=args.legacy_last_page_repeat, latency=args.latency,
                             allow_integration_bearer=not args.no_integration_bearer)
    sandbox.build_indexes()
    gc.freeze()  # this process owns the data set: keep the cyclic GC from rescanning millions of rows
    serve_until_stopped(sandbox, args.port, args.ready_file, {})
