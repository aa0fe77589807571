"""Figure parse_500_tenants: parsing the tenant DAG file with 500 tenants (target under 1 s)."""

from __future__ import annotations

import json
import time

from bench import common

TARGET_SECONDS = 1.0


def measure(tenants: int, repeats: int) -> dict:
    """In a fresh process (env set before airflow is imported): parse dags/zoho_sync.py `repeats` times."""
    from airflow.models import DagBag

    from bench import REPO

    DagBag(dag_folder=str(REPO / "dags" / "zoho_sync.py"))  # warm imports: parse time, not import time
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        bag = DagBag(dag_folder=str(REPO / "dags" / "zoho_sync.py"))
        times.append(time.perf_counter() - started)
    return {"tenants": tenants, "dags": len(bag.dag_ids), "seconds": times}


def _env(tenants: int) -> dict:
    variable = [{"tenant_id": f"t{i:04d}", "source": "magento", "store_conn_id": "m", "zoho_conn_id": "z"}
                for i in range(tenants)]
    return common.base_env(AIRFLOW_VAR_ZOHO_SYNC_TENANTS=json.dumps(variable))


def run(quick: bool = False) -> list[common.Figure]:
    repeats = 2 if quick else 5
    many = 50 if quick else 500
    big = common.run_worker("bench.parse_500_tenants", {"tenants": many, "repeats": repeats}, env=_env(many))
    one = common.run_worker("bench.parse_500_tenants", {"tenants": 1, "repeats": repeats}, env=_env(1))
    value, baseline = common.median(big["seconds"]), common.median(one["seconds"])
    return [common.Figure(
        name="parse_500_tenants", value=round(value, 3), unit="s",
        baseline="the same file with 1 tenant", baseline_value=round(baseline, 3),
        ratio=round(value / baseline, 1) if baseline else None,
        target=f"< {TARGET_SECONDS:g} s for 500 tenants (Airflow's import timeout is 30 s)",
        met=value < TARGET_SECONDS and big["dags"] == many,
        details={"tenants": many, "dags_built": big["dags"], "runs_s": [round(t, 3) for t in big["seconds"]]},
    )]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(args["tenants"], args["repeats"]))
