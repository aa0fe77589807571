"""The state database: what Zoho confirmed per customer, run history, errors, locks and the shared token cache.

SQLAlchemy Core on a SQLite file (the embedded default) or PostgreSQL, reached through an Airflow Connection
(default id ``zoho_sync_state_db``). Every row is keyed by tenant: a tenant never reads or writes another
tenant's rows. The schema is versioned (``state_migrations``): ``cli db migrate`` creates and upgrades it; tasks
only check its revision, never create or alter it.

``tables`` holds the schema and the statuses, ``store`` the per-tenant reads and writes (``StateStore``),
``writes`` the fast bulk-write plumbing, ``engine`` the engines, ``tokens`` the Zoho token stores.
"""

from zoho_store_sync.state.bulk_jobs import BulkJobStore as BulkJobStore  # re-exported
from zoho_store_sync.state.credits import CreditLedger as CreditLedger  # re-exported
from zoho_store_sync.state.engine import (
    engine_from_conn_id,
    engine_url_from_connection,
    make_engine,
    url_for_conn_id,
)
from zoho_store_sync.state.store import StateStore
from zoho_store_sync.state.tables import (
    CONVERTING,
    DELETED_BY_OTHER_TENANT,
    DELETED_IN_SOURCE,
    DELETED_IN_ZOHO,
    FAILED,
    LIVE_STATUSES,
    STATE_COLUMNS,
    SYNCED,
    UNCONFIRMED,
    access_tokens,
    cursors,
    customers_state,
    metadata,
    own_deletions,
    record_errors,
    refresh_tokens,
    resets,
    runs,
    tenant_locks,
)
from zoho_store_sync.state.tokens import DatabaseTokenCache, RefreshTokenStore
from zoho_store_sync.state.writes import COPY_ABOVE_ROWS, _aware, _dialect_insert, is_missing, now_utc

__all__ = [
    "CONVERTING",
    "COPY_ABOVE_ROWS",
    "DELETED_BY_OTHER_TENANT",
    "DELETED_IN_SOURCE",
    "DELETED_IN_ZOHO",
    "FAILED",
    "LIVE_STATUSES",
    "STATE_COLUMNS",
    "SYNCED",
    "UNCONFIRMED",
    "DatabaseTokenCache",
    "RefreshTokenStore",
    "StateStore",
    "_aware",
    "_dialect_insert",
    "access_tokens",
    "cursors",
    "customers_state",
    "engine_from_conn_id",
    "engine_url_from_connection",
    "is_missing",
    "make_engine",
    "metadata",
    "now_utc",
    "own_deletions",
    "record_errors",
    "refresh_tokens",
    "resets",
    "runs",
    "tenant_locks",
    "url_for_conn_id",
]
