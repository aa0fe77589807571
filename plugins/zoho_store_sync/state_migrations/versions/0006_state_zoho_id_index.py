"""Index ix_zoho_sync_state_zoho_id on (tenant_id, zoho_id) (dfa3ca1): the deleted-in-Zoho check looks rows up by id.

Revision ID: 0006
Revises: 0005

PostgreSQL: CREATE INDEX CONCURRENTLY, so writes go on while it builds.
"""

from __future__ import annotations

from zoho_store_sync.state_migrations import ops

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.create_index("ix_zoho_sync_state_zoho_id", "zoho_sync_state", ["tenant_id", "zoho_id"])


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
