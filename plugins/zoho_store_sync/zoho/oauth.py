"""Zoho OAuth: token requests and refresh, and the token cache shared (encrypted) by every task and worker."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import requests
from cryptography.fernet import Fernet, InvalidToken

from zoho_store_sync.errors import ZohoConfigError, ZohoOAuthError, ZohoTokenThrottled, ZohoUnavailable
from zoho_store_sync.settings import ZOHO_TOKEN_REFRESH_MARGIN_S, ZOHO_TOKEN_WINDOW_S, ZOHO_TOKENS_PER_WINDOW

if TYPE_CHECKING:
    from zoho_store_sync.transport import RetryingTransport
    from zoho_store_sync.zoho.settings import ZohoSettings

log = logging.getLogger(__name__)

HISTORY_S = 3600.0  # refresh times kept per refresh token: longer than Zoho's 10-minute token window


# ---- the shared token cache ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccessToken:
    """An access token and where it may be used. Never logged: repr hides the value."""

    value: str = field(repr=False)
    api_domain: str
    expires_at: float  # epoch seconds
    scope: str = ""
    lifetime: float | None = None  # seconds it was issued for (Zoho's expires_in); None: not known (an old cache)

    def valid_for(self, seconds: float, now: float | None = None) -> bool:
        return self.expires_at - (now if now is not None else time.time()) > seconds


def cache_key(client_id: str, refresh_token: str) -> str:
    """Identifies one refresh token (one org and client) without revealing it."""
    return hashlib.sha256(f"{client_id}\0{refresh_token}".encode()).hexdigest()


def cipher_for(client_secret: str, refresh_token: str) -> Fernet:
    """A key derived from the connection's own secrets: only holders of the connection can decrypt."""
    digest = hashlib.sha256(f"zoho-token-cache\0{client_secret}\0{refresh_token}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(token: AccessToken, cipher: Fernet) -> bytes:
    return cipher.encrypt(
        json.dumps(
            {"v": token.value, "d": token.api_domain, "e": token.expires_at, "s": token.scope, "l": token.lifetime}
        ).encode()
    )


def unseal(blob: bytes, cipher: Fernet) -> AccessToken | None:
    try:
        data = json.loads(cipher.decrypt(blob))
    except (InvalidToken, ValueError):
        return None  # written with other secrets (e.g. rotated client secret): treat as absent
    return AccessToken(
        value=data["v"], api_domain=data["d"], expires_at=data["e"], scope=data.get("s", ""), lifetime=data.get("l")
    )


class TokenCache(Protocol):
    """Where every task and worker finds the current access token of a refresh token."""

    def get(self, key: str, cipher: Fernet) -> AccessToken | None: ...

    def refresh_exclusively(
        self,
        key: str,
        cipher: Fernet,
        still_good: Callable[[AccessToken], bool],
        refresh: Callable[[list[float]], AccessToken],
    ) -> AccessToken:
        """Under a lock shared by all processes: re-read, and call ``refresh`` only if still needed.

        ``refresh`` receives the times of recent refreshes (for Zoho's 10-per-10-minutes limit).
        """
        ...


class MemoryTokenCache:
    """Process-local cache: for tests and one-off scripts. Tasks use the state database's cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, bytes] = {}
        self._refreshes: dict[str, list[float]] = {}

    def get(self, key: str, cipher: Fernet) -> AccessToken | None:
        blob = self._tokens.get(key)
        return unseal(blob, cipher) if blob else None

    def refresh_exclusively(
        self,
        key: str,
        cipher: Fernet,
        still_good: Callable[[AccessToken], bool],
        refresh: Callable[[list[float]], AccessToken],
    ) -> AccessToken:
        with self._lock:
            current = self.get(key, cipher)
            if current is not None and still_good(current):
                return current
            now = time.time()
            history = [t for t in self._refreshes.get(key, []) if now - t < HISTORY_S]  # bounded memory
            token = refresh(list(history))
            history.append(time.time())
            self._refreshes[key] = history
            self._tokens[key] = seal(token, cipher)
            return token


# ---- token requests ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenPolicy:
    """When to refresh and how long to wait while Zoho (or our own budget) throttles token requests.

    :param refresh_margin: refresh an access token at most this many seconds before it expires...
    :param refresh_share: ...and at most this share of its lifetime before: a token living 1 h is refreshed 300 s
        before it expires, one living 120 s (some orgs, sandboxes) 12 s before, so it is still reused for 108 s
        (a fixed 300 s margin never reused a token shorter than that: one token per call, then Zoho's throttle).
    :param throttle_pause: wait after Zoho's "too many requests" token answer (retrying at once lengthens the
        lockout).
    :param max_wait: longest total wait for a token while throttled before giving up (retryable).
    :param per_window: access tokens allowed per refresh token in ``window_s`` (Zoho: 10 per 600 s).
    """

    refresh_margin: float = ZOHO_TOKEN_REFRESH_MARGIN_S
    refresh_share: float = 0.1
    throttle_pause: float = 60.0
    max_wait: float = ZOHO_TOKEN_WINDOW_S + 60.0
    per_window: int = ZOHO_TOKENS_PER_WINDOW
    window_s: float = ZOHO_TOKEN_WINDOW_S

    def margin(self, token: AccessToken) -> float:
        """Seconds before its expiry a token is refreshed: ``min(refresh_margin, refresh_share × lifetime)``; the
        fixed margin when the lifetime is not known."""
        if not token.lifetime or token.lifetime <= 0:
            return self.refresh_margin
        return min(self.refresh_margin, self.refresh_share * token.lifetime)

    def fresh(self, token: AccessToken, now: float | None = None) -> bool:
        """The token can still be used (it expires later than its margin from now)."""
        return token.valid_for(self.margin(token), now)


class ZohoOAuth:
    """The access tokens of one connection: one refresh for every task sharing ``cache``, within Zoho's limits.

    ``settings`` is asked for the connection's settings when first needed; ``transport`` sends the token
    requests (once each: the throttle is waited out here, outside the cache's lock).
    """

    def __init__(
        self,
        settings: Callable[[], ZohoSettings],
        transport: RetryingTransport,
        cache: TokenCache,
        *,
        policy: TokenPolicy = TokenPolicy(),
        on_token_request: Callable[[], None] = lambda: None,
        mask: Callable[[str], None] = lambda secret: None,
    ) -> None:
        self._settings = settings
        self.transport = transport
        self.cache = cache
        self.policy = policy
        self._on_token_request = on_token_request
        self._mask = mask
        self.token: AccessToken | None = None  # the token this client last used

    def _token_request(self, form: dict[str, str]) -> dict[str, Any]:
        self._on_token_request()
        try:
            response = self.transport.send_once("POST", self._settings().token_url, data=form, auth=None)
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

    def to_access_token(self, body: dict[str, Any]) -> AccessToken:
        """A token response as an ``AccessToken``; one naming a host outside the data centre is refused."""
        s = self._settings()
        api_domain = str(body.get("api_domain") or s.api_domain).rstrip("/")
        s.check_host(api_domain)  # a token response naming another data centre's host is refused
        if s.environment in ("sandbox", "developer"):
            api_domain = s.api_domain  # the token response may name www; these orgs answer on their own host
        expires_in = float(body.get("expires_in") or 3600)
        if expires_in > 100_000:  # old responses gave milliseconds
            expires_in /= 1000
        token = AccessToken(
            str(body["access_token"]), api_domain, time.time() + expires_in, str(body.get("scope", "")), expires_in
        )
        self._mask(token.value)
        return token

    def _refresh(self, recent_refreshes: list[float]) -> AccessToken:
        """One refresh under the cache's lock, staying inside Zoho's 10 access tokens per 10 minutes.

        A throttle (ours or Zoho's) is raised with ``retry_after`` so the caller waits outside the lock.
        """
        s, policy = self._settings(), self.policy
        if not s.refresh_token:
            raise ZohoConfigError(
                f"Zoho connection {s.conn_id!r} has no refresh_token: connect the tenant first (zoho_connect)"
            )
        now = time.time()
        window = [t for t in recent_refreshes if now - t < policy.window_s]
        if len(window) >= policy.per_window:
            wait = max(0.01, policy.window_s - (now - min(window)))
            raise ZohoTokenThrottled(
                f"this refresh token already made {len(window)} access tokens in the last "
                f"{policy.window_s:.0f} s (Zoho allows {policy.per_window}); next one possible in {wait:.0f} s",
                retry_after=wait,
            )
        try:
            body = self._token_request(
                {
                    "grant_type": "refresh_token",
                    "client_id": s.client_id,
                    "client_secret": s.client_secret,
                    "refresh_token": s.refresh_token,
                }
            )
        except ZohoTokenThrottled as exc:
            exc.retry_after = policy.throttle_pause
            raise
        return self.to_access_token(body)

    def access_token(self, *, force_refresh: bool = False) -> AccessToken:
        """The current access token, shared through the token cache; refreshed shortly before expiry."""
        token = self.token
        if not force_refresh and token is not None and self.policy.fresh(token):
            return token
        if force_refresh and token is not None:
            return self.shared_token(rejected=token.value)
        return self.shared_token(force=force_refresh)

    def shared_token(self, *, rejected: str | None = None, force: bool = False) -> AccessToken:
        """A usable token from the cache, else one refresh under the cache's lock (one for all tasks).

        ``rejected``: a token Zoho refused; another task may already have replaced it, then no refresh.
        Throttled refreshes wait (outside the lock) up to ``policy.max_wait`` seconds in total.
        """
        s = self._settings()
        key = cache_key(s.client_id, s.refresh_token or "")
        cipher = cipher_for(s.client_secret, s.refresh_token or "")

        def usable(candidate: AccessToken) -> bool:
            # A token cached for another host (the connection's data centre changed) is useless here.
            return (
                not force
                and candidate.value != rejected
                and self.policy.fresh(candidate)
                and s.host_allowed(candidate.api_domain)
            )

        def fetch() -> AccessToken:
            cached = self.cache.get(key, cipher)
            if cached is not None and usable(cached):
                return cached
            return self.cache.refresh_exclusively(key, cipher, usable, self._refresh)

        token = self.transport.keep_trying(
            fetch,
            temporary=ZohoTokenThrottled,
            budget=self.policy.max_wait,
            what="zoho token refresh",
            wait=lambda exc, _: exc.retry_after if exc.retry_after is not None else self.policy.throttle_pause,
        )
        s.check_host(token.api_domain)
        self._mask(token.value)
        self.token = token
        return token

    def exchange_grant_code(self, code: str, redirect_uri: str | None = None) -> dict[str, Any]:
        """Grant code → refresh token (returned, never logged). The code is single use and lives minutes."""
        self._mask(code)
        s = self._settings()
        form = {
            "grant_type": "authorization_code",
            "client_id": s.client_id,
            "client_secret": s.client_secret,
            "code": code,
        }
        if uri := redirect_uri or s.redirect_uri:
            form["redirect_uri"] = uri
        body = self._token_request(form)
        if "refresh_token" not in body:
            raise ZohoOAuthError("no_refresh_token", "the grant was not requested with access_type=offline")
        self._mask(body["refresh_token"])
        self.to_access_token(body)
        return body
