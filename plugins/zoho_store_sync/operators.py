"""The sync DAGs' operator: each task runs the pipeline step its task id names, for its DAG's tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseOperator, SkipMixin
from airflow.sdk.exceptions import AirflowSkipException

from zoho_store_sync.settings import DAG_ID_PREFIX

SUMMARY_TEXT_KEY = "summary_text"  # the XCom key of a task's one-line summary
EXTRACTED_KEY = "extracted"  # plan_changes' XCom of what the extraction read, for report_summary

# Nothing heavy is imported here: the pipeline (pandas, pyarrow, SQLAlchemy) loads when a task runs, never
# when the DAG processor parses the file (bench parse_500_tenants measures 500 tenants).


def _dry_run(context: Any) -> bool:
    params = context.get("params") or {}
    return bool(params.get("dry_run"))


@dataclass(frozen=True)
class RunFinished:
    """``plan_changes``'s answer when the run has nothing to write (nothing changed, or a dry run): it reported
    already, so the operator lets the lock go and skips the tasks after it, which then never start."""

    summary: dict[str, Any]


def plan_changes(tenant_id: str, context: Any) -> dict[str, Any] | RunFinished:
    """Take the tenant's lock (a running reset skips the run), extract, plan: one task process, not three (500
    tenants every 30 minutes: each task launch costs ~0.5 CPU s). A run with nothing to write reports here too.

    This task is the lock's setup: when it fails its teardown does not run, so it lets the lock go itself."""
    from zoho_store_sync import assets, pipeline

    run_id = context["run_id"]
    try:
        pipeline.acquire_tenant_lock(tenant_id, run_id, "sync")
    except pipeline.TenantBusy as busy:  # a reset is running: this run has nothing to do
        raise AirflowSkipException(str(busy)) from None
    try:
        with pipeline.hold_tenant_lock(tenant_id, run_id, "sync"):
            extracted = pipeline.extract(tenant_id, run_id)
            allow = int((context.get("params") or {}).get("allow_deletions") or 0)
            planned = pipeline.plan(tenant_id, run_id, extracted, dry_run=_dry_run(context), allow_deletions=allow)
            if _dry_run(context) or not planned["to_send"]:
                loaded = upsert_to_zoho(tenant_id, context, planned)  # zeros, without a Zoho call
                return RunFinished(report_summary(tenant_id, context, extracted, planned, loaded))
    except BaseException:
        pipeline.release_tenant_lock(tenant_id, run_id, "sync")  # the next run (or a reset) must not wait
        raise
    assets.suppress_events(context)  # report_summary records this run's events, once the writes are done
    context["ti"].xcom_push(key=EXTRACTED_KEY, value=extracted)
    return planned


def upsert_to_zoho(tenant_id: str, context: Any, planned: dict[str, Any]) -> dict[str, Any]:
    from zoho_store_sync import assets, pipeline

    loaded = pipeline.load(tenant_id, context["run_id"], planned, dry_run=_dry_run(context))
    if loaded.get("dry_run"):
        text = f"dry run: {planned.get('to_send', 0)} records would be sent; nothing written to Zoho"
    else:  # the load's own figures: invalid rows never reach it, the plan's credits are the report's
        text = assets.summary_text(loaded, sorted(loaded.get("by_module") or {}))
    _push_summary_text(context, text)
    return loaded


def report_summary(
    tenant_id: str, context: Any, extracted: dict[str, Any], planned: dict[str, Any], loaded: dict[str, Any]
) -> dict[str, Any]:
    """The run's summary; then its Asset events (none for a dry run) and alerts (a refused run's too)."""
    from zoho_store_sync import alerts, assets, pipeline

    modules = assets.declared_modules(tenant_id, context["task"].outlets)
    if _dry_run(context):
        assets.suppress_events(context)  # a dry run changed nothing in Zoho: no "synced" event
    started_at = getattr(context.get("dag_run"), "start_date", None)
    try:
        summary = pipeline.report(tenant_id, context["run_id"], extracted, planned, loaded, started_at=started_at)
    finally:  # a refused or red run alerts too; the alerts never fail the run
        alerts.after_run(tenant_id, context["run_id"], planned, loaded, context)
    if not summary["dry_run"]:
        assets.record_events(context, "sync", summary, loaded.get("by_module") or {}, modules)
    _push_summary_text(context, assets.summary_text(summary, modules))
    return summary


