"""The Zoho CRM hook: OAuth refresh token in a Connection, frugal and safe calls to the v8 API.

Connection (any conn type; ``http`` works):

* ``login``: the client id; ``password``: the client secret.
* extra ``refresh_token``: the org's refresh token (see the README for how to obtain it).
* extra ``data_centre``: ``us``, ``eu``, ``in``, ``au``, ``jp``, ``ca``, ``sa``, ``cn`` or ``uk``;
  extra ``environment``: ``production`` (default), ``sandbox`` or ``developer``.
* Or, for a local sandbox only: extras ``accounts_url`` and ``api_domain`` with ``allow_custom_hosts: true``.

Only the hosts of the configured data centre are ever called (API host, file-upload host, bulk-result
download host), so a token cannot be sent elsewhere. Nothing from the extras becomes an HTTP header.
"""

from __future__ import annotations

import csv
import email.utils
import io
import json as jsonlib  # `json` is a parameter name of request()
import logging
import math
import random
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlparse, urlsplit

import requests
from requests.auth import AuthBase

from airflow.providers.http.hooks.http import HttpHook
from zoho_store_sync.hooks._session import plain_session
from zoho_store_sync.errors import (  # noqa: F401 - re-exported: the hook raises these
    ZohoAuthError,
    ZohoConfigError,
    ZohoError,
    ZohoOAuthError,
    ZohoRequestError,
    ZohoScopeError,
    ZohoTokenThrottled,
    ZohoUnavailable,
)
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
    ZOHO_MAX_PER_PAGE,
    ZOHO_MAX_RECORDS_PER_WRITE,
    ZOHO_TOKEN_REFRESH_MARGIN_S,
    ZOHO_TOKEN_WINDOW_S,
    ZOHO_TOKENS_PER_WINDOW,
)

log = logging.getLogger(__name__)

# Extras the hook owns. Kept for callers; the hook's sessions never turn any extra into a header.
_OWN_EXTRAS = frozenset(
    {"refresh_token", "data_centre", "environment", "accounts_url", "api_domain", "allow_custom_hosts",
     "redirect_uri", "timeout", "max_retries"}
)
# Record-level codes that a retry cannot fix until the data changes.
PERMANENT_CODES = frozenset(
    {"INVALID_DATA", "MANDATORY_NOT_FOUND", "DUPLICATE_DATA", "MULTIPLE_OR_MULTI_ERRORS", "DEPENDENT_FIELD_MISSING",
     "DEPENDENT_MISMATCH", "INVALID_MODULE", "INVALID_REQUEST_METHOD", "AUTHORIZATION_FAILED", "NOT_APPROVED",
     "ID_ALREADY_CONVERTED", "LIMIT_EXCEEDED", "CONVERTED_RECORD", "RECORD_LOCKED", "BLOCKED_RECORD"}
)
# The scopes a tenant's grant code should be generated with (zoho-crm-api.md §2.7).
RECOMMENDED_SCOPES = ("ZohoCRM.modules.ALL", "ZohoCRM.settings.fields.READ", "ZohoCRM.org.READ", "ZohoCRM.bulk.ALL",
                      "ZohoFiles.files.ALL")
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
    "upload": "ZohoFiles.files.ALL",
    "bulk_write": "ZohoCRM.bulk.CREATE (or ZohoCRM.bulk.ALL) plus ZohoCRM.modules.{module}.WRITE",
    "bulk_status": "ZohoCRM.bulk.CREATE (or ZohoCRM.bulk.ALL)",
    "bulk_download": "ZohoCRM.bulk.CREATE (or ZohoCRM.bulk.ALL)",
}
_AUTH_CODES = frozenset({"INVALID_TOKEN", "AUTHENTICATION_FAILURE", "INVALID_OAUTHTOKEN"})
_TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)

# --- Bulk Write (zoho-crm-api.md §9) --------------------------------------------------------------
BULK_MAX_RECORDS = 25_000  # per file (Leads, Contacts, custom modules)
BULK_MAX_ZIP_BYTES = 25 * 1024 * 1024
BULK_POLLS_ESTIMATE = 10  # status polls budgeted per job when choosing a path (1 credit each)
# File-upload host per data centre ([SDK]); sandbox and developer orgs upload to the same host.
_FILE_UPLOAD_HOSTS = {"ca": "upload.zohocloud.ca", "sa": "files.zoho.sa"}


def _file_upload_host(dc: str, suffix: str) -> str:
    return _FILE_UPLOAD_HOSTS.get(dc, f"content.{suffix}")


def _download_host(suffix: str) -> str:
    # The OAS sample names https://download.zohocrm.com/...; other data centres by the same pattern (UNVERIFIED).
    return "download.zohocrm." + suffix.split(".", 1)[1]


@dataclass(frozen=True)
class RecordOutcome:
    """What Zoho answered for one record of a write, read positionally from ``data[i]``."""

    ok: bool
    code: str
    message: str = ""
    action: str | None = None  # "insert" / "update" for upserts and bulk rows, "convert", "delete"
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

    def count_token_call(self) -> None:
        with self._lock:
            self.token_calls += 1

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def as_dict(self) -> dict[str, Any]:
        return {"api_calls": self.api_calls, "write_calls": self.write_calls, "credits": self.credits,
                "token_calls": self.token_calls, "retries": self.retries,
                "credits_remaining": self.credits_remaining, "by_operation": dict(self.by_operation)}


