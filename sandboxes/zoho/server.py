"""Local stand-in for the Zoho CRM v8 API (OAuth, records, deleted list, convert, fields, org, bulk write)."""

from __future__ import annotations

import argparse
import copy
import gc
import random
import threading
import time
from collections import deque
from typing import Any

from sandboxes._router import Request, Response, SandboxError
from sandboxes._server import LoopbackServer, RequestHandler, serve_until_stopped
from sandboxes.zoho import bulk, control, convert, metadata, query, reads, records  # noqa: F401 - they register routes
from sandboxes.zoho.faults import (_CONCURRENCY, _INTERNAL, _INVALID_METHOD, _INVALID_URL, _OUT_OF_CREDITS,
                                   _SCOPE_MISMATCH, JSON, Faults, _err, answer)
from sandboxes.zoho.oauth import TOKEN_THROTTLE_WINDOW, Tokens, oauth_form
from sandboxes.zoho.routes import MODULES, ApiRoute, accounts, api, module_name
from sandboxes.zoho.store import RecordStore

CREDIT_WINDOW = 86_400.0


class ZohoSandbox(Faults, Tokens, RecordStore, LoopbackServer):
    """In-process Zoho CRM v8 emulator serving the accounts host and the API host on one loopback port.

    A real HTTP server on 127.0.0.1 built on the standard library only. It reproduces the behaviour documented
    in ``shared/docs/zoho-crm-api.md`` and the official v8 OpenAPI files: error bodies and status codes,
    per-record positional results, the token throttle, credits, concurrency limits and injected faults.
    Run it standalone with ``python -m sandboxes.zoho_crm --port 0 --ready-file PATH``.

    Test knobs: ``inject_fault`` / ``set_fault_rate`` (429 with optional Retry-After, 500, drop, expire_token,
    apply_then_500), ``deny_permissions`` (403 NO_PERMISSION), ``latency`` (each API call answers that long after
    it arrived), ``concurrency_limit`` (429 past it; ``peak_concurrency`` records the most calls in flight),
    ``daily_credits`` (the daily-limit 429 past it, over a rolling 24 h; ``advance_credit_clock`` moves that clock),
    ``token_throttle_window``, ``layout_required`` (the fields each module's layout requires beyond Last_Name;
    default a standard org's, Leads' Company; ``{}`` switches it off),
    ``bulk_step_seconds`` and ``bulk_relative_download_url``; ``calls()`` lists every call with its credits.
    ``routes`` is this instance's API router: ``sandbox.routes.route(...)`` adds an endpoint to it alone.
    """

    thread_name = "zoho-sandbox"

    def _handler(self) -> type:
        return _Handler

    def __init__(
        self,
        *,
        client_id: str = "1000.SANDBOXCLIENT",
        client_secret: str = "sandbox-client-secret-0123456789",
        refresh_token: str = "1000.sandbox-refresh-token-0123456789abcdef",
        scopes: tuple[str, ...] = ("ZohoCRM.modules.ALL", "ZohoCRM.settings.fields.READ", "ZohoCRM.org.READ",
                                   "ZohoCRM.bulk.ALL", "ZohoFiles.files.ALL", "ZohoCRM.coql.READ",
                                   "ZohoCRM.settings.layouts.READ", "ZohoCRM.users.READ"),
        access_token_ttl: int = 3600,
        latency: float = 0.0,
        concurrency_limit: int | None = None,
        daily_credits: int = 100_000,
        seed: int = 0,
        extra_fields: dict[str, list[dict]] | None = None,
    ) -> None:
        self.client_id, self.client_secret, self.refresh_token = client_id, client_secret, refresh_token
        self.access_token_ttl = access_token_ttl
        self.latency = latency
        self.concurrency_limit = concurrency_limit
        self.daily_credits = daily_credits
        self.seed = seed
        self.bulk_step_seconds = 0.2  # pause between bulk job states so pollers see ADDED → IN PROGRESS
        # Zoho's v7 samples give a relative download_url; the OAS an absolute one (doc §9 step 5).
        self.bulk_relative_download_url = False
        self.token_throttle_window = TOKEN_THROTTLE_WINDOW  # tests shorten Zoho's 10 minutes
        self.url = ""
        self.peak_concurrency = 0
        self.routes = api.copy()
        self._lock = threading.RLock()  # one lock around the record store and all other state
        self._next_id = 5_700_000_000_000_000_000 + (seed % 10**9) * 10**6  # 19 digits, deterministic
        self._token_rng = random.Random(f"zoho-sandbox-tokens-{seed}")
        self._fault_rng = random.Random(seed)
        self._user = {"name": "Sandbox Admin", "id": self._new_id(), "email": "admin@sandbox.example"}
        self._org_id, self._zgid = self._new_id(), str(600_000_000 + seed % 10**8)
        self._fields = metadata.build_fields(extra_fields or {}, self._new_id)
        # Per module, the fields every written record is checked against (the field list is fixed from here on).
        self._mandatory = {m: tuple(n for n, spec in specs.items() if spec["system_mandatory"])
                           for m, specs in self._fields.items()}
        self._unique = {m: [n for n, spec in specs.items() if spec["unique"]] for m, specs in self._fields.items()}
        # A standard org's layouts require Leads' Company too (metadata.STANDARD_LAYOUT_REQUIRED); {} switches it off.
        self.layout_required: dict[str, tuple[str, ...]] = dict(metadata.STANDARD_LAYOUT_REQUIRED)
        self._store: dict[str, dict[str, dict]] = {m: {} for m in MODULES}
        self._mtimes: dict[str, float] = {}
        self._indexes: dict[tuple[str, str], dict[str, list[str]]] = {}
        self._deleted: dict[str, list[dict]] = {m: [] for m in MODULES}
        self._accounts: dict[str, dict] = {}
        self._clients: dict[str, dict] = {}
        self._refresh_tokens: dict[str, dict] = {}
        self._access_tokens: dict[str, dict] = {}
        self._grant_codes: dict[str, dict] = {}
        self._token_calls: dict[str, int] = {}
        self._calls: list[dict] = []
        self._credits: deque[tuple[float, int]] = deque()
        self._credits_in_window = 0
        self._credit_clock_offset = 0.0  # advance_credit_clock: tests move to the next day
        self._in_flight = 0
        self._faults: list[dict] = []
        self._denied: dict[str, list[str]] = {}
        self._fault_rates: dict[str, float] = {}
        self._files: dict[str, dict] = {}
        self._jobs: dict[str, dict] = {}
        self._stopping = threading.Event()
        self.add_client(client_id, client_secret)
        self._refresh_tokens[refresh_token] = {"client_id": client_id, "scopes": tuple(scopes),
                                               "issued": deque(), "revoked": False}

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self, port: int = 0) -> "ZohoSandbox":
        self._stopping.clear()
        return super().start(port)

    def stop(self) -> None:
        self._stopping.set()  # ends the bulk-job threads' waits
        super().stop()

    # ----------------------------------------------------------------------------------- inspection

    def calls(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def credits_used(self) -> int:
        with self._lock:
            self._expire_credits(self._credit_now())
            return self._credits_in_window

    def advance_credit_clock(self, seconds: float) -> None:
        """Move the credit window's clock forward (``CREDIT_WINDOW``: the next day frees the day's credits)."""
        with self._lock:
            self._credit_clock_offset += float(seconds)
            self._expire_credits(self._credit_now())

    def _credit_now(self) -> float:
        return time.time() + self._credit_clock_offset

    @staticmethod
    def _module_name(name: str) -> str:
        return module_name(name)

    # -------------------------------------------------------------------------------------- dispatch

    def handle(self, req: Request) -> Response:
        if req.path.startswith("/__sandbox__"):
            return control.handle_control(self, req)
        started = time.time()
        info: dict[str, Any] = {"module": None, "operation": "unknown", "records": 0, "credits": 0}
        try:
            if req.path.startswith("/oauth/v2/"):
                resp = self._handle_oauth(req, info)
            else:
                resp = self._handle_api(req, info)
        except Exception:  # a sandbox bug must look like Zoho's 500, not hang the client
            resp = answer(500, _INTERNAL)
        self._record_call(req, resp, info, started)
        return resp

    def _record_call(self, req: Request, resp: Response, info: dict, started: float) -> None:
        secret_keys = {"client_secret", "refresh_token", "code", "token"}
        query = {k: ("***" if k in secret_keys else v) for k, v in req.query.items()}
        entry = {"method": req.method, "path": req.path, "query": query,
                 "status": None if resp.drop else resp.status, **info, "ts": started}
        with self._lock:
            self._calls.append(entry)

    def _handle_oauth(self, req: Request, info: dict) -> Response:
        form = oauth_form(req)
        found = accounts.match(req.path)
        endpoint = (found[0].get(req.method) or next(iter(found[0].values()))) if found else None
        info["operation"] = endpoint.operation if endpoint else "token"
        info["grant_type"] = form.get("grant_type")
        if endpoint is None:
            return answer(404, {"error": "invalid_request"})
        fault = self._take_fault(info["operation"])
        if fault is not None and (resp := self._fault_response(fault)) is not None:
            return resp
        if endpoint.method != req.method:
            return answer(405, {"error": "invalid_request"})
        return endpoint.handler(self, req, info, form)

    def _resolve(self, req: Request) -> ApiRoute:
        """The endpoint of an API call; an unknown path is a 404, a known path with another method a 405."""
        found = self.routes.match(req.path)
        if found is None:
            return ApiRoute("unknown", None, error=SandboxError(404, _INVALID_URL))
        by_method, params = found
        module = module_name(params["module"]) if "module" in params else None
        endpoint = by_method.get(req.method)
        if endpoint is not None:
            return ApiRoute(endpoint.operation, module, endpoint, params)
        # a path with a single method names its operation even when called with another
        operation = next(iter(by_method.values())).operation if len(by_method) == 1 else "unknown"
        return ApiRoute(operation, module, error=SandboxError(405, _INVALID_METHOD))

    def _handle_api(self, req: Request, info: dict) -> Response:
        route = self._resolve(req)
        info.update(operation=route.operation, module=route.module)
        with self._lock:
            self._in_flight += 1
            self.peak_concurrency = max(self.peak_concurrency, self._in_flight)
            over_limit = self.concurrency_limit is not None and self._in_flight > self.concurrency_limit
        arrived = time.monotonic()
        try:
            if over_limit:
                return answer(429, _CONCURRENCY)
            fault = self._take_fault(route.operation)
            if fault is not None and (resp := self._fault_response(fault)) is not None:
                return resp
            resp = self._authorised_call(req, route, info)
            if fault is not None and fault["kind"] == "apply_then_500":
                self._refund(info["credits"])  # answered 5xx, so not billed, like every other 5xx here
                info["credits"] = 0
                resp = self._with_credit_header(answer(fault["status"] or 500, _INTERNAL))
            if self.latency:
                # A remote Zoho's response time: the answer leaves `latency` after the call arrived, this
                # sandbox's own work included; the call counts as in flight until then.
                time.sleep(max(0.0, self.latency - (time.monotonic() - arrived)))
            return resp
        finally:
            with self._lock:
                self._in_flight -= 1

    def _authorised_call(self, req: Request, route: ApiRoute, info: dict) -> Response:
        """Authentication, the route's 404/405, scope, permissions and credits; then the endpoint itself."""
        try:
            scopes = self._authenticate(req)
            if route.error is not None:
                raise route.error
            if not route.scope_ok(scopes):
                raise SandboxError(401, _SCOPE_MISMATCH)
            with self._lock:
                denied = self._denied.get(route.module or "")
            if denied:  # the user's profile lacks a permission: 403 naming it (doc §2.6)
                raise SandboxError(403, _err("NO_PERMISSION", "permission denied", permissions=list(denied)))
        except SandboxError as err:
            return err.response(JSON)
        cost = route.cost(req)
        if not self._charge(cost):
            return self._with_credit_header(answer(429, _OUT_OF_CREDITS))
        info["credits"] = cost
        try:
            resp = route.endpoint.handler(self, req, info, **route.params)
        except SandboxError as err:
            resp = err.response(JSON)
        except Exception:  # a sandbox bug must look like Zoho's own 500, not hang the client
            resp = answer(500, _INTERNAL)
        if resp.status >= 500:  # Zoho does not bill calls that fail on its side
            self._refund(cost)
            info["credits"] = 0
        return self._with_credit_header(resp)

    # ------------------------------------------------------------------------------------------ credits

    def _expire_credits(self, now: float) -> None:
        while self._credits and now - self._credits[0][0] >= CREDIT_WINDOW:
            self._credits_in_window -= self._credits.popleft()[1]

    def _charge(self, cost: int) -> bool:
        with self._lock:
            now = self._credit_now()
            self._expire_credits(now)
            if self._credits_in_window + cost > self.daily_credits:
                return False
            self._credits.append((now, cost))
            self._credits_in_window += cost
            return True

    def _refund(self, cost: int) -> None:
        with self._lock:
            self._credits.append((self._credit_now(), -cost))
            self._credits_in_window -= cost

    def _with_credit_header(self, resp: Response) -> Response:
        used = self.credits_used()
        if used * 2 >= self.daily_credits:  # the header appears only once half the day's credits are gone
            resp.headers["X-API-CREDITS-REMAINING"] = str(max(0, self.daily_credits - used))
        return resp


class _Handler(RequestHandler):
    """Keep-alive, one buffered write per answer with TCP_NODELAY (as every sandbox: see RequestHandler)."""

    server_version = "ZohoSandbox/1.0"
    headers_first = True
    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = RequestHandler.serve


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox in the foreground; ``--ready-file`` receives ``{"url": ...}`` once it listens."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--concurrency-limit", type=int)
    parser.add_argument("--daily-credits", type=int, default=100_000)
    parser.add_argument("--access-token-ttl", type=int, default=3600)
    parser.add_argument("--bulk-step-seconds", type=float, default=0.2,
                        help="how long a Bulk Write job stays ADDED, then IN PROGRESS (a real org takes minutes)")
    args = parser.parse_args(argv)
    sandbox = ZohoSandbox(seed=args.seed, latency=args.latency, concurrency_limit=args.concurrency_limit,
                          daily_credits=args.daily_credits, access_token_ttl=args.access_token_ttl)
    sandbox.bulk_step_seconds = args.bulk_step_seconds
    # The process keeps every record it is sent (a reset: 100,000+ dicts); with the default thresholds the
    # cyclic GC rescans them all, often, and each pause stalls every call in flight (a real Zoho does not).
    gc.set_threshold(100_000, 50, 1_000)
    serve_until_stopped(sandbox, args.port, args.ready_file,
                        {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret,
                         "refresh_token": sandbox.refresh_token})
