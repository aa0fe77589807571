"""``ZohoClient``: one Zoho CRM org's settings, OAuth, retrying transport, record calls and Bulk Write together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.auth import AuthBase

from zoho_store_sync.errors import ZohoAuthError, ZohoCreditsExhausted, ZohoScopeError, ZohoUnavailable
from zoho_store_sync.settings import ZOHO_API_VERSION, ZOHO_CREDITS, ZOHO_DEFAULT_CONCURRENCY
from zoho_store_sync.transport import TRANSIENT_ERRORS, Backoff, RetryingTransport, transient_status
from zoho_store_sync.zoho.bulk import ZohoBulkWrite
from zoho_store_sync.zoho.oauth import AccessToken, MemoryTokenCache, TokenCache, TokenPolicy, ZohoOAuth
from zoho_store_sync.zoho.records import ZohoRecords, json_body
from zoho_store_sync.zoho.settings import ZohoSettings

log = logging.getLogger(__name__)

# The scopes a tenant's grant code should be generated with (zoho-crm-api.md §2.7).
RECOMMENDED_SCOPES = (
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.fields.READ",
    "ZohoCRM.settings.layouts.READ",
    "ZohoCRM.org.READ",
    "ZohoCRM.bulk.ALL",
    "ZohoCRM.coql.READ",
    "ZohoFiles.files.ALL",
)
# Scope each operation needs, named in OAUTH_SCOPE_MISMATCH errors (Zoho's own answer names none).
_SCOPE_NEEDED = {
    "upsert": "ZohoCRM.modules.{module}.WRITE (or ZohoCRM.modules.ALL)",
    "insert": "ZohoCRM.modules.{module}.CREATE (or ZohoCRM.modules.ALL)",
    "update": "ZohoCRM.modules.{module}.UPDATE (or ZohoCRM.modules.ALL)",
    "get": "ZohoCRM.modules.{module}.READ (or ZohoCRM.modules.ALL)",
    "get_record": "ZohoCRM.modules.{module}.READ (or ZohoCRM.modules.ALL)",
    "deleted": "ZohoCRM.modules.{module}.READ (or ZohoCRM.modules.ALL)",
    "delete": "ZohoCRM.modules.{module}.DELETE (or ZohoCRM.modules.ALL)",
    "convert": "ZohoCRM.modules.leads.CREATE (or ZohoCRM.modules.ALL)",
    "fields": "ZohoCRM.settings.fields.READ",
    "org": "ZohoCRM.org.READ",
    "layouts": "ZohoCRM.settings.layouts.READ",
    "users": "ZohoCRM.users.READ",
    "coql": "ZohoCRM.coql.READ",
    "upload": "ZohoFiles.files.ALL",
    "bulk_write": "ZohoCRM.bulk.CREATE (or ZohoCRM.bulk.ALL) plus ZohoCRM.modules.{module}.WRITE",
    "bulk_status": "ZohoCRM.bulk.CREATE (or ZohoCRM.bulk.ALL)",
    "bulk_download": "ZohoCRM.bulk.CREATE (or ZohoCRM.bulk.ALL)",
}


@dataclass
class CallStats:
    """API calls and credits spent through one client (token calls are not API calls)."""

    api_calls: int = 0
    write_calls: int = 0
    credits: int = 0
    token_calls: int = 0
    retries: int = 0
    credits_remaining: int | None = None
    by_operation: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, operation: str, credits: int, write: bool) -> None:
        with self._lock:
            self.api_calls += 1
            self.write_calls += int(write)
            self.credits += credits
            self.by_operation[operation] = self.by_operation.get(operation, 0) + 1

    def count_token_call(self) -> None:
        with self._lock:
            self.token_calls += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "api_calls": self.api_calls,
            "write_calls": self.write_calls,
            "credits": self.credits,
            "token_calls": self.token_calls,
            "retries": self.retries,
            "credits_remaining": self.credits_remaining,
            "by_operation": dict(self.by_operation),
        }


class _ZohoTokenAuth(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_ZohoTokenAuth(***)"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Zoho-oauthtoken {self._token}"
        return request


class ZohoClient:
    """Talks to one Zoho CRM org: ``records`` (upsert, update, delete, ...), ``bulk`` (Bulk Write), ``oauth``.

    :param settings: the connection's settings, or a function reading them (called once, when first needed).
    :param token_cache: where access tokens are shared between tasks and workers (default: this process).
    :param max_concurrency: in-flight API calls allowed from this client at once (Zoho's per-org limit).
    :param max_retries: attempts after a 429, 5xx or dropped connection before giving up.
    :param backoff: the waits between those attempts; a ``Retry-After`` is honoured up to its cap.
    :param token_policy: when tokens are refreshed and how long a throttled refresh may wait.
    :param session_factory: makes each thread's HTTP session. Every wait (retries, polls, a throttled refresh)
        goes through ``transport.sleep``.
    :param mask: told every secret the client reads or receives (Airflow masks them in logs).
    """

    def __init__(
        self,
        settings: ZohoSettings | Callable[[], ZohoSettings],
        *,
        token_cache: TokenCache | None = None,
        max_concurrency: int = ZOHO_DEFAULT_CONCURRENCY,
        max_retries: int = 6,
        backoff: Backoff = Backoff(base=0.5, cap=30.0, floor=0.5),
        timeout: float = 60.0,
        token_policy: TokenPolicy = TokenPolicy(),
        session_factory: Callable[[], requests.Session] | None = None,
        mask: Callable[[str], None] = lambda secret: None,
    ) -> None:
        self._read_settings = settings if callable(settings) else (lambda: settings)
        self._settings: ZohoSettings | None = None
        self._settings_lock = threading.Lock()
        self.stats = CallStats()
        self.transport = RetryingTransport(
            "zoho",
            max_retries=max_retries,
            backoff=backoff,
            timeout=timeout,
            session_factory=session_factory,
            max_in_flight=max_concurrency,
            on_retry=lambda *_: self.stats.count_retry(),
        )
        self.oauth = ZohoOAuth(
            lambda: self.settings,
            self.transport,
            token_cache or MemoryTokenCache(),
            policy=token_policy,
            on_token_request=self.stats.count_token_call,
            mask=mask,
        )
        self.records = ZohoRecords(self)
        self.bulk = ZohoBulkWrite(self)
        # Zoho's first daily-limit answer: from then on this client sends nothing more (every call would be refused).
        self.credits_exhausted: ZohoCreditsExhausted | None = None

    @property
    def settings(self) -> ZohoSettings:
        """Client id/secret, refresh token and allowed hosts, read once."""
        with self._settings_lock:
            if self._settings is None:
                self._settings = self._read_settings()
            return self._settings

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        credits: int = ZOHO_CREDITS["default"],
        write: bool = False,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        files: Any = None,
        base_url: str | None = None,
        module: str | None = None,
    ) -> requests.Response:
        """One API call with token, concurrency cap, backoff and a single refresh on an auth failure.

        Returns the response for any status Zoho uses for record results (2xx, 207, 400, 404, 412);
        raises for auth, scope and persistent load failures. ``data``: a JSON body already encoded. ``files``
        must be re-readable (bytes) since a retry sends them again.
        """
        if data is not None:
            headers = {**(headers or {}), "Content-Type": "application/json"}
        call = _ApiCall(self, operation, credits, write, path, base_url, module)
        try:
            response = self.transport.request(
                method,
                call.url,
                auth=call.auth,
                on_answer=call.on_answer,
                on_failure=call.on_failure,
                renew_auth=call.renew,
                what=f"zoho {operation}",
                params=params,
                json=json,
                data=data,
                headers=headers,
                files=files,
            )
        except TRANSIENT_ERRORS as exc:
            raise ZohoUnavailable(
                f"{operation}: connection failed {self.transport.max_retries + 1} times ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status == 401:
            raise ZohoAuthError(f"{operation}: Zoho refused a freshly refreshed token ({call.code})")
        if transient_status(status):
            raise ZohoUnavailable(
                f"{operation}: Zoho answered HTTP {status} ({call.code}) {self.transport.max_retries + 1} times"
            )
        return response


class _ApiCall:
    """One API call across its attempts: the token each attempt sends, and what Zoho's answers mean."""

    def __init__(
        self,
        client: ZohoClient,
        operation: str,
        credits: int,
        write: bool,
        path: str,
        base_url: str | None,
        module: str | None,
    ) -> None:
        self.client, self.operation, self.credits, self.write = client, operation, credits, write
        self.path, self.base_url, self.module = path, base_url, module
        self.token: AccessToken | None = None
        self.code: str | None = None  # Zoho's error code in the last answer

    def url(self) -> str:
        self._refuse_without_credits()
        self.token = self.client.oauth.access_token()
        url = f"{(self.base_url or self.token.api_domain).rstrip('/')}{self.path}"
        self.client.settings.check_host(url)
        return url

    def auth(self) -> AuthBase:
        assert self.token is not None  # url() ran first
        return _ZohoTokenAuth(self.token.value)

    def _refuse_without_credits(self) -> None:
        """Before each attempt: once Zoho said the day's credits are used up, or its last count of remaining
        credits is below this call's cost, the call is not sent (it could only be refused, and waste a second)."""
        client = self.client
        remaining = client.stats.credits_remaining
        if client.credits_exhausted is None and remaining is not None and remaining < self.credits:
            answer = (
                f"Zoho reported {remaining} credits remaining (X-API-CREDITS-REMAINING) and one {self.operation} call "
                f"costs {self.credits}"
            )
            client.credits_exhausted = _exhausted(answer, remaining)
        if client.credits_exhausted is not None:
            first = client.credits_exhausted
            raise ZohoCreditsExhausted(
                f"{self.operation}: not sent: {first}", answer=first.answer, remaining=first.remaining
            )

    def on_failure(self, error: BaseException) -> None:
        self.client.stats.add(self.operation, 0, self.write)

    def on_answer(self, response: requests.Response) -> None:
        """Counts the call and its credits; raises what no retry can fix (a missing scope or permission)."""
        stats, status = self.client.stats, response.status_code
        self.code = code = _error_code(response)
        stats.add(self.operation, self.credits if _billed(status, code) else 0, self.write)
        remaining = response.headers.get("X-API-CREDITS-REMAINING")
        if remaining is not None and remaining.strip().isdigit():
            stats.credits_remaining = int(remaining)
        if status == 429 and daily_limit_reached(response, self.credits, stats.credits_remaining):
            body = json_body(response)
            said = (body.get("message") or body.get("error_info")) if isinstance(body, dict) else None
            answer = (
                f"{self.operation}: HTTP 429 {code or 'TOO_MANY_REQUESTS'}"
                + (f" {str(said)[:200]!r}" if said else "")
                + f", X-API-CREDITS-REMAINING {remaining.strip() if remaining else 'not sent'}"
            )
            error = _exhausted(answer, stats.credits_remaining)
            self.client.credits_exhausted = self.client.credits_exhausted or error
            raise error
        if code == "OAUTH_SCOPE_MISMATCH":
            needed = _SCOPE_NEEDED.get(self.operation, "the scope of this API").format(
                module=(self.module or _module_of(self.path) or "<module>").lower()
            )
            raise ZohoScopeError(
                f"{self.operation}: the refresh token lacks the OAuth scope {needed} (OAUTH_SCOPE_MISMATCH; "
                f"granted: {(self.token.scope if self.token else '') or 'unknown'}); generate a new grant code "
                f"with the scopes {','.join(RECOMMENDED_SCOPES)} and connect the tenant again",
                scope=needed,
            )
        if status != 401 and (status == 403 or code == "NO_PERMISSION"):
            body = json_body(response)
            details = body.get("details", {}) if isinstance(body, dict) else {}
            permissions = [str(p) for p in (details.get("permissions") or [])]
            raise ZohoScopeError(
                f"{self.operation}: the connected Zoho user lacks the permission "
                f"{', '.join(permissions) or '(not named by Zoho)'} (NO_PERMISSION); give the user's profile "
                "that permission in Zoho CRM (Setup → Security Control → Profiles)",
                permissions=permissions,
            )

    def renew(self, response: requests.Response) -> bool:
        """A refused token (401) is refreshed once, through the shared cache, and the call sent again."""
        if response.status_code != 401:
            return False
        log.info("zoho %s: access token refused (%s); refreshing once", self.operation, self.code)
        self.client.oauth.shared_token(rejected=self.token.value if self.token else None)
        return True


def _error_code(response: requests.Response) -> str | None:
    if "json" not in (response.headers.get("Content-Type") or "json"):
        return None  # e.g. a zip download: no error code to read
    body = json_body(response)
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            return body["code"]
        data = body.get("data")
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and response.status_code >= 400:
            return data[0].get("code")
    return None


def _exhausted(answer: str, remaining: int | None) -> ZohoCreditsExhausted:
    return ZohoCreditsExhausted(
        f"Zoho's daily API credits for this org are used up ({answer}); nothing more is sent: Zoho frees each "
        "call's credits 24 h after it, run again then",
        answer=answer,
        remaining=remaining,
    )


# Zoho answers both the daily credit limit and the concurrency throttle with HTTP 429 TOO_MANY_REQUESTS; only the
# message tells them apart (zoho-crm-api.md §8.2: "…for the past 24 hours", "…for the 24 hour period is exceeded",
# versus "The concurrency limit of the app has been exceeded").
_DAILY_LIMIT_WORDS = ("24 hour", "credit", "per day")


def daily_limit_reached(response: requests.Response, credits: int, last_remaining: int | None) -> bool:
    """A 429 for the org's daily credits, not a concurrency throttle: Zoho's message says so, or the credits it
    reported remaining (this answer's X-API-CREDITS-REMAINING, else the last one seen) are below the call's cost."""
    if response.status_code != 429:
        return False
    body = json_body(response)
    said = " ".join(str(body.get(k) or "") for k in ("message", "error_info")).lower() if isinstance(body, dict) else ""
    if "concurren" in said:
        return False
    if any(word in said for word in _DAILY_LIMIT_WORDS):
        return True
    header = (response.headers.get("X-API-CREDITS-REMAINING") or "").strip()
    remaining = int(header) if header.isdigit() else last_remaining
    return remaining is not None and remaining < max(credits, 1)


def _billed(status: int, code: str | None) -> bool:
    """Zoho does not bill calls refused before processing: auth, throttling, unknown URLs, its own errors."""
    return status < 500 and status not in (401, 403, 429) and code != "INVALID_URL_PATTERN"


def _module_of(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    return parts[2] if len(parts) > 2 and parts[:2] == ["crm", ZOHO_API_VERSION] else None
