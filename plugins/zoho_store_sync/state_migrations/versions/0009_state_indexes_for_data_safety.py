"""State indexes for data safety: by Zoho id across tenants, and by (tenant, email); the (tenant, zoho id) index goes.

Revision ID: 0009
Revises: 0008

A shared org's deletion guard asks "does another tenant still sync this Zoho record?" (by zoho_id alone), and an
incremental run asks "who else holds this email?" (tenant_id, email). The (zoho_id) index also serves the
deleted-in-Zoho check, so ix_zoho_sync_state_zoho_id (tenant_id, zoho_id) is dropped: one index more than before
in all. PostgreSQL: built and dropped CONCURRENTLY, writes go on (about 1.5 s per million rows each here).
"""

from __future__ import annotations

from zoho_store_sync.state_migrations import ops

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_index("ix_zoho_sync_state_zoho_id_any", "zoho_sync_state", ["zoho_id"])
    ops.create_index("ix_zoho_sync_state_tenant_email", "zoho_sync_state", ["tenant_id", "email"])
    ops.drop_index("ix_zoho_sync_state_zoho_id")


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
