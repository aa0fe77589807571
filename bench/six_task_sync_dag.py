"""Baseline of tenants_per_worker: the six-task sync DAG as dags/zoho_sync.py was before issue 17, frozen.

One DAG ``six_task__<tenant_id>`` per tenant of the ``zoho_sync_tenants`` Variable, beside the product's
``zoho_sync__<tenant_id>``: lock → extract → plan → upsert → report, and the lock's release as teardown, each a
task process of its own even when nothing changed. Only the benchmark puts this file in a dags folder. The
operator is frozen here too (HEAD's ``SyncStepOperator`` and its steps, calling the pipeline's public functions),
so restructuring the product's operator or steps never changes the baseline; it differs from HEAD only in finding
its tenant after ``six_task__`` and in leaving out the stuck-run deadline (the benchmark never enables it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, chain, get_parsing_context
from airflow.sdk.exceptions import AirflowSkipException

from zoho_store_sync.config import TenantConfig, load_tenants
from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY

BASELINE_DAG_ID_PREFIX = "six_task__"


def baseline_dag_id(tenant_id: str) -> str:
    return f"{BASELINE_DAG_ID_PREFIX}{tenant_id}"


def _dry_run(context: Any) -> bool:
    return bool((context.get("params") or {}).get("dry_run"))


def acquire_tenant_lock(tenant_id: str, context: Any) -> None:
    from zoho_store_sync import pipeline

    try:
        pipeline.acquire_tenant_lock(tenant_id, context["run_id"], "sync")
    except pipeline.TenantBusy as busy:  # a reset is running: this run has nothing to do
        raise AirflowSkipException(str(busy)) from None


def extract_customers(tenant_id: str, context: Any) -> dict[str, Any]:
    from zoho_store_sync import pipeline

    return pipeline.extract(tenant_id, context["run_id"])


def plan_changes(tenant_id: str, context: Any, extracted: dict[str, Any]) -> dict[str, Any]:
    from zoho_store_sync import pipeline

    allow = int((context.get("params") or {}).get("allow_deletions") or 0)
    return pipeline.plan(tenant_id, context["run_id"], extracted, dry_run=_dry_run(context), allow_deletions=allow)


def upsert_to_zoho(tenant_id: str, context: Any, planned: dict[str, Any]) -> dict[str, Any]:
    from zoho_store_sync import pipeline

    return pipeline.load(tenant_id, context["run_id"], planned, dry_run=_dry_run(context))


def report_summary(
    tenant_id: str, context: Any, extracted: dict[str, Any], planned: dict[str, Any], loaded: dict[str, Any]
) -> dict[str, Any]:
    from zoho_store_sync import pipeline

    started_at = getattr(context.get("dag_run"), "start_date", None)
    return pipeline.report(tenant_id, context["run_id"], extracted, planned, loaded, started_at=started_at)


def release_tenant_lock(tenant_id: str, context: Any) -> None:
    from zoho_store_sync import pipeline

    pipeline.release_tenant_lock(tenant_id, context["run_id"], "sync")


@dataclass(frozen=True)
class SixTaskStep:
    """A pipeline step and the upstream tasks whose return values it takes (argument -> task id)."""

    run: Callable[..., Any]
    inputs: dict[str, str] = field(default_factory=dict)
    holds_lock: bool = True


SIX_TASK_STEPS: dict[str, SixTaskStep] = {
    "acquire_tenant_lock": SixTaskStep(acquire_tenant_lock, holds_lock=False),
    "extract_customers": SixTaskStep(extract_customers),
    "plan_changes": SixTaskStep(plan_changes, {"extracted": "extract_customers"}),
    "upsert_to_zoho": SixTaskStep(upsert_to_zoho, {"planned": "plan_changes"}),
    "report_summary": SixTaskStep(
        report_summary, {"extracted": "extract_customers", "planned": "plan_changes", "loaded": "upsert_to_zoho"}
    ),
    "release_tenant_lock": SixTaskStep(release_tenant_lock, holds_lock=False),
}


class SixTaskStepOperator(BaseOperator):
    """Runs ``SIX_TASK_STEPS[task_id]`` for the tenant of its ``six_task__<tenant_id>`` DAG."""

    def execute(self, context: Any) -> Any:
        step = SIX_TASK_STEPS[self.task_id]
        ti = context["ti"]
        pulled = {name: ti.xcom_pull(task_ids=task_id) for name, task_id in step.inputs.items()}
        tenant_id = self.dag_id.removeprefix(BASELINE_DAG_ID_PREFIX)
        if not step.holds_lock:
            return step.run(tenant_id, context, **pulled)
        from zoho_store_sync import pipeline

        with pipeline.hold_tenant_lock(tenant_id, context["run_id"], "sync"):
            return step.run(tenant_id, context, **pulled)


DEFAULT_ARGS = {
    "owner": "data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=20),
    "execution_timeout": timedelta(hours=2),
}
DRY_RUN_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "boolean", "title": "Dry run"}
ALLOW_DELETIONS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "integer",
    "minimum": 0,
    "title": "Allow deletions (this run)",
}


def build_six_task_dag(tenant: TenantConfig) -> DAG:
    with DAG(
        dag_id=baseline_dag_id(tenant.tenant_id),
        schedule=tenant.schedule if tenant.enabled else None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timedelta(hours=6),
        default_args={**DEFAULT_ARGS, "retries": tenant.retries},
        tags=["zoho_sync_baseline", tenant.source, f"tenant:{tenant.tenant_id}"],
        doc_md=f"### Benchmark baseline: the six-task sync of `{tenant.tenant_id}` ({tenant.source})",
        params={
            "dry_run": Param(False, schema=dict(DRY_RUN_SCHEMA)),
            "allow_deletions": Param(0, schema=dict(ALLOW_DELETIONS_SCHEMA)),
        },
    ) as dag:
        lock = SixTaskStepOperator(task_id="acquire_tenant_lock", execution_timeout=timedelta(minutes=10))
        extract = SixTaskStepOperator(task_id="extract_customers", retry_policy=SYNC_RETRY_POLICY)
        plan = SixTaskStepOperator(task_id="plan_changes", retry_policy=SYNC_RETRY_POLICY)
        upsert = SixTaskStepOperator(
            task_id="upsert_to_zoho",
            pool=tenant.zoho_pool,
            pool_slots=tenant.zoho_max_concurrency,
            retry_policy=SYNC_RETRY_POLICY,
        )
        report = SixTaskStepOperator(task_id="report_summary", retry_policy=SYNC_RETRY_POLICY)
        release = SixTaskStepOperator(task_id="release_tenant_lock", execution_timeout=timedelta(minutes=5))
        chain(lock, extract, plan, upsert, report)
        report >> release.as_teardown(setups=lock)
    return dag


_wanted = get_parsing_context().dag_id  # set when a worker parses this file to run one task
for _tenant in load_tenants().tenants:
    if _wanted and _wanted != baseline_dag_id(_tenant.tenant_id):
        continue
    build_six_task_dag(_tenant)
