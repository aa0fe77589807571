"""The Zoho CRM hook: OAuth refresh token in a Connection, frugal and safe calls to the v8 API.

Connection (any conn type; ``http`` works):

* ``login``: the client id; ``password``: the client secret.
* extra ``refresh_token``: the org's refresh token (see the README for how to obtain it).
* extra ``data_centre``: ``us``, ``eu``, ``in``, ``au``, ``jp``, ``ca``, ``sa``, ``cn`` or ``uk``;
  extra ``environment``: ``production`` (default), ``sandbox`` or ``developer``.
* Or, for a local sandbox only: extras ``accounts_url`` and ``api_domain`` with ``allow_custom_hosts: true``.

Only the hosts of the configured data centre are ever called, so a token cannot be sent elsewhere.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from urllib.parse import urlparse

import requests
from requests.auth import AuthBase

from airflow.providers.http.hooks.http import HttpHook
from zoho_store_sync.hooks.zoho_tokens import (
    AccessToken,
    MemoryTokenCache,
    TokenCache,
    cache_key,
    cipher_for,
)
from zoho_store_sync.settings import (
    ZOHO_API_HOST_PREFIXES,
    ZOHO_API_VERSION,
    ZOHO_CREDITS,
    ZOHO_DATA_CENTRES,
    ZOHO_DEFAULT_CONCURRENCY,
    ZOHO_MAX_RECORDS_PER_WRITE,
    ZOHO_TOKEN_REFRESH_MARGIN_S,
    ZOHO_TOKEN_WINDOW_S,
    ZOHO_TOKENS_PER_WINDOW,
)

# Extras the hook owns: never turned into HTTP headers (HttpHook sends unknown extras as headers).
_OWN_EXTRAS = frozenset(
    {"refresh_token", "data_centre", "environment", "accounts_url", "api_domain", "allow_custom_hosts",
     "redirect_uri", "timeout", "max_retries"}
)
# Record-level codes that a retry cannot fix until the data changes.
PERMANENT_CODES = frozenset(
    {"INVALID_DATA", "MANDATORY_NOT_FOUND", "DUPLICATE_DATA", "MULTIPLE_OR_MULTI_ERRORS", "DEPENDENT_FIELD_MISSING",
     "DEPENDENT_MISMATCH", "INVALID_MODULE", "INVALID_REQUEST_METHOD", "AUTHORIZATION_FAILED", "NOT_APPROVED",
     "ID_ALREADY_CONVERTED", "LIMIT_EXCEEDED"}
)
_OAUTH_ERROR_ADVICE = {
    "invalid_code": "the grant code or refresh token is expired, already used or revoked: generate a new grant "
    "code in the Zoho API console (it lives only minutes) and connect the tenant again",
    "invalid_client": "Zoho does not know this client id in this data centre: check the client id and the "
    "connection's data_centre (an EU org must use 'eu', a Canadian one 'ca', ...)",
    "invalid_client_secret": "the client secret is wrong: copy it again from the Zoho API console",
    "invalid_redirect_uri": "the redirect URI differs from the one registered for the client in the Zoho API "
    "console: use exactly the registered value",
    "Access Denied": "Zoho throttled token requests (more than 10 access tokens in 10 minutes for this refresh "
    "token): wait a few minutes; tokens are shared between tasks, so this means something else uses the same "
    "refresh token",
}


class ZohoError(Exception):
    """Base of the hook's errors. Messages never contain a token or secret."""

    retryable = False


class ZohoConfigError(ZohoError):
    """The connection is incomplete or names a host outside the configured data centre."""


class ZohoOAuthError(ZohoError):
    """Zoho's accounts server refused a token request (reported in an HTTP 200 body)."""

    def __init__(self, code: str, description: str = "") -> None:
        self.code = code
        advice = _OAUTH_ERROR_ADVICE.get(code, "see Zoho's OAuth documentation")
        super().__init__(f"Zoho OAuth error {code!r}{': ' + description if description else ''}. What to do: {advice}")


class ZohoTokenThrottled(ZohoOAuthError):
    retryable = True

    def __init__(self, description: str = "") -> None:
        super().__init__("Access Denied", description)


class ZohoAuthError(ZohoError):
    """The API refused the token even after one refresh."""


class ZohoScopeError(ZohoError):
    """OAUTH_SCOPE_MISMATCH or NO_PERMISSION: fail fast, retries cannot help."""


