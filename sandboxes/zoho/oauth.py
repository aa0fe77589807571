"""Zoho OAuth: the accounts host's token and revoke endpoints, token bookkeeping and API call authentication."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from sandboxes._router import SandboxError
from sandboxes.zoho.faults import _AUTH_FAILURE, _INVALID_TOKEN, answer
from sandboxes.zoho.routes import accounts

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox

TOKEN_THROTTLE_COUNT = 10
TOKEN_THROTTLE_WINDOW = 600.0
MAX_ACTIVE_ACCESS_TOKENS = 15  # Zoho docs say 10 or 15; the oldest is invalidated past the cap

THROTTLE_BODY = {
    "error_description": "You have made too many requests continuously. Please try again after some time.",
    "error": "Access Denied",
    "status": "failure",
}


def oauth_form(req: Request) -> dict[str, str]:
    """Query parameters, overridden by a form-encoded body's."""
    params = dict(req.query)
    if "urlencoded" in (req.headers.get("Content-Type") or "") and req.body:
        params.update({k: v[-1] for k, v in parse_qs(req.body.decode("utf-8"), keep_blank_values=True).items()})
    return params


@accounts.route("POST", "/oauth/v2/token", operation="token")
def token(sb: ZohoSandbox, req: Request, info: dict, form: dict) -> Response:
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token":
        return _refresh(sb, form, info)
    if grant_type == "authorization_code":
        return _exchange(sb, form)
    return answer(200, {"error": "unsupported_grant_type"})


@accounts.route("POST", "/oauth/v2/token/revoke", operation="revoke")
def revoke(sb: ZohoSandbox, req: Request, info: dict, form: dict) -> Response:
    token = form.get("token", "")
    with sb._lock:
        holder = sb._refresh_tokens.get(token)
        if holder is not None and not holder["revoked"]:
            holder["revoked"] = True  # revoking a refresh token kills its access tokens too
            for access in [t for t, rec in sb._access_tokens.items() if rec["refresh_token"] == token]:
                del sb._access_tokens[access]
            return answer(200, {"status": "success"})
        if sb._access_tokens.pop(token, None) is not None:
            return answer(200, {"status": "success"})
    return answer(400, {"status": "failure", "error": "invalid_request"})


def _refresh(sb: ZohoSandbox, params: dict, info: dict) -> Response:
    token = params.get("refresh_token", "")
    now = time.time()
    with sb._lock:
        sb._token_calls[token] = sb._token_calls.get(token, 0) + 1
        info["token_calls"] = sb._token_calls[token]
        if error := sb._client_error(params):
            return answer(200, {"error": error})  # Zoho answers OAuth errors with HTTP 200
        holder = sb._refresh_tokens.get(token)
        if holder is None or holder["revoked"] or holder["client_id"] != params.get("client_id"):
            return answer(200, {"error": "invalid_code"})
        issued = holder["issued"]
        while issued and now - issued[0] >= sb.token_throttle_window:
            issued.popleft()
        if len(issued) >= TOKEN_THROTTLE_COUNT:
            return answer(400, dict(THROTTLE_BODY))
        access = sb._issue_access_token(token, holder, now)
    return answer(200, {"access_token": access, "scope": " ".join(holder["scopes"]), "api_domain": sb.url,
                        "token_type": "Bearer", "expires_in": sb.access_token_ttl})


def _exchange(sb: ZohoSandbox, params: dict) -> Response:
    now = time.time()
    with sb._lock:
        if error := sb._client_error(params):
            return answer(200, {"error": error})
        grant = sb._grant_codes.get(params.get("code", ""))
        if grant is None or grant["used"] or grant["expires_at"] <= now \
                or grant["client_id"] != params.get("client_id"):
            return answer(200, {"error": "invalid_code"})
        registered = sb._clients[params["client_id"]]["redirect_uri"]
        if registered is not None and params.get("redirect_uri") != registered:
            return answer(200, {"error": "invalid_redirect_uri"})
        grant["used"] = True
        refresh = sb.add_refresh_token(grant["client_id"], grant["scopes"])
        holder = sb._refresh_tokens[refresh]
        access = sb._issue_access_token(refresh, holder, now)
    return answer(200, {"access_token": access, "refresh_token": refresh, "scope": " ".join(grant["scopes"]),
                        "api_domain": sb.url, "token_type": "Bearer", "expires_in": sb.access_token_ttl})


