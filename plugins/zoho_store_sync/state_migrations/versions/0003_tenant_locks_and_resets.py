"""Tenant locks (sync and reset exclude each other) and resumable resets (330cfa3).

Revision ID: 0003
Revises: 0002

New tables only: no lock on existing ones.
"""

from __future__ import annotations

import sqlalchemy as sa

from zoho_store_sync.state_migrations import ops

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_table(
        "zoho_sync_locks",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    ops.create_table(
        "zoho_sync_resets",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("modules", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
