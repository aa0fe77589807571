"""Smoke run of the benchmark suite at tiny sizes, so `make bench` never rots. No timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

FIELDS = {"name", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met", "details"}
FIGURES = {
    "diff_full_1m",
    "incremental_1m",
    "zoho_calls",
    "reset_100k",
    "reset_45k_credits",
    "first_sync_100k",
    "parse_500_tenants",
    "state_write_1m",
    "migrate_1m",
}


def test_quick_bench_writes_every_figure_with_its_fields(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
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
    assert by_name["zoho_calls"]["details"]["unchanged_run"]["write_calls"] == 0
    assert by_name["reset_100k"]["details"]["status_429"] == 0
    assert by_name["parse_500_tenants"]["details"]["import_errors"] == {}
    assert by_name["migrate_1m"]["details"]["rows_kept_and_at_head"]