class Tokens:
    """ZohoSandbox's OAuth state: clients, refresh tokens, grant codes and the access tokens they issued."""

    def add_client(self, client_id: str, client_secret: str, redirect_uri: str | None = None) -> None:
        with self._lock:
            self._clients[client_id] = {"secret": client_secret, "redirect_uri": redirect_uri}

    def add_refresh_token(self, client_id: str, scopes: tuple[str, ...]) -> str:
        with self._lock:
            token = f"1000.{self._token_rng.getrandbits(128):032x}.{self._token_rng.getrandbits(128):032x}"
            self._refresh_tokens[token] = {"client_id": client_id, "scopes": tuple(scopes),
                                           "issued": deque(), "revoked": False}
            return token

    def issue_grant_code(self, client_id: str, scopes: tuple[str, ...], ttl_seconds: float = 120.0) -> str:
        """A single-use authorization code, like the Zoho API console's self-client grant token."""
        with self._lock:
            code = f"1000.{self._token_rng.getrandbits(128):032x}.{self._token_rng.getrandbits(128):032x}"
            self._grant_codes[code] = {"client_id": client_id, "scopes": tuple(scopes),
                                       "expires_at": time.time() + ttl_seconds, "used": False}
            return code

    def token_calls(self, refresh_token: str | None = None) -> int:
        """Token endpoint calls that named this refresh token (default: the constructor's one)."""
        with self._lock:
            return self._token_calls.get(refresh_token or self.refresh_token, 0)

    def _client_error(self, params: dict) -> str | None:
        client = self._clients.get(params.get("client_id", ""))
        if client is None:
            return "invalid_client"
        if client["secret"] != params.get("client_secret"):
            return "invalid_client_secret"
        return None

    def _issue_access_token(self, refresh: str, holder: dict, now: float) -> str:
        holder["issued"].append(now)
        mine = sorted((rec["issued_at"], tok) for tok, rec in self._access_tokens.items()
                      if rec["refresh_token"] == refresh)
        for _, oldest in mine[: max(0, len(mine) - MAX_ACTIVE_ACCESS_TOKENS + 1)]:
            del self._access_tokens[oldest]  # past the active-token cap Zoho invalidates the oldest
        token = f"1000.{self._token_rng.getrandbits(128):032x}.{self._token_rng.getrandbits(128):032x}"
        self._access_tokens[token] = {"refresh_token": refresh, "scopes": {s.lower() for s in holder["scopes"]},
                                      "expires_at": now + self.access_token_ttl, "issued_at": now}
        return token

    def _authenticate(self, req: Request) -> set[str]:
        """The scopes of the call's access token; raises the 401 Zoho answers when there is none valid."""
        header = req.headers.get("Authorization")
        if not header:
            raise SandboxError(401, _AUTH_FAILURE)
        prefix, _, token = header.strip().partition(" ")
        if prefix != "Zoho-oauthtoken":  # e.g. "Bearer": Zoho does not accept it
            raise SandboxError(401, _INVALID_TOKEN)
        with self._lock:
            record = self._access_tokens.get(token.strip())
            if record is None or record["expires_at"] <= time.time():
                self._access_tokens.pop(token.strip(), None)
                raise SandboxError(401, _INVALID_TOKEN)
            return set(record["scopes"])

    def _request_scopes(self, req: Request) -> set[str]:
        try:
            return self._authenticate(req)
        except SandboxError:
            return set()
