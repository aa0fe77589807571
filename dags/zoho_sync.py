"""One Zoho CRM sync DAG per tenant of the ``zoho_sync_tenants`` Variable: wiring only.

The pipeline lives in ``plugins/zoho_store_sync/pipeline.py``; this file builds the DAGs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_parsing_context, task
from airflow.sdk.exceptions import AirflowSkipException

from zoho_store_sync import pipeline
from zoho_store_sync.config import TenantConfig, load_tenants
from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY

DOC_MD = """
### Zoho CRM sync: `{tenant_id}` ({source})

Every run: **extract** the store's customers → **plan** (validate emails, de-duplicate, classify
Contacts/Leads, map with `include/mappings/{mapping}`, hash, diff against the state table) →
**upsert** only new and changed records to Zoho, 100 per call, matched on email → **report** the run
summary (log line `ZOHO_SYNC_SUMMARY {{...}}`, table `zoho_sync_runs`).

* Record types: {modules}. Sync option: `{sync_option}`. Zoho connection: `{zoho_conn_id}`.
* Trigger with `dry_run = true` to see what would be sent without writing to Zoho.
* Rejected records: table `zoho_sync_errors`, retried next run when Zoho says retrying can help.
* Configuration: the `zoho_sync_tenants` Variable; see the README.
"""

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(hours=2),
}


def build_sync_dag(tenant: TenantConfig):  # type: ignore[no-untyped-def]
    tenant_id = tenant.tenant_id

    @dag(
        dag_id=tenant.dag_id,
        schedule=tenant.schedule if tenant.enabled else None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        default_args={**DEFAULT_ARGS, "retries": tenant.retries},
        tags=["zoho_sync", tenant.source, f"tenant:{tenant_id}", *tenant.tags],
        doc_md=DOC_MD.format(tenant_id=tenant_id, source=tenant.source, mapping=tenant.mapping_file,
                             modules=", ".join(tenant.modules) or "none", sync_option=tenant.sync_option,
                             zoho_conn_id=tenant.zoho_conn_id),
        params={"dry_run": Param(False, type="boolean", title="Dry run",
                                 description="Plan and report what would be sent, without writing to Zoho.")},
    )
    def zoho_sync():
        @task(execution_timeout=timedelta(minutes=10))
        def create_state_schema() -> None:
            pipeline.create_schema(tenant_id)

        @task(execution_timeout=timedelta(minutes=5))
        def acquire_tenant_lock(run_id=None) -> None:  # type: ignore[no-untyped-def]
            try:
                pipeline.acquire_tenant_lock(tenant_id, run_id, "sync")
            except pipeline.TenantBusy as busy:  # a reset is running: this run has nothing to do
                raise AirflowSkipException(str(busy)) from None

        @task(execution_timeout=timedelta(minutes=5))
        def release_tenant_lock(run_id=None) -> None:  # type: ignore[no-untyped-def]
            pipeline.release_tenant_lock(tenant_id, run_id, "sync")

        @task(retry_policy=SYNC_RETRY_POLICY)
        def extract_customers(run_id=None) -> dict:  # type: ignore[no-untyped-def]
            return pipeline.extract(tenant_id, run_id)

        @task(retry_policy=SYNC_RETRY_POLICY)
        def plan_changes(extracted: dict, run_id=None, params=None) -> dict:  # type: ignore[no-untyped-def]
            return pipeline.plan(tenant_id, run_id, extracted, dry_run=bool(params and params.get("dry_run")))

        # pool_slots = concurrent Zoho calls of this task: the pool caps calls across all tenants of an org.
        @task(pool=tenant.zoho_pool, pool_slots=tenant.zoho_max_concurrency, retry_policy=SYNC_RETRY_POLICY)
        def upsert_to_zoho(planned: dict, run_id=None, params=None) -> dict:  # type: ignore[no-untyped-def]
            return pipeline.load(tenant_id, run_id, planned, dry_run=bool(params and params.get("dry_run")))

        @task(retry_policy=SYNC_RETRY_POLICY)
        def report_summary(extracted: dict, planned: dict, loaded: dict, run_id=None, dag_run=None) -> dict:  # type: ignore[no-untyped-def]
            return pipeline.report(tenant_id, run_id, extracted, planned, loaded,
                                   started_at=getattr(dag_run, "start_date", None))

        schema = create_state_schema()
        lock = acquire_tenant_lock()
        extracted = extract_customers()
        schema >> lock >> extracted
        planned = plan_changes(extracted)
        loaded = upsert_to_zoho(planned)
        summary = report_summary(extracted, planned, loaded)
        summary >> release_tenant_lock().as_teardown(setups=lock)

    return zoho_sync()


_wanted = get_parsing_context().dag_id  # set when a worker parses this file to run one task
for _tenant in load_tenants().tenants:
    if _wanted and _wanted != _tenant.dag_id:
        continue
    build_sync_dag(_tenant)
