"""Deletions this product made (zoho_sync_deletions) and a kind per recorded error (rejected or invalid).

Revision ID: 0008
Revises: 0007

A new table, and a column with a constant default: PostgreSQL 11+ adds it without rewriting the table (the lock
it takes lasts milliseconds); existing errors become "rejected" (Zoho refused them, the only kind recorded before).
"""

from __future__ import annotations

import sqlalchemy as sa

from zoho_store_sync.state_migrations import ops

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_table(
        "zoho_sync_deletions",
        sa.Column("zoho_id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(100), nullable=False),
        sa.Column("customer_key", sa.String(100), nullable=False),
        sa.Column("module", sa.String(20), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
    )
    ops.add_column("zoho_sync_errors", sa.Column("kind", sa.String(20), nullable=False, server_default="rejected"))


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
