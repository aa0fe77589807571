"""The state database's tables (``metadata``) and the statuses a customer's state row can have."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _indexed_text(length: int) -> sa.String:
    """PostgreSQL: byte-order collation for the indexed keys (only equality is asked of them), ~15% less CPU
    per row in a large write than the database's locale. Migration 0005 sets it on tables created before."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


customers_state = sa.Table(
    "zoho_sync_state",
    metadata,
    sa.Column("tenant_id", _indexed_text(100), primary_key=True),
    sa.Column("customer_key", _indexed_text(100), primary_key=True),
    sa.Column("email", _indexed_text(320)),
    sa.Column("module", sa.String(20), nullable=False),
    sa.Column("zoho_id", _indexed_text(40)),
    sa.Column("payload_hash", sa.BigInteger, nullable=False),
    # synced: Zoho confirmed this payload; failed: Zoho rejected it; deleted_in_zoho: not resent until reset
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("error_code", sa.String(60)),
    sa.Column("error_message", sa.Text),
    sa.Column("retryable", sa.Boolean),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # PostgreSQL: half of every page left free, so when all of a tenant's rows are rewritten (a mapping change
    # re-sends everything) each new row version fits on its page (a HOT update: no new index entries), ~2x faster.
    # Set on tables created before by migration 0007 (no rewrite: pages written from then on follow it).
    postgresql_with={"fillfactor": 50},
)
# Each index costs every write (~1 s per million new rows), so there are two full ones, both asked for by data safety
# (migration 0009): by Zoho id across tenants (the deleted-in-Zoho check, and a shared org's "does another tenant
# still sync this record?"), and by (tenant, email) (an incremental run finding who else holds an email).
sa.Index("ix_zoho_sync_state_zoho_id_any", customers_state.c.zoho_id)
sa.Index("ix_zoho_sync_state_tenant_email", customers_state.c.tenant_id, customers_state.c.email)
# The tenant page's "deleted in Zoho" list (migration 0011): partial, so it holds only those few rows and a sync's
# synced-to-synced rewrite (status unchanged) costs it nothing.
_DELETED_IN_ZOHO_ROWS = sa.text("status = 'deleted_in_zoho'")
sa.Index(
    "ix_zoho_sync_state_deleted_in_zoho",
    customers_state.c.tenant_id,
    customers_state.c.updated_at,
    postgresql_where=_DELETED_IN_ZOHO_ROWS,
    sqlite_where=_DELETED_IN_ZOHO_ROWS,
)

runs = sa.Table(
    "zoho_sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(100), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # sync, dry_run, reset, dry_run_reset, verify
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("extracted", sa.Integer),
    sa.Column("inserted", sa.Integer),
    sa.Column("updated", sa.Integer),
    sa.Column("unchanged", sa.Integer),
    sa.Column("failed", sa.Integer),
    sa.Column("api_calls", sa.Integer),
    sa.Column("credits", sa.Integer),
    sa.Column("summary", sa.Text, nullable=False),  # the full JSON summary
    sa.Column("sent", sa.Integer),  # records the run sent to Zoho (migration 0011)
    sa.UniqueConstraint("tenant_id", "run_id", "kind", name="uq_zoho_sync_runs_run"),
)
# The sync page's reads (ui/queries.py): a tenant's latest runs, its last 24 h (migration 0011).
sa.Index("ix_zoho_sync_runs_tenant_finished", runs.c.tenant_id, runs.c.finished_at)