class RecordJSON(str):
    """A record already encoded as a JSON object (a plan's payload): written into the request body as it is."""


def _records_body(records: Sequence[dict[str, Any] | RecordJSON], rest: dict[str, Any]) -> bytes:
    """``{"data": records, **rest}`` as JSON; pre-encoded records are spliced in, not parsed and re-encoded
    (that round trip was a fifth of the client's work per call in a reset)."""
    items = [record if isinstance(record, RecordJSON) else jsonlib.dumps(record) for record in records]
    tail = jsonlib.dumps(rest)[1:]  # '"duplicate_check_fields": [...]}'
    return ('{"data": [' + ", ".join(items) + "], " + tail).encode("utf-8")


def write_credits(n_records: int) -> int:
    """Insert, update and upsert cost one credit per 10 records (zoho-crm-api.md §8.1)."""
    return max(1, math.ceil(n_records / 10) * ZOHO_CREDITS["write_per_10_records"])


def estimate_write_credits(n_records: int, path: str) -> int:
    """Credits to write ``n_records`` by ``path``: "upsert" (100 a call, 1 per 10 records) or "bulk".

    Bulk: the org lookup (zgid), then per job of at most 25,000 records an upload, the 500-credit job,
    ``BULK_POLLS_ESTIMATE`` status polls and the result download.
    """
    if n_records <= 0:
        return 0
    if path == "upsert":
        full, rest = divmod(n_records, ZOHO_MAX_RECORDS_PER_WRITE)
        return full * write_credits(ZOHO_MAX_RECORDS_PER_WRITE) + (write_credits(rest) if rest else 0)
    if path == "bulk":
        jobs = math.ceil(n_records / BULK_MAX_RECORDS)
        per_job = ZOHO_CREDITS["bulk_write_job"] + 2 * ZOHO_CREDITS["default"] + BULK_POLLS_ESTIMATE
        return ZOHO_CREDITS["default"] + jobs * per_job
    raise ValueError(f"unknown write path {path!r}: expected 'upsert' or 'bulk'")


def choose_write_path(n_records: int) -> str:
    """"bulk" when Bulk Write costs fewer credits than batched upsert (above ~5,000 records), else "upsert"."""
    return "bulk" if estimate_write_credits(n_records, "bulk") < estimate_write_credits(n_records, "upsert") \
        else "upsert"


