"""Zoho access tokens: shared between tasks and workers, encrypted at rest, refreshed under a lock."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from cryptography.fernet import Fernet, InvalidToken

HISTORY_S = 3600.0  # refresh times kept per refresh token: longer than Zoho's 10-minute token window


@dataclass(frozen=True)
class AccessToken:
    """An access token and where it may be used. Never logged: repr hides the value."""

    value: str = field(repr=False)
    api_domain: str
    expires_at: float  # epoch seconds
    scope: str = ""

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
        json.dumps({"v": token.value, "d": token.api_domain, "e": token.expires_at, "s": token.scope}).encode()
    )


def unseal(blob: bytes, cipher: Fernet) -> AccessToken | None:
    try:
        data = json.loads(cipher.decrypt(blob))
    except (InvalidToken, ValueError):
        return None  # written with other secrets (e.g. rotated client secret): treat as absent
    return AccessToken(value=data["v"], api_domain=data["d"], expires_at=data["e"], scope=data.get("s", ""))


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