record_errors = sa.Table(
    "zoho_sync_errors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(100), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("customer_key", sa.String(100)),
    sa.Column("email", sa.String(320)),
    sa.Column("module", sa.String(20)),
    sa.Column("code", sa.String(60), nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("retryable", sa.Boolean),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # rejected: Zoho refused the record (retried as the code allows); invalid: never sent (bad email, ...),
    # kept as the tenant's current list (a later pass replaces a customer's row)
    sa.Column("kind", sa.String(20), nullable=False, server_default="rejected"),
)
# A tenant's errors, newest first, and its last 24 h (migration 0011).
sa.Index("ix_zoho_sync_errors_tenant_at", record_errors.c.tenant_id, record_errors.c.at)

own_deletions = sa.Table(
    "zoho_sync_deletions",
    metadata,
    # Zoho records this product deleted (any tenant), written before the delete call: Zoho's deleted-records
    # list then tells our own deletions from a person's, also after a crash and across tenants of one org.
    sa.Column("zoho_id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(100), nullable=False),
    sa.Column("customer_key", sa.String(100), nullable=False),
    sa.Column("module", sa.String(20), nullable=False),
    sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
)

access_tokens = sa.Table(
    "zoho_sync_access_tokens",
    metadata,
    sa.Column("cache_key", sa.String(64), primary_key=True),
    sa.Column("sealed_token", sa.LargeBinary),  # Fernet-encrypted with a key derived from the connection
    sa.Column("refreshed_at", sa.Text, nullable=False, default="[]"),  # recent refresh times (JSON list)
)

cursors = sa.Table(
    "zoho_sync_cursors",
    metadata,
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("stream", sa.String(60), primary_key=True),  # e.g. magento.customers, deconetwork.orders
    sa.Column("value", sa.Text, nullable=False),  # JSON: a high-water mark, a last full pass time, ...
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

refresh_tokens = sa.Table(
    "zoho_sync_refresh_tokens",
    metadata,
    # Written by the zoho_connect DAG (tasks cannot write Connections); read by the tenant's hook.
    sa.Column("zoho_conn_id", sa.String(250), primary_key=True),
    sa.Column("sealed_token", sa.LargeBinary, nullable=False),  # Fernet, key derived from the client secret
    sa.Column("scope", sa.Text),
    sa.Column("api_domain", sa.String(250)),
    sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
)

tenant_locks = sa.Table(
    "zoho_sync_locks",
    metadata,
    # One holder per tenant: the scheduled sync and the reset never run at the same time.
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(40), nullable=False),  # "sync" or "reset"
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),  # a crashed holder's lease ends
)

resets = sa.Table(
    "zoho_sync_resets",
    metadata,
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("modules", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # in_progress (resumable) or done
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    # written by each send chunk (migration 0011): the sync page's progress bar without counting the state
    sa.Column("records_total", sa.Integer),
    sa.Column("records_done", sa.Integer),
    sa.Column("progress_at", sa.DateTime(timezone=True)),
)

bulk_jobs = sa.Table(
    "zoho_sync_bulk_jobs",
    metadata,
    # A Bulk Write job is paid for when it is created: its id is kept before the upload finishes, so a retried
    # task (same run, same records: same job_key) resumes it instead of paying for a new one.
    sa.Column("tenant_id", sa.String(100), primary_key=True),
    sa.Column("job_key", sa.String(64), primary_key=True),  # a hash of (run, module, the chunk's records)
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("module", sa.String(20), nullable=False),
    sa.Column("records", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String(40)),
    sa.Column("status", sa.String(20), nullable=False),  # uploading, created, completed, read
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

credit_ledger = sa.Table(
    "zoho_sync_credits",
    metadata,
    # Credits each run spent on an org (one org may serve several tenants), over Zoho's rolling 24 hours, with the
    # X-API-CREDITS-REMAINING Zoho last reported (it only appears once half the day's credits are used).
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("org_key", sa.String(250), nullable=False),
    sa.Column("tenant_id", sa.String(100), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("credits", sa.Integer, nullable=False),
    sa.Column("remaining", sa.Integer),
)
sa.Index("ix_zoho_sync_credits_org_used_at", credit_ledger.c.org_key, credit_ledger.c.used_at)

STATE_COLUMNS = [
    "customer_key",
    "email",
    "module",
    "zoho_id",
    "payload_hash",
    "status",
    "error_code",
    "error_message",
    "retryable",
    "attempts",
]
# A state row's status. The two write-ahead statuses are written before a call whose outcome the row does not
# hold yet, so a crash at any point leaves the next run enough to finish the work without a twin record:
SYNCED, FAILED = "synced", "failed"
UNCONFIRMED = "unconfirmed"  # an insert was sent (module, email known; Zoho's id not yet): resend, same module
CONVERTING = "converting"  # the Lead (zoho_id) is being converted: convert again (idempotent), never a new Contact
DELETED_IN_ZOHO = "deleted_in_zoho"  # a person deleted the record in Zoho: not resent until a reset
DELETED_IN_SOURCE = "deleted_in_source"  # the product deleted or flagged it because it left the store
LIVE_STATUSES = (SYNCED, FAILED, UNCONFIRMED, CONVERTING)  # the tenant still syncs this customer
DELETED_BY_OTHER_TENANT = "DELETED_BY_OTHER_TENANT"
# error_code of a row linked to a record the org already had (adopt.py), until the product first writes it
ADOPTED = "ADOPTED"
