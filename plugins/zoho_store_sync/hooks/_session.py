"""Sessions for our HttpHook subclasses: without the provider's basic auth and extras-as-headers."""

from __future__ import annotations

from typing import Any

import requests
from requests.structures import CaseInsensitiveDict


def plain_session(session: requests.Session, headers: dict[Any, Any] | None = None) -> requests.Session:
    """HttpHook sends login/password as basic auth and every unknown extra as a header (refresh tokens,
    consumer secrets): undo both, keeping the session's adapters and settings."""
    session.auth = None
    session.headers = CaseInsensitiveDict(requests.utils.default_headers())
    session.headers["Accept"] = "application/json"
    if headers:
        session.headers.update(headers)
    return session
