"""Manual full reset of one tenant's Zoho sync (``zoho_reset``): wiring only, see ``zoho_store_sync.reset``.

The pipeline modules (pandas, pyarrow, SQLAlchemy) are imported inside the tasks, never at parse time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException

from zoho_store_sync.alerts import reset_failed
from zoho_store_sync.assets import reset_alias
from zoho_store_sync.config import load_tenants, tenant_param
from zoho_store_sync.reset_lanes import send_lane
from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY
from zoho_store_sync.settings import DEFAULT_ZOHO_POOL, ZOHO_DEFAULT_CONCURRENCY

# The send tasks, one per (pool, slots) of the configured tenants (read at parse time, like the tenant drop-down):
# Airflow takes a task's pool when the DAG file is parsed, never from the run's form.
LANES = {
    send_lane(pool, slots): (pool, slots)
    for pool, slots in sorted({(t.zoho_pool, t.zoho_max_concurrency) for t in load_tenants().tenants})
    or [(DEFAULT_ZOHO_POOL, ZOHO_DEFAULT_CONCURRENCY)]
}

DOC_MD = """
### Reset a tenant's Zoho sync

Forgets the tenant's sync state for the chosen record types (Zoho ids, hashes, the deleted-in-Zoho
marks) and resends every customer of those types, **matched on email**, so nothing is duplicated:
running it twice creates no duplicate. Use it after records were deleted in Zoho and must come back.

1. *Trigger DAG w/ config*: pick the **tenant**, the **record types**, and type the tenant id in
   **confirm** (without it nothing happens). Tick **dry run** to see what would be sent first.
2. Progress: the `send_chunk` tasks advance one by one in the grid; each logs
   `reset progress: done/total records confirmed (percent), ... about N s left`.
3. If the reset dies, trigger it again with the same form: it resumes and sends only what Zoho has
   not confirmed. The tenant's scheduled sync waits (is skipped) while a reset runs, and a reset
   waits for a running sync to finish.

Large loads use Zoho's Bulk Write API when it costs fewer API credits: one job per chunk, of one record type
and at most 25,000 records; a retried chunk resumes the job it already paid for. The summary
(`ZOHO_SYNC_SUMMARY` log line, `zoho_sync_runs` row of kind `reset`) says which path each record type took,
the jobs and credits it estimated, and what it cost.

* **Fire workflows** (off by default): the resent records fire no workflow rule, approval or blueprint
  (`trigger: []`). Tick it to let them fire as the tenant's sync does.
* When it finishes, each record type reset gets an Asset event (`zoho-crm://<tenant>/<Module>`, through the alias
  `zoho_reset`) with the reset's figures; a dry run gets none. `send_chunk` and `report_reset` show their figures
  in one line: XCom key `summary_text`.
* The sending runs in the tenant's Airflow pool with its `zoho_max_concurrency` slots, as its sync does: the
  task is `send_chunk__<pool>__<slots>`; the other pools' send tasks are skipped.
