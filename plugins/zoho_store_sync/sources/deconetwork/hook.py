"""The DecoNetwork hook: Order Management API searches, paged by offset, with every documented status code.

Connection: ``host`` is the merchant's own DecoNetwork site (``https://shop.secure-decoration.com`` or a
custom domain; without a scheme, https is used), ``login``/``password`` are the API user's credentials.
DecoNetwork has no token or header auth: ``username`` and ``password`` travel as form fields of every
request (a POST body, so they never appear in a URL, a proxy log or an exception message). Nothing from
the connection's extras becomes an HTTP header. Extras the hook reads: ``timeout`` (seconds).

Status codes (``response_status.code``, store-apis.md A.4): 10001 success; 30001 (and 3P 10002)
authentication failed; 31000 (and 3P 10005) API not enabled; 50002-50005 malformed request. A page of HTML
instead of JSON means a wrong host or a login the site did not accept (store-apis.md A.2).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from airflow.sdk import BaseHook

from zoho_store_sync.errors import (  # noqa: F401 - re-exported
    DecoNetworkAuthError,
    DecoNetworkConfigError,
    DecoNetworkError,
    DecoNetworkHtmlError,
    DecoNetworkNotEnabledError,
    DecoNetworkRequestError,
)
from zoho_store_sync.transport import TRANSIENT_ERRORS, Backoff, RetryingTransport, plain_session, transient_status

log = logging.getLogger(__name__)

FIND_ORDERS_PATH = "/api/json/manage_orders/find"
MAX_LIMIT = 100  # the documented maximum rows per call
SUCCESS = 10001
AUTH_FAILED_CODES = frozenset({30001, 10002})  # 10002: seen only in third-party clients
NOT_ENABLED_CODES = frozenset({31000, 10005})  # 10005: seen only in third-party clients
REQUEST_ERROR_CODES = frozenset({50002, 50003, 50004, 50005})
# field codes (store-apis.md A.3); 6/7 disagree between versions of the docs, so only 8 is relied on
FIELD_DATE_ORDERED, FIELD_ORDER_STATUS, FIELD_DATE_MODIFIED = 1, 4, 8
# condition codes
EQUALS, NOT_EQUALS, LESS, GREATER, LESS_OR_EQUAL, GREATER_OR_EQUAL, BETWEEN = 1, 2, 3, 4, 5, 6, 7

Condition = tuple[int, int, "str | None", "str | None", "str | None"]  # field, condition, date1, date2, string


def _sleep(seconds: float) -> None:
    time.sleep(seconds)  # the module's default wait: tests replace it here (or set a hook's ``sleep``)


class DecoNetworkHook(BaseHook):
    """Calls to one DecoNetwork site's JSON Order Management API, through a ``RetryingTransport``.

    :param deconetwork_conn_id: the Connection with the site URL and the API user's credentials.
    :param max_retries: retries of one call on 429, 5xx and dropped connections, with backoff.
    """

    conn_name_attr = "deconetwork_conn_id"
    default_conn_name = "deconetwork_default"
    conn_type = "deconetwork"
    hook_name = "DecoNetwork"

    def __init__(
        self, deconetwork_conn_id: str = default_conn_name, *, max_retries: int = 5, timeout: float = 60.0
    ) -> None:
        super().__init__()
        self.deconetwork_conn_id = deconetwork_conn_id
        self.transport = RetryingTransport(
            "deconetwork",
            max_retries=max_retries,
            backoff=Backoff(base=0.5, cap=30.0, floor=0.5),
            timeout=timeout,
            session_factory=lambda: self.get_conn(),
            sleep=lambda seconds: _sleep(seconds),
        )
        self._conn: Any = None
        self._site_url: str | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "extra"],
            "relabeling": {"host": "Site URL", "login": "API username", "password": "API password"},
            "placeholders": {"host": "https://shop.secure-decoration.com"},
        }

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A plain session: no basic auth, and no header taken from the connection's extras."""
        options = {**self._connection.extra_dejson, **(extra_options or {})}
        return plain_session(headers, options=options, tcp_keep_alive=True)

    @property
    def _connection(self) -> Any:
        """The Connection, read once; its ``timeout`` extra (seconds) replaces the constructor's."""
        if self._conn is None:
            conn = self.get_connection(self.deconetwork_conn_id)
            timeout = conn.extra_dejson.get("timeout")
            if timeout:
                self.transport.timeout = float(timeout)
            self._conn = conn
        return self._conn

    @property
    def calls(self) -> int:
        """API answers received (retried ones included)."""
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
        """Every wait between retries; tests replace it."""
        return self.transport.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], None]) -> None:
        self.transport.sleep = value

    @property
    def site_url(self) -> str:
        """The merchant's site URL (the store URL of customers the export does not place in a store)."""
        if self._site_url is None:
            conn = self._connection
            host = (conn.host or "").strip()
            if not host:
                raise DecoNetworkConfigError(
                    f"DecoNetwork connection {self.deconetwork_conn_id!r}: host must be the site URL"
                )
            if "://" not in host:
                host = f"{conn.schema or 'https'}://{host}"  # a shop is served over https
                if conn.port:
                    host = f"{host}:{conn.port}"
            self._site_url = host.rstrip("/")
        return self._site_url

    def _credentials(self) -> list[tuple[str, str]]:
        conn = self._connection
        if not conn.login or not conn.password:
            raise DecoNetworkAuthError(
                f"DecoNetwork connection {self.deconetwork_conn_id!r}: login and password "
                "must hold the API user's username and password"
            )
        # skip_login_token: every known client sends it; its effect is undocumented (store-apis.md A.2).
        return [("username", conn.login), ("password", conn.password), ("skip_login_token", "1")]

    def call(self, path: str, params: Sequence[tuple[str, Any]]) -> dict[str, Any]:
        """POST one API call with the credentials as form fields; a JSON body with code 10001, or an error."""
        url = f"{self.site_url}{path}"
        form = self._credentials() + [(k, "" if v is None else str(v)) for k, v in params]
        try:
            response = self.transport.request("POST", url, data=form, what=f"deconetwork {path}")
        except TRANSIENT_ERRORS as exc:
            raise DecoNetworkError(
                f"DecoNetwork {path}: no answer from {self.site_url} after "
                f"{self.max_retries + 1} attempts ({type(exc).__name__})"
            ) from None
        return self._check(path, response)

    def _check(self, path: str, response: requests.Response) -> dict[str, Any]:
        text = response.text
        if transient_status(response.status_code):
            raise DecoNetworkError(
                f"DecoNetwork {path}: the site is unavailable (HTTP {response.status_code}) "
                f"after {self.max_retries} retries; the next run tries again"
            )
        if text.lstrip().startswith("<"):
            raise DecoNetworkHtmlError(
                f"DecoNetwork {path} answered with an HTML page (HTTP {response.status_code}) instead of JSON: "
                f"check that the connection's host is the DecoNetwork site URL ({self.site_url}) and that the "
                "API username and password are right (a refused login shows the site's login page)",
                code=None,
            )
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("response_status"), dict):
            raise DecoNetworkError(
                f"DecoNetwork {path} answered HTTP {response.status_code} without the "
                f"response_status envelope: {text[:200]!r}"
            )
        status = body["response_status"]
        try:
            code = int(status.get("code"))
        except (TypeError, ValueError):
            code = None
        if code == SUCCESS:
            return body
        description = str(status.get("description") or "").strip() or "no description"
        if code in AUTH_FAILED_CODES:
            raise DecoNetworkAuthError(
                f"DecoNetwork authentication failed ({code}: {description}): check the API username and "
                f"password in connection {self.deconetwork_conn_id!r}",
                code=code,
            )
        if code in NOT_ENABLED_CODES:
            raise DecoNetworkNotEnabledError(
                f"DecoNetwork API not enabled on {self.site_url} ({code}: {description}): enable the Order "
                "Management API app in Admin > Apps Store (Enterprise plan)",
                code=code,
            )
        if code in REQUEST_ERROR_CODES:
            raise DecoNetworkRequestError(f"DecoNetwork rejected the {path} request ({code}: {description})", code=code)
        raise DecoNetworkError(
            f"DecoNetwork {path} failed (HTTP {response.status_code}, code {code}: {description})", code=code
        )

    def find_orders(
        self,
        conditions: Sequence[Condition],
        limit: int = MAX_LIMIT,
        extra: Sequence[tuple[str, Any]] = (),
        *,
        parallelism: int = 1,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of orders matching all ``conditions`` (AND), stepping ``offset`` until ``total``.

        Each condition is ``(field, condition, date1, date2, string)``, sent as ``conditions[n][...]`` with
        ``n`` from 1. An order already yielded is never yielded again (a page boundary can shift when an
        order is added while paging).

        ``parallelism`` > 1: the pages after the first are read ``parallelism`` at a time
        (``_find_orders_at_once``); a read that cannot prove it saw every order is done again one page at a time.
        """
        if not conditions:
            raise ValueError("find_orders needs at least one condition (DecoNetwork answers 50002 otherwise)")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        base: list[tuple[str, Any]] = []
        for n, (field, condition, date1, date2, string) in enumerate(conditions, start=1):
            base += [(f"conditions[{n}][field]", field), (f"conditions[{n}][condition]", condition)]
            for name, value in (("date1", date1), ("date2", date2), ("string", string)):
                if value is not None:
                    base.append((f"conditions[{n}][{name}]", value))
        base += list(extra)
        if parallelism > 1:
            pages = self._find_orders_at_once(base, limit, parallelism)
            if pages is not None:
                yield from pages
                return
        seen: set[str] = set()
        offset = 0
        while True:
            body = self.call(FIND_ORDERS_PATH, base + [("limit", limit), ("offset", offset)])
            orders = body.get("orders") or []
            total = int(body.get("total") or 0)
            fresh = [o for o in orders if str(o.get("order_id")) not in seen]
            seen.update(str(o.get("order_id")) for o in fresh)
            if fresh:
                yield fresh
            offset += len(orders)
            if not orders or offset >= total:
                return

    def _find_orders_at_once(
        self, base: list[tuple[str, Any]], limit: int, parallelism: int
    ) -> list[list[dict[str, Any]]] | None:
        """Every page of one search, the pages after the first read ``parallelism`` at a time; None when the read
        cannot prove it is whole (the caller then reads one page at a time).

        The API pages by offset only (no id or keyset filter; store-apis.md A.3), so a page boundary moves when an
        order matching the search is added or removed while paging: one page at a time that costs a repeat (dropped)
        or, for a removal, a skipped order; with pages in flight at once, a skip per page in flight. The read is
        therefore taken only if every page reported the first page's ``total`` and exactly ``total`` distinct
        orders came back: a skipped order leaves fewer (a repeat adds none), an added one moves ``total``.
        """
        first = self.call(FIND_ORDERS_PATH, base + [("limit", limit), ("offset", 0)])
        total = int(first.get("total") or 0)
        offsets = range(limit, total, limit)
        with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="deconetwork-page") as pool:
            bodies = [
                first,
                *pool.map(lambda o: self.call(FIND_ORDERS_PATH, base + [("limit", limit), ("offset", o)]), offsets),
            ]
        seen: set[str] = set()
        pages: list[list[dict[str, Any]]] = []
        for body in bodies:
            fresh = [o for o in body.get("orders") or [] if str(o.get("order_id")) not in seen]
            seen.update(str(o.get("order_id")) for o in fresh)
            if fresh:
                pages.append(fresh)
        totals = {int(body.get("total") or 0) for body in bodies}
        if totals == {total} and len(seen) == total:
            return pages
        log.warning(
            "deconetwork %s: orders changed while %d pages were read at once (totals %s, %d distinct orders): "
            "reading them again one page at a time",
            FIND_ORDERS_PATH,
            len(bodies),
            sorted(totals),
            len(seen),
        )
        return None

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: one cheap search (orders modified in the future: none)."""
        try:
            body = self.call(
                FIND_ORDERS_PATH,
                [
                    ("field", FIELD_DATE_MODIFIED),
                    ("condition", GREATER),
                    ("date1", "2999-01-01T00:00:00"),
                    ("limit", 1),
                    ("offset", 0),
                ],
            )
        except DecoNetworkError as exc:
            return False, str(exc)
        return True, f"DecoNetwork Order Management API answered (total {body.get('total', 0)})"
