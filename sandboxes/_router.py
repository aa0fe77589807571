"""Request plumbing every sandbox shares: a precompiled path router, the request and answer objects, errors."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

Handler = Callable[..., Any]
_INT = re.compile(r"\d+")  # as the sandboxes always matched ids: Python's \d


class Request:
    """One HTTP request: method, path, query string, headers, body; query and JSON parsed on first use."""

    __slots__ = ("method", "path", "raw_query", "headers", "body", "_query", "_json", "_json_error")

    def __init__(self, method: str, path: str, raw_query: str, headers: Any, body: bytes) -> None:
        self.method, self.path, self.raw_query, self.headers, self.body = method, path, raw_query, headers, body
        self._query: dict[str, str] | None = None
        self._json: Any = None
        self._json_error = False

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, the last value of a repeated one winning."""
        if self._query is None:
            self._query = dict(parse_qsl(self.raw_query, keep_blank_values=True))
        return self._query

    def json(self) -> Any:
        """Parsed UTF-8 JSON body (an empty body is null); raises ValueError when the body is not JSON."""
        if self._json is None and not self._json_error:
            try:
                self._json = json.loads(self.body.decode("utf-8") or "null")
            except (UnicodeDecodeError, ValueError):
                self._json_error = True
        if self._json_error:
            raise ValueError("body is not JSON")
        return self._json


@dataclass
class Response:
    """An answer: ``body`` bytes go out as they are, None as nothing, anything else as JSON."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    drop: bool = False  # close the connection without a byte of answer


class SandboxError(Exception):
    """An error answer raised anywhere below a handler; each system subclasses it to build its own body."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self._body, self.headers = status, body, dict(headers or {})

    def body(self) -> Any:
        return self._body

    def response(self, content_type: str = "application/json") -> Response:
        """The one way an error becomes an answer, whatever the system's wire format."""
        return Response(self.status, self.body(), dict(self.headers), content_type)


# ------------------------------------------------------------------------------------------------ routes


@dataclass(frozen=True)
class Route:
    """One endpoint: its method, pattern, handler and whatever options its system reads (operation, scope...)."""

    method: str
    pattern: str
    handler: Handler
    options: dict[str, Any]
    strict_slashes: bool

    def __getattr__(self, name: str) -> Any:  # route.operation, route.scope, ...: the options given
        try:
            return self.__dict__["options"][name]
        except KeyError:
            raise AttributeError(name) from None


class _Node:
    """A trie node: static children by segment, then parameter edges, then the routes ending here."""

    __slots__ = ("static", "params", "routes", "loose")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.params: list[tuple[str, Callable[[str], Any] | None, Callable[[str], bool] | None, _Node]] = []
        self.routes: dict[str, Route] = {}  # method -> route
        self.loose: dict[str, Route] = {}  # the routes that also take a trailing slash


class Router:
    """Routes of one HTTP surface, matched segment by segment through a trie (static segments first).

    ``collapse_slashes`` ignores empty segments anywhere (Zoho: ``//crm/v8/Contacts/``); otherwise only
    trailing slashes are ignored, and not even those by a route with ``strict_slashes``.
    """

    def __init__(self, *, collapse_slashes: bool = False, strict_slashes: bool = False) -> None:
        self.collapse_slashes, self.strict_slashes = collapse_slashes, strict_slashes
        self._routes: list[Route] = []
        self._root: _Node | None = None
        self._lock = threading.Lock()  # adding a route while serving recompiles the trie, never half of it

    def route(self, methods: str | Iterable[str], pattern: str, *, strict_slashes: bool | None = None,
              **options: Any) -> Callable[[Handler], Handler]:
        """Decorator: register ``handler`` for ``methods`` on ``pattern`` (``{name}``, ``{name:int}`` segments)."""
        def register(handler: Handler) -> Handler:
            self.add(methods, pattern, handler, strict_slashes=strict_slashes, **options)
            return handler
        return register

    def add(self, methods: str | Iterable[str], pattern: str, handler: Handler, *,
            strict_slashes: bool | None = None, **options: Any) -> None:
        strict = self.strict_slashes if strict_slashes is None else strict_slashes
        with self._lock:
            for method in ([methods] if isinstance(methods, str) else methods):
                self._routes.append(Route(method.upper(), pattern, handler, options, strict))
            self._root = None  # recompiled on the next match

    def copy(self) -> Router:
        """The same routes in a router of their own: a sandbox instance adds routes without touching others."""
        other = Router(collapse_slashes=self.collapse_slashes, strict_slashes=self.strict_slashes)
        with self._lock:
            other._routes = list(self._routes)
        return other

    def find(self, **options: Any) -> list[Route]:
        """Registered routes whose options include all of ``options`` (e.g. ``operation="upsert"``)."""
        return [r for r in self._routes if all(r.options.get(k, _MISSING) == v for k, v in options.items())]

    def match(self, path: str) -> tuple[dict[str, Route], dict[str, Any]] | None:
        """(routes by method, path parameters) of the most specific pattern matching ``path``; None if none does."""
        root = self._root
        if root is None:
            with self._lock:
                root = self._root = self._root or self._compile()
        if self.collapse_slashes:
            segments, trailing = [s for s in path.split("/") if s], False
        else:
            segments = path.split("/")
            if path.startswith("/"):
                del segments[0]
            trailing = len(path) > 1 and path.endswith("/")
            while segments and segments[-1] == "":
                segments.pop()
        params: dict[str, Any] = {}
        node = _walk(root, segments, 0, params, trailing)
        if node is None:
            return None
        return (node.loose if trailing else node.routes), params

    def _compile(self) -> _Node:
        root = _Node()
        for route in self._routes:
            node = root
            for segment in _segments(route.pattern):
                if segment.startswith("{") and segment.endswith("}"):
                    node = _param_child(node, segment[1:-1], route.options.get("where", {}))
                else:
                    node = node.static.setdefault(segment, _Node())
            node.routes.setdefault(route.method, route)
            if not route.strict_slashes:
                node.loose.setdefault(route.method, route)
        return root


_MISSING = object()


def _segments(pattern: str) -> list[str]:
    return [s for s in pattern.split("/") if s]


def _param_child(node: _Node, spec: str, where: dict[str, Callable[[str], bool]]) -> _Node:
    name, _, kind = spec.partition(":")
    if kind not in ("", "int"):
        raise ValueError(f"unknown parameter type {kind!r} in {{{spec}}}")
    convert = int if kind == "int" else None
    test = where.get(name)
    for edge in node.params:
        if edge[:3] == (name, convert, test):
            return edge[3]
    child = _Node()
    # Edges with a condition are tried before a bare parameter: they are the more specific.
    node.params.append((name, convert, test, child))
    node.params.sort(key=lambda e: (e[1] is None and e[2] is None))
    return child


def _walk(node: _Node, segments: list[str], i: int, params: dict[str, Any], trailing: bool) -> _Node | None:
    """Depth-first: a static child before parameter edges, backtracking when a branch ends without routes."""
    if i == len(segments):
        return node if (node.loose if trailing else node.routes) else None
    segment = segments[i]
    child = node.static.get(segment)
    if child is not None and (found := _walk(child, segments, i + 1, params, trailing)) is not None:
        return found
    for name, convert, test, child in node.params:
        if not segment or convert is int and not _INT.fullmatch(segment) or test is not None and not test(segment):
            continue
        params[name] = convert(segment) if convert else segment
        if (found := _walk(child, segments, i + 1, params, trailing)) is not None:
            return found
        del params[name]
    return None
