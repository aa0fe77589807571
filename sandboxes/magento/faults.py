"""Magento's error bodies ({"message", "parameters"}) and the faults tests inject into the store."""

from __future__ import annotations

from typing import Any

from .._router import SandboxError

NO_ROUTE = "Request does not match any route."
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."
BAD_SIGN_IN = ("The account sign-in was incorrect or your account is disabled temporarily. "
               "Please wait and try again later.")
TWO_FA = "Please use the 2fa provider-specific endpoints to obtain a token."
REQUIRED = '"%fieldName" is required. Enter and try again.'
BAD_TYPE = "The \"%1\" value's type is invalid. The \"%2\" type was expected. Verify and try again."
MAX_PAGE = "Maximum SearchCriteria pageSize is %max"
NO_SUCH_ENTITY = "No such entity with %fieldName = %fieldValue"
ENTITY_MISSING = "The entity that was requested doesn't exist. Verify the entity and try again."
INTERNAL = "Internal Error. Details are available in Magento log file. Report ID: %1"
# OAuth 1.0a refusals, worded as Magento\Framework\Oauth\Oauth and NonceGenerator word them.
BAD_SIGNATURE = "The signature is invalid. Verify and try again."
NONCE_USED = "The nonce is already being used by the consumer with ID %1"
BAD_TIMESTAMP = "Incorrect timestamp value in the oauth_timestamp parameter"
UNKNOWN_CONSUMER = "A consumer having the specified key does not exist"
UNKNOWN_TOKEN = "Specified token does not exist"
BAD_OAUTH_VERSION = "The \"%1\" Oauth version isn't supported."
BAD_SIGNATURE_METHOD = "Signature method %1 is not supported"
DUPLICATE_EMAIL = "A customer with the same email address already exists in an associated website."
REQUEST_FAULTS = ("429", "503", "drop")  # the whole request fails
# A search answers 200 with a wrong page (seen in production: issue 12); `path` picks the endpoint.
PAGE_FAULTS = ("empty_page", "short_page", "total_drift", "skip_rows")


class MagentoError(SandboxError):
    """A Magento web API error: rendered as {"message": ..., "parameters": ...} with an HTTP status."""

    def __init__(self, status: int, message: str, parameters: list | dict | None = None) -> None:
        Exception.__init__(self, message)
        self.status, self.message, self.parameters, self.headers = status, message, parameters, {}

    def body(self) -> dict:
        out: dict[str, Any] = {"message": self.message}
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out


class Faults:
    """MagentoSandbox's faults: whole requests failing, and searches answered with a wrong page."""

    def inject_fault(self, kind: str, times: int | None = 1, *, path: str | None = None, after_pages: int = 0,
                     rows: int | None = None, drift: int = 0) -> None:
        """Make the store misbehave.

        Request faults: the next `times` REST requests fail: "429" (rate limited), "503" (maintenance) or
        "drop" (no response).

        Page faults answer a search (`path` "customers" or "orders"; None: either) with HTTP 200 and a wrong
        page, after the first `after_pages` matching searches since the fault was set were answered right
        (a `newest`-style probe counts as one), for the next `times` searches (None: until `clear_faults`):

        * "empty_page": exactly ``{"items": [], "total_count": 0}``, whatever remains;
        * "short_page": only the first `rows` items (default: half of them), total_count unchanged;
        * "total_drift": the right items, total_count moved by `drift` (the count query ran at another moment);
        * "skip_rows": a page that leaves out `rows` rows (default 1) from its middle and fills up with the
          following ones, so it still looks full (a read replica behind its primary).
        """
        if kind not in REQUEST_FAULTS + PAGE_FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {REQUEST_FAULTS + PAGE_FAULTS}")
        if kind in REQUEST_FAULTS:
            with self._lock:
                self._faults.extend([kind] * (times or 1))
            return
        entity = {None: None, "customers": "customers", "customers/search": "customers",
                  "orders": "orders"}.get(path, "?")  # the searched table's name
        if entity == "?":
            raise ValueError(f"unknown path {path!r}: use 'customers' or 'orders'")
        if kind == "total_drift" and not drift:
            raise ValueError("a total_drift fault needs a non-zero drift")
        if times is not None and times < 1 or after_pages < 0 or rows is not None and rows < 0:
            raise ValueError("times must be at least 1 (or None), after_pages and rows at least 0")
        with self._lock:
            self._page_faults.append({"kind": kind, "entity": entity, "skip": int(after_pages), "times": times,
                                      "rows": rows, "drift": int(drift)})

    def clear_faults(self) -> None:
        """Every queued fault, request or page, is dropped: the store answers right again."""
        with self._lock:
            self._faults.clear()
            self._page_faults.clear()

    def applied_faults(self) -> list[dict]:
        """The page faults answered so far, in order: {"kind", "path", "total_count"} (the true total)."""
        with self._lock:
            return [dict(f) for f in self._applied_faults]

    def _take_page_fault(self, entity: str) -> dict | None:
        """The page fault for this search, if one is due; every matching fault still waiting counts the page."""
        chosen = None
        for fault in list(self._page_faults):
            if fault["entity"] not in (None, entity):
                continue
            if fault["skip"] > 0:
                fault["skip"] -= 1
            elif chosen is None:
                chosen = fault
                if fault["times"] is not None:
                    fault["times"] -= 1
                    if fault["times"] <= 0:
                        self._page_faults.remove(fault)
        return chosen

    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None
