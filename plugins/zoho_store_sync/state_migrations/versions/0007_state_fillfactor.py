"""PostgreSQL: zoho_sync_state keeps half of each page free (fillfactor 50, dfa3ca1), so rewrites update in place.

Revision ID: 0007
Revises: 0006

When every row of a tenant is rewritten (a mapping change re-sends everything), each new row version fits on its
page (a HOT update: no new index entries), ~2x faster. Setting it takes a lock that lets reads and writes go on
and rewrites nothing: pages written from now on follow it, and the table converges as rows are rewritten. To
apply it to every page at once, run ``VACUUM FULL zoho_sync_state`` between two syncs (it locks the table while it
runs). SQLite: nothing to do.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from zoho_store_sync.state_migrations import ops

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if not ops.is_postgres():
        return
    options = op.get_bind().execute(sa.text("SELECT reloptions FROM pg_class WHERE oid = 'zoho_sync_state'::regclass"))
    if "fillfactor=50" not in (options.scalar() or []):
        op.execute("ALTER TABLE zoho_sync_state SET (fillfactor = 50)")


def downgrade() -> None:
    raise NotImplementedError("revisions go forward only: restore the backup taken before the migration")
