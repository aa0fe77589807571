"""Drop ix_zoho_sync_state_email (dfa3ca1): nothing looks state rows up by email, and it cost every write.

Revision ID: 0004
Revises: 0003

PostgreSQL: DROP INDEX CONCURRENTLY, so writes go on.
"""

from __future__ import annotations

from zoho_store_sync.state_migrations import ops

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ops.drop_index("ix_zoho_sync_state_email")


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
