"""DecoNetwork's errors (HTTP 200 with a ``response_status`` code in the envelope), HTML pages, injected faults."""

from __future__ import annotations

from .._router import SandboxError

HTML = "text/html; charset=UTF-8"
_CODE_TEXT = {
    10001: ("SUCCESS", "."),
    30001: ("ERROR", "Authentication failed"),
    31000: ("ERROR", "API not enabled on your site"),
    50002: ("ERROR", "No conditions specified"),
    50004: ("ERROR", "Invalid limit or offset"),
    50005: ("ERROR", "Invalid request parameters"),
}
_HTML_404 = (b"<!DOCTYPE html>\n<html><head><title>Page Not Found</title></head>"
             b"<body><h1>404 - Page Not Found</h1><p>The page you requested could not be found.</p></body></html>")
_HTML_LOGIN = (b"<!DOCTYPE html>\n<html><head><title>Login</title></head><body><h1>Sign in</h1>"
               b"<form method=\"post\" action=\"/login\"><input name=\"login\"><input type=\"password\" "
               b"name=\"password\"><button>Sign in</button></form></body></html>")


class DecoApiError(SandboxError):
    """A DecoNetwork status code with its description, answered as HTTP 200 with the envelope."""

    def __init__(self, code: int, description: str | None = None) -> None:
        severity, text = _CODE_TEXT.get(code, ("ERROR", "Error"))
        Exception.__init__(self, description or text)
        self.status, self.headers = 200, {}
        self.code, self.severity, self.description = code, severity, description or text

    def body(self) -> dict:
        return {"response_status": {"code": self.code, "severity": self.severity, "description": self.description}}


class Faults:
    """DecoNetworkSandbox's injected faults: whole API requests failing."""

    def inject_fault(self, kind: str, times: int = 1) -> None:
        """The next ``times`` API requests fail: "429", "503" (an HTML error page) or "drop" (no response)."""
        if kind not in ("429", "503", "drop"):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._faults.extend([kind] * times)

    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None
