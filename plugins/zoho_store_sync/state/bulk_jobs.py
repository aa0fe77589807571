"""``BulkJobStore``: the Bulk Write jobs a tenant paid for, so a retried task resumes its job instead of buying one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from zoho_store_sync.state.tables import bulk_jobs
from zoho_store_sync.state.writes import _dialect_insert, now_utc
from zoho_store_sync.zoho.bulk import ABANDONED, COMPLETED, CREATED, READ, UPLOADING  # noqa: F401 - the statuses

# uploading: about to create the job (no id yet); created: Zoho gave the job id (paid); completed: the job ended
# and its result is downloaded; read: its outcomes are handed to the loader; abandoned: failed at Zoho or its
# result expired, so the next attempt creates a new job.


@dataclass
class BulkJobStore:
    """One tenant's rows of ``zoho_sync_bulk_jobs``, keyed by ``job_key`` (a hash of run, module and records)."""

    engine: sa.Engine
    tenant_id: str

    def get(self, job_key: str) -> dict[str, Any] | None:
        """The job recorded under ``job_key`` (job_id, status, module, records, run_id), or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(bulk_jobs).where(bulk_jobs.c.tenant_id == self.tenant_id, bulk_jobs.c.job_key == job_key)
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def begin(self, job_key: str, run_id: str, module: str, records: int) -> None:
        """Before the upload: the job is about to be bought (status ``uploading``, no id yet)."""
        now = now_utc()
        values = {
            "tenant_id": self.tenant_id,
            "job_key": job_key,
            "run_id": run_id,
            "module": module,
            "records": int(records),
            "job_id": None,
            "status": UPLOADING,
            "created_at": now,
            "updated_at": now,
        }
        insert = _dialect_insert(self.engine)(bulk_jobs).values(**values)
        update = {k: values[k] for k in ("run_id", "module", "records", "job_id", "status", "updated_at")}
        with self.engine.begin() as conn:
            conn.execute(insert.on_conflict_do_update(index_elements=["tenant_id", "job_key"], set_=update))

    def created(self, job_key: str, job_id: str) -> None:
        """Zoho created (and charged for) the job: keep its id for a retried task."""
        self._set(job_key, job_id=str(job_id), status=CREATED)

    def set_status(self, job_key: str, status: str) -> None:
        self._set(job_key, status=status)

    def jobs(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """This tenant's jobs (of one run when given), oldest first."""
        query = sa.select(bulk_jobs).where(bulk_jobs.c.tenant_id == self.tenant_id)
        if run_id is not None:
            query = query.where(bulk_jobs.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(bulk_jobs.c.created_at)).mappings()]

    def _set(self, job_key: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(bulk_jobs)
                .where(bulk_jobs.c.tenant_id == self.tenant_id, bulk_jobs.c.job_key == job_key)
                .values(updated_at=now_utc(), **values)
            )
