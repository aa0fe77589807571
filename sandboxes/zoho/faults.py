"""Zoho's error bodies ({"code","details","message","status"}) and the faults tests inject into the sandbox."""

from __future__ import annotations

import copy
from typing import Any

from sandboxes._router import Response, SandboxError

JSON = "application/json;charset=UTF-8"
FAULT_KINDS = ("429", "500", "drop", "expire_token", "apply_then_500")
TOKEN_OPERATIONS = ("token", "revoke")


def _err(code: str, message: str, **details: Any) -> dict:
    """Zoho's error object: flat for request-level errors, one item of ``data`` for per-record ones."""
    return {"code": code, "details": details, "message": message, "status": "error"}


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> Response:
    """A Zoho API answer (JSON unless ``body`` is bytes or None)."""
    return Response(status, body, headers if headers is not None else {}, JSON)


class ZohoError(SandboxError):
    """Raise to answer a Zoho error: ``ZohoError(400, "INVALID_DATA", "invalid data", param_name="page")``;
    ``SandboxError(status, body)`` answers a body given whole (the canned ones below, ``{"data": [...]}``)."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(status, _err(code, message, **details))


_INVALID_URL = _err("INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
_INVALID_METHOD = _err("INVALID_REQUEST_METHOD", "The http request method type is not a valid one")
_INTERNAL = _err("INTERNAL_ERROR", "Internal server error occurred.")
_CONCURRENCY = _err("TOO_MANY_REQUESTS", "The concurrency limit of the app has been exceeded. Please try again later.")
_OUT_OF_CREDITS = _err("TOO_MANY_REQUESTS", "Many requests fired than the allowed limit for the past 24 hours.")
_INVALID_TOKEN = _err("INVALID_TOKEN", "invalid oauth token")
_AUTH_FAILURE = _err("AUTHENTICATION_FAILURE", "Authentication failed")
_SCOPE_MISMATCH = _err("OAUTH_SCOPE_MISMATCH", "Unauthorized")
_INVALID_MODULE = _err("INVALID_MODULE", "the module name given seems to be invalid")


class Faults:
    """Injected faults (ZohoSandbox's part): queued per operation, or at random rates from the seed."""

    def inject_fault(self, kind: str, *, times: int = 1, operation: str | None = None,
                     status: int | None = None, retry_after: float | str | None = None, after: int = 0) -> None:
        """Queue a fault for the next ``times`` matching calls (after letting the first ``after`` of them through).

        ``operation=None`` matches every API call (not token calls); name ``"token"`` to hit the accounts host.
        ``status`` overrides the HTTP status of a 429/500/apply_then_500 answer. ``retry_after`` adds a
        ``Retry-After`` header to a 429 or 500 (Zoho does not document one; a client must cope either way).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append({"kind": kind, "times": int(times), "operation": operation, "status": status,
                                 "retry_after": retry_after, "after": int(after)})

    def deny_permissions(self, module: str, permissions: list[str]) -> None:
        """The connected user's profile loses ``permissions`` on ``module``: its calls answer 403 NO_PERMISSION.

        An empty list gives the permissions back.
        """
        with self._lock:
            if permissions:
                self._denied[self._module_name(module)] = list(permissions)
            else:
                self._denied.pop(self._module_name(module), None)

    def set_fault_rate(self, kind: str, probability: float) -> None:
        """Random faults on API calls, reproducible for a given seed; probability 0 switches them off."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            if probability <= 0:
                self._fault_rates.pop(kind, None)
            else:
                self._fault_rates[kind] = float(probability)

    def _take_fault(self, operation: str) -> dict | None:
        api_call = operation not in TOKEN_OPERATIONS
        with self._lock:
            for fault in self._faults:
                wanted = fault["operation"]
                if (wanted is None and api_call) or wanted == operation:
                    if fault.get("after", 0) > 0:  # this call goes through; the fault waits for a later one
                        fault["after"] -= 1
                        continue
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self._faults.remove(fault)
                    return fault
            if api_call:
                for kind, probability in self._fault_rates.items():
                    if self._fault_rng.random() < probability:
                        return {"kind": kind, "times": 1, "operation": None, "status": None, "retry_after": None}
        return None

    def _fault_response(self, fault: dict) -> Response | None:
        """The answer a fault gives before the request is processed (None for apply_then_500)."""
        kind = fault["kind"]
        if kind == "drop":
            return Response(0, drop=True)
        headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
        if kind == "429":
            return answer(fault["status"] or 429, _err("TOO_MANY_REQUESTS", "too many requests"), headers)
        if kind == "500":
            return answer(fault["status"] or 500, copy.deepcopy(_INTERNAL), headers)
        if kind == "expire_token":
            with self._lock:
                self._access_tokens.clear()
            return answer(401, _INVALID_TOKEN)
        return None
