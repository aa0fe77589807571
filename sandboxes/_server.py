"""What every sandbox shares: a loopback HTTP server in a daemon thread, request in, answer out, the CLI ready file."""

from __future__ import annotations

import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sandboxes._router import Request, Response


class RequestHandler(BaseHTTPRequestHandler):
    """Reads a Request, has the sandbox's ``handle`` answer it, writes the Response; subclasses pick the methods."""

    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    # Headers and body in one buffered write with TCP_NODELAY: otherwise Nagle plus delayed ACK adds ~40 ms a call.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    sys_version = ""
    headers_first = False  # the answer's own headers before Content-Type and Content-Length (Zoho's order)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def serve(self) -> None:
        send(self, self.sandbox.handle(read_request(self)))  # type: ignore[attr-defined]


def read_request(handler: BaseHTTPRequestHandler) -> Request:
    parts = urlsplit(handler.path)
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        body = _read_chunked(handler.rfile)
    else:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
    return Request(handler.command, parts.path, parts.query, handler.headers, body)


def _read_chunked(stream: Any) -> bytes:
    chunks = []
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            stream.readline()
            return b"".join(chunks)
        chunks.append(stream.read(size))
        stream.readline()


def send(handler: RequestHandler, resp: Response) -> None:
    """Write ``resp``; 204 and 304 carry no body and no Content-Type."""
    if resp.drop:  # the client sees the connection close with no answer
        handler.close_connection = True
        return
    body = resp.body
    payload = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode("utf-8")
    handler.send_response(resp.status)
    if handler.headers_first:
        for name, value in resp.headers.items():
            handler.send_header(name, value)
    if resp.status in (204, 304):
        handler.send_header("Content-Length", "0")
        payload = b""
    else:
        handler.send_header("Content-Type", resp.content_type)
        handler.send_header("Content-Length", str(len(payload)))
    if not handler.headers_first:
        for name, value in resp.headers.items():
            handler.send_header(name, value)
    handler.end_headers()
    if payload and handler.command != "HEAD":
        handler.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients must queue, not be refused


class LoopbackServer:
    """Start/stop/context manager for a sandbox; subclasses return their request handler class."""

    thread_name = "sandbox"
    url: str = ""
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    def start(self, port: int = 0) -> Any:
        """Bind 127.0.0.1 (port 0 = any free port) and serve in a daemon thread."""
        handler = type(f"{type(self).__name__}Handler", (self._handler(),), {"sandbox": self})
        server = _Server(("127.0.0.1", port), handler)
        server.sandbox = self  # type: ignore[attr-defined]
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        # a short poll interval keeps stop() fast (the default 0.5 s adds up over a test suite)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Any:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_until_stopped(sandbox: LoopbackServer, port: int, ready_file: str | None, ready: dict[str, Any]) -> None:
    """CLI mode: serve in the foreground, write ``ready`` (plus the URL) atomically, stop on SIGTERM or ^C."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    sandbox.start(port)
    try:
        payload = {"url": sandbox.url, "pid": os.getpid(), **ready}
        if ready_file:
            tmp = f"{ready_file}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(payload, handle)
            os.replace(tmp, ready_file)  # readers never see a half-written file
        print(json.dumps({"url": sandbox.url}), flush=True)
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
