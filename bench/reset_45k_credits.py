"""Figure reset_45k_credits: a 45,000-record reset on Bulk Write, credits measured against its own estimate.

Issue 13 measured 3,026 credits against the 1,538 its summary estimated: each 20,000-row chunk opened a job per
module. Now a bulk chunk is one job of one module (up to 25,000 records) and the estimate counts the jobs as
``reset.split`` cut them. The reset runs as the DAG's tasks do (``split``, ``send_chunk`` per chunk, ``finish``)
against a Zoho sandbox in its own process; measured = what the sandbox charged for the Bulk Write calls.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench import common
from bench.first_sync_100k import leads_with_company
from bench.reset_100k import _plan, _tenant_env

RECORDS, QUICK_RECORDS = 45_000, 600
QUICK_JOB_RECORDS = 200  # quick runs: smaller jobs, so each module still needs two
TENANT_ID = "bench"
BULK_OPERATIONS = ("org", "upload", "bulk_write", "bulk_status", "bulk_download")
TOLERANCE = 0.05


def measure(records: int, job_records: int | None) -> dict[str, Any]:
    from zoho_store_sync import pipeline, reset, staging

    home = Path(tempfile.mkdtemp(prefix="bench-reset-45k-"))
    changes = leads_with_company(_plan(int(records * 1.05) + 50, seed=37).head(records))  # ~2% are invalid
    with common.sandbox_process("zoho_crm", "--daily-credits", "100000000") as ready:
        _tenant_env("zoho_reset45k", ready, f"sqlite:///{home / 'state.db'}")
        run_id = "reset-45k"
        tenant = pipeline.get_tenant(TENANT_ID)
        pipeline.zoho_hook(tenant, pipeline.state_store(tenant)).get_access_token()  # the token exchange
        url = staging.write_frame(f"{staging.run_dir(TENANT_ID, run_id)}/changes.parquet", changes)
        chosen = reset.choose_write_path
        reset.choose_write_path = lambda n: "bulk"  # type: ignore[assignment]  # as at 45,000 (quick: too small)
        try:
            chunks = reset.split(TENANT_ID, run_id, {"changes": url, "unchanged": 0}, job_records=job_records)
        finally:
            reset.choose_write_path = chosen  # type: ignore[assignment]
        estimate = reset.credits_estimate(chunks)
        started = time.perf_counter()
        sent = [reset.send_chunk(TENANT_ID, run_id, chunk, dry_run=False) for chunk in chunks]
        wall = time.perf_counter() - started
        calls = requests.get(f"{ready['url']}/__sandbox__/calls", timeout=600).json()["calls"]
    staging.remove_dir(staging.run_dir(TENANT_ID, run_id))
    bulk_calls = [c for c in calls if c["operation"] in BULK_OPERATIONS]
    jobs = [c for c in bulk_calls if c["operation"] == "bulk_write" and c["status"] == 201]
    return {
        "records": len(changes),
        "by_module": {str(k): int(v) for k, v in changes["module"].value_counts().items()},
        "chunks": len(chunks),
        "jobs_estimated": estimate["bulk_jobs"],
        "jobs_opened": {m: sum(1 for j in jobs if j.get("module") == m) for m in estimate["bulk_jobs"]},
        "credits_estimate": estimate["bulk"],
        "credits_measured": sum(int(c.get("credits") or 0) for c in bulk_calls),
        "credits_by_operation": {
            op: sum(int(c.get("credits") or 0) for c in bulk_calls if c["operation"] == op) for op in BULK_OPERATIONS
        },
        "inserted": sum(s["inserted"] for s in sent),
        "failed": sum(s["failed"] for s in sent),
        "wall_s": round(wall, 2),
        "issue_13_before": {"credits_estimate": 1_538, "credits_measured": 3_026},
    }


def run(quick: bool = False) -> list[common.Figure]:
    args = {"records": QUICK_RECORDS, "job_records": QUICK_JOB_RECORDS} if quick else {"records": RECORDS}
    out = common.run_worker("bench.reset_45k_credits", {"job_records": None, **args}, timeout=3600)
    estimate, measured = out["credits_estimate"], out["credits_measured"]
    difference = (measured - estimate) / max(estimate, 1)
    print(
        f"   reset of {out['records']:,} records on Bulk Write: estimate {estimate:,} credits, measured {measured:,} "
        f"({difference:+.1%}); jobs {out['jobs_opened']} (estimated {out['jobs_estimated']})",
        flush=True,
    )
    return [
        common.Figure(
            name="reset_45k_credits",
            value=measured,
            unit="credits",
            baseline="the reset summary's own estimate",
            baseline_value=estimate,
            ratio=round(measured / max(estimate, 1), 4),
            target=f"within {TOLERANCE:.0%} of the estimate, jobs opened as estimated, every record inserted",
            met=abs(difference) <= TOLERANCE
            and out["jobs_opened"] == out["jobs_estimated"]
            and out["inserted"] == out["records"]
            and out["failed"] == 0,
            details={**out, "difference": round(difference, 4)},
        )
    ]


if __name__ == "__main__":
    common.emit(measure(**common.worker_args()))
