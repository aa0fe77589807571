"""Runs one tenant sync's tasks in this process (no scheduler), so a test can SIGKILL it mid-load.

Usage: python tests/dags/crash_runner.py <tenant_id> <run_id>; configuration comes from the environment.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]


def main(tenant_id: str, run_id: str) -> None:
    from zoho_store_sync import pipeline

    pipeline.create_schema(tenant_id)
    extracted = pipeline.extract(tenant_id, run_id)
    planned = pipeline.plan(tenant_id, run_id, extracted)
    print("PLANNED", planned["to_send"], flush=True)
    loaded = pipeline.load(tenant_id, run_id, planned)
    pipeline.report(tenant_id, run_id, extracted, planned, loaded)
    print("DONE", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
