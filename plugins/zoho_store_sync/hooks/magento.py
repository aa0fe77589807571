"""The Magento 2 hook: authenticated REST calls and searchCriteria paging that never loses or repeats a row.

Connection: ``host`` is the store's base URL (``https://shop.example.com``). Extra ``auth`` chooses:

* ``integration_token`` (default): ``password`` is an integration's access token, sent as a bearer token
  (the store must allow integration tokens as standalone bearer tokens);
* ``admin``: ``login``/``password`` of an admin user; the 4-hour admin token is renewed once on a 401.
  Magento 2.4 refuses this when two-factor authentication is on: use an integration instead.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Iterator, Sequence

import requests
from requests.auth import AuthBase

from airflow.providers.http.hooks.http import HttpHook

_OWN_EXTRAS = frozenset({"auth", "store_code", "timeout"})


class MagentoError(Exception):
    """Magento refused a call; the message is Magento's own, placeholders filled in."""


class MagentoAuthError(MagentoError):
    pass


def format_magento_message(body: Any) -> str:
    """``{"message": "Invalid %1", "parameters": ["x"]}`` → ``Invalid x`` (positional or named parameters)."""
    if not isinstance(body, dict):
        return str(body)[:300]
    message = str(body.get("message", ""))
    parameters = body.get("parameters")
    if isinstance(parameters, list):
        for index, value in reversed(list(enumerate(parameters, start=1))):
            message = message.replace(f"%{index}", str(value))
    elif isinstance(parameters, dict):
        for name, value in sorted(parameters.items(), key=lambda kv: -len(kv[0])):
            message = message.replace(f"%{name}", str(value))
    return message


class _Bearer(AuthBase):
    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request