class ZohoUnavailable(ZohoError):
    """429, 5xx or dropped connections persisted through every retry."""

    retryable = True


@dataclass(frozen=True)
class RecordOutcome:
    """What Zoho answered for one record of a write, read positionally from ``data[i]``."""

    ok: bool
    code: str
    message: str = ""
    action: str | None = None  # "insert" / "update" for upserts
    zoho_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        return not self.ok and self.code not in PERMANENT_CODES

    def describe(self) -> str:
        extra = {k: v for k, v in self.details.items() if k in ("api_name", "maximum_length", "expected_data_type")}
        return f"{self.code}: {self.message}" + (f" {extra}" if extra else "")


@dataclass
class CallStats:
    """API calls and credits spent through one hook instance (token calls are not API calls)."""

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

    def as_dict(self) -> dict[str, Any]:
        return {"api_calls": self.api_calls, "write_calls": self.write_calls, "credits": self.credits,
                "token_calls": self.token_calls, "retries": self.retries,
                "credits_remaining": self.credits_remaining, "by_operation": dict(self.by_operation)}


def write_credits(n_records: int) -> int:
    """Insert, update and upsert cost one credit per 10 records (zoho-crm-api.md §8.1)."""
    return max(1, math.ceil(n_records / 10) * ZOHO_CREDITS["write_per_10_records"])