def _push_summary_text(context: Any, text: str) -> None:
    """The task's figures as one line, beside its return value: Airflow's XCom view shows a string as it is, where
    it folds a dict into a JSON tree to expand."""
    context["ti"].xcom_push(key=SUMMARY_TEXT_KEY, value=text)


def release_tenant_lock(tenant_id: str, context: Any) -> None:
    from zoho_store_sync import pipeline

    pipeline.release_tenant_lock(tenant_id, context["run_id"], "sync")


@dataclass(frozen=True)
class SyncStep:
    """A pipeline step and the upstream XComs it takes (argument -> (task id, key))."""

    run: Callable[..., Any]
    inputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    holds_lock: bool = True  # runs only while its run holds the tenant's lock, keeping the lease alive


_RETURNED = "return_value"
SYNC_STEPS: dict[str, SyncStep] = {
    "plan_changes": SyncStep(plan_changes, holds_lock=False),  # it takes the lock
    "upsert_to_zoho": SyncStep(upsert_to_zoho, {"planned": ("plan_changes", _RETURNED)}),
    "report_summary": SyncStep(
        report_summary,
        {
            "extracted": ("plan_changes", EXTRACTED_KEY),
            "planned": ("plan_changes", _RETURNED),
            "loaded": ("upsert_to_zoho", _RETURNED),
        },
    ),
    "release_tenant_lock": SyncStep(release_tenant_lock, holds_lock=False),
}


def tenant_of(dag_id: str) -> str:
    """``zoho_sync__<tenant_id>`` → ``<tenant_id>`` (TenantConfig.dag_id, reversed)."""
    if not dag_id.startswith(DAG_ID_PREFIX):
        raise ValueError(f"{dag_id!r} is not a tenant sync DAG (its id must start with {DAG_ID_PREFIX!r})")
    return dag_id[len(DAG_ID_PREFIX) :]


class SyncStepOperator(BaseOperator, SkipMixin):
    """Runs ``SYNC_STEPS[task_id]`` for the tenant of its DAG, with the results of the step's upstream tasks.

    By convention rather than by arguments: the task id names the step and the DAG id names the tenant,
    so the operator needs no ``__init__`` of its own. That halves what each task costs to build (one
    ``apply_defaults`` instead of two; TaskFlow's ``@task`` costs three times as much), which, times six
    tasks and 500 tenants, is most of a DAG-file parse.
    """

    ui_color = "#e3f2fd"

    def _finish_run(self, tenant_id: str, context: Any) -> None:
        """The run reported without writing: let the lock go, skip every task after this one (the scheduler then
        launches none of them: a no-op run is one task process)."""
        from zoho_store_sync import pipeline

        pipeline.release_tenant_lock(tenant_id, context["run_id"], "sync")
        self.skip(context["ti"], self.get_flat_relatives(upstream=False))  # raises: this task ends as a success

    def execute(self, context: Any) -> Any:
        step = SYNC_STEPS.get(self.task_id)
        if step is None:
            raise ValueError(f"task {self.task_id!r} names no sync step (known: {', '.join(SYNC_STEPS)})")
        ti = context["ti"]
        pulled = {name: ti.xcom_pull(task_ids=task_id, key=key) for name, (task_id, key) in step.inputs.items()}
        tenant_id = tenant_of(self.dag_id)
        if not step.holds_lock:
            result = step.run(tenant_id, context, **pulled)
            if isinstance(result, RunFinished):
                self._finish_run(tenant_id, context)
            return result
        from zoho_store_sync import pipeline

        with pipeline.hold_tenant_lock(tenant_id, context["run_id"], "sync"):
            return step.run(tenant_id, context, **pulled)