class MagentoHook(HttpHook):
    """REST calls to one Magento 2 store.

    :param magento_conn_id: the Connection with the store URL and credentials.
    :param store_code: store view code in the URL (``/rest/<store_code>/V1/...``).
    """

    conn_name_attr = "magento_conn_id"
    default_conn_name = "magento_default"
    conn_type = "magento"
    hook_name = "Magento 2"

    def __init__(self, magento_conn_id: str = default_conn_name, *, store_code: str = "default",
                 max_retries: int = 5, timeout: float = 60.0) -> None:
        super().__init__(method="GET", http_conn_id=magento_conn_id)
        self.magento_conn_id = magento_conn_id
        self.store_code = store_code
        self.max_retries = max_retries
        self.timeout = timeout
        self.calls = 0
        self._lock = threading.Lock()
        self._session_obj: requests.Session | None = None
        self._admin_token: str | None = None

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A session without basic auth and without the hook's own extras as headers."""
        session = super().get_conn(headers, extra_options)
        session.auth = None
        for name in list(session.headers):
            if name in _OWN_EXTRAS:
                del session.headers[name]
        return session

    @property
    def _session(self) -> requests.Session:
        if self._session_obj is None:
            self._session_obj = self.get_conn()
        return self._session_obj

    def _auth_mode(self) -> str:
        return str(self.get_connection(self.magento_conn_id).extra_dejson.get("auth", "integration_token"))

    def _rest_url(self, path: str, *, scoped: bool = True) -> str:
        self._session  # sets base_url
        scope = f"/{self.store_code}" if scoped and self.store_code else ""
        return f"{self.base_url.rstrip('/')}/rest{scope}/V1/{path.lstrip('/')}"

    def _credentials(self, renew: bool = False) -> AuthBase:
        conn = self.get_connection(self.magento_conn_id)
        mode = self._auth_mode()
        if mode == "integration_token":
            if not conn.password:
                raise MagentoAuthError(f"Magento connection {self.magento_conn_id!r}: password must hold the integration access token")
            return _Bearer(conn.password)
        if mode == "admin":
            if renew or self._admin_token is None:
                self._admin_token = self._fetch_admin_token(conn.login, conn.password)
            return _Bearer(self._admin_token)
        raise MagentoAuthError(f"Magento connection {self.magento_conn_id!r}: unknown auth {mode!r} "
                               "(use 'integration_token' or 'admin')")

    def _fetch_admin_token(self, username: str | None, password: str | None) -> str:
        response = self._session.post(self._rest_url("integration/admin/token", scoped=False),
                                      json={"username": username, "password": password}, timeout=self.timeout)
        if response.status_code == 200:
            return str(response.json())
        message = format_magento_message(_json(response))
        if "2fa" in message.lower() or "two-factor" in message.lower():
            raise MagentoAuthError(
                f"Magento refused an admin token because two-factor authentication is on ({message}). "
                "Create an integration (System > Extensions > Integrations) and use auth 'integration_token'."
            )
        raise MagentoAuthError(f"Magento admin token refused (HTTP {response.status_code}): {message}")

    def get(self, path: str, params: list[tuple[str, Any]] | dict[str, Any] | None = None) -> Any:
        """GET a REST path with auth, one token renewal on 401, and backoff on 429/503/dropped connections."""
        renewed = False
        attempt = 0
        while True:
            try:
                response = self._session.get(self._rest_url(path), params=params, auth=self._credentials(renew=renewed),
                                             timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout):
                if attempt >= self.max_retries:
                    raise
                time.sleep(_backoff(attempt))
                attempt += 1
                continue
            with self._lock:
                self.calls += 1
            if response.status_code == 200:
                return response.json()
            message = format_magento_message(_json(response))
            if response.status_code == 401:
                if self._auth_mode() == "admin" and not renewed:
                    renewed = True  # admin tokens expire after 4 hours
                    continue
                raise MagentoAuthError(f"Magento refused {path} (HTTP 401): {message}. If it names an ACL "
                                       "resource, grant that resource to the integration.")
            if response.status_code in (429, 503) and attempt < self.max_retries:
                time.sleep(_backoff(attempt, response.headers.get("Retry-After")))
                attempt += 1
                continue
            raise MagentoError(f"Magento {path} failed (HTTP {response.status_code}): {message}")

    def search(
        self,
        resource: str,
        *,
        filter_groups: Sequence[Sequence[tuple[str, Any, str]]] = (),
        fields: str | None = None,
        page_size: int = 300,
        id_field: str = "id",
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield pages of a searchCriteria endpoint in id order, by keyset: ``id > last id seen``.

        Page numbers shift when rows are deleted or added while paging (a row is skipped or read twice);
        a keyset does not. Always sends ``pageSize`` (with input limits on, Magento silently returns 20 rows
        otherwise), stops on ``total_count`` (the rows still to read), and drops any row already seen.
        """
        base: list[tuple[str, Any]] = []
        for g, group in enumerate(filter_groups):
            for f, (field, value, condition) in enumerate(group):
                base += _filter(g, f, field, value, condition)
        keyset_group = len(filter_groups)
        base += [("searchCriteria[sortOrders][0][field]", id_field),
                 ("searchCriteria[sortOrders][0][direction]", "ASC"),
                 ("searchCriteria[pageSize]", page_size),
                 ("searchCriteria[currentPage]", 1)]
        if fields:
            base.append(("fields", fields))
        seen: set[Any] = set()
        last_id: Any = None
        while True:
            params = list(base)
            if last_id is not None:
                params += _filter(keyset_group, 0, id_field, last_id, "gt")
            body = self.get(resource, params)
            items = body.get("items") or []
            remaining = int(body.get("total_count") or 0)
            fresh = [item for item in items if item.get(id_field) not in seen]
            seen.update(item.get(id_field) for item in fresh)
            if fresh:
                yield fresh
            if not items or remaining <= len(items):
                return
            next_last = max(item.get(id_field) for item in items)
            if next_last == last_id:
                return  # the store ignored the keyset filter: stop rather than loop
            last_id = next_last


def _filter(group: int, index: int, field: str, value: Any, condition: str) -> list[tuple[str, Any]]:
    prefix = f"searchCriteria[filter_groups][{group}][filters][{index}]"
    return [(f"{prefix}[field]", field), (f"{prefix}[value]", value), (f"{prefix}[condition_type]", condition)]


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"message": response.text[:200]}


def _backoff(attempt: int, retry_after: str | None = None) -> float:
    if retry_after and retry_after.isdigit():
        return min(30.0, float(retry_after))
    ceiling = min(30.0, 0.5 * 2 ** attempt)
    return random.uniform(ceiling / 2, ceiling)