class _ZohoTokenAuth(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Zoho-oauthtoken {self._token}"
        return request


_SHARED_MEMORY_CACHE = MemoryTokenCache()


class ZohoCrmHook(HttpHook):
    """Talks to one Zoho CRM org with a refresh token held in an Airflow Connection.

    :param zoho_conn_id: the Connection holding client id/secret, refresh token and data centre.
    :param token_cache: where access tokens are shared; defaults to a process-local cache. Pipelines pass the
        state database's cache so every task and worker reuses one token per org and client.
    :param refresh_token_store: read when the Connection has no ``refresh_token`` extra (see zoho_connect).
    :param max_concurrency: in-flight API calls allowed from this hook at once (Zoho's per-org limit).
    :param max_retries: attempts after a 429, 5xx or dropped connection before giving up.
    """

    conn_name_attr = "zoho_conn_id"
    default_conn_name = "zoho_default"
    conn_type = "zoho_crm"
    hook_name = "Zoho CRM"

    def __init__(
        self,
        zoho_conn_id: str = default_conn_name,
        *,
        token_cache: TokenCache | None = None,
        refresh_token_store: Any = None,
        max_concurrency: int = ZOHO_DEFAULT_CONCURRENCY,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(method="GET", http_conn_id=zoho_conn_id)
        self.zoho_conn_id = zoho_conn_id
        self.token_cache: TokenCache = token_cache or _SHARED_MEMORY_CACHE
        # Where zoho_connect stored the refresh token when the Connection holds none (state.RefreshTokenStore).
        self.refresh_token_store = refresh_token_store
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout
        self.stats = CallStats()
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._local = threading.local()
        self._settings_lock = threading.Lock()
        self._settings: dict[str, Any] | None = None
        self._token: AccessToken | None = None
        self._random = random.Random()

    # --- connection settings ---------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """Client id/secret, refresh token and allowed hosts, read once from the Connection."""
        with self._settings_lock:
            if self._settings is None:
                self._settings = self._read_settings()
            return self._settings

    def _read_settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.zoho_conn_id)
        extra = conn.extra_dejson
        missing = [name for name, value in (("login (client id)", conn.login), ("password (client secret)",
                   conn.password)) if not value]
        if missing:
            raise ZohoConfigError(f"Zoho connection {self.zoho_conn_id!r} lacks {', '.join(missing)}")
        if extra.get("allow_custom_hosts") in (True, "true", "True"):
            accounts_url = str(extra.get("accounts_url") or "").rstrip("/")
            api_domain = str(extra.get("api_domain") or "").rstrip("/")
            if not accounts_url or not api_domain:
                raise ZohoConfigError(
                    f"Zoho connection {self.zoho_conn_id!r}: allow_custom_hosts needs accounts_url and api_domain"
                )
            allowed_api_hosts = {urlparse(api_domain).netloc}
        else:
            dc = str(extra.get("data_centre") or "").lower()
            if dc not in ZOHO_DATA_CENTRES:
                raise ZohoConfigError(
                    f"Zoho connection {self.zoho_conn_id!r}: extra 'data_centre' must be one of "
                    f"{sorted(ZOHO_DATA_CENTRES)}, got {dc!r}"
                )
            environment = str(extra.get("environment") or "production").lower()
            prefix = {"production": "www", "sandbox": "sandbox", "developer": "developer"}.get(environment)
            if prefix is None:
                raise ZohoConfigError(f"Zoho connection {self.zoho_conn_id!r}: unknown environment {environment!r}")
            accounts_url, suffix = ZOHO_DATA_CENTRES[dc]
            api_domain = f"https://{prefix}.{suffix}"
            allowed_api_hosts = {f"{p}.{suffix}" for p in ZOHO_API_HOST_PREFIXES} | {f"content.{suffix}"}
        return {
            "client_id": conn.login,
            "client_secret": conn.password,
            "refresh_token": extra.get("refresh_token") or (
                self.refresh_token_store.load(self.zoho_conn_id, conn.password) if self.refresh_token_store else None),
            "redirect_uri": extra.get("redirect_uri"),
            "accounts_url": accounts_url,
            "api_domain": api_domain,
            "allowed_api_hosts": allowed_api_hosts,
        }

    def _host_allowed(self, url: str) -> bool:
        return urlparse(url).netloc in self.settings["allowed_api_hosts"]

    def _check_host(self, url: str) -> None:
        host = urlparse(url).netloc
        if not self._host_allowed(url):
            raise ZohoConfigError(
                f"refusing to send a Zoho token to {host!r}: not a host of the connection's data centre"
            )

    # --- HTTP sessions ---------------------------------------------------------------------------
    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A requests session without basic auth and without the hook's own extras as headers."""
        session = super().get_conn(headers, extra_options)
        session.auth = None  # HttpHook would send client id/secret as basic auth
        for name in list(session.headers):
            if name in _OWN_EXTRAS:
                del session.headers[name]
        return session

    def _session(self) -> requests.Session:
        # One keep-alive session per thread: requests.Session is not documented as thread-safe.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.get_conn()
        return session

    # --- OAuth -----------------------------------------------------------------------------------
    def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        url = f"{self.settings['accounts_url']}/oauth/v2/token"
        self.stats.token_calls += 1
        try:
            response = self._session().post(url, data=form, timeout=self.timeout, auth=None)
        except requests.RequestException as exc:
            raise ZohoUnavailable(f"Zoho accounts server unreachable: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            raise ZohoUnavailable(f"Zoho accounts server answered HTTP {response.status_code} without JSON") from None
        if "access_token" in body:
            return body
        code = str(body.get("error") or f"HTTP {response.status_code}")
        if code == "Access Denied" or "too many requests" in str(body.get("error_description", "")).lower():
            raise ZohoTokenThrottled(str(body.get("error_description", "")))
        raise ZohoOAuthError(code, str(body.get("error_description", "")))

    def _to_access_token(self, body: dict[str, Any]) -> AccessToken:
        api_domain = str(body.get("api_domain") or self.settings["api_domain"]).rstrip("/")
        self._check_host(api_domain)
        expires_in = float(body.get("expires_in") or 3600)
        if expires_in > 100_000:  # old responses gave milliseconds
            expires_in /= 1000
        token = AccessToken(str(body["access_token"]), api_domain, time.time() + expires_in, str(body.get("scope", "")))
        self._mask(token.value)
        return token

    @staticmethod
    def _mask(secret: str) -> None:
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(secret)
        except Exception:  # masking is best effort outside a task
            pass

    def _refresh(self, recent_refreshes: list[float]) -> AccessToken:
        """One refresh, staying under Zoho's 10 access tokens per 10 minutes; a throttle means wait."""
        refresh_token = self.settings["refresh_token"]
        if not refresh_token:
            raise ZohoConfigError(
                f"Zoho connection {self.zoho_conn_id!r} has no refresh_token: connect the tenant first (zoho_connect)"
            )
        for attempt in range(3):
            now = time.time()
            window = [t for t in recent_refreshes if now - t < ZOHO_TOKEN_WINDOW_S]
            if len(window) >= ZOHO_TOKENS_PER_WINDOW:
                wait = ZOHO_TOKEN_WINDOW_S - (now - min(window)) + 1
                raise ZohoTokenThrottled(f"our own budget: 10 tokens in 10 minutes already used; retry in {wait:.0f} s")
            try:
                body = self._token_request({
                    "grant_type": "refresh_token",
                    "client_id": self.settings["client_id"],
                    "client_secret": self.settings["client_secret"],
                    "refresh_token": refresh_token,
                })
                return self._to_access_token(body)
            except ZohoTokenThrottled:
                if attempt == 2:
                    raise
                time.sleep(min(self.backoff_cap, 5.0 * (attempt + 1)))  # retrying at once lengthens the lockout
        raise AssertionError("unreachable")

    def get_access_token(self, *, force_refresh: bool = False) -> AccessToken:
        """The current access token, shared through the token cache; refreshed shortly before expiry."""
        margin = ZOHO_TOKEN_REFRESH_MARGIN_S
        token = self._token
        if not force_refresh and token is not None and token.valid_for(margin):
            return token
        s = self.settings
        key = cache_key(s["client_id"], s["refresh_token"] or "")
        cipher = cipher_for(s["client_secret"], s["refresh_token"] or "")
        if force_refresh and token is not None:
            self.token_cache.invalidate(key, cipher, token.value)
        def usable(candidate: AccessToken) -> bool:
            # A token cached for another host (the connection's data centre changed) is useless here.
            return candidate.valid_for(margin) and self._host_allowed(candidate.api_domain)

        cached = self.token_cache.get(key, cipher)
        if cached is None or not usable(cached):
            cached = self.token_cache.refresh_exclusively(key, cipher, usable, self._refresh)
        self._check_host(cached.api_domain)
        self._mask(cached.value)
        self._token = cached
        return cached

    def exchange_grant_code(self, code: str, redirect_uri: str | None = None) -> dict[str, Any]:
        """Grant code → refresh token (returned, never logged). The code is single use and lives minutes."""
        form = {"grant_type": "authorization_code", "client_id": self.settings["client_id"],
                "client_secret": self.settings["client_secret"], "code": code}
        if redirect_uri or self.settings["redirect_uri"]:
            form["redirect_uri"] = redirect_uri or self.settings["redirect_uri"]
        body = self._token_request(form)
        if "refresh_token" not in body:
            raise ZohoOAuthError("no_refresh_token", "the grant was not requested with access_type=offline")
        self._mask(body["refresh_token"])
        self._to_access_token(body)
        return body

    # --- API calls -------------------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.backoff_cap, float(retry_after))
            except ValueError:
                pass
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return self._random.uniform(ceiling / 2, ceiling)  # jitter: concurrent tasks don't retry in step

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
        headers: dict[str, str] | None = None,
        files: Any = None,
        base_url: str | None = None,
    ) -> requests.Response:
        """One API call with token, concurrency cap, backoff and a single refresh on an auth failure.

        Returns the response for any status Zoho uses for record results (2xx, 207, 400, 404);
        raises for auth, scope and persistent load failures.
        """
        refreshed = False
        attempt = 0
        while True:
            token = self.get_access_token()
            url = f"{(base_url or token.api_domain).rstrip('/')}{path}"
            self._check_host(url)
            try:
                with self._slots:
                    response = self._session().request(
                        method, url, params=params, json=json, headers=headers, files=files,
                        auth=_ZohoTokenAuth(token.value), timeout=self.timeout,
                    )
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.stats.add(operation, 0, False)
                if attempt >= self.max_retries:
                    raise ZohoUnavailable(f"{operation}: connection failed {attempt + 1} times ({type(exc).__name__})") from None
                self.stats.retries += 1
                time.sleep(self._backoff(attempt, None))
                attempt += 1
                continue
            self.stats.add(operation, credits if response.status_code < 500 else 0, write)
            remaining = response.headers.get("X-API-CREDITS-REMAINING")
            if remaining is not None and remaining.isdigit():
                self.stats.credits_remaining = int(remaining)
            status = response.status_code
            code = _error_code(response)
            if status == 401 and code in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE", "INVALID_OAUTHTOKEN"):
                if refreshed:
                    raise ZohoAuthError(f"{operation}: Zoho refused a freshly refreshed token ({code})")
                self.get_access_token(force_refresh=True)
                refreshed = True
                continue
            if code == "OAUTH_SCOPE_MISMATCH":
                raise ZohoScopeError(
                    f"{operation}: the refresh token lacks the OAuth scope for this call (OAUTH_SCOPE_MISMATCH); "
                    "grant a new token with ZohoCRM.modules.ALL (or the module's WRITE scope), "
                    "ZohoCRM.settings.fields.READ and ZohoCRM.org.READ"
                )
            if status == 403 or code == "NO_PERMISSION":
                permissions = _error_details(response).get("permissions")
                raise ZohoScopeError(
                    f"{operation}: the Zoho user lacks a permission (NO_PERMISSION {permissions or ''}); "
                    "give the connected user's profile that permission"
                )
            if status == 429 or status >= 500:
                if attempt >= self.max_retries:
                    raise ZohoUnavailable(f"{operation}: Zoho answered HTTP {status} ({code}) {attempt + 1} times")
                self.stats.retries += 1
                time.sleep(self._backoff(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            return response

    # --- record operations -----------------------------------------------------------------------
    def upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any]],
        *,
        duplicate_check_fields: Sequence[str] = ("Email",),
        trigger: Sequence[str] | None = None,
    ) -> list[RecordOutcome]:
        """Insert-or-update up to 100 records matched on ``duplicate_check_fields``; one outcome per record."""
        if not records:
            return []
        if len(records) > ZOHO_MAX_RECORDS_PER_WRITE:
            raise ValueError(f"at most {ZOHO_MAX_RECORDS_PER_WRITE} records per upsert, got {len(records)}")
        body: dict[str, Any] = {"data": list(records), "duplicate_check_fields": list(duplicate_check_fields)}
        if trigger is not None:
            body["trigger"] = list(trigger)
        response = self.request(
            "POST", f"/crm/{ZOHO_API_VERSION}/{module}/upsert", operation="upsert",
            credits=write_credits(len(records)), write=True, json=body,
        )
        return parse_record_outcomes(response, len(records))

    def get_records(self, module: str, ids: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """Records by id (at most 100 ids per call), only the named fields."""
        ids = list(ids)
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):
            response = self.request(
                "GET", f"/crm/{ZOHO_API_VERSION}/{module}", operation="get",
                params={"ids": ",".join(ids[start:start + 100]), "fields": ",".join(fields)},
            )
            if response.status_code == 204:
                continue
            _raise_for_request_error(response, "get")
            found.extend(response.json().get("data", []))
        return found

    def get_fields(self, module: str) -> list[dict[str, Any]]:
        """Field metadata of a module: api_name, data_type, length, read_only, system_mandatory, ..."""
        response = self.request("GET", f"/crm/{ZOHO_API_VERSION}/settings/fields", operation="fields",
                                params={"module": module})
        _raise_for_request_error(response, "fields")
        return response.json().get("fields", [])

    def test_connection(self) -> tuple[bool, str]:
        try:
            token = self.get_access_token()
            self.get_fields("Contacts")
        except ZohoError as exc:
            return False, str(exc)
        return True, f"Connected to {token.api_domain}"


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_code(response: requests.Response) -> str | None:
    body = _json(response)
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            return body["code"]
        data = body.get("data")
        if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict) and response.status_code >= 400:
            return data[0].get("code")
    return None


