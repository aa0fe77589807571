"""Benchmark suite (issue 7): `python -m bench` measures every figure and writes bench/results.json and .png."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The product lives in plugins/ (Airflow's plugins folder); the sandboxes at the repo root.
for _path in (REPO / "plugins", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
