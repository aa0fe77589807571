"""Figure 2, incremental_1m: a scheduled run (extract + plan) after 1% of a Magento store changed, vs a full run.

The Magento sandbox runs in its own process; the product runs through pipeline.extract and pipeline.plan with
Connections and the tenants Variable from the environment. 1% of the customers change through the sandbox's
HTTP endpoints: profile edits (``updated_at`` moves) and new orders (only the order changes).
"""

from __future__ import annotations

import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench import common

CUSTOMERS, QUICK_CUSTOMERS = 1_000_000, 2_000
CHANGED_SHARE = 0.01
TARGET_SHARE = 0.10
FULL_SYNC_EVERY_HOURS = 24  # the tenant default (TenantConfig.full_sync_every_hours)
TENANT = {"tenant_id": "bench", "source": "magento", "store_conn_id": "magento_bench", "zoho_conn_id": "zoho_bench"}


def _run(run_id: str, full: bool) -> dict[str, Any]:
    """extract + plan, timed; the staging files are removed after (the cursor is not saved: same work each time)."""
    from zoho_store_sync import pipeline, staging

    seconds, extracted = common.timed(lambda: pipeline.extract("bench", run_id, full=full))
    plan_seconds, planned = common.timed(lambda: pipeline.plan("bench", run_id, extracted))
    staging.remove_dir(staging.run_dir("bench", run_id))
    calls = extracted.get("store_calls")
    return {
        "extract_s": seconds,
        "plan_s": plan_seconds,
        "total_s": seconds + plan_seconds,
        "full_pass": extracted["full"],
        "extracted": extracted["extracted"],
        "to_send": planned["to_send"],
        "store_calls": calls if isinstance(calls, int) else len(calls or []),
    }


def _seed() -> dict[str, Any]:
    """A first full sync whose every record Zoho confirmed: the state table and cursors of a tenant in use."""
    from zoho_store_sync import pipeline, staging
    from zoho_store_sync.config import get_tenant
    from zoho_store_sync.settings import STATE_DB_CONN_ID
    from zoho_store_sync.state import url_for_conn_id
    from zoho_store_sync.state_migrations import migrate

    migrate(url_for_conn_id(STATE_DB_CONN_ID))  # what `python -m zoho_store_sync.cli db migrate` does
    extract_s, extracted = common.timed(lambda: pipeline.extract("bench", "seed", full=True))
    planned = pipeline.plan("bench", "seed", extracted)
    changes = staging.read_frame(planned["changes"])
    # As if the load succeeded: every record synced with a Zoho id (sending 100k records is figure 4's job).
    synced = changes.assign(
        status="synced",
        zoho_id=[str(5_700_000_000_000_000_000 + i) for i in range(len(changes))],
        error_code=None,
        error_message=None,
        retryable=None,
        attempts=0,
    )
    pipeline.state_store(get_tenant("bench")).save_outcomes(synced)
    loaded = {
        "dry_run": False,
        "inserted": len(changes),
        "updated": 0,
        "converted": 0,
        "failed": 0,
        "sent": len(changes),
        "api_calls": 0,
        "write_calls": 0,
        "credits": 0,
    }
    pipeline.report("bench", "seed", extracted, planned, loaded)
    return {"extract_s": extract_s, "extracted": extracted["extracted"], "synced": len(changes)}


def _change_store(url: str, customers: int) -> dict[str, int]:
    """1% of the customers change over HTTP: 2 in 3 edit their profile, 1 in 3 places an order."""
    count = max(1, int(customers * CHANGED_SHARE))
    ids = list(range(1, customers + 1))[:: max(1, customers // count)][:count]
    session = requests.Session()

    def change(index_and_id: tuple[int, int]) -> int:
        index, customer_id = index_and_id
        if index % 3 == 2:
            answer = session.post(
                f"{url}/__sandbox__/orders", json={"customer_id": customer_id, "base_grand_total": 42.5}
            )
        else:
            answer = session.post(
                f"{url}/__sandbox__/customers/{customer_id}", json={"firstname": f"Edited{customer_id}"}
            )
        return answer.status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(change, enumerate(ids)))
    return {
        "customers_changed": count,
        "profile_edits": count - count // 3,
        "new_orders": count // 3,
        "http_errors": sum(1 for s in statuses if s != 200),
    }


def measure(magento_url: str, customers: int, incremental_repeats: int, full_repeats: int) -> dict[str, Any]:
    seed = _seed()
    changed = _change_store(magento_url, customers)
    incremental = [_run(f"incremental-{i}", full=False) for i in range(incremental_repeats)]
    full = [_run(f"full-{i}", full=True) for i in range(full_repeats)]
    return {"customers": customers, "seed": seed, "changed": changed, "incremental": incremental, "full": full}


def _amortized(incremental_s: float, full_s: float) -> dict[str, Any]:
    """A day of the default schedule: a run every 30 minutes, one of them the full reconciliation pass."""
    runs, full_runs = 48, 24 // int(FULL_SYNC_EVERY_HOURS)
    per_run = ((runs - full_runs) * incremental_s + full_runs * full_s) / runs
    return {
        "runs_per_day": runs,
        "full_passes_per_day": full_runs,
        "mean_run_s": round(per_run, 3),
        "share_of_full_run": round(per_run / full_s, 4),
        "cpu_seconds_per_day": round(per_run * runs, 1),
    }


def run(quick: bool = False) -> list[common.Figure]:
    customers = QUICK_CUSTOMERS if quick else CUSTOMERS
    home = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    with (
        common.sandbox_process("magento", "--customers", str(customers), "--seed", "7") as magento,
        common.sandbox_process("zoho_crm") as zoho,
    ):
        env = common.base_env(home, AIRFLOW_VAR_ZOHO_SYNC_TENANTS=json.dumps([TENANT]))
        env.update(
            dict(
                [
                    common.magento_connection("magento_bench", magento["url"]),
                    common.zoho_connection("zoho_bench", zoho),
                    common.state_connection(f"sqlite:///{home / 'state.db'}"),
                ]
            )
        )
        out = common.run_worker(
            "bench.incremental",
            {
                "magento_url": magento["url"],
                "customers": customers,
                "incremental_repeats": 2 if quick else 3,
                "full_repeats": 1 if quick else 2,
            },
            env=env,
            timeout=3600,
        )
    inc = common.median([r["total_s"] for r in out["incremental"]])
    full = common.median([r["total_s"] for r in out["full"]])
    agree = len({r["to_send"] for r in out["incremental"] + out["full"]}) == 1
    share = inc / full

    def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
        medians = {k: round(common.median([r[k] for r in runs]), 3) for k in ("extract_s", "plan_s", "total_s")}
        return medians | {k: runs[0][k] for k in ("extracted", "store_calls", "to_send", "full_pass")}

    return [
        common.Figure(
            name="incremental_1m",
            value=round(inc, 3),
            unit="s",
            baseline="the same run as a full pass",
            baseline_value=round(full, 3),
            ratio=round(share, 4),
            target=f"<= {TARGET_SHARE:.0%} of a full run's time",
            met=share <= TARGET_SHARE and agree,
            details={
                "customers": out["customers"],
                "changed": out["changed"],
                "seed": out["seed"],
                "incremental": summary(out["incremental"]),
                "full": summary(out["full"]),
                "same_records_to_send": agree,
                "amortized": _amortized(inc, full),
                "runs": {"incremental": out["incremental"], "full": out["full"]},
            },
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(**args))
