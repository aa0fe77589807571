"""The Magento 2 hook: authenticated REST calls and searchCriteria paging that never loses or repeats a row.

(Over 400 lines: the keyset paging and the proofs that a read is complete are one piece with the calls they
make; the OAuth 1.0a signing is in ``oauth1``, retries and backoff in ``zoho_store_sync.transport``.)

Connection: ``host`` is the store's base URL (``https://shop.example.com``). Extra ``auth`` chooses how
every request is authenticated:

* ``integration_token`` (default): ``password`` is an integration's access token, sent as
  ``Authorization: Bearer``. Magento 2.4.4 and later refuse this unless the store enables Stores >
  Configuration > Services > OAuth > Consumer Settings > *Allow OAuth Access Tokens to be used as
  standalone Bearer tokens*; otherwise use ``oauth1``.
* ``oauth1``: the integration's four credentials, every request signed with OAuth 1.0a HMAC-SHA256
  (RFC 5849; works whatever the bearer setting). ``consumer_key`` and ``access_token`` go in the extra;
  the two secrets go in ``password`` as a JSON object
  ``{"consumer_secret": "...", "access_token_secret": "..."}`` so Airflow masks them like any password.
  Any of the four may be in either place; a value in the password JSON wins over the extra.
* ``admin``: ``login``/``password`` of an admin user, exchanged for a 4-hour admin token that is renewed
  once on a 401. Magento 2.4 refuses admin tokens when two-factor authentication is on (the default):
  the error says so; use an integration instead.

Optional extras: ``store_code`` (read by the caller, not here) and ``timeout``. No extra ever becomes an
HTTP header (Airflow's HttpHook would send every unknown extra as one, secrets included).

Paging never takes a partial answer for the whole (issue 12: one ``200 {"items": [], "total_count": 0}`` page
mid-paging once passed for a full pass and deleted most of a tenant's Zoho records). A page that is empty or
shorter than its own ``total_count`` promises is read again a few times, then ``SourceIncompleteError``; a
read given a ``PagingReport`` (a full pass) also proves its own completeness (see ``MagentoHook.search``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import requests
from airflow.sdk import BaseHook
from requests.auth import AuthBase

from zoho_store_sync.errors import MagentoAuthError, MagentoError, SourceIncompleteError  # noqa: F401 - re-exported
from zoho_store_sync.sources.magento.oauth1 import (  # noqa: F401 - re-exported: the signing lived here
    OAuth1,
    encode_query,
    normalized_url,
    oauth1_signature,
    percent_encode,
    query_pairs,
    signature_base_string,
)
from zoho_store_sync.transport import Backoff, RetryingTransport, TryAgain, plain_session

AUTH_MODES = ("integration_token", "oauth1", "admin")
OAUTH1_FIELDS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
_MAX_PAGE_MESSAGE = "Maximum SearchCriteria pageSize is"
PAGE_RETRIES = 3  # reads of a page that looks partial, after the first, before the read fails
RETRY_BACKOFF = Backoff(base=0.5, cap=30.0, floor=0.5)  # a call refused for load or dropped
PAGE_BACKOFF = Backoff(base=0.2, cap=30.0, floor=0.5)  # a page that looked partial: the store may be re-indexing
# Pages whose total_count fell by more than the rows read, re-listed after a full pass to prove no row was
# left out; past this many the pass is "not provably complete" rather than a long second read.
MAX_RANGES_TO_VERIFY = 20


def format_magento_message(body: Any) -> str:
    """``{"message": "Invalid %1", "parameters": ["x"]}`` → ``Invalid x`` (positional or named parameters)."""
    if not isinstance(body, dict):
        return str(body)[:300]
    message = str(body.get("message", ""))
    parameters = body.get("parameters")
    if isinstance(parameters, list):
        # %10 before %1, so the longer placeholder is not eaten by the shorter one
        for index, value in reversed(list(enumerate(parameters, start=1))):
            message = message.replace(f"%{index}", _text(value))
    elif isinstance(parameters, dict):
        for name, value in sorted(parameters.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(f"%{name}", _text(value))
    return message


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


class _Bearer(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


# ---- paging reports --------------------------------------------------------------------------------------


@dataclass
class PagingReport:
    """What one keyset read proved about itself; ``MagentoHook.search`` fills it when it is given one.

    Giving a report asks for a read whose completeness is proven, as a full pass needs: the store's last page
    is confirmed by one more (empty) page, and where a page's ``total_count`` fell by more than the rows read
    before it (rows deleted ahead while paging, or a page that left rows out) the ids now in that page's range
    are listed again. ``incomplete_reason`` is then None only if every row the store still has in the range
    read was read.
    """

    expected: int | None = None  # rows the store reported before paging (a count probe), if known
    first_total: int | None = None  # total_count of the first page
    read: int = 0  # distinct rows read
    pages: int = 0  # pages answered, retries and the confirming page included
    retries: int = 0  # pages read again because they looked partial
    verified_ranges: int = 0
    done: bool = False
    incomplete_reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.done and self.incomplete_reason is None


class Probe(NamedTuple):
    """One cheap look at a search before paging: the newest row's ``field`` and id, and the rows matching."""

    newest: str | None
    newest_id: Any
    total: int


