"""Cursors (incremental high-water marks) and connected refresh tokens (695bf6d).

Revision ID: 0002
Revises: 0001

New tables only: no lock on existing ones.
"""

from __future__ import annotations

import sqlalchemy as sa

from zoho_store_sync.state_migrations import ops

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_table(
        "zoho_sync_cursors",
        sa.Column("tenant_id", sa.String(100), primary_key=True),
        sa.Column("stream", sa.String(60), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    ops.create_table(
        "zoho_sync_refresh_tokens",
        sa.Column("zoho_conn_id", sa.String(250), primary_key=True),
        sa.Column("sealed_token", sa.LargeBinary, nullable=False),
        sa.Column("scope", sa.Text),
        sa.Column("api_domain", sa.String(250)),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
