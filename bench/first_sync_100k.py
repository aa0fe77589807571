"""Figure first_sync_100k: a tenant's first sync of 100,000 customers, Zoho credits by write path, measured.

The product's ``pipeline.load`` picks Bulk Write per module above the break-even (the reset's credit rule); the
baseline is the same load with every module on batched upsert (the path a first sync took before issue 13). Both
run against a fresh Zoho sandbox in its own process, with the same plan; the credits are what the sandbox charged
(its ``calls()``), by operation.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.reset_100k import _plan, _tenant_env

CUSTOMERS, QUICK_CUSTOMERS = 100_000, 2_000
TENANT_ID = "bench"
BULK_OPERATIONS = ("org", "upload", "bulk_write", "bulk_status", "bulk_download")


def leads_with_company(changes: Any) -> Any:
    """The plan with every Lead carrying Company (a standard org's layout requires it): from the person's name,
    as the product's default fallback fills it in ``pipeline.plan`` (this plan is made without the org)."""
    import json

    def fill(row: Any) -> str:
        record = json.loads(row.payload)
        if row.module == "Leads" and not record.get("Company"):
            name = f"{record.get('First_Name') or ''} {record.get('Last_Name') or ''}".strip()
            record["Company"] = name or "Individual"
        return json.dumps(record)

    return changes.assign(payload=[fill(row) for row in changes.itertuples(index=False)])


def _first_sync(changes: Any, state_url: str, forced_upsert: bool) -> dict[str, Any]:
    from zoho_store_sync import pipeline, staging

    with common.sandbox_process("zoho_crm", "--daily-credits", "100000000") as ready:
        _tenant_env(f"zoho_{'upsert' if forced_upsert else 'product'}", ready, state_url)
        run_id = f"first-sync-{'upsert' if forced_upsert else 'product'}"
        url = staging.write_frame(f"{staging.run_dir(TENANT_ID, run_id)}/changes.parquet", changes)
        chosen = pipeline.choose_write_paths
        if forced_upsert:
            pipeline.choose_write_paths = lambda frame: {}  # type: ignore[assignment]  # every module on upsert
        try:
            started = time.perf_counter()
            loaded = pipeline.load(TENANT_ID, run_id, {"changes": url, "to_send": len(changes)})
            wall = time.perf_counter() - started
        finally:
            pipeline.choose_write_paths = chosen  # type: ignore[assignment]
        calls = requests.get(f"{ready['url']}/__sandbox__/calls", timeout=600).json()["calls"]
    api = [c for c in calls if c["operation"] not in ("token", "revoke")]
    by_operation: dict[str, int] = {}
    for call in api:
        by_operation[call["operation"]] = by_operation.get(call["operation"], 0) + int(call.get("credits") or 0)
    staging.remove_dir(staging.run_dir(TENANT_ID, run_id))
    return {
        "wall_s": round(wall, 2),
        "write_paths": {} if forced_upsert else chosen(changes),
        "inserted": loaded["inserted"],
        "failed": loaded["failed"],
        "credits": sum(by_operation.values()),
        "credits_by_path": {
            "bulk": sum(v for op, v in by_operation.items() if op in BULK_OPERATIONS),
            "upsert": by_operation.get("upsert", 0),
        },
        "credits_by_operation": by_operation,
    }


def measure(customers: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-first-sync-"))
    changes = leads_with_company(_plan(customers, seed=31))
    out: dict[str, Any] = {"customers": customers, "records": len(changes)}
    out["by_module"] = {str(k): int(v) for k, v in changes["module"].value_counts().items()}
    out["product"] = _first_sync(changes, f"sqlite:///{home / 'product.db'}", forced_upsert=False)
    out["upsert_only"] = _first_sync(changes, f"sqlite:///{home / 'upsert.db'}", forced_upsert=True)
    return out


def run(quick: bool = False) -> list[common.Figure]:
    customers = QUICK_CUSTOMERS if quick else CUSTOMERS
    out = common.run_worker("bench.first_sync_100k", {"customers": customers}, timeout=3600)
    product, baseline = out["product"], out["upsert_only"]
    ratio = product["credits"] / max(baseline["credits"], 1)
    print(
        f"   first sync of {out['customers']:,} customers ({out['records']:,} records): "
        f"product {product['credits']:,} credits (bulk {product['credits_by_path']['bulk']:,}, "
        f"upsert {product['credits_by_path']['upsert']:,}; paths {product['write_paths']}) vs upsert only "
        f"{baseline['credits']:,} credits",
        flush=True,
    )
    complete = all(r["inserted"] == out["records"] and r["failed"] == 0 for r in (product, baseline))
    return [
        common.Figure(
            name="first_sync_100k",
            value=product["credits"],
            unit="credits",
            baseline="the same first sync, every module on batched upsert",
            baseline_value=baseline["credits"],
            ratio=round(ratio, 3),
            target="fewer credits than upsert only above the break-even (never more), every record inserted",
            met=complete and product["credits"] <= baseline["credits"],
            details=out,
        )
    ]


if __name__ == "__main__":
    common.emit(measure(**common.worker_args()))