# ---- the hook --------------------------------------------------------------------------------------------


class _PartialPage(TryAgain):
    """A page that cannot be the store's truth (see ``_page_problem``): read it again."""

    def __init__(self, problem: str, remaining: int) -> None:
        super().__init__(problem)
        self.remaining = remaining


class MagentoHook(BaseHook):
    """REST calls to one Magento 2 store, through a ``RetryingTransport``.

    :param magento_conn_id: the Connection with the store URL and credentials (see the module docstring).
    :param store_code: store view code in the URL (``/rest/<store_code>/V1/...``).
    :param max_retries: retries of one call on 429, 5xx and dropped connections, with backoff.
    """

    conn_name_attr = "magento_conn_id"
    default_conn_name = "magento_default"
    conn_type = "magento"
    hook_name = "Magento 2"

    def __init__(
        self,
        magento_conn_id: str = default_conn_name,
        *,
        store_code: str = "default",
        max_retries: int = 5,
        timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.magento_conn_id = magento_conn_id
        self.store_code = store_code
        self.page_retries = PAGE_RETRIES
        self.transport = RetryingTransport(
            "magento",
            max_retries=max_retries,
            backoff=RETRY_BACKOFF,
            timeout=timeout,
            session_factory=lambda: self.get_conn(),
        )
        self._lock = threading.Lock()
        self._conn: Any = None
        self._admin_token: str | None = None
        self._oauth1: OAuth1 | None = None

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A session without basic auth and with none of the connection's extras as headers."""
        options = {**self._connection.extra_dejson, **(extra_options or {})}
        return plain_session(headers, options=options, tcp_keep_alive=True)

    @property
    def calls(self) -> int:
        """REST answers received (retried ones included)."""
        return self.transport.responses

    @property
    def max_retries(self) -> int:
        return self.transport.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self.transport.max_retries = value

    @property
    def timeout(self) -> float:
        return self.transport.timeout

    @property
    def sleep(self) -> Callable[[float], None]:
        """Every wait of this hook (call retries and page re-reads); tests replace it."""
        return self.transport.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], None]) -> None:
        self.transport.sleep = value

    @property
    def _connection(self) -> Any:
        if self._conn is None:  # one secrets-backend lookup per hook, not per request
            self._conn = self.get_connection(self.magento_conn_id)
        return self._conn

    def _auth_mode(self) -> str:
        mode = str(self._connection.extra_dejson.get("auth", "integration_token"))
        if mode not in AUTH_MODES:
            raise MagentoAuthError(
                f"Magento connection {self.magento_conn_id!r}: unknown auth {mode!r} "
                f"(use one of {', '.join(AUTH_MODES)})"
            )
        return mode

    @property
    def store_url(self) -> str:
        """The store's base URL, as in the Connection (no trailing slash; ``http`` when it names no scheme)."""
        conn = self._connection
        host = conn.host or ""
        url = host if "://" in host else f"{conn.schema or 'http'}://{host}"
        return (f"{url}:{conn.port}" if conn.port else url).rstrip("/")

    def _rest_url(self, path: str, *, scoped: bool = True) -> str:
        scope = f"/{self.store_code}" if scoped and self.store_code else ""
        return f"{self.store_url}/rest{scope}/V1/{path.lstrip('/')}"

    def _credentials(self, renew: bool = False) -> AuthBase:
        conn = self._connection
        mode = self._auth_mode()
        if mode == "integration_token":
            if not conn.password:
                raise MagentoAuthError(
                    f"Magento connection {self.magento_conn_id!r}: password must hold the integration access token"
                )
            return _Bearer(conn.password)
        if mode == "oauth1":
            if self._oauth1 is None:
                c = self._oauth1_credentials()
                self._oauth1 = OAuth1(
                    c["consumer_key"], c["consumer_secret"], c["access_token"], c["access_token_secret"]
                )
            return self._oauth1
        with self._lock:
            if renew or self._admin_token is None:
                self._admin_token = self._fetch_admin_token(conn.login, conn.password)
            return _Bearer(self._admin_token)

    def _oauth1_credentials(self) -> dict[str, str]:
        conn = self._connection
        extra = conn.extra_dejson
        from_password: dict[str, Any] = {}
        if conn.password and conn.password.lstrip().startswith("{"):
            try:
                from_password = json.loads(conn.password)
            except ValueError:
                raise MagentoAuthError(
                    f"Magento connection {self.magento_conn_id!r}: password is not valid JSON "
                    '(expected {"consumer_secret": ..., "access_token_secret": ...})'
                ) from None
        values = {name: from_password.get(name) or extra.get(name) for name in OAUTH1_FIELDS}
        missing = [name for name, value in values.items() if not value]
        if missing:  # names only: never a value
            raise MagentoAuthError(
                f"Magento connection {self.magento_conn_id!r}: auth 'oauth1' needs "
                f"{', '.join(missing)} (extra, or the secrets as JSON in password)"
            )
        return {name: str(value) for name, value in values.items()}

    def _fetch_admin_token(self, username: str | None, password: str | None) -> str:
        response = self.transport.send_once(
            "POST",
            self._rest_url("integration/admin/token", scoped=False),
            json={"username": username, "password": password},
        )
        if response.status_code == 200:
            return str(response.json())
        body = _json(response)
        message = format_magento_message(body)
        if "2fa" in message.lower() or "two-factor" in message.lower():
            raise MagentoAuthError(
                f"Magento refused an admin token because two-factor authentication is on ({message}). "
                "Unattended syncs cannot answer a 2FA prompt: create an integration (System > Extensions > "
                "Integrations) and use auth 'oauth1' (or 'integration_token' if the store allows bearer tokens).",
                status=response.status_code,
                body=body,
            )
        raise MagentoAuthError(
            f"Magento admin token refused (HTTP {response.status_code}): {message}",
            status=response.status_code,
            body=body,
        )

    def _renew_admin_token(self, response: requests.Response) -> bool:
        """A 401 in admin mode: the 4-hour admin token expired; fetch a new one (once per call)."""
        if response.status_code != 401 or self._auth_mode() != "admin":
            return False
        self._credentials(renew=True)
        return True

    def get(self, path: str, params: Sequence[tuple[str, Any]] | dict[str, Any] | None = None) -> Any:
        """GET a REST path with auth, one token renewal on 401, and backoff on 429/5xx/dropped connections."""
        query = encode_query(params)
        url = self._rest_url(path) + (f"?{query}" if query else "")
        response = self.transport.request(
            "GET", url, auth=self._credentials, renew_auth=self._renew_admin_token, what=f"magento {path}"
        )
        if response.status_code == 200:
            return response.json()
        body = _json(response)
        message = format_magento_message(body)
        if response.status_code == 401:
            raise MagentoAuthError(self._unauthorized_hint(path, body, message), status=401, body=body)
        raise MagentoError(
            f"Magento {path} failed (HTTP {response.status_code}): {message}", status=response.status_code, body=body
        )

    def _unauthorized_hint(self, path: str, body: Any, message: str) -> str:
        text = f"Magento refused {path} (HTTP 401): {message}"
        parameters = body.get("parameters") if isinstance(body, dict) else None
        resource = parameters.get("resources") if isinstance(parameters, dict) else None
        if not resource:
            return text
        text += (
            f" Grant the ACL resource {_text(resource)} to the integration (System > Extensions > "
            "Integrations > API) and re-authorise it, or check that the credentials are current."
        )
        if self._auth_mode() == "integration_token":
            text += (
                " Magento 2.4.4+ also refuses integration tokens used as bearer tokens unless the store "
                "allows it: use auth 'oauth1' instead."
            )
        return text

    def search(
        self,
        resource: str,
        *,
        filter_groups: Sequence[Sequence[tuple[str, Any, str]]] = (),
        fields: str | None = None,
        page_size: int = 300,
        id_field: str = "id",
        report: PagingReport | None = None,
        start_after: Any = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of a searchCriteria endpoint in id order, by keyset: ``id > last id seen``.

        ``start_after``: the keyset's first bound (an id range's exclusive floor, see ``ranges``); None: from the
        first row.

        Page numbers shift when rows are deleted or added while paging (a row is skipped or read twice);
        a keyset does not. Always sends ``pageSize`` (with input limits on, Magento silently returns 20 rows
        otherwise) and lowers it to the store's maximum if the store says it is smaller; stops on
        ``total_count`` (the rows still to read; Magento <= 2.3 repeats the last page), and on an empty page
        only where the store said nothing remains; drops any row already seen.

        A page that cannot be the truth is read again (``page_retries`` times, short backoff through
        ``sleep``), then ``SourceIncompleteError``: an empty page while the store reported more rows (its own
        ``total_count``, the previous page's, or ``report.expected``), a page shorter than
        ``min(pageSize, total_count)``, or one with no row past the keyset. The store's word that a page is the
        last is checked by one more page when that page is full or its ``total_count`` is below its rows.
        With a ``report`` (a full pass), see ``PagingReport``.
        """
        base = _filter_params(filter_groups)
        keyset_group = len(filter_groups)
        base += [
            ("searchCriteria[sortOrders][0][field]", id_field),
            ("searchCriteria[sortOrders][0][direction]", "ASC"),
            ("searchCriteria[currentPage]", 1),
        ]
        if fields:
            base.append(("fields", fields))
        seen: set[Any] = set()
        last_id: Any = start_after
        previous_id: Any = start_after  # the keyset bound of the previous page
        expected = report.expected if report is not None else None  # rows the store should have past last_id
        drops: list[tuple[Any, Any]] = []  # ranges (previous_id, last_id] read before total_count fell unexplained
        while True:
            try:
                body, page_size = self._checked_page(
                    resource, base, keyset_group, id_field, last_id, page_size, expected, report
                )
            except _PartialPage as partial:
                reported = len(seen) + max(partial.remaining, expected or 0)
                raise SourceIncompleteError(
                    self._incomplete_message(resource, partial.reason, len(seen), reported, self.page_retries)
                ) from None
            items = body.get("items") or []
            remaining = int(body.get("total_count") or 0)
            if report is not None and report.first_total is None:
                report.first_total = remaining
            if expected is not None and remaining < expected and last_id is not None:
                # Rows past last_id vanished since the previous page: deleted ahead of us (harmless), or that page
                # left rows out (not harmless): only a fresh look at its range tells, after paging.
                drops.append((previous_id, last_id))
            fresh = [item for item in items if item.get(id_field) not in seen]
            seen.update(item.get(id_field) for item in fresh)
            if fresh:
                yield fresh
            if not items:
                break  # the store has nothing past last_id and said so, where nothing more was expected
            previous_id, last_id = last_id, max(item.get(id_field) for item in items)
            expected = max(0, remaining - len(items))
            # total_count == rows of this page: the store says this is the end. Believed at once only for a
            # partial page outside a full pass; else (or when total_count is below the rows it came with) one
            # more page, normally empty, confirms it.
            if remaining == len(items) and len(items) < page_size and report is None:
                break
        if report is not None:
            report.read = len(seen)
            report.incomplete_reason = self._verify_ranges(
                resource, filter_groups, id_field, page_size, drops, seen, report
            )
            report.done = True

    def _checked_page(
        self,
        resource: str,
        base: list[tuple[str, Any]],
        keyset_group: int,
        id_field: str,
        last_id: Any,
        page_size: int,
        expected: int | None,
        report: PagingReport | None,
    ) -> tuple[dict[str, Any], int]:
        """A keyset page that can be the store's truth, and its page size. A page that cannot (``_page_problem``)
        is read again ``page_retries`` times, with a short backoff; then ``_PartialPage``."""
        size = page_size

        def read() -> tuple[dict[str, Any], int]:
            nonlocal size
            body, size = self._search_page(resource, base, keyset_group, id_field, last_id, size)
            if report is not None:
                report.pages += 1
            remaining = int(body.get("total_count") or 0)
            problem = _page_problem(body.get("items") or [], remaining, size, expected, last_id, id_field)
            if problem is not None:
                raise _PartialPage(problem, remaining)
            return body, size

        def count_retry(*_: Any) -> None:
            if report is not None:
                report.retries += 1

        return self.transport.keep_trying(
            read, retries=self.page_retries, backoff=PAGE_BACKOFF, what=f"magento {resource}", on_retry=count_retry
        )

    def _search_page(
        self, resource: str, base: list[tuple[str, Any]], keyset_group: int, id_field: str, last_id: Any, page_size: int
    ) -> tuple[dict[str, Any], int]:
        """One keyset page, and the page size it was read with (lowered to the store's maximum if it says so)."""
        while True:
            params = [*base, ("searchCriteria[pageSize]", page_size)]
            if last_id is not None:
                params += _filter(keyset_group, 0, id_field, last_id, "gt")
            try:
                body = self.get(resource, params)
            except MagentoError as exc:
                smaller = _store_max_page_size(exc)
                if smaller is None or smaller >= page_size:
                    raise
                page_size = smaller  # the store's input limit is below ours: page at its maximum
                continue
            return (body if isinstance(body, dict) else {}), page_size

    def _verify_ranges(
        self,
        resource: str,
        filter_groups: Sequence[Sequence[tuple[str, Any, str]]],
        id_field: str,
        page_size: int,
        ranges: list[tuple[Any, Any]],
        seen: set[Any],
        report: PagingReport,
    ) -> str | None:
        """Why the read is not provably complete, or None: every row the store now has in ``ranges`` was read."""
        if not ranges:
            return None
        if len(ranges) > MAX_RANGES_TO_VERIFY:
            return (
                f"total_count fell by more than the rows read on {len(ranges)} pages of {resource} (rows "
                f"deleted while paging, or pages that left rows out): more than {MAX_RANGES_TO_VERIFY} to check"
            )
        missing: list[Any] = []
        for low, high in ranges:
            bounds = [[(id_field, high, "lteq")]] + ([[(id_field, low, "gt")]] if low is not None else [])
            for page in self.search(
                resource,
                filter_groups=[*filter_groups, *bounds],
                fields=f"items[{id_field}],total_count",
                page_size=page_size,
                id_field=id_field,
            ):
                missing += [item.get(id_field) for item in page if item.get(id_field) not in seen]
            report.verified_ranges += 1
        if not missing:
            return None  # the counts fell because rows were deleted ahead of the keyset: nothing was left out
        sample = ", ".join(str(i) for i in sorted(missing)[:10]) + (", ..." if len(missing) > 10 else "")
        return (
            f"{len(missing)} rows the store still has were not in the pages read from {resource} "
            f"(ids {sample}): a page left them out although its total_count counted them"
        )

    def _incomplete_message(self, resource: str, problem: str, read: int, reported: int, retries: int) -> str:
        return (
            f"Magento store {self.store_url}: the read of {resource} is incomplete: {problem}, after {read:,} "
            f"of the {reported:,} rows the store reported (total_count), still so after {retries} retries. "
            "Nothing was planned, sent or deleted on this partial answer. What to do: nothing if the next run "
            "passes (the store was briefly overloaded or being re-indexed); if it persists, look for errors in "
            "the store's var/log/exception.log and its database, and try a smaller magento.page_size."
        )

    def id_at(
        self,
        resource: str,
        offset: int,
        *,
        filter_groups: Sequence[Sequence[tuple[str, Any, str]]] = (),
        id_field: str = "id",
    ) -> Any:
        """The id of the row at ``offset`` (from 0) in id order among the rows matching the filters, or None when
        the store has no row there (one call: a page of one row, by page number)."""
        params = _filter_params(filter_groups)
        params += [
            ("searchCriteria[sortOrders][0][field]", id_field),
            ("searchCriteria[sortOrders][0][direction]", "ASC"),
            ("searchCriteria[pageSize]", 1),
            ("searchCriteria[currentPage]", offset + 1),
            ("fields", f"items[{id_field}],total_count"),
        ]
        body = self.get(resource, params)
        items = (body.get("items") if isinstance(body, dict) else None) or []
        return items[0].get(id_field) if items else None

    def newest(
        self,
        resource: str,
        *,
        field: str = "updated_at",
        filter_groups: Sequence[Sequence[tuple[str, Any, str]]] = (),
        id_field: str = "id",
    ) -> str | None:
        """The largest ``field`` value among the rows matching the filters (one call), or None when none."""
        return self.probe(resource, field=field, filter_groups=filter_groups, id_field=id_field).newest

    def probe(
        self,
        resource: str,
        *,
        field: str = "updated_at",
        filter_groups: Sequence[Sequence[tuple[str, Any, str]]] = (),
        id_field: str = "id",
    ) -> Probe:
        """The newest row's ``field`` and id, and how many rows match the filters (``total_count``): one call."""
        params = _filter_params(filter_groups)
        params += [
            ("searchCriteria[sortOrders][0][field]", field),
            ("searchCriteria[sortOrders][0][direction]", "DESC"),
            ("searchCriteria[pageSize]", 1),
            ("searchCriteria[currentPage]", 1),
            ("fields", f"items[{id_field},{field}],total_count"),
        ]
        body = self.get(resource, params)
        body = body if isinstance(body, dict) else {}
        items = body.get("items") or []
        first = items[0] if items else {}
        return Probe(first.get(field), first.get(id_field), int(body.get("total_count") or 0))


def _page_problem(
    items: list[dict[str, Any]], remaining: int, page_size: int, expected: int | None, last_id: Any, id_field: str
) -> str | None:
    """Why a page cannot be the store's truth, or None. ``remaining`` is its total_count (rows past the keyset),
    ``expected`` what the previous page (or a probe) said would remain."""
    if not items:
        if remaining > 0:
            return f"an empty page although its total_count says {remaining:,} rows remain"
        if expected:
            return f"an empty page (total_count 0) where the store had said {expected:,} more rows remain"
        return None
    if len(items) < min(page_size, remaining):
        return (
            f"a short page: {len(items):,} rows where its total_count ({remaining:,}) and the page size "
            f"({page_size}) promise {min(page_size, remaining):,}"
        )
    ids: list[Any] = [item.get(id_field) for item in items]
    if last_id is not None and max(ids) <= last_id:
        return f"a page with no row past {id_field} {last_id} (the store ignored the keyset filter)"
    return None


def _filter_params(filter_groups: Sequence[Sequence[tuple[str, Any, str]]]) -> list[tuple[str, Any]]:
    """searchCriteria's filter groups (OR inside a group, AND between groups) as query parameters."""
    return [
        param
        for g, group in enumerate(filter_groups)
        for f, (field, value, condition) in enumerate(group)
        for param in _filter(g, f, field, value, condition)
    ]


def _filter(group: int, index: int, field: str, value: Any, condition: str) -> list[tuple[str, Any]]:
    prefix = f"searchCriteria[filter_groups][{group}][filters][{index}]"
    return [(f"{prefix}[field]", field), (f"{prefix}[value]", value), (f"{prefix}[condition_type]", condition)]


def _store_max_page_size(error: MagentoError) -> int | None:
    """The maximum from Magento's ``Maximum SearchCriteria pageSize is %max`` refusal, else None."""
    body = error.body
    if (
        error.status != 400
        or not isinstance(body, dict)
        or not str(body.get("message", "")).startswith(_MAX_PAGE_MESSAGE)
    ):
        return None
    parameters = body.get("parameters")
    raw: Any = parameters.get("max") if isinstance(parameters, dict) else parameters[0] if parameters else None
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"message": response.text[:200]}