"""


@dag(
    dag_id="zoho_reset",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["zoho_sync", "manual"],
    doc_md=DOC_MD,
    on_failure_callback=reset_failed,  # a red reset tells the tenant's notifiers (its `alerts` option)
    default_args={
        "owner": "data-engineering",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "execution_timeout": timedelta(hours=3),
    },
    params={
        "tenant": tenant_param("The tenant to reset."),
        "record_types": Param(
            ["Contacts", "Leads"],
            type="array",
            title="Record types to resend",
            items={"type": "string", "enum": ["Contacts", "Leads"]},
            uniqueItems=True,
        ),
        "dry_run": Param(
            False, type="boolean", title="Dry run", description="Report what the reset would send; change nothing."
        ),
        "confirm": Param(
            "", type="string", title="Confirm", description="Type the tenant id to confirm. Without it nothing happens."
        ),
        "fire_workflows": Param(
            False,
            type="boolean",
            title="Fire workflows",
            description=(
                "Off (default): the resent records fire no workflow rule, approval or blueprint in Zoho "
                "(trigger: []). On: they fire as the tenant's sync does (its zoho_workflow_triggers): "
                "a 100k reset can then run every workflow 100k times."
            ),
        ),
        "wait_for_sync_minutes": Param(
            30,
            type="integer",
            minimum=0,
            maximum=720,
            title="Wait for a running sync",
            description="How long to wait for the tenant's running sync to finish.",
        ),
    },
)
def zoho_reset():
    @task(retries=0)
    def check_request(params=None) -> list[str]:
        from zoho_store_sync import reset

        try:
            return list(reset.check_request(params["tenant"], params["record_types"], params["confirm"]))
        except (reset.ResetNotConfirmed, LookupError) as problem:
            raise AirflowFailException(str(problem)) from None

    @task(retries=0)
    def acquire_tenant_lock(modules: list[str], run_id=None, params=None) -> None:
        from zoho_store_sync import reset

        reset.wait_for_lock(params["tenant"], run_id, minutes=params["wait_for_sync_minutes"])

    @task
    def forget_state(modules: list[str], run_id=None, params=None) -> dict:
        from zoho_store_sync import pipeline, reset

        with pipeline.hold_tenant_lock(params["tenant"], run_id, "reset"):
            return reset.begin(params["tenant"], run_id, tuple(modules), bool(params["dry_run"]))

    @task(retry_policy=SYNC_RETRY_POLICY)
    def extract_customers(started: dict, run_id=None, params=None) -> dict:
        from zoho_store_sync import pipeline

        with pipeline.hold_tenant_lock(params["tenant"], run_id, "reset"):
            return pipeline.extract(params["tenant"], run_id, full=True)

    @task(retry_policy=SYNC_RETRY_POLICY)
    def plan_resend(extracted: dict, started: dict, run_id=None, params=None) -> dict:
        from zoho_store_sync import pipeline

        with pipeline.hold_tenant_lock(params["tenant"], run_id, "reset"):
            return pipeline.plan(
                params["tenant"],
                run_id,
                extracted,
                dry_run=started["dry_run"],
                modules=tuple(started["modules"]),
                forget=started["dry_run"],
            )

    @task
    def split_into_chunks(planned: dict, run_id=None, params=None) -> dict[str, list[dict]]:
        from zoho_store_sync import pipeline, reset

        with pipeline.hold_tenant_lock(params["tenant"], run_id, "reset"):
            chunks = reset.split(params["tenant"], run_id, planned)
            if not params["dry_run"]:
                reset.check_credits(params["tenant"], chunks)  # deferred before a single send when over budget
            return reset.route_chunks(params["tenant"], chunks, list(LANES))

    @task
    def chunks_for(routed: dict, lane: str) -> list[dict]:
        return routed[lane]  # empty on the lanes of other pools: their send task is skipped

    # One chunk at a time: the grid shows the reset advancing, and each chunk uses the org's full concurrency. It
    # runs in the tenant's pool with the tenant's slots (as its sync's upsert_to_zoho), so a reset and the syncs
    # of other tenants on the same org stay within the org's concurrency: one send task per (pool, slots).
    @task(max_active_tis_per_dagrun=1, retry_policy=SYNC_RETRY_POLICY)
    def send_chunk(chunk: dict, run_id=None, params=None, ti=None) -> dict:
        from zoho_store_sync import assets, pipeline, reset
        from zoho_store_sync.operators import SUMMARY_TEXT_KEY

        with pipeline.hold_tenant_lock(params["tenant"], run_id, "reset"):
            sent = reset.send_chunk(
                params["tenant"], run_id, chunk, bool(params["dry_run"]), bool(params.get("fire_workflows"))
            )
        ti.xcom_push(key=SUMMARY_TEXT_KEY, value=assets.chunk_text(chunk, sent, bool(params["dry_run"])))
        return sent

    # Its success records an Asset event per record type reset, through the alias (one DAG for every tenant: which
    # assets is known only at run time); a dry run adds none.
    @task(trigger_rule="none_failed_min_one_success", outlets=[reset_alias()])  # other lanes' sends are skipped
    def report_reset(
        modules: list[str],
        extracted: dict,
        planned: dict,
        routed: dict,
        sent_per_lane: list,
        run_id=None,
        params=None,
        ti=None,
        outlet_events=None,
    ) -> dict:
        from zoho_store_sync import alerts, assets, pipeline, reset
        from zoho_store_sync.operators import SUMMARY_TEXT_KEY

        chunks = [chunk for lane in LANES for chunk in routed[lane]]
        sent = [result for lane in sent_per_lane for result in (lane or [])]
        with pipeline.hold_tenant_lock(params["tenant"], run_id, "reset"):
            summary = reset.finish(
                params["tenant"],
                run_id,
                extracted,
                planned,
                chunks,
                sent,
                bool(params["dry_run"]),
                bool(params.get("fire_workflows")),
            )
        if not summary["dry_run"]:
            counts = chunks[0]["counts"] if chunks else {}
            by_module = {m: {"sent": int(counts.get(m, 0))} for m in modules}
            assets.record_events(
                {"outlet_events": outlet_events}, "reset", summary, by_module, modules, through_alias=True
            )
            alerts.after_run(params["tenant"], run_id, {}, summary, {"params": params, "run_id": run_id})
        ti.xcom_push(key=SUMMARY_TEXT_KEY, value="reset " + assets.summary_text(summary, modules))
        return summary

    @task(trigger_rule="all_done")
    def release_tenant_lock(run_id=None, params=None) -> None:
        from zoho_store_sync import pipeline

        pipeline.release_tenant_lock(params["tenant"], run_id, "reset")

    modules = check_request()
    lock = acquire_tenant_lock(modules)
    started = forget_state(modules)
    lock >> started
    extracted = extract_customers(started)
    planned = plan_resend(extracted, started)
    routed = split_into_chunks(planned)
    sent = [
        send_chunk.override(task_id=f"send_chunk__{lane}", pool=pool, pool_slots=slots).expand(
            chunk=chunks_for.override(task_id=f"chunks_for__{lane}")(routed, lane)
        )
        for lane, (pool, slots) in LANES.items()
    ]
    done = report_reset(modules, extracted, planned, routed, sent)
    done >> release_tenant_lock().as_teardown(setups=lock)


zoho_reset()