class _ZohoTokenAuth(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "_ZohoTokenAuth(***)"

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
    :param backoff_base: first backoff ceiling in seconds; doubles per attempt up to ``backoff_cap``.
    :param token_refresh_margin: refresh an access token this many seconds before it expires.
    :param token_throttle_pause: wait after Zoho's "too many requests" token answer (retrying at once
        lengthens the lockout).
    :param max_token_wait: longest total wait for a token while throttled before giving up (retryable).
    :param tokens_per_window: access tokens allowed per refresh token in ``token_window_s`` (Zoho: 10 per 600 s).
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
        token_refresh_margin: float = ZOHO_TOKEN_REFRESH_MARGIN_S,
        token_throttle_pause: float = 60.0,
        max_token_wait: float = ZOHO_TOKEN_WINDOW_S + 60.0,
        tokens_per_window: int = ZOHO_TOKENS_PER_WINDOW,
        token_window_s: float = ZOHO_TOKEN_WINDOW_S,
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
        self.token_refresh_margin = token_refresh_margin
        self.token_throttle_pause = token_throttle_pause
        self.max_token_wait = max_token_wait
        self.tokens_per_window = tokens_per_window
        self.token_window_s = token_window_s
        self.stats = CallStats()
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._local = threading.local()
        self._settings_lock = threading.Lock()
        self._settings: dict[str, Any] | None = None
        self._token: AccessToken | None = None
        self._org: dict[str, Any] | None = None
        self._random = random.Random()
        self._sleep: Callable[[float], None] = time.sleep  # tests record waits instead of timing them

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
        self._mask(conn.password)
        if extra.get("allow_custom_hosts") in (True, "true", "True"):
            accounts_url = str(extra.get("accounts_url") or "").rstrip("/")
            api_domain = str(extra.get("api_domain") or "").rstrip("/")
            if not accounts_url or not api_domain:
                raise ZohoConfigError(
                    f"Zoho connection {self.zoho_conn_id!r}: allow_custom_hosts needs accounts_url and api_domain"
                )
            # A local sandbox serves uploads and bulk results on its API host.
            environment, dc = "custom", None
            file_upload_url = download_url = api_domain
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
            file_upload_url = f"https://{_file_upload_host(dc, suffix)}"
            download_url = f"https://{_download_host(suffix)}"
            allowed_api_hosts = ({f"{p}.{suffix}" for p in ZOHO_API_HOST_PREFIXES}
                                 | {_file_upload_host(dc, suffix), _download_host(suffix)})
        refresh_token = extra.get("refresh_token") or (
            self.refresh_token_store.load(self.zoho_conn_id, conn.password) if self.refresh_token_store else None)
        if refresh_token:
            self._mask(refresh_token)
        return {
            "client_id": conn.login,
            "client_secret": conn.password,
            "refresh_token": refresh_token,
            "redirect_uri": extra.get("redirect_uri"),
            "data_centre": dc,
            "environment": environment,
            "accounts_url": accounts_url,
            "api_domain": api_domain,
            "file_upload_url": file_upload_url,
            "download_url": download_url,
            "allowed_api_hosts": allowed_api_hosts,
        }

    def endpoints(self) -> dict[str, Any]:
        """Where this connection's calls go (no secrets): for checks and the connect/verify DAG."""
        s = self.settings
        return {"data_centre": s["data_centre"], "environment": s["environment"],
                "token_url": f"{s['accounts_url']}/oauth/v2/token", "api_domain": s["api_domain"],
                "file_upload_url": f"{s['file_upload_url']}/crm/{ZOHO_API_VERSION}/upload",
                "bulk_download_url": s["download_url"], "allowed_hosts": sorted(s["allowed_api_hosts"])}

    def _host_allowed(self, url: str) -> bool:
        parts = urlparse(url)
        if self.settings["environment"] != "custom" and parts.scheme != "https":
            return False  # a token never travels in clear text to a real Zoho host
        return parts.netloc in self.settings["allowed_api_hosts"]

    def _check_host(self, url: str) -> None:
        if not self._host_allowed(url):
            raise ZohoConfigError(
                f"refusing to send a Zoho token to {urlparse(url).netloc!r}: not a host of the connection's "
                "data centre"
            )

    # --- HTTP sessions ---------------------------------------------------------------------------
    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A plain requests session: no basic auth, and nothing from the Connection's extras as a header.

        (HttpHook would send every unknown extra, e.g. the refresh token, as a header.)
        """
        return plain_session(requests.Session(), headers)

    def _session(self) -> requests.Session:
        # One keep-alive session per thread: requests.Session is not documented as thread-safe.
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self.get_conn()
        return session

    # --- OAuth -----------------------------------------------------------------------------------
    def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        url = f"{self.settings['accounts_url']}/oauth/v2/token"
        self.stats.count_token_call()
        try:
            response = self._session().post(url, data=form, timeout=self.timeout, auth=None)
        except requests.RequestException as exc:
            raise ZohoUnavailable(f"Zoho accounts server unreachable: {type(exc).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            raise ZohoUnavailable(f"Zoho accounts server answered HTTP {response.status_code} without JSON") from None
        if not isinstance(body, dict):
            raise ZohoUnavailable(f"Zoho accounts server answered HTTP {response.status_code} with unexpected JSON")
        if "access_token" in body:
            return body
        # OAuth errors come as HTTP 200 (or 400 for the throttle) with an "error" key (zoho-crm-api.md §2.2).
        code = str(body.get("error") or f"HTTP {response.status_code}")
        description = str(body.get("error_description", ""))
        if code == "Access Denied" or "too many requests" in description.lower():
            raise ZohoTokenThrottled(description)
        raise ZohoOAuthError(code, description)

    def _to_access_token(self, body: dict[str, Any]) -> AccessToken:
        s = self.settings
        api_domain = str(body.get("api_domain") or s["api_domain"]).rstrip("/")
        self._check_host(api_domain)  # a token response naming another data centre's host is refused
        if s["environment"] in ("sandbox", "developer"):
            api_domain = s["api_domain"]  # the token response may name www; these orgs answer on their own host
        expires_in = float(body.get("expires_in") or 3600)
        if expires_in > 100_000:  # old responses gave milliseconds
            expires_in /= 1000
        token = AccessToken(str(body["access_token"]), api_domain, time.time() + expires_in, str(body.get("scope", "")))
        self._mask(token.value)
        return token

    @staticmethod
    def _mask(secret: str | None) -> None:
        if not secret:
            return
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(secret)
        except Exception:  # masking is best effort outside a task
            pass

    def _refresh(self, recent_refreshes: list[float]) -> AccessToken:
        """One refresh under the cache's lock, staying inside Zoho's 10 access tokens per 10 minutes.

        A throttle (ours or Zoho's) is raised with ``retry_after`` so the caller waits outside the lock.
        """
        refresh_token = self.settings["refresh_token"]
        if not refresh_token:
            raise ZohoConfigError(
                f"Zoho connection {self.zoho_conn_id!r} has no refresh_token: connect the tenant first (zoho_connect)"
            )
        now = time.time()
        window = [t for t in recent_refreshes if now - t < self.token_window_s]
        if len(window) >= self.tokens_per_window:
            wait = max(0.01, self.token_window_s - (now - min(window)))
            raise ZohoTokenThrottled(
                f"this refresh token already made {len(window)} access tokens in the last "
                f"{self.token_window_s:.0f} s (Zoho allows {self.tokens_per_window}); "
                f"next one possible in {wait:.0f} s",
                retry_after=wait,
            )
        try:
            body = self._token_request({
                "grant_type": "refresh_token",
                "client_id": self.settings["client_id"],
                "client_secret": self.settings["client_secret"],
                "refresh_token": refresh_token,
            })
        except ZohoTokenThrottled as exc:
            exc.retry_after = self.token_throttle_pause
            raise
        return self._to_access_token(body)

    def get_access_token(self, *, force_refresh: bool = False) -> AccessToken:
        """The current access token, shared through the token cache; refreshed shortly before expiry."""
        token = self._token
        if not force_refresh and token is not None and token.valid_for(self.token_refresh_margin):
            return token
        if force_refresh and token is not None:
            return self._shared_token(rejected=token.value)
        return self._shared_token(force=force_refresh)

    def _shared_token(self, *, rejected: str | None = None, force: bool = False) -> AccessToken:
        """A usable token from the cache, else one refresh under the cache's lock (one for all tasks).

        ``rejected``: a token Zoho refused; another task may already have replaced it, then no refresh.
        Throttled refreshes wait (outside the lock) up to ``max_token_wait`` seconds in total.
        """
        s = self.settings
        key = cache_key(s["client_id"], s["refresh_token"] or "")
        cipher = cipher_for(s["client_secret"], s["refresh_token"] or "")

        def usable(candidate: AccessToken) -> bool:
            # A token cached for another host (the connection's data centre changed) is useless here.
            return (not force and candidate.value != rejected and candidate.valid_for(self.token_refresh_margin)
                    and self._host_allowed(candidate.api_domain))

        deadline = time.monotonic() + self.max_token_wait
        while True:
            cached = self.token_cache.get(key, cipher)
            if cached is not None and usable(cached):
                break
            try:
                cached = self.token_cache.refresh_exclusively(key, cipher, usable, self._refresh)
                break
            except ZohoTokenThrottled as exc:
                wait = exc.retry_after if exc.retry_after is not None else self.token_throttle_pause
                if time.monotonic() + wait > deadline:
                    raise
                log.warning("Zoho token refresh throttled; waiting %.1f s before trying again", wait)
                self._sleep(wait)
        self._check_host(cached.api_domain)
        self._mask(cached.value)
        self._token = cached
        return cached

    def exchange_grant_code(self, code: str, redirect_uri: str | None = None) -> dict[str, Any]:
        """Grant code → refresh token (returned, never logged). The code is single use and lives minutes."""
        self._mask(code)
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
        seconds = _retry_after_seconds(retry_after)
        if seconds is not None:
            return min(self.backoff_cap, seconds)
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return self._random.uniform(ceiling / 2, ceiling)  # jitter: concurrent tasks don't retry in step

    def _pause(self, operation: str, attempt: int, retry_after: str | None, reason: str) -> None:
        delay = self._backoff(attempt, retry_after)
        self.stats.count_retry()
        log.warning("zoho %s: %s; retry %d of %d in %.2f s", operation, reason, attempt + 1, self.max_retries, delay)
        self._sleep(delay)

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
        refreshed = False
        attempt = 0
        while True:
            token = self.get_access_token()
            url = f"{(base_url or token.api_domain).rstrip('/')}{path}"
            self._check_host(url)
            try:
                with self._slots:
                    response = self._session().request(
                        method, url, params=params, json=json, data=data, headers=headers, files=files,
                        auth=_ZohoTokenAuth(token.value), timeout=self.timeout,
                    )
            except _TRANSIENT_ERRORS as exc:
                self.stats.add(operation, 0, write)
                if attempt >= self.max_retries:
                    raise ZohoUnavailable(
                        f"{operation}: connection failed {attempt + 1} times ({type(exc).__name__})") from None
                self._pause(operation, attempt, None, f"connection failed ({type(exc).__name__})")
                attempt += 1
                continue
            status = response.status_code
            code = _error_code(response)
            self.stats.add(operation, credits if _billed(status, code) else 0, write)
            remaining = response.headers.get("X-API-CREDITS-REMAINING")
            if remaining is not None and remaining.strip().isdigit():
                self.stats.credits_remaining = int(remaining)
            if code == "OAUTH_SCOPE_MISMATCH":
                needed = _SCOPE_NEEDED.get(operation, "the scope of this API").format(
                    module=(module or _module_of(path) or "<module>").lower())
                raise ZohoScopeError(
                    f"{operation}: the refresh token lacks the OAuth scope {needed} (OAUTH_SCOPE_MISMATCH; granted: "
                    f"{token.scope or 'unknown'}); generate a new grant code with the scopes "
                    f"{','.join(RECOMMENDED_SCOPES)} and connect the tenant again",
                    scope=needed,
                )
            if status == 401:
                if refreshed:
                    raise ZohoAuthError(f"{operation}: Zoho refused a freshly refreshed token ({code})")
                log.info("zoho %s: access token refused (%s); refreshing once", operation, code)
                self._shared_token(rejected=token.value)
                refreshed = True
                continue
            if status == 403 or code == "NO_PERMISSION":
                permissions = [str(p) for p in (_error_details(response).get("permissions") or [])]
                raise ZohoScopeError(
                    f"{operation}: the connected Zoho user lacks the permission "
                    f"{', '.join(permissions) or '(not named by Zoho)'} (NO_PERMISSION); give the user's profile "
                    "that permission in Zoho CRM (Setup → Security Control → Profiles)",
                    permissions=permissions,
                )
            if status == 429 or status >= 500:
                if attempt >= self.max_retries:
                    raise ZohoUnavailable(f"{operation}: Zoho answered HTTP {status} ({code}) {attempt + 1} times")
                self._pause(operation, attempt, response.headers.get("Retry-After"), f"HTTP {status} ({code})")
                attempt += 1
                continue
            return response

    # --- record operations -----------------------------------------------------------------------
    def upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any] | RecordJSON],
        *,
        duplicate_check_fields: Sequence[str] = ("Email",),
        trigger: Sequence[str] | None = None,
    ) -> list[RecordOutcome]:
        """Insert-or-update up to 100 records matched on ``duplicate_check_fields``; one outcome per record.

        A record is a dict, or its JSON text wrapped in ``RecordJSON`` (a plan's payloads), sent as it is.
        """
        if not records:
            return []
        if len(records) > ZOHO_MAX_RECORDS_PER_WRITE:
            raise ValueError(f"at most {ZOHO_MAX_RECORDS_PER_WRITE} records per upsert, got {len(records)}")
        rest: dict[str, Any] = {"duplicate_check_fields": list(duplicate_check_fields)}
        if trigger is not None:
            rest["trigger"] = list(trigger)
        response = self.request(
            "POST", f"/crm/{ZOHO_API_VERSION}/{module}/upsert", operation="upsert",
            credits=write_credits(len(records)), write=True, data=_records_body(records, rest), module=module,
        )
        return parse_record_outcomes(response, len(records))

    def update_records(
        self, module: str, records: Sequence[dict[str, Any]], *, trigger: Sequence[str] | None = None
    ) -> list[RecordOutcome]:
        """Update records by their ``id`` (PUT /crm/v8/{module}), 100 a call; one outcome per record."""
        missing = [i for i, record in enumerate(records) if not record.get("id")]
        if missing:
            raise ValueError(f"update_records: records at positions {missing[:10]} have no 'id'")
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(records), ZOHO_MAX_RECORDS_PER_WRITE):
            chunk = list(records[start:start + ZOHO_MAX_RECORDS_PER_WRITE])
            body: dict[str, Any] = {"data": chunk}
            if trigger is not None:
                body["trigger"] = list(trigger)
            response = self.request(
                "PUT", f"/crm/{ZOHO_API_VERSION}/{module}", operation="update",
                credits=write_credits(len(chunk)), write=True, json=body, module=module,
            )
            outcomes += [replace(o, action="update") if o.ok else o
                         for o in parse_record_outcomes(response, len(chunk))]
        return outcomes

    def delete_records(self, module: str, ids: Sequence[str], *, wf_trigger: bool = True) -> list[RecordOutcome]:
        """Delete records by id, 100 a call; one outcome per id (``INVALID_DATA`` for unknown ids).

        A retry after a 5xx may report ``INVALID_DATA`` "record not deleted" for an id the first attempt
        deleted: check ``deleted_records`` when that matters.
        """
        ids = [str(i) for i in ids]
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(ids), ZOHO_MAX_RECORDS_PER_WRITE):
            chunk = ids[start:start + ZOHO_MAX_RECORDS_PER_WRITE]
            response = self.request(
                "DELETE", f"/crm/{ZOHO_API_VERSION}/{module}", operation="delete", write=True, module=module,
                params={"ids": ",".join(chunk), "wf_trigger": "true" if wf_trigger else "false"},
            )
            outcomes += [replace(o, action="delete") if o.ok else o
                         for o in parse_record_outcomes(response, len(chunk))]
        return outcomes

    def get_records(self, module: str, ids: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """Records by id (at most 100 ids per call), only the named fields."""
        ids = list(ids)
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):
            response = self.request(
                "GET", f"/crm/{ZOHO_API_VERSION}/{module}", operation="get", module=module,
                params={"ids": ",".join(ids[start:start + 100]), "fields": ",".join(fields)},
            )
            if response.status_code == 204:
                continue
            _raise_for_request_error(response, "get")
            found.extend(response.json().get("data", []))
        return found

    def deleted_records(self, module: str, since: datetime | None = None, *, type: str = "all") -> list[dict[str, Any]]:
        """Zoho's deleted-records list (recycle bin 60 days, permanent 120 days), all pages.

        ``since``: only records deleted after it (``If-Modified-Since``). ``type``: all, recycle or permanent.
        Costs 2 credits per page.
        """
        headers = {"If-Modified-Since": _zoho_time(since)} if since is not None else None
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            response = self.request(
                "GET", f"/crm/{ZOHO_API_VERSION}/{module}/deleted", operation="deleted", module=module,
                credits=ZOHO_CREDITS["deleted"], headers=headers,
                params={"type": type, "page": page, "per_page": ZOHO_MAX_PER_PAGE},
            )
            if response.status_code in (204, 304):  # nothing (more) deleted
                return out
            _raise_for_request_error(response, "deleted")
            body = response.json() or {}
            out.extend(body.get("data") or [])
            if not (body.get("info") or {}).get("more_records"):
                return out
            page += 1

    def convert_lead(self, lead_id: str, *, contact_id: str | None = None, overwrite: bool = False) -> RecordOutcome:
        """Convert a Lead into a Contact (5 credits). ``zoho_id`` of a success is the Contact's id.

        ``contact_id`` links an existing Contact instead of letting Zoho match or create one.
        """
        options: dict[str, Any] = {"overwrite": overwrite, "notify_lead_owner": False, "notify_new_entity_owner": False}
        if contact_id:
            options["Contacts"] = {"id": str(contact_id)}
        response = self.request(
            "POST", f"/crm/{ZOHO_API_VERSION}/Leads/{lead_id}/actions/convert", operation="convert", module="Leads",
            credits=ZOHO_CREDITS["convert"], write=True, json={"data": [options]},
        )
        [outcome] = parse_record_outcomes(response, 1)
        body = _json(response)
        item = (body.get("data") or [{}])[0] if isinstance(body, dict) and isinstance(body.get("data"), list) else {}
        if not outcome.ok:
            if isinstance(body, dict) and "data" not in body:
                return RecordOutcome(False, str(body.get("code", f"HTTP_{response.status_code}")),
                                     str(body.get("message", "")), details=dict(body.get("details") or {}))
            return outcome
        details = item.get("details") or {}
        contact = details.get("Contacts") or {}
        return RecordOutcome(True, outcome.code, outcome.message, action="convert",
                             zoho_id=str(contact["id"]) if contact.get("id") else None,
                             details={k: details.get(k) for k in ("Contacts", "Accounts", "Deals")})

    def get_fields(self, module: str) -> list[dict[str, Any]]:
        """Field metadata of a module: api_name, data_type, length, read_only, system_mandatory, ..."""
        response = self.request("GET", f"/crm/{ZOHO_API_VERSION}/settings/fields", operation="fields",
                                params={"module": module}, module=module)
        _raise_for_request_error(response, "fields")
        return response.json().get("fields", [])

    def get_org(self) -> dict[str, Any]:
        """The org (``id``, ``zgid``, ``company_name``, ...): GET /crm/v8/org."""
        response = self.request("GET", f"/crm/{ZOHO_API_VERSION}/org", operation="org")
        _raise_for_request_error(response, "org")
        orgs = (response.json() or {}).get("org") or []
        if not orgs:
            raise ZohoRequestError("org: Zoho answered without an org", status=response.status_code)
        self._org = dict(orgs[0])
        return dict(orgs[0])

    # --- Bulk Write ------------------------------------------------------------------------------
    def bulk_upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any]],
        *,
        find_by: str = "Email",
        poll_interval: float = 2.0,
        timeout: float = 3600.0,
    ) -> list[RecordOutcome]:
        """Upsert through Bulk Write: CSV → zip → upload → job → poll → result CSV; one outcome per record.

        At most 25,000 records per job (larger inputs run several jobs). Costs 500 credits per job plus an
        upload, the polls and a download, so use it only when ``choose_write_path`` says "bulk".
        """
        if not records:
            return []
        if any(find_by not in record for record in records):
            raise ValueError(f"bulk_upsert: every record needs the find_by field {find_by!r}")
        outcomes: list[RecordOutcome] = []
        for start in range(0, len(records), BULK_MAX_RECORDS):
            outcomes += self._bulk_upsert_uniform(module, list(records[start:start + BULK_MAX_RECORDS]), find_by,
                                                  poll_interval, timeout)
        return outcomes

    def _bulk_upsert_uniform(self, module: str, records: list[dict[str, Any]], find_by: str, poll_interval: float,
                             timeout: float) -> list[RecordOutcome]:
        # In a CSV an empty cell either clears the field or (ignore_empty) leaves it: upsert semantics need
        # one of the two for the whole file. Records that both omit keys and clear others go in groups.
        columns = _columns(records)
        uniform = all(len(record) == len(columns) for record in records)
        clears = any(_blank_cell(value) for record in records for value in record.values())
        if uniform or not clears:
            return self._bulk_job(module, records, columns, find_by, not uniform, poll_interval, timeout)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, record in enumerate(records):
            groups.setdefault(tuple(record), []).append(i)
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        for positions in groups.values():
            part = [records[i] for i in positions]
            for i, outcome in zip(positions, self._bulk_job(module, part, _columns(part), find_by, False,
                                                            poll_interval, timeout)):
                outcomes[i] = outcome
        return [o for o in outcomes if o is not None]

    def _bulk_job(self, module: str, records: list[dict[str, Any]], columns: list[str], find_by: str,
                  ignore_empty: bool, poll_interval: float, timeout: float) -> list[RecordOutcome]:
        csv_name = f"{module}.csv"
        payload, mappings = bulk_csv_zip(records, columns, csv_name)
        if len(payload) > BULK_MAX_ZIP_BYTES and len(records) > 1:  # Zoho takes at most 25 MB per zip
            half = len(records) // 2
            return (self._bulk_job(module, records[:half], columns, find_by, ignore_empty, poll_interval, timeout)
                    + self._bulk_job(module, records[half:], columns, find_by, ignore_empty, poll_interval, timeout))
        file_id = self._bulk_upload(payload, f"{module}.zip")
        job_body = {
            "operation": "upsert", "ignore_empty": ignore_empty, "character_encoding": "UTF-8",
            "resource": [{"type": "data", "module": {"api_name": module}, "file_id": file_id,
                          "file_names": [csv_name], "find_by": find_by, "field_mappings": mappings}],
        }
        response = self.request("POST", f"/crm/bulk/{ZOHO_API_VERSION}/write", operation="bulk_write", write=True,
                                credits=ZOHO_CREDITS["bulk_write_job"], json=job_body, module=module)
        body = _json(response) or {}
        if response.status_code not in (200, 201) or not (body.get("details") or {}).get("id"):
            raise ZohoRequestError(f"bulk write job: HTTP {response.status_code} {body.get('code', '')} "
                                   f"{body.get('message', '')}".rstrip(), code=body.get("code"),
                                   status=response.status_code)
        job_id = str(body["details"]["id"])
        log.info("zoho bulk write job %s: %d %s records", job_id, len(records), module)
        job = self._bulk_wait(job_id, poll_interval, timeout)
        download_url = (job.get("result") or {}).get("download_url")
        if str(job.get("status", "")).upper() != "COMPLETED" or not download_url:
            log.warning("zoho bulk write job %s ended %s without a result", job_id, job.get("status"))
            return [RecordOutcome(False, "BULK_JOB_FAILED", f"bulk write job {job_id} ended {job.get('status')}")
                    for _ in records]
        return parse_bulk_result(self._bulk_download(str(download_url)), records, find_by)

    def _bulk_upload(self, payload: bytes, file_name: str) -> str:
        if self._org is None or not self._org.get("zgid"):
            self.get_org()
        zgid = str((self._org or {}).get("zgid"))
        response = self.request(
            "POST", f"/crm/{ZOHO_API_VERSION}/upload", operation="upload", write=True,
            base_url=self._file_upload_base(), headers={"feature": "bulk-write", "X-CRM-ORG": zgid},
            files={"file": (file_name, payload, "application/zip")},
        )
        body = _json(response) or {}
        file_id = (body.get("details") or {}).get("file_id") if isinstance(body, dict) else None
        if response.status_code != 200 or not file_id:
            code = body.get("code") or body.get("ERROR_CODE") if isinstance(body, dict) else None
            message = (body.get("message") or body.get("x-error") or "") if isinstance(body, dict) else ""
            raise ZohoRequestError(f"bulk upload: HTTP {response.status_code} {code or ''} {message}".rstrip(),
                                   code=str(code) if code else None, status=response.status_code)
        return str(file_id)

    def _file_upload_base(self) -> str:
        if self.settings["environment"] == "custom":
            return self.get_access_token().api_domain
        return self.settings["file_upload_url"]

    def _bulk_wait(self, job_id: str, poll_interval: float, timeout: float) -> dict[str, Any]:
        """Poll the job until COMPLETED or FAILED; each poll costs a credit, so the interval grows."""
        deadline = time.monotonic() + timeout
        interval = max(poll_interval, 0.0)
        while True:
            self._sleep(interval)  # a job is never done the moment it is created
            response = self.request("GET", f"/crm/bulk/{ZOHO_API_VERSION}/write/{job_id}", operation="bulk_status")
            _raise_for_request_error(response, "bulk status")
            job = response.json() or {}
            status = str(job.get("status", "")).upper()
            if status in ("COMPLETED", "FAILED"):
                return job
            if time.monotonic() + interval > deadline:
                raise ZohoUnavailable(f"bulk write job {job_id} not finished after {timeout:.0f} s (status {status}); "
                                      "its records are not confirmed")
            interval = min(interval * 1.5, max(poll_interval, 0.0) * 8)

    def _bulk_download(self, download_url: str) -> bytes:
        parts = urlsplit(download_url)
        if parts.scheme and parts.netloc:
            base, path = f"{parts.scheme}://{parts.netloc}", download_url[len(f"{parts.scheme}://{parts.netloc}"):]
        elif self.settings["environment"] == "custom":
            base, path = self.get_access_token().api_domain, download_url
        else:  # a relative download_url (v7 samples) is served by the download host
            base, path = self.settings["download_url"], download_url
        response = self.request("GET", path if path.startswith("/") else f"/{path}", operation="bulk_download",
                                base_url=base)
        if response.status_code != 200:
            _raise_for_request_error(response, "bulk download")
            raise ZohoRequestError(f"bulk download: HTTP {response.status_code}", status=response.status_code)
        return response.content

    def test_connection(self) -> tuple[bool, str]:
        try:
            token = self.get_access_token()
            self.get_fields("Contacts")
        except ZohoError as exc:
            return False, str(exc)
        return True, f"Connected to {token.api_domain}"


# --- helpers -------------------------------------------------------------------------------------
def _json(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _error_code(response: requests.Response) -> str | None:
    if "json" not in (response.headers.get("Content-Type") or "json"):
        return None  # e.g. a zip download: no error code to read
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


def _billed(status: int, code: str | None) -> bool:
    """Zoho does not bill calls refused before processing: auth, throttling, unknown URLs, its own errors."""
    return status < 500 and status not in (401, 403, 429) and code != "INVALID_URL_PATTERN"


def _module_of(path: str) -> str | None:
    parts = [p for p in path.split("/") if p]
    return parts[2] if len(parts) > 2 and parts[:2] == ["crm", ZOHO_API_VERSION] else None


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _zoho_time(moment: datetime) -> str:
    """ISO 8601 with offset, Zoho's date-time format (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat(timespec="seconds")


def _raise_for_request_error(response: requests.Response, operation: str) -> None:
    if response.status_code >= 400:
        body = _json(response)
        body = body if isinstance(body, dict) else {}
        raise ZohoRequestError(
            f"{operation}: HTTP {response.status_code} {body.get('code', '')} {body.get('message', '')}".rstrip(),
            code=body.get("code"), status=response.status_code,
        )


def parse_record_outcomes(response: requests.Response, expected: int) -> list[RecordOutcome]:
    """Positional outcomes of a write (200/201/207/400). A request-level error applies to every record."""
    body = _json(response)
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, list) and len(data) == expected:
        return [_outcome(item) for item in data]
    code: Any = body.get("code", f"HTTP_{response.status_code}") if isinstance(body, dict) else \
        f"HTTP_{response.status_code}"
    message: Any = body.get("message", "unexpected response") if isinstance(body, dict) else "unexpected response"
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):  # e.g. INVALID_MODULE in data
        code, message = data[0].get("code", code), data[0].get("message", message)
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