def _error_details(response: requests.Response) -> dict[str, Any]:
    body = _json(response)
    return body.get("details", {}) if isinstance(body, dict) else {}


def _raise_for_request_error(response: requests.Response, operation: str) -> None:
    if response.status_code >= 400:
        body = _json(response) or {}
        raise ZohoError(f"{operation}: HTTP {response.status_code} {body.get('code', '')} {body.get('message', '')}")


def parse_record_outcomes(response: requests.Response, expected: int) -> list[RecordOutcome]:
    """Positional outcomes of a write (200/201/207/400). A request-level error applies to every record."""
    body = _json(response)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and len(data) == expected:
        return [_outcome(item) for item in data]
    code = (body or {}).get("code", f"HTTP_{response.status_code}") if isinstance(body, dict) else f"HTTP_{response.status_code}"
    message = (body or {}).get("message", "unexpected response") if isinstance(body, dict) else "unexpected response"
    return [RecordOutcome(ok=False, code=str(code), message=str(message))] * expected


def _outcome(item: dict[str, Any]) -> RecordOutcome:
    details = item.get("details") or {}
    ok = item.get("status") == "success" or item.get("code") == "SUCCESS"
    return RecordOutcome(
        ok=ok,
        code=str(item.get("code", "UNKNOWN")),
        message=str(item.get("message", "")),
        action=item.get("action"),
        zoho_id=str(details["id"]) if ok and details.get("id") else None,
        details=details if not ok else {},
    )
