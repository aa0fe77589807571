"""Smoke run of the benchmark suite at tiny sizes, so `make bench` never rots. No timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

FIELDS = {"name", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met", "details"}
FIGURES = {
    "diff_full_1m",
    "plan_task_1m",
    "incremental_1m",
    "zoho_calls",
    "reset_100k",
    "reset_45k_credits",
    "first_sync_100k",
    "parse_500_tenants",
    "state_write_1m",
    "migrate_1m",
    "ui_page",
    "tenants_per_worker",
    "extract_slow_store_1m",
    "first_load_1m",
}


def test_quick_bench_writes_every_figure_with_its_fields(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,  # the real-scheduler figure (tenants_per_worker) alone takes ~2 minutes quick
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    figures = json.loads((tmp_path / "results.json").read_text())
    assert {f["name"] for f in figures} == FIGURES
    for figure in figures:
        assert set(figure) == FIELDS, figure["name"]
        assert "error" not in figure["details"], figure["details"].get("traceback")
        assert isinstance(figure["met"], bool) and figure["value"] is not None, figure["name"]
    assert (tmp_path / "results.png").stat().st_size > 0
    by_name = {f["name"]: f for f in figures}
    # correctness cross-checks the suite makes along the way (answers, not times)
    assert all(point["same_records_sent"] for point in by_name["diff_full_1m"]["details"]["scaling"])
    assert by_name["incremental_1m"]["details"]["same_records_to_send"]
    assert by_name["plan_task_1m"]["details"]["same_records_sent"]
    assert by_name["zoho_calls"]["details"]["unchanged_run"]["write_calls"] == 0
    assert by_name["reset_100k"]["details"]["status_429"] == 0
    assert by_name["parse_500_tenants"]["details"]["import_errors"] == {}
    assert by_name["migrate_1m"]["details"]["rows_kept_and_at_head"]
    ui = by_name["ui_page"]["details"]
    assert ui["overview_rows"] == ui["tenants"] and ui["overview_budget_known"] == ui["tenants"]
    assert ui["overview_reset_running"] == 1
    tenants = by_name["tenants_per_worker"]["details"]  # the no-op rounds changed nothing; the baseline ran all six
    assert tenants["product"]["zoho_writes"] == tenants["baseline"]["zoho_writes"] == 0
    assert tenants["baseline"]["task_processes_per_run"] == 6
    assert tenants["product"]["task_processes_per_run"] <= 2  # a no-op run: plan_changes (and nothing else)
    magento, deco = (by_name["extract_slow_store_1m"]["details"][k] for k in ("magento", "deconetwork"))
    assert magento["parallel_complete"] and magento["same_rows"] and deco["same_orders"]
    assert magento["parallel_calls"] > magento["sequential_calls"]  # the quick store is big enough to be cut
    first = by_name["first_load_1m"]["details"]  # every record of the first load in Zoho, each task measured
    assert first["inserted"] == sum(first["records"].values()) and first["failed"] == 0
    assert set(first["steps"]) == {"extract", "plan", "load", "report"}
