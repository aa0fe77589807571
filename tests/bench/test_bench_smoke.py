"""Smoke run of the benchmark suite at tiny sizes, so `make bench` never rots. No timed assertion."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO

FIELDS = {"name", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met", "details"}


def test_quick_bench_writes_every_measured_figure_with_its_fields(tmp_path):
    completed = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=REPO,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads((tmp_path / "results.json").read_text())
    names = {f["name"] for f in figures}
    assert {"diff_full_1m", "parse_500_tenants", "state_write_1m_sqlite"} <= names
    for figure in figures:
        assert FIELDS <= set(figure), figure["name"]
        assert figure["value"] is not None and figure["value"] > 0
    assert (tmp_path / "results.png").stat().st_size > 0
    diff = next(f for f in figures if f["name"] == "diff_full_1m")
    assert all(point["same_records_sent"] for point in diff["details"]["scaling"])  # product = baseline's answer
