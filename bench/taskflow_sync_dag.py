"""Baseline of parse_500_tenants: the tenant sync DAGs written the obvious way (TaskFlow, pipeline imported at
the top), as dags/zoho_sync.py was before it was made cheap to parse. Only the benchmark parses this file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from zoho_store_sync import pipeline
from zoho_store_sync.config import TenantConfig, load_tenants
from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY


def build(tenant: TenantConfig):  # type: ignore[no-untyped-def]
    """The same four tasks, settings and dependencies as dags/zoho_sync.py, one ``@task`` each."""
    tenant_id = tenant.tenant_id

    @dag(
        dag_id=tenant.dag_id,
        schedule=tenant.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        tags=["zoho_sync", tenant.source, f"tenant:{tenant_id}"],
        default_args={
            "owner": "data-engineering",
            "retries": tenant.retries,
            "retry_delay": timedelta(minutes=2),
            "retry_exponential_backoff": True,
            "execution_timeout": timedelta(hours=2),
        },
        doc_md=f"### Zoho CRM sync: `{tenant_id}` ({tenant.source})",
        params={"dry_run": Param(False, type="boolean", title="Dry run", description="Plan only.")},
    )
    def zoho_sync():
        @task(retry_policy=SYNC_RETRY_POLICY, multiple_outputs=True)
        def plan_changes(run_id=None, params=None) -> dict:  # type: ignore[no-untyped-def]
            pipeline.acquire_tenant_lock(tenant_id, run_id, "sync")
            extracted = pipeline.extract(tenant_id, run_id)
            planned = pipeline.plan(tenant_id, run_id, extracted, dry_run=bool(params["dry_run"]))
            return {"extracted": extracted, "planned": planned}

        @task(pool=tenant.zoho_pool, pool_slots=tenant.zoho_max_concurrency, retry_policy=SYNC_RETRY_POLICY)
        def upsert_to_zoho(planned: dict, run_id=None, params=None) -> dict:  # type: ignore[no-untyped-def]
            return pipeline.load(tenant_id, run_id, planned, dry_run=bool(params["dry_run"]))

        @task(retry_policy=SYNC_RETRY_POLICY)
        def report_summary(extracted: dict, planned: dict, loaded: dict, run_id=None) -> dict:  # type: ignore[no-untyped-def]
            return pipeline.report(tenant_id, run_id, extracted, planned, loaded)

        @task(execution_timeout=timedelta(minutes=5))
        def release_tenant_lock(run_id=None) -> None:  # type: ignore[no-untyped-def]
            pipeline.release_tenant_lock(tenant_id, run_id, "sync")

        planning = plan_changes()
        loaded = upsert_to_zoho(planning["planned"])
        summary = report_summary(planning["extracted"], planning["planned"], loaded)
        summary >> release_tenant_lock().as_teardown(setups=planning)

    return zoho_sync()


for _tenant in load_tenants().tenants:
    build(_tenant)
