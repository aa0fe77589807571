"""Local stand-in for a DecoNetwork site: the JSON Order Management API over real HTTP, plus its customer export."""

from __future__ import annotations

import argparse
import copy
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Callable
from urllib.parse import parse_qsl

from .._php import parse_php_query, php_json
from .._router import Request, Response, SandboxError
from .._server import LoopbackServer, RequestHandler, serve_until_stopped
from .control import handle_control
from .data import SITE_TS, DecoStoreData, generate_deconetwork_store
from .faults import _HTML_404, HTML, DecoApiError, Faults
from .orders import _DATE_FIELDS, LOGIN_PATH, Orders, site
from .store import Store


class DecoNetworkSandbox(Faults, Orders, Store, LoopbackServer):
    """An in-memory DecoNetwork site served over HTTP on 127.0.0.1; all state behind one lock.

    What it plays (store-apis.md A.2-A.4, D):

    * ``/api/json/manage_orders/find`` (GET query or POST form, PHP-style ``conditions[n][...]``), with
      ``username``/``password`` on every request, ``skip_login_token`` accepted and ignored, ``limit`` 0..100
      (else 50004), ``offset`` paging, the ``{"response_status", "total", "orders"}`` envelope and the codes
      10001, 30001, 31000, 50002, 50003, 50004, 50005 (HTTP 200 with the code in the body).
    * HTML where 3P clients report HTML: an HTML 404 page for unknown paths, and the site's HTML login page
      (a 302 to ``/login``) when a request carries no credentials at all. A wrong password is the documented
      JSON 30001; ``bad_login_html=True`` answers it with the login page instead, as some 3P clients report.
    * The customer export: DecoNetwork publishes no customer API (A.0), so the export CSV is a contract of this
      project (see ``zoho_store_sync.sources.deconetwork``); ``write_export`` writes it.

    Assumptions of the sandbox (UNVERIFIED against a live site, kept in one place): dates are the site's
    local time as ``YYYY-MM-DDTHH:MM:SS``; orders come back in ``order_id`` order; ``order_status`` numbers
    and the 3P ``order_status_name``/``billing_details`` fields follow ``ORDER_STATUSES``; a quote not
    yet ordered has no ``date_ordered``; guest orders have ``customer_id`` null.
    ``routes`` is this instance's site router: ``sandbox.routes.route(...)`` adds an endpoint to it alone.
    """

    thread_name = "deconetwork-sandbox"

    def _handler(self) -> type:
        return _Handler

    def __init__(self, data: DecoStoreData | None = None, *, username: str = "api-user",
                 password: str = "sandbox-deco-password-123", api_enabled: bool = True, seed: int = 0,
                 bad_login_html: bool = False, legacy_codes: bool = False, field6: str = "date_invoiced",
                 latency: float = 0.0) -> None:
        self.username, self.password = username, password
        # The codes some 3P clients handle instead (10002 auth failed, 10005 API not enabled): undocumented.
        self.legacy_codes = legacy_codes
        self.api_enabled = api_enabled
        self.bad_login_html = bad_login_html
        # Versions of DecoNetwork's page disagree whether 6 is Date Invoiced or Date Shipped.
        other = "date_shipped" if field6 == "date_invoiced" else "date_invoiced"
        self.date_fields = {**_DATE_FIELDS, 6: field6, 7: other}
        self.latency = latency
        # Called with {"method", "path"} before each site request is answered: tests change orders here to play
        # the shop working while a client pages.
        self.on_request: Callable[[dict], None] | None = None
        self._match_cache: dict[tuple, list[dict]] = {}  # see Orders._matching
        self.url = ""
        self.routes = site.copy()
        self._lock = threading.RLock()
        data = data if data is not None else generate_deconetwork_store(300, seed)
        self._stores = {s["store_id"]: dict(s) for s in data.stores}
        self._customers: dict[int, dict] = {c["customer_id"]: dict(c) for c in data.customers}
        self._orders: dict[int, dict] = {o["order_id"]: copy.deepcopy(o) for o in sorted(data.orders,
                                                                                         key=lambda o: o["order_id"])}
        stamps = [o["date_modified"] for o in self._orders.values() if o.get("date_modified")]
        self._now = (max(datetime.strptime(s, SITE_TS) for s in stamps) if stamps
                     else datetime(2024, 1, 1)) + timedelta(seconds=1)
        self._calls: list[dict] = []
        self._faults: deque[str] = deque()

    def _record(self, method: str, path: str, params: dict, status: int, code: int | None,
                headers: list[str], query_keys: list[str]) -> None:
        flat = {k: ("***" if k == "password" else v) for k, v in params.items()}  # never keep the secret
        with self._lock:
            self._calls.append({"method": method, "path": path, "params": flat, "query_keys": query_keys,
                                "status": status, "code": code, "headers": headers, "ts": time.time()})

    # ---- HTTP ------------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        """The site's pages and API; /__sandbox__/... to the control endpoints."""
        if req.path.startswith("/__sandbox__/"):
            return handle_control(self, req)
        arrived = time.monotonic()
        hook = self.on_request
        if hook is not None:
            hook({"method": req.method, "path": req.path})
        ctype = req.headers.get("Content-Type", "")
        body = req.body.decode("utf-8", "replace") if "application/x-www-form-urlencoded" in ctype else ""
        nested, flat = _flat_params(req.raw_query, body)
        resp, code = self._site(req, nested)
        if self.latency:  # a site's response time includes its own work: only the rest is waited
            time.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
        self._record(req.method, req.path, flat, 0 if resp.drop else resp.status, code, sorted(req.headers.keys()),
                     [k for k, _ in parse_qsl(req.raw_query, keep_blank_values=True)])
        return resp

    def _site(self, req: Request, params: dict) -> tuple[Response, int | None]:
        """(answer, the API code it carries); API endpoints first face faults, credentials and the API switch."""
        found = self.routes.match(req.path)
        endpoint = found[0].get(req.method) if found else None
        if endpoint is None:
            return Response(404, _HTML_404, content_type=HTML), None
        if not endpoint.options.get("api"):
            return endpoint.handler(self, req, params), None
        fault = self._take_fault()
        if fault == "drop":
            return Response(0, drop=True), None
        if fault == "429":
            page = b"<html><body><h1>429 Too Many Requests</h1></body></html>"
            return Response(429, page, {"Retry-After": "1"}, HTML), None
        if fault == "503":
            page = b"<html><body><h1>Service Unavailable</h1></body></html>"
            return Response(503, page, {"Retry-After": "1"}, HTML), None
        auth = self._authenticate(params)
        if auth == "login" or (auth == "bad" and self.bad_login_html):
            return Response(302, b"", {"Location": LOGIN_PATH}, HTML), None
        try:
            if auth == "bad":
                raise DecoApiError(10002, "Login failed") if self.legacy_codes else DecoApiError(30001)
            if not self.api_enabled:
                raise DecoApiError(10005, "API disabled") if self.legacy_codes else DecoApiError(31000)
            body = endpoint.handler(self, req, params)
        except SandboxError as err:
            body = err.body()
        # PHP's json_encode: non-ASCII as \u escapes, "/" escaped.
        return Response(200, php_json(body), content_type="application/json"), body["response_status"]["code"]


def _flat_params(query: str, body: str) -> tuple[dict, dict]:
    """PHP's $_REQUEST: query then form body (the body wins); nested for conditions, flat for the record."""
    nested = _merge(parse_php_query(query), parse_php_query(body))
    flat = dict(parse_qsl(query, keep_blank_values=True) + parse_qsl(body, keep_blank_values=True))
    return nested, flat


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


class _Handler(RequestHandler):
    server_version = "Apache"
    do_GET = do_POST = RequestHandler.serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandboxes.deconetwork", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ready-file", help="write {\"url\": ..., \"export\": ...} here once the server listens")
    parser.add_argument("--export", help="write the customer export CSV here at start")
    parser.add_argument("--api-disabled", action="store_true")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds from a request to its answer, the site's own work included")
    args = parser.parse_args(argv)
    sandbox = DecoNetworkSandbox(generate_deconetwork_store(args.customers, args.seed),
                                 api_enabled=not args.api_disabled, latency=args.latency)
    if args.export:
        sandbox.write_export(args.export)
    serve_until_stopped(sandbox, args.port, args.ready_file,
                        {"export": args.export, "username": sandbox.username, "password": sandbox.password})
