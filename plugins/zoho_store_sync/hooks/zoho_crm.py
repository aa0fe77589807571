"""The Zoho CRM hook: an Airflow Connection turned into a ``zoho_store_sync.zoho.ZohoClient``.

Connection (any conn type; ``http`` works):

* ``login``: the client id; ``password``: the client secret.
* extra ``refresh_token``: the org's refresh token (see the README for how to obtain it).
* extra ``data_centre``: ``us``, ``eu``, ``in``, ``au``, ``jp``, ``ca``, ``sa``, ``cn`` or ``uk``;
  extra ``environment``: ``production`` (default), ``sandbox`` or ``developer``.
* Or, for a local sandbox only: extras ``accounts_url`` and ``api_domain`` with ``allow_custom_hosts: true``.

Only the hosts of the configured data centre are ever called (API host, file-upload host, bulk-result
download host), so a token cannot be sent elsewhere. Nothing from the extras becomes an HTTP header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import requests
from airflow.sdk import BaseHook

from zoho_store_sync.errors import (  # noqa: F401 - re-exported: the hook raises these
    ZohoAuthError,
    ZohoConfigError,
    ZohoError,
    ZohoOAuthError,
    ZohoRequestError,
    ZohoScopeError,
    ZohoTokenThrottled,
    ZohoUnavailable,
)
from zoho_store_sync.settings import (
    ZOHO_DEFAULT_CONCURRENCY,
    ZOHO_TOKEN_REFRESH_MARGIN_S,
    ZOHO_TOKEN_WINDOW_S,
    ZOHO_TOKENS_PER_WINDOW,
)
from zoho_store_sync.transport import Backoff, plain_session
from zoho_store_sync.zoho.bulk import (  # noqa: F401 - re-exported
    BULK_MAX_RECORDS,
    BULK_MAX_ZIP_BYTES,
    BULK_POLLS_ESTIMATE,
    BulkJobLedger,
    bulk_csv_zip,
    bulk_jobs_for,
    choose_write_path,
    estimate_write_credits,
    job_key,
    parse_bulk_errors,
    parse_bulk_result,
)
from zoho_store_sync.zoho.client import RECOMMENDED_SCOPES, CallStats, ZohoClient  # noqa: F401 - re-exported
from zoho_store_sync.zoho.oauth import AccessToken, MemoryTokenCache, TokenCache, TokenPolicy  # noqa: F401
from zoho_store_sync.zoho.query import ZohoQuery
from zoho_store_sync.zoho.records import (  # noqa: F401 - re-exported
    PERMANENT_CODES,
    RecordJSON,
    RecordOutcome,
    parse_record_outcomes,
    write_credits,
)
from zoho_store_sync.zoho.settings import ZohoSettings

_SHARED_MEMORY_CACHE = MemoryTokenCache()


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # masking is best effort outside a task
        pass


class ZohoCrmHook(BaseHook):
    """Talks to one Zoho CRM org with a refresh token held in an Airflow Connection (through ``self.client``).

    :param zoho_conn_id: the Connection holding client id/secret, refresh token and data centre.
    :param token_cache: where access tokens are shared; defaults to a process-local cache. Pipelines pass the
        state database's cache so every task and worker reuses one token per org and client.
    :param refresh_token_store: read when the Connection has no ``refresh_token`` extra (see zoho_connect).
    :param max_concurrency: in-flight API calls allowed from this hook at once (Zoho's per-org limit).
    :param max_retries: attempts after a 429, 5xx or dropped connection before giving up.
    :param backoff_base: first backoff ceiling in seconds; doubles per attempt up to ``backoff_cap``.
    :param token_refresh_margin: refresh an access token this many seconds before it expires.
    :param token_throttle_pause: wait after Zoho's "too many requests" token answer (retrying at once
        lengthens the lockout).
    :param max_token_wait: longest total wait for a token while throttled before giving up (retryable).
    :param tokens_per_window: access tokens allowed per refresh token in ``token_window_s`` (Zoho: 10 per 600 s).
    """

    conn_name_attr = "zoho_conn_id"
    default_conn_name = "zoho_default"
    conn_type = "zoho_crm"
    hook_name = "Zoho CRM"

    def __init__(
        self,
        zoho_conn_id: str = default_conn_name,
        *,
        token_cache: TokenCache | None = None,
        refresh_token_store: Any = None,
        max_concurrency: int = ZOHO_DEFAULT_CONCURRENCY,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        timeout: float = 60.0,
        token_refresh_margin: float = ZOHO_TOKEN_REFRESH_MARGIN_S,
        token_throttle_pause: float = 60.0,
        max_token_wait: float = ZOHO_TOKEN_WINDOW_S + 60.0,
        tokens_per_window: int = ZOHO_TOKENS_PER_WINDOW,
        token_window_s: float = ZOHO_TOKEN_WINDOW_S,
    ) -> None:
        super().__init__()
        self.zoho_conn_id = zoho_conn_id
        self.token_cache: TokenCache = token_cache or _SHARED_MEMORY_CACHE
        # Where zoho_connect stored the refresh token when the Connection holds none (state.RefreshTokenStore).
        self.refresh_token_store = refresh_token_store
        self._query: ZohoQuery | None = None
        self.client = ZohoClient(
            self._read_settings,
            token_cache=self.token_cache,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            backoff=Backoff(base=backoff_base, cap=backoff_cap, floor=0.5),
            timeout=timeout,
            token_policy=TokenPolicy(
                refresh_margin=token_refresh_margin,
                throttle_pause=token_throttle_pause,
                max_wait=max_token_wait,
                per_window=tokens_per_window,
                window_s=token_window_s,
            ),
            session_factory=lambda: self.get_conn(),
            mask=_mask,
        )

    # --- the Connection ----------------------------------------------------------------------------
    def _read_settings(self) -> ZohoSettings:
        conn = self.get_connection(self.zoho_conn_id)
        store = self.refresh_token_store
        return ZohoSettings.from_connection(
            self.zoho_conn_id,
            conn.login,
            conn.password,
            conn.extra_dejson,
            mask=_mask,
            stored_refresh_token=(lambda: store.load(self.zoho_conn_id, conn.password)) if store else None,
        )

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        """A plain requests session: no basic auth, and nothing from the Connection's extras as a header."""
        return plain_session(headers)

    @property
    def settings(self) -> ZohoSettings:
        """Client id/secret, refresh token and allowed hosts, read once from the Connection."""
        return self.client.settings

    def endpoints(self) -> dict[str, Any]:
        """Where this connection's calls go (no secrets): for checks and the connect/verify DAG."""
        return self.client.settings.endpoints()

    @property
    def stats(self) -> CallStats:
        return self.client.stats

    @property
    def max_retries(self) -> int:
        return self.client.transport.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self.client.transport.max_retries = value

    @property
    def timeout(self) -> float:
        return self.client.transport.timeout

    @property
    def backoff_base(self) -> float:
        return self.client.transport.backoff.base

    @property
    def backoff_cap(self) -> float:
        return self.client.transport.backoff.cap

    @property
    def sleep(self) -> Callable[[float], None]:
        """Every wait of this hook (retries, throttled token refreshes, bulk polls); tests replace it."""
        return self.client.transport.sleep

    @sleep.setter
    def sleep(self, value: Callable[[float], None]) -> None:
        self.client.transport.sleep = value

    # --- OAuth -------------------------------------------------------------------------------------
    def get_access_token(self, *, force_refresh: bool = False) -> AccessToken:
        """The current access token, shared through the token cache; refreshed shortly before expiry."""
        return self.client.oauth.access_token(force_refresh=force_refresh)

    def exchange_grant_code(self, code: str, redirect_uri: str | None = None) -> dict[str, Any]:
        """Grant code → refresh token (returned, never logged). The code is single use and lives minutes."""
        return self.client.oauth.exchange_grant_code(code, redirect_uri)

    # --- calls -------------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, operation: str, **options: Any) -> requests.Response:
        """One API call (see ``ZohoClient.request``)."""
        return self.client.request(method, path, operation=operation, **options)

    def upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any] | RecordJSON],
        *,
        duplicate_check_fields: Sequence[str] = ("Email",),
        trigger: Sequence[str] | None = None,
    ) -> list[RecordOutcome]:
        """Insert-or-update up to 100 records matched on ``duplicate_check_fields``; one outcome per record."""
        return self.client.records.upsert(
            module, records, duplicate_check_fields=duplicate_check_fields, trigger=trigger
        )

    def update_records(
        self, module: str, records: Sequence[dict[str, Any]], *, trigger: Sequence[str] | None = None
    ) -> list[RecordOutcome]:
        """Update records by their ``id``, 100 a call; one outcome per record."""
        return self.client.records.update(module, records, trigger=trigger)

    def delete_records(self, module: str, ids: Sequence[str], *, wf_trigger: bool = True) -> list[RecordOutcome]:
        """Delete records by id, 100 a call; one outcome per id (``INVALID_DATA`` for unknown ids)."""
        return self.client.records.delete(module, ids, wf_trigger=wf_trigger)

    def get_records(self, module: str, ids: Iterable[str], fields: Sequence[str]) -> list[dict[str, Any]]:
        """Records by id (at most 100 ids per call), only the named fields."""
        return self.client.records.get(module, ids, fields)

    def deleted_records(self, module: str, since: datetime | None = None, *, type: str = "all") -> list[dict[str, Any]]:
        """Zoho's deleted-records list, all pages; ``since`` sends ``If-Modified-Since``."""
        return self.client.records.deleted(module, since, type=type)

    def convert_lead(
        self,
        lead_id: str,
        *,
        contact_id: str | None = None,
        account_id: str | None = None,
        overwrite: bool = False,
    ) -> RecordOutcome:
        """Convert a Lead into a Contact (5 credits), linking ``contact_id`` / ``account_id`` when given.
        ``zoho_id`` of a success is the Contact's id."""
        return self.client.records.convert_lead(
            lead_id, contact_id=contact_id, account_id=account_id, overwrite=overwrite
        )

    @property
    def query(self) -> ZohoQuery:
        """COQL calls (scope ``ZohoCRM.coql.READ``)."""
        if self._query is None:
            self._query = ZohoQuery(self.client)
        return self._query

    def coql(self, select_query: str, *, module: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """One COQL call: (rows, more_records); credits by its LIMIT (1 / 2 / 3 up to 200 / 1,000 / 2,000)."""
        return self.query.select(select_query, module=module)

    def find_by_email(
        self, module: str, emails: Iterable[str], fields: Sequence[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """The org's records of ``module`` per lower-cased email, by COQL (100 emails a 1-credit call)."""
        return self.query.find_by_email(module, emails, fields)

    def count_records(self, module: str) -> int:
        """How many records the org's module holds (Record Count, 1 credit)."""
        return self.query.count(module)

    def all_by_email(self, module: str, fields: Sequence[str] = ()) -> dict[str, list[dict[str, Any]]] | None:
        """Every record of ``module`` with an email, per lower-cased email, by COQL pages of 2,000 (3 credits each);
        None past COQL's 100,000-record reach."""
        return self.query.all_with(module, "Email", fields)

    def find_by(
        self, module: str, field: str, values: Iterable[str], fields: Sequence[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """The org's records of ``module`` per lower-cased value of ``field``, by COQL (100 values a call)."""
        return self.query.find_by(module, field, values, fields)

    def get_fields(self, module: str) -> list[dict[str, Any]]:
        """Field metadata of a module: api_name, data_type, length, read_only, system_mandatory, ..."""
        return self.client.records.fields(module)

    def get_layouts(self, module: str) -> list[dict[str, Any]]:
        """The module's layouts: ``sections[].fields[]`` with ``api_name`` and ``required``."""
        return self.client.records.layouts(module)

    def get_org(self) -> dict[str, Any]:
        """The org (``id``, ``zgid``, ``company_name``, ...)."""
        return self.client.records.org()

    def bulk_upsert(
        self,
        module: str,
        records: Sequence[dict[str, Any]],
        *,
        find_by: str = "Email",
        poll_interval: float = 2.0,
        timeout: float = 3600.0,
        key: str | None = None,
        ledger: BulkJobLedger | None = None,
        run_id: str = "",
    ) -> list[RecordOutcome]:
        """Upsert through Bulk Write; one outcome per record. Use it when ``choose_write_path`` says "bulk".

        With ``key`` and ``ledger`` (``state.BulkJobStore``) a retried call resumes the job it already paid for.
        """
        return self.client.bulk.upsert(
            module,
            records,
            find_by=find_by,
            poll_interval=poll_interval,
            timeout=timeout,
            key=key,
            ledger=ledger,
            run_id=run_id,
        )

    def test_connection(self) -> tuple[bool, str]:
        try:
            token = self.get_access_token()
            self.get_fields("Contacts")
        except ZohoError as exc:
            return False, str(exc)
        return True, f"Connected to {token.api_domain}"
