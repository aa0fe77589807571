"""Run health for the "Zoho sync" page: runs and errors indexed by time per tenant, records sent, reset progress.

Revision ID: 0011
Revises: 0010

The page reads a tenant's latest runs and its last 24 h of runs and errors: (tenant_id, finished_at) and
(tenant_id, at) serve those as short index range scans, and every lookup by tenant alone, so the single-column
tenant indexes of both tables go. A run's ``sent`` count, and the reset's progress (records done of the total,
when last counted), are new nullable columns: PostgreSQL adds them without rewriting the tables. PostgreSQL:
indexes built and dropped CONCURRENTLY, the syncs go on.

The tenant page lists the records a person deleted in Zoho: a partial index holds just those state rows (a few per
tenant), so the list is not a scan of a million-row tenant. A row enters it only when its status becomes
``deleted_in_zoho``; a sync's usual rewrite (synced to synced) leaves the status alone and stays a HOT update.
"""

from __future__ import annotations

import sqlalchemy as sa

from zoho_store_sync.state_migrations import ops

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.add_column("zoho_sync_runs", sa.Column("sent", sa.Integer))
    ops.add_column("zoho_sync_resets", sa.Column("records_total", sa.Integer))
    ops.add_column("zoho_sync_resets", sa.Column("records_done", sa.Integer))
    ops.add_column("zoho_sync_resets", sa.Column("progress_at", sa.DateTime(timezone=True)))
    ops.create_index("ix_zoho_sync_runs_tenant_finished", "zoho_sync_runs", ["tenant_id", "finished_at"])
    ops.create_index("ix_zoho_sync_errors_tenant_at", "zoho_sync_errors", ["tenant_id", "at"])
    ops.create_index(
        "ix_zoho_sync_state_deleted_in_zoho",
        "zoho_sync_state",
        ["tenant_id", "updated_at"],
        where="status = 'deleted_in_zoho'",
    )
    ops.drop_index("ix_zoho_sync_runs_tenant_id")
    ops.drop_index("ix_zoho_sync_errors_tenant_id")


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
