"""`make bench`: run every figure, print the table, write bench/results.json and bench/results.png."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from pathlib import Path

from bench import common

HERE = Path(__file__).resolve().parent
# One module per figure, each with run(quick) -> list[Figure]; those not written yet are reported missing.
FIGURES = ("diff_full", "incremental", "zoho_calls", "reset_100k", "parse_500_tenants", "state_write_1m")


def _plot(figures: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scaling = next((f["details"].get("scaling") for f in figures if f["name"] == "diff_full_1m"), None)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if scaling:
        sizes = [p["n"] for p in scaling]
        ax.loglog(sizes, [p["product_median_s"] for p in scaling], "o-", label="product (pandas, vectorised)")
        ax.loglog(sizes, [p["baseline_median_s"] for p in scaling], "s--", label="baseline (per record, plain Python)")
        ax.set_xlabel("customers")
        ax.set_ylabel("seconds (median)")
        ax.set_title("diff: classify + map + hash + diff against the state")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    else:
        ax.text(0.5, 0.5, "no scaling figure measured", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the smoke run of the test suite")
    parser.add_argument("--only", nargs="*", help="figure modules to run")
    parser.add_argument("--out", default=str(HERE), help="where results.json and results.png go")
    args = parser.parse_args(argv)
    figures: list[dict] = []
    problems: list[str] = []
    for name in args.only or FIGURES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            problems.append(f"{name}: not measured (no bench/{name}.py yet)")
            continue
        try:
            figures.extend(f.as_dict() for f in module.run(quick=args.quick))
        except Exception:  # noqa: BLE001 - one broken figure must not hide the others
            problems.append(f"{name}: failed\n{traceback.format_exc()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(figures, indent=2))
    _plot(figures, out / "results.png")
    print(f"{'figure':<24}{'value':>12} {'unit':<5}{'baseline':>12}{'ratio':>8}  met  target")
    for f in figures:
        baseline = "" if f["baseline_value"] is None else f["baseline_value"]
        ratio = "" if f["ratio"] is None else f"{f['ratio']}x"
        print(f"{f['name']:<24}{f['value']:>12} {f['unit']:<5}{baseline:>12}{ratio:>8}  {'yes' if f['met'] else 'NO ':<4} {f['target']}")
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wrote {out / 'results.json'} and {out / 'results.png'}")
    return 1 if any("failed" in p for p in problems) else 0


if __name__ == "__main__":
    sys.exit(main())
