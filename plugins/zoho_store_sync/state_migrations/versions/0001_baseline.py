"""Baseline: the first release's state schema (890de3b): state with an email index, runs, errors, access tokens.

Revision ID: 0001
Revises: (none)

A database created by any release before versioned migrations is stamped at this revision by ``migrate``,
never recreated; on an empty database this creates the tables (IF NOT EXISTS, like every revision).
"""

from __future__ import annotations

import sqlalchemy as sa

from zoho_store_sync.state_migrations import ops

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_table(
        "zoho_sync_state",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("customer_key", sa.String(100), primary_key=True),
        sa.Column("email", sa.String(320)),
        sa.Column("module", sa.String(20), nullable=False),
        sa.Column("zoho_id", sa.String(40)),
        sa.Column("payload_hash", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("error_code", sa.String(60)),
        sa.Column("error_message", sa.Text),
        sa.Column("retryable", sa.Boolean),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    ops.create_index("ix_zoho_sync_state_email", "zoho_sync_state", ["tenant_id", "email"], concurrently=False)
    ops.create_table(
        "zoho_sync_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("extracted", sa.Integer),
        sa.Column("inserted", sa.Integer),
        sa.Column("updated", sa.Integer),
        sa.Column("unchanged", sa.Integer),
        sa.Column("failed", sa.Integer),
        sa.Column("api_calls", sa.Integer),
        sa.Column("credits", sa.Integer),
        sa.Column("summary", sa.Text, nullable=False),
        sa.UniqueConstraint("tenant_id", "run_id", "kind", name="uq_zoho_sync_runs_run"),
    )
    ops.create_index("ix_zoho_sync_runs_tenant_id", "zoho_sync_runs", ["tenant_id"], concurrently=False)
    ops.create_table(
        "zoho_sync_errors",
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
    )
    ops.create_index("ix_zoho_sync_errors_tenant_id", "zoho_sync_errors", ["tenant_id"], concurrently=False)
    ops.create_table(
        "zoho_sync_access_tokens",
        sa.Column("cache_key", sa.String(64), primary_key=True),
        sa.Column("sealed_token", sa.LargeBinary),
        sa.Column("refreshed_at", sa.Text, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
