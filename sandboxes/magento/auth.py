"""Magento auth: admin tokens, the integration's Bearer token and OAuth 1.0a signatures (RFC 5849), ACL resources."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .faults import (BAD_OAUTH_VERSION, BAD_SIGN_IN, BAD_SIGNATURE, BAD_SIGNATURE_METHOD, BAD_TIMESTAMP,
                     NONCE_USED, NOT_AUTHORIZED, REQUIRED, TWO_FA, UNKNOWN_CONSUMER, UNKNOWN_TOKEN, MagentoError)

ADMIN_TOKEN_LIFETIME = 4 * 3600  # Magento default: Admin Token Lifetime (hours) = 4
OAUTH_TIME_DEVIATION = 600  # seconds a timestamp may run ahead of the server (NonceGenerator::TIME_DEVIATION)
OAUTH_REQUIRED = ("oauth_consumer_key", "oauth_signature", "oauth_signature_method", "oauth_nonce",
                  "oauth_timestamp", "oauth_token")
INTEGRATION_CONSUMER_ID = 1
RES_CUSTOMER, RES_CUSTOMER_MANAGE = "Magento_Customer::customer", "Magento_Customer::manage"
RES_ORDERS, RES_STORE = "Magento_Sales::actions_view", "Magento_Backend::store"

_OAUTH_DIGESTS = {"HMAC-SHA256": hashlib.sha256, "HMAC-SHA1": hashlib.sha1}


def _rfc3986(value: str) -> str:
    return quote(value, safe="~")


def parse_oauth_header(value: str) -> dict[str, str]:
    """`k="v",k2="v2"` after "OAuth ": rawurldecoded names and values (Magento's Helper\\Request::_processHeader)."""
    out: dict[str, str] = {}
    for part in value.split(","):
        name, sep, raw = part.strip().partition("=")
        if sep and name.startswith("oauth_"):
            out[unquote(name)] = unquote(raw.strip().strip('"'))
    return out


def oauth1_base_string(method: str, url: str, params: list[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1: method, normalised URL, and the encoded pairs sorted byte-wise."""
    parts = urlsplit(url)
    scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    pairs = sorted((_rfc3986(k), _rfc3986(v)) for k, v in params)
    normalised = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), _rfc3986(f"{scheme}://{netloc}{parts.path}"), _rfc3986(normalised)))


@dataclass
class SignedRequest:
    """What an OAuth 1.0a signature covers: method, URL, query and a form-encoded body."""

    method: str
    url: str
    query: str
    content_type: str
    body: bytes

    def params(self) -> list[tuple[str, str]]:
        # Magento's Helper\Request::_extractQueryStringParams: split on & and =, keep pairs of exactly two,
        # rawurldecode (a "+" stays a plus), and never take protocol parameters from the query.
        out = []
        for chunk in self.query.split("&") if self.query else ():
            pieces = chunk.split("=")
            if len(pieces) == 2 and not pieces[0].startswith("oauth_"):
                out.append((unquote(pieces[0]), unquote(pieces[1])))
        if self.content_type.startswith("application/x-www-form-urlencoded") and self.body:
            out += [(k, v) for k, v in parse_qsl(self.body.decode(), keep_blank_values=True)
                    if not k.startswith("oauth_")]
        return out


class Auth:
    """MagentoSandbox's credentials: admin tokens it issued, the integration's token and nonces seen."""

    def issue_admin_token(self, body: Any) -> str:
        if not isinstance(body, dict):
            raise MagentoError(400, REQUIRED, {"fieldName": "username"})
        for name in ("username", "password"):
            if body.get(name) in (None, ""):
                raise MagentoError(400, REQUIRED, {"fieldName": name})
        if body["username"] != self.admin_username or body["password"] != self.admin_password:
            raise MagentoError(401, BAD_SIGN_IN)
        if self.two_factor_auth:
            # Magento_TwoFactorAuth (2.4) blocks this endpoint for admins.
            raise MagentoError(400, TWO_FA, {"active_providers": ["google"]})
        with self._lock:
            token = "".join(self._rng.choice(string.ascii_lowercase + string.digits) for _ in range(32))
            self._admin_tokens[token] = self._now + ADMIN_TOKEN_LIFETIME
        return token

    def authorize(self, header: str | None, resource: str, request: SignedRequest | None = None) -> None:
        """Admin token or integration (Bearer if allowed, or OAuth 1.0a signed); then the ACL resource."""
        denied = MagentoError(401, NOT_AUTHORIZED, {"resources": resource})
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "oauth" and request is not None:
            self.verify_oauth1(token, request)
            self._integration_may(resource, denied)
            return
        if scheme.lower() != "bearer" or not token:
            raise denied
        if token == self.integration_token:
            if not self.allow_integration_bearer:
                raise denied  # 2.4.4+: the integration is not identified, so nothing is authorised
            self._integration_may(resource, denied)
            return
        with self._lock:
            expiry = self._admin_tokens.get(token)
            if expiry is None or self._now >= expiry:
                raise denied

    def _integration_may(self, resource: str, denied: MagentoError) -> None:
        if self.integration_resources is not None and resource not in self.integration_resources:
            raise denied

    def verify_oauth1(self, header_params: str, request: SignedRequest) -> None:
        """Check an OAuth 1.0a request the way Magento\\Framework\\Oauth\\Oauth::validateAccessTokenRequest does."""
        params = parse_oauth_header(header_params)
        for name in OAUTH_REQUIRED:
            if not params.get(name):
                raise MagentoError(400, REQUIRED, {"fieldName": name})
        if params.get("oauth_version", "1.0") != "1.0":
            raise MagentoError(400, BAD_OAUTH_VERSION, [params["oauth_version"]])
        method = params["oauth_signature_method"]
        if method not in _OAUTH_DIGESTS:
            raise MagentoError(400, BAD_SIGNATURE_METHOD, [method])
        if not hmac.compare_digest(params["oauth_consumer_key"], self.consumer_key):
            raise MagentoError(401, UNKNOWN_CONSUMER)
        if not hmac.compare_digest(params["oauth_token"], self.integration_token):
            raise MagentoError(401, UNKNOWN_TOKEN)
        timestamp = params["oauth_timestamp"]
        # Checked against the real clock: clients sign with theirs, not with the sandbox's data clock.
        if not timestamp.isdigit() or not 0 < int(timestamp) <= time.time() + OAUTH_TIME_DEVIATION:
            raise MagentoError(400, BAD_TIMESTAMP)
        with self._lock:  # the nonce is spent before the signature is checked, as in Magento
            key = (params["oauth_consumer_key"], params["oauth_nonce"])
            if key in self._nonces:
                raise MagentoError(401, NONCE_USED, [INTEGRATION_CONSUMER_ID])
            self._nonces.add(key)
        signed = [(k, v) for k, v in params.items() if k != "oauth_signature"] + request.params()
        base = oauth1_base_string(request.method, request.url, signed)
        key_bytes = f"{_rfc3986(self.consumer_secret)}&{_rfc3986(self.access_token_secret)}".encode()
        expected = base64.b64encode(hmac.new(key_bytes, base.encode(), _OAUTH_DIGESTS[method]).digest()).decode()
        if not hmac.compare_digest(expected, params["oauth_signature"]):
            raise MagentoError(401, BAD_SIGNATURE)

