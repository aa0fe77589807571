"""OAuth 1.0a request signing (RFC 5849, HMAC-SHA256) as Magento 2 integrations check it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import requests
from requests.auth import AuthBase
from requests.utils import to_native_string


def percent_encode(value: str) -> str:
    """RFC 5849 §3.6: UTF-8, then every byte except ALPHA / DIGIT / "-" / "." / "_" / "~" as %XX (upper case)."""
    return quote(value, safe="~")


def encode_query(params: Sequence[tuple[str, Any]] | dict[str, Any] | None) -> str:
    """A query string with RFC 3986 escapes (a space is ``%20``, never ``+``).

    Magento rebuilds the signed parameters with PHP's ``rawurldecode``, which keeps ``+`` as a plus while
    PHP's ``$_GET`` reads it as a space: ``%20`` means the same to both, so signatures always match.
    """
    if not params:
        return ""
    items = params.items() if isinstance(params, dict) else params
    return urlencode([(str(k), "" if v is None else str(v)) for k, v in items], quote_via=quote, safe="~")


def normalized_url(url: str) -> str:
    """RFC 5849 §3.4.1.2: scheme and host in lower case, default port dropped, no query or fragment."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def query_pairs(query: str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs of a raw query string, percent-decoding only (as Magento's rawurldecode)."""
    pairs = []
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def signature_base_string(method: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1: METHOD & encoded URL & encoded, sorted, encoded ``name=value`` pairs.

    Pairs sort by encoded name then value, byte-wise. (Magento sorts names with PHP's natural order; the two
    agree for every name this hook sends, whose bracket indices are single digits.)
    """
    encoded = sorted((percent_encode(k), percent_encode(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    return "&".join((method.upper(), percent_encode(normalized_url(url)), percent_encode(normalized)))


def oauth1_signature(base_string: str, consumer_secret: str, token_secret: str, method: str = "HMAC-SHA256") -> str:
    """HMAC over the base string with key ``encode(consumer secret)&encode(token secret)``, base64."""
    digest = {"HMAC-SHA256": hashlib.sha256, "HMAC-SHA1": hashlib.sha1}[method]
    key = f"{percent_encode(consumer_secret)}&{percent_encode(token_secret)}".encode()
    return base64.b64encode(hmac.new(key, base_string.encode(), digest).digest()).decode()


class OAuth1(AuthBase):
    """Signs each request with OAuth 1.0a HMAC-SHA256 in the ``Authorization: OAuth ...`` header.

    The signed parameters are read back from the URL actually sent, so what is signed is what Magento sees.
    A form-encoded body would be signed too (RFC 5849 §3.4.1.3.1); JSON bodies are not, as the RFC says.
    """

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        access_token: str,
        access_token_secret: str,
        *,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.access_token, self.access_token_secret = access_token, access_token_secret
        self._clock, self._nonce = clock, nonce

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        oauth = {
            "oauth_consumer_key": self.consumer_key,
            "oauth_nonce": self._nonce(),
            "oauth_signature_method": "HMAC-SHA256",
            "oauth_timestamp": str(int(self._clock())),
            "oauth_token": self.access_token,
            "oauth_version": "1.0",
        }
        url = request.url or ""
        params = query_pairs(urlsplit(url).query) + list(oauth.items())
        content_type = to_native_string(request.headers.get("Content-Type", ""))
        if isinstance(request.body, (str, bytes)) and content_type.startswith("application/x-www-form-urlencoded"):
            body = request.body.decode() if isinstance(request.body, bytes) else request.body
            params += [
                (unquote(k.replace("+", " ")), unquote(v.replace("+", " ")))
                for k, _, v in (p.partition("=") for p in body.split("&") if p)
            ]
        base = signature_base_string(request.method or "GET", url, params)
        oauth["oauth_signature"] = oauth1_signature(base, self.consumer_secret, self.access_token_secret)
        request.headers["Authorization"] = "OAuth " + ",".join(
            f'{percent_encode(k)}="{percent_encode(v)}"' for k, v in oauth.items()
        )
        return request
