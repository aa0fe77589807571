"""Bulk Write jobs a run paid for (resumed by a retried task) and a per-org ledger of the credits spent.

Revision ID: 0010
Revises: 0009

Two new tables, nothing else touched: no lock on the existing ones.
"""

from __future__ import annotations

import sqlalchemy as sa

from zoho_store_sync.state_migrations import ops

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_table(
        "zoho_sync_bulk_jobs",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("job_key", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("module", sa.String(20), nullable=False),
        sa.Column("records", sa.Integer, nullable=False),
        sa.Column("job_id", sa.String(40)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    ops.create_table(
        "zoho_sync_credits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("org_key", sa.String(250), nullable=False),
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("credits", sa.Integer, nullable=False),
        sa.Column("remaining", sa.Integer),
    )
    ops.create_index("ix_zoho_sync_credits_org_used_at", "zoho_sync_credits", ["org_key", "used_at"])


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
