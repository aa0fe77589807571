"""Figure first_load_1m: the first sync of a 1,000,000-customer Magento store into an empty Zoho org, task by task.

Each pipeline step runs in its own process, as Airflow runs the DAG's tasks (extract → plan → load → report, the
results handed on as XCom would be), against the Magento and Zoho sandboxes in their own processes and a state
database on PostgreSQL (SQLite where no server answers). Zoho gives no figure for how long a Bulk Write job takes;
the sandbox holds each job ``BULK_STEP_SECONDS`` in ADDED and again IN PROGRESS, besides its own processing, so the
poller pays for the polls a slow job costs. Measured: wall time and peak RSS of each step, the credits the sandbox
charged (by operation), the load's own estimate, and the same records' cost on batched upsert (computed with the
product's credit rules, which ``first_sync_100k`` checks against a measured upsert load).
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench import common

CUSTOMERS, QUICK_CUSTOMERS = 1_000_000, 2_000
TENANT_ID = "bench"
RUN_ID = "first-load"
BULK_STEP_SECONDS, QUICK_BULK_STEP_SECONDS = 5.0, 0.2
MAX_TASK_MIB = 1536  # peak memory of any task: under 1.5 GiB
CREDITS_TOLERANCE = 0.05  # measured within 5% of the estimate
MIN_SAVING = 3.5  # at least 3.5x fewer credits than the upsert path
STEPS = ("extract", "plan", "load", "report")


def _step(step: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """One task's work in this fresh process: its result and its own peak memory."""
    from zoho_store_sync import pipeline

    common.reset_peak_rss()
    started = time.perf_counter()
    if step == "extract":
        result = pipeline.extract(TENANT_ID, RUN_ID, full=True)
    elif step == "plan":
        result = pipeline.plan(TENANT_ID, RUN_ID, inputs["extract"])
    elif step == "load":
        result = pipeline.load(TENANT_ID, RUN_ID, inputs["plan"])
    else:
        result = pipeline.report(TENANT_ID, RUN_ID, inputs["extract"], inputs["plan"], inputs["load"])
    return {"result": result, "wall_s": round(time.perf_counter() - started, 2), "peak_mib": round(common.peak_rss())}


def _upsert_credits(by_module: dict[str, int]) -> int:
    from zoho_store_sync.zoho.bulk import estimate_write_credits

    return sum(estimate_write_credits(n, "upsert") for n in by_module.values())


def measure(customers: int, bulk_step_seconds: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-first-load-"))
    with ExitStack() as stack:
        magento = stack.enter_context(common.sandbox_process("magento", "--customers", str(customers), "--seed", "5"))
        zoho = stack.enter_context(
            common.sandbox_process(
                "zoho_crm", "--daily-credits", "100000000", "--bulk-step-seconds", str(bulk_step_seconds)
            )
        )
        state_url = (
            stack.enter_context(common.scratch_postgres())
            if common.postgres_available()
            else f"sqlite:///{home / 'state.db'}"
        )
        tenant = {"tenant_id": TENANT_ID, "source": "magento", "store_conn_id": "magento_bench", "zoho_conn_id": "zoho"}
        env = common.base_env(home, AIRFLOW_VAR_ZOHO_SYNC_TENANTS=json.dumps([tenant]))
        env.update(
            dict(
                [
                    common.magento_connection("magento_bench", magento["url"]),
                    common.zoho_connection("zoho", zoho),
                    common.state_connection(state_url),
                ]
            )
        )
        common.run_worker("bench.first_load", {"migrate": state_url}, env=env)
        outputs: dict[str, Any] = {}
        steps: dict[str, Any] = {}
        for step in STEPS:
            done = common.run_worker("bench.first_load", {"step": step, "inputs": outputs}, env=env, timeout=7200)
            outputs[step] = done["result"]
            steps[step] = {"wall_s": done["wall_s"], "peak_mib": done["peak_mib"]}
        calls = requests.get(f"{zoho['url']}/__sandbox__/calls", timeout=600).json()["calls"]
    charged: dict[str, int] = {}
    for call in calls:
        if call["operation"] not in ("token", "revoke"):
            charged[call["operation"]] = charged.get(call["operation"], 0) + int(call.get("credits") or 0)
    planned, loaded = outputs["plan"], outputs["load"]
    by_module = {"Contacts": int(planned["contacts"]), "Leads": int(planned["leads"])}
    plan_ops = ("fields", "layouts", "users", "count", "coql", "deleted")  # the plan's reads of the org
    load_ops = {op: n for op, n in charged.items() if op not in plan_ops}
    return {
        "customers": customers,
        "state_database": "postgresql" if state_url.startswith("postgresql") else "sqlite",
        "bulk_step_seconds": bulk_step_seconds,
        "records": by_module,
        "inserted": loaded["inserted"],
        "failed": loaded["failed"],
        "steps": steps,
        "wall_s": round(sum(s["wall_s"] for s in steps.values()), 1),
        "credits_charged": sum(charged.values()),
        "credits_by_operation": charged,
        "load_credits_charged": sum(load_ops.values()),
        "load_credits_estimate": loaded.get("credits_estimate"),
        "upsert_path_credits": _upsert_credits(by_module),
    }


def run(quick: bool = False) -> list[common.Figure]:
    customers = QUICK_CUSTOMERS if quick else CUSTOMERS
    step_seconds = QUICK_BULK_STEP_SECONDS if quick else BULK_STEP_SECONDS
    out = common.run_worker(
        "bench.first_load", {"customers": customers, "bulk_step_seconds": step_seconds}, timeout=14400
    )
    total, upsert = out["credits_charged"], out["upsert_path_credits"]
    estimate = out["load_credits_estimate"] or 0
    off = out["load_credits_charged"] / estimate - 1 if estimate else None
    peak = max(s["peak_mib"] for s in out["steps"].values())
    steps = ", ".join(f"{name} {s['wall_s']} s / {s['peak_mib']} MiB" for name, s in out["steps"].items())
    print(
        f"   first load of {customers:,} customers: {total:,} credits in all (load {out['load_credits_charged']:,}, "
        f"estimate {estimate:,}) vs {upsert:,} on upsert; {steps}",
        flush=True,
    )
    saving = upsert / max(total, 1)
    complete = out["inserted"] == sum(out["records"].values()) and out["failed"] == 0
    within = off is not None and abs(off) <= CREDITS_TOLERANCE
    met = complete and within and saving >= MIN_SAVING and peak < MAX_TASK_MIB
    out["load_vs_estimate"] = None if off is None else round(off, 4)
    out["peak_task_mib"] = peak
    return [
        common.Figure(
            name="first_load_1m",
            value=total,
            unit="credits",
            baseline="the same records on batched upsert (1 credit per 10 records)",
            baseline_value=upsert,
            ratio=round(total / max(upsert, 1), 3),
            target=f"load within {CREDITS_TOLERANCE:.0%} of its estimate, >= {MIN_SAVING:g}x fewer credits than "
            f"upsert, every task < {MAX_TASK_MIB / 1024:g} GiB",
            met=met,
            details=out,
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    if "migrate" in args:
        from zoho_store_sync.state_migrations import migrate

        migrate(args["migrate"])  # what `python -m zoho_store_sync.cli db migrate` does before the first run
        common.emit({})
    elif "step" in args:
        common.emit(_step(args["step"], args["inputs"]))
    else:
        common.emit(measure(**args))