# --- Bulk Write CSVs -----------------------------------------------------------------------------
def _columns(records: Sequence[dict[str, Any]]) -> list[str]:
    """Field API names in first-seen order: the CSV header."""
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(key, None)
    return list(seen)


def _blank_cell(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _csv_cell(value: Any) -> str:
    """A JSON value as Zoho's bulk CSV expects it: booleans true/false, lookups by id, multi-select with ';'."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return ""
        text = repr(value)
        return format(value, "f") if "e" in text else text
    if isinstance(value, datetime):
        return _zoho_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return str(value.get("id") or value.get("name") or "")
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def bulk_csv_zip(records: Sequence[dict[str, Any]], columns: Sequence[str], csv_name: str) -> tuple[bytes, list[dict]]:
    """The zipped CSV of ``records`` (header = API names) and the job's field_mappings (by index)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(name)) for name in columns])
    mappings: list[dict[str, Any]] = []
    for index, name in enumerate(columns):
        mapping: dict[str, Any] = {"api_name": name, "index": index}
        lookup = next((r[name] for r in records if isinstance(r.get(name), dict)), None)
        if lookup is not None:  # lookups are matched by the related record's id (or its name)
            mapping["find_by"] = "id" if lookup.get("id") else "name"
        mappings.append(mapping)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(csv_name, text.getvalue().encode("utf-8"))
    return buffer.getvalue(), mappings


def parse_bulk_errors(text: str) -> list[tuple[str, list[str]]]:
    """Zoho's ERRORS cell ``CODE-field1,field2:CODE2-field3`` → [(CODE, [field1, field2]), (CODE2, [field3])]."""
    out: list[tuple[str, list[str]]] = []
    for part in (text or "").split(":"):
        part = part.strip()
        if not part:
            continue
        code, _, names = part.partition("-")
        out.append((code.strip(), [n.strip() for n in names.split(",") if n.strip()]))
    return out


def _bulk_outcome(row: dict[str, str]) -> RecordOutcome:
    status = (row.get("STATUS") or "").strip().lower()
    record_id = (row.get("RECORD_ID") or "").strip() or None
    if status in ("added", "updated"):
        return RecordOutcome(True, "SUCCESS", "record added" if status == "added" else "record updated",
                             action="insert" if status == "added" else "update", zoho_id=record_id)
    errors = parse_bulk_errors(row.get("ERRORS") or "")
    details: dict[str, Any] = {"bulk_status": status or None,
                               "errors": [{"code": code, "api_names": names} for code, names in errors]}
    if record_id:
        details["id"] = record_id
    if errors:
        code = errors[0][0]
        if errors[0][1]:
            details["api_name"] = errors[0][1][0]
        message = "; ".join(f"{c} ({', '.join(names)})" if names else c for c, names in errors)
    elif status == "unprocessed":
        code, message = "UNPROCESSED", "the bulk job did not process this row"
    else:
        code, message = "SKIPPED", f"bulk write row {status or 'without status'}"
    return RecordOutcome(False, code, message, details=details)


def parse_bulk_result(payload: bytes, records: Sequence[dict[str, Any]], find_by: str = "Email") -> list[RecordOutcome]:
    """Outcomes from a Bulk Write result zip, positionally (row i is record i), checked on ``find_by``."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise ZohoRequestError("bulk result: the zip holds no CSV")
            text = archive.read(names[0]).decode("utf-8-sig")
    except zipfile.BadZipFile:
        raise ZohoRequestError("bulk result: the download is not a zip") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    outcomes = [_bulk_outcome(row) for row in rows]
    if find_by in (reader.fieldnames or []):
        def key(value: Any) -> str:
            return _csv_cell(value).strip().lower()

        if any(key(row.get(find_by)) != key(record.get(find_by)) for row, record in zip(rows, records)):
            # Not in input order after all: match rows to records by the find_by value instead.
            by_value: dict[str, list[RecordOutcome]] = {}
            for row, outcome in zip(rows, outcomes):
                by_value.setdefault(key(row.get(find_by)), []).append(outcome)
            outcomes = [(by_value.get(key(r.get(find_by))) or [_missing_row()]).pop(0) for r in records]
    outcomes = outcomes[:len(records)]
    return outcomes + [_missing_row() for _ in range(len(records) - len(outcomes))]


def _missing_row() -> RecordOutcome:
    return RecordOutcome(False, "UNPROCESSED", "the bulk result has no row for this record")
