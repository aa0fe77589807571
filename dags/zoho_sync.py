"""One Zoho CRM sync DAG per tenant of the ``zoho_sync_tenants`` Variable: wiring only.

The pipeline lives in ``plugins/zoho_store_sync/pipeline.py``, the tasks' operator in ``operators.py``.
This file is parsed every 30 s for every tenant at once: it imports nothing heavy and builds plain
operators (``make bench`` measures it with 500 tenants: parse_500_tenants).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, chain, get_parsing_context

from zoho_store_sync.alerts import RunFailedAlert
from zoho_store_sync.assets import tenant_assets
from zoho_store_sync.config import TenantConfig, load_tenants
from zoho_store_sync.operators import SyncStepOperator
from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY
from zoho_store_sync.run_health import stuck_run_alert

DOC_MD = """
### Zoho CRM sync: `{tenant_id}` ({source})

Every run: **plan_changes** takes the tenant's **lock** (a running reset skips the run), **extracts** the
store's customers and **plans** (validate emails, de-duplicate, classify Contacts/Leads, map with
`include/mappings/{mapping}`, hash, diff against the state table); a run with nothing to write (nothing
changed, or a dry run) reports there and skips the other tasks → **upsert** only new and changed
records to Zoho, 100 per call, matched on email → **report** the run summary (log line
`ZOHO_SYNC_SUMMARY {{...}}`, table `zoho_sync_runs`, and one Asset event per record type,
`zoho-crm://{tenant_id}/<Module>`, with the run's figures) → release the lock.

* Record types: {modules}. Sync option: `{sync_option}`. Zoho connection: `{zoho_conn_id}`.
* Trigger with `dry_run = true` to see what would be sent without writing to Zoho (no Asset event).
* `upsert_to_zoho` and `report_summary` (or `plan_changes`, for a run that ends there) show their figures in one
  line: XCom key `summary_text`.
* A run that would delete or flag more than the tenant's limit deletes nothing and turns red; if the store
  really lost those customers, trigger it with `allow_deletions` set to that number (this run only).
* Never deletes on a read that may be partial; see the README, "What the sync will never do".
* Rejected records: table `zoho_sync_errors`, retried next run when Zoho says retrying can help.
* `upsert_to_zoho` takes {pool_slots} slots of pool `{pool}`. If it stays *scheduled* (its Details tab and a
  red **Missed** deadline on the run say so), the pool is missing or too small:
  `python -m zoho_store_sync.cli pools ensure`.
* Configuration: the `zoho_sync_tenants` Variable; see the README.
"""

# Airflow validates a scheduled DAG's params with jsonschema, which first checks the schema against its
# dialect's metaschema: draft-07's costs a quarter of the default 2020-12's (0.05 vs 0.2 ms, per DAG).
DRY_RUN_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "boolean", "title": "Dry run"}
DRY_RUN_DESCRIPTION = "Plan and report what would be sent, without writing to Zoho."
ALLOW_DELETIONS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "integer",
    "minimum": 0,
    "title": "Allow deletions (this run)",
}
ALLOW_DELETIONS_DESCRIPTION = (
    "Let this run delete or flag up to this many Zoho records even above the tenant's "
    "mass-deletion limit (max_deletions, max_deletion_share). 0: the limit applies."
)

DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(hours=2),
}


def build_sync_dag(tenant: TenantConfig) -> DAG:
    with DAG(
        dag_id=tenant.dag_id,
        schedule=tenant.schedule if tenant.enabled else None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        # With ZOHO_SYNC_STUCK_RUN_ALERT_SECONDS set, a run not done that long after it was queued (typically
        # upsert_to_zoho waiting for its pool) misses a deadline naming the pool and the fix (run_health.py).
        deadline=stuck_run_alert(tenant.tenant_id, tenant.zoho_pool, tenant.zoho_max_concurrency),
        # A red run tells the tenant's notifiers (its `alerts` option); the notifier classes load when it fires.
        on_failure_callback=RunFailedAlert(tenant.tenant_id) if tenant.alerts else None,
        default_args={**DEFAULT_ARGS, "retries": tenant.retries},
        tags=["zoho_sync", tenant.source, f"tenant:{tenant.tenant_id}", *tenant.tags],
        doc_md=DOC_MD.format(
            tenant_id=tenant.tenant_id,
            source=tenant.source,
            mapping=tenant.mapping_file,
            modules=", ".join(tenant.modules) or "none",
            sync_option=tenant.sync_option,
            zoho_conn_id=tenant.zoho_conn_id,
            pool=tenant.zoho_pool,
            pool_slots=tenant.zoho_max_concurrency,
        ),
        params={
            "dry_run": Param(False, description=DRY_RUN_DESCRIPTION, schema=dict(DRY_RUN_SCHEMA)),
            "allow_deletions": Param(0, description=ALLOW_DELETIONS_DESCRIPTION, schema=dict(ALLOW_DELETIONS_SCHEMA)),
        },
    ) as dag:
        # Each task runs the pipeline step its id names (operators.SYNC_STEPS), for this DAG's tenant.
        # plan_changes takes the lock, extracts and plans in one process; a run with nothing to write (nothing
        # changed, a dry run) reports there and skips the rest, which then never start: one task process.
        outlets = tenant_assets(tenant.tenant_id, tenant.modules)
        plan = SyncStepOperator(task_id="plan_changes", retry_policy=SYNC_RETRY_POLICY, outlets=outlets)
        # pool_slots = concurrent Zoho calls of this task: the pool caps calls across all tenants of an org.
        upsert = SyncStepOperator(
            task_id="upsert_to_zoho",
            pool=tenant.zoho_pool,
            pool_slots=tenant.zoho_max_concurrency,
            retry_policy=SYNC_RETRY_POLICY,
        )
        # Its success records an Asset event per module (zoho-crm://<tenant>/<Module>) with the run's figures; a dry
        # run's records none (assets.py). A run that ends in plan_changes records them there.
        report = SyncStepOperator(task_id="report_summary", retry_policy=SYNC_RETRY_POLICY, outlets=outlets)
        release = SyncStepOperator(task_id="release_tenant_lock", execution_timeout=timedelta(minutes=5))
        chain(plan, upsert, report)  # each step reads the results of steps before it
        report >> release.as_teardown(setups=plan)
    return dag


_wanted = get_parsing_context().dag_id  # set when a worker parses this file to run one task
for _tenant in load_tenants().tenants:
    if _wanted and _wanted != _tenant.dag_id:
        continue
    build_sync_dag(_tenant)
