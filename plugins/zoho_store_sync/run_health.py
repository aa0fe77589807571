"""A sync run that is not done long after it was queued says so: a missed Airflow deadline naming the pool."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import Any

from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

log = logging.getLogger(__name__)

STUCK_ALERT_ENV = "ZOHO_SYNC_STUCK_RUN_ALERT_SECONDS"
SUGGESTED_STUCK_ALERT_SECONDS = 3600  # what the README and docker-compose.yaml use
UPLOAD_TASK = "upsert_to_zoho"
POOLS_ENSURE = "python -m zoho_store_sync.cli pools ensure"
NAME_LIMIT = 250  # deadline_alert.name is a VARCHAR(250)
UPSTREAM_POLL_S = 5.0
UPSTREAM_WAIT_S = 900.0  # how long the callback waits for extract/plan to finish before it reports
_FAILED = {"failed", "upstream_failed"}


def stuck_alert_interval() -> timedelta | None:
    """``ZOHO_SYNC_STUCK_RUN_ALERT_SECONDS``, read when DAGs are parsed: unset or 0, no deadline.

    Off unless set: Airflow 3.3's ``dag.test()`` / ``airflow dags test`` fail at the end of a successful run of a
    DAG with a deadline (``DagRun.update_state`` looks the alerts up by id, but ``dag.test()`` holds their
    definitions: ``'dict' object has no attribute 'hex'``). Deployments set it (3600 suggested); tests do not.
    """
    raw = os.environ.get(STUCK_ALERT_ENV, "").strip()
    if not raw:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        log.warning("%s=%r is not whole seconds: no stuck-run deadline", STUCK_ALERT_ENV, raw)
        return None
    return timedelta(seconds=seconds) if seconds > 0 else None


def _duration(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def alert_name(pool: str, pool_slots: int, interval: timedelta) -> str:
    """What the run's page shows next to its red "Missed" deadline badge (250 characters at most)."""
    name = (
        f"Sync not done {_duration(interval)} after it was queued. If {UPLOAD_TASK} is scheduled, it waits for "
        f"{pool_slots} free slots of pool {pool}: run `{POOLS_ENSURE}`"
    )
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "…"


def stuck_run_alert(tenant_id: str, pool: str, pool_slots: int) -> DeadlineAlert | None:
    """The DAG's deadline: missed when a run is not finished the configured time after it was queued."""
    interval = stuck_alert_interval()
    if interval is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=interval,
        callback=AsyncCallback(
            report_stuck_run,
            kwargs={
                "tenant_id": tenant_id,
                "pool": pool,
                "pool_slots": pool_slots,
                "waited": _duration(interval),
            },
        ),
        name=alert_name(pool, pool_slots, interval),
    )


def stuck_run_message(
    *, tenant_id: str, pool: str, pool_slots: int, waited: str, run_id: str, states: dict[str, Any] | None
) -> str:
    """The callback's log line: the upload's state, the pool it needs and the fix."""
    upload = (states or {}).get(UPLOAD_TASK)
    head = f"ZOHO_SYNC_STUCK tenant {tenant_id} run {run_id}: not done {waited} after it was queued"
    if upload == "scheduled":
        return (
            f"{head}; {UPLOAD_TASK} is scheduled, waiting for {pool_slots} free slots of pool {pool} "
            f"(zoho_max_concurrency). If the pool is missing or has fewer than {pool_slots} slots it never gets "
            f"them: run `{POOLS_ENSURE}` (or `python -m zoho_store_sync.cli pools check` to see) and the run goes "
            f"on by itself. Otherwise other runs hold the pool's slots. The task's Details tab shows the open "
            f"slots; the tenant's lock stays held meanwhile."
        )
    if states is None:
        return (
            f"{head}; the task states could not be read. If {UPLOAD_TASK} is scheduled, it waits for "
            f"{pool_slots} free slots of pool {pool}: run `{POOLS_ENSURE}`."
        )
    running = ", ".join(f"{task} {state}" for task, state in sorted(states.items()) if state) or "none started"
    return f"{head}; tasks: {running}."


async def _task_states(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """This run's task states, asked of the triggerer's supervisor (a callback has no database access)."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.comms import GetTaskStates

        result = await task_runner.SUPERVISOR_COMMS.asend(GetTaskStates(dag_id=dag_id, run_ids=[run_id]))
        states: dict[str, Any] = getattr(result, "task_states", {}).get(run_id, {})
        return states
    except Exception:  # noqa: BLE001 - the message still names the pool and the fix
        log.warning("could not read the task states of %s %s", dag_id, run_id, exc_info=True)
        return None


async def report_stuck_run(
    *, tenant_id: str, pool: str, pool_slots: int, waited: str, context: dict[str, Any] | None = None
) -> str:
    """The deadline's callback, run by the triggerer: logs why the run is not done and what fixes it."""
    dag_run = (context or {}).get("dag_run") or {}
    dag_id, run_id = str(dag_run.get("dag_id", "")), str(dag_run.get("dag_run_id", ""))
    states = await _states_once_the_upload_is_decided(dag_id, run_id) if dag_id and run_id else None
    message = stuck_run_message(
        tenant_id=tenant_id, pool=pool, pool_slots=pool_slots, waited=waited, run_id=run_id, states=states
    )
    log.error(message)
    return message


async def _states_once_the_upload_is_decided(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The task states once the run has reached the upload (or failed before it), so the message can say why."""
    states = await _task_states(dag_id, run_id)
    for _ in range(int(UPSTREAM_WAIT_S / UPSTREAM_POLL_S)):
        if states is None or states.get(UPLOAD_TASK) is not None or _FAILED & set(states.values()):
            break
        await asyncio.sleep(UPSTREAM_POLL_S)  # extract/plan still running: the upload's fate is not known yet
        states = await _task_states(dag_id, run_id)
    return states
