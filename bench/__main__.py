"""`python -m bench`: measure every figure, print the table, write bench/results.json and bench/results.png.

Options: ``--quick`` (or ZOHO_SYNC_BENCH_QUICK=1) runs tiny sizes, for the smoke test; ``--only NAME ...``
runs some figures; ``--out DIR`` writes the results elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import REPO, common

# figure name -> module: run order (cheap and independent first)
FIGURES = {
    "diff_full_1m": "bench.diff_full",
    "plan_task_1m": "bench.plan_task",
    "zoho_calls": "bench.zoho_calls",
    "reset_100k": "bench.reset_100k",
    "reset_45k_credits": "bench.reset_45k_credits",
    "first_sync_100k": "bench.first_sync_100k",
    "first_load_1m": "bench.first_load",
    "parse_500_tenants": "bench.parse_500_tenants",
    "state_write_1m": "bench.state_write_1m",
    "incremental_1m": "bench.incremental",
    "migrate_1m": "bench.migrate_1m",
    "ui_page": "bench.ui_page",
    "extract_slow_store_1m": "bench.extract_slow_store",
    "tenants_per_worker": "bench.tenants_per_worker",
}
FIELDS = ("name", "value", "unit", "baseline", "baseline_value", "ratio", "target", "met", "details")


def run_figures(names: list[str], quick: bool) -> list[dict[str, Any]]:
    results = []
    for name in names:
        started = time.perf_counter()
        print(f"-- {name} ...", flush=True)
        try:
            figures = importlib.import_module(FIGURES[name]).run(quick=quick)
            rows = [figure.as_dict() for figure in figures]
        except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the others
            rows = [
                common.Figure(
                    name,
                    None,
                    "",
                    "",
                    None,
                    None,
                    "",
                    False,
                    {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]},
                ).as_dict()
            ]
        for row in rows:
            row["details"]["bench_seconds"] = round(time.perf_counter() - started, 1)
            print(
                f"   {row['name']}: {_fmt(row['value'])} {row['unit']} (baseline {_fmt(row['baseline_value'])}, "
                f"ratio {_fmt(row['ratio'])}) met={row['met']}",
                flush=True,
            )
        results.extend(rows)
    return results


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(results: list[dict[str, Any]]) -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "met")
    rows = [
        (
            r["name"],
            f"{_fmt(r['value'])} {r['unit']}",
            _fmt(r["baseline_value"]),
            _fmt(r["ratio"]),
            r["target"],
            "yes" if r["met"] else "NO",
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line("-" * w for w in widths), *(line(r) for r in rows)])


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """The scaling curves and side-by-side bars, one panel per figure that has them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {r["name"]: r for r in results if r.get("value") is not None}
    fig, axes = plt.subplots(3, 4, figsize=(22, 14))
    fig.suptitle("zoho_store_sync benchmarks (bench/results.json)")
    ax = axes[0][0]
    if "diff_full_1m" in by_name:
        points = by_name["diff_full_1m"]["details"]["scaling"]
        sizes = [p["n"] for p in points]
        ax.loglog(sizes, [p["product_median_s"] for p in points], "o-", label="product (prepare + plan_changes)")
        ax.loglog(sizes, [p["baseline_median_s"] for p in points], "s--", label="plain Python per record")
        ax.set_xlabel("customers")
        ax.set_ylabel("seconds (median)")
        ax.legend()
    ax.set_title("diff: time vs customers (1% changed)")
    ax = axes[0][1]
    if "incremental_1m" in by_name:
        d = by_name["incremental_1m"]["details"]
        labels = ["incremental", "full pass"]
        ax.bar(labels, [d["incremental"]["extract_s"], d["full"]["extract_s"]], label="extract")
        ax.bar(
            labels,
            [d["incremental"]["plan_s"], d["full"]["plan_s"]],
            bottom=[d["incremental"]["extract_s"], d["full"]["extract_s"]],
            label="plan",
        )
        ax.set_ylabel("seconds (median)")
        ax.legend()
        ax.set_title(f"scheduled run, {d['customers']:,} customers, 1% changed")
    ax = axes[0][2]
    if "zoho_calls" in by_name:
        d = by_name["zoho_calls"]["details"]
        labels = ["unchanged run", "N changed"]
        product = [d["unchanged_run"]["api_calls"], d["changed_run"]["api_calls"]]
        template = [d["template"]["unchanged"]["api_calls"], d["template"]["changed"]["api_calls"]]
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], product, 0.4, label="product")
        ax.bar([i + 0.2 for i in x], template, 0.4, label="per-customer template")
        ax.set_xticks(list(x), labels)
        ax.set_yscale("log")
        ax.set_ylabel("Zoho API calls")
        ax.legend()
        ax.set_title(f"Zoho calls, {d['customers']:,} customers, N={d['changed_customers']}")
    if "reset_100k" in by_name:
        r = by_name["reset_100k"]
        _bars(
            axes[1][0],
            ["floor", "floor + sandbox\ncall overhead", "measured"],
            [r["baseline_value"], r["details"]["floor_with_sandbox_overhead_s"], r["value"]],
            colors=["grey", "silver", "C0"],
            target=1.10 * r["baseline_value"],
            target_label="target: 1.10 x the floor",
            ylabel="seconds",
            title=f"reset of {r['details']['records_sent']:,} records, 100 ms/call, 10 in flight",
        )
    if "state_write_1m" in by_name:
        r = by_name["state_write_1m"]
        labels, values = [], []
        for db, m in r["details"]["medians_s"].items():
            labels += [f"{db}\nnew rows", f"{db}\nall rewritten"]
            values += [m["insert_s"], m["upsert_existing_s"]]
        _bars(
            axes[1][1],
            labels,
            values,
            target=10,
            target_label="target (PostgreSQL)",
            ylabel="seconds",
            title=f"state write, {r['details']['outcomes']:,} outcomes",
        )
    if "parse_500_tenants" in by_name:
        r = by_name["parse_500_tenants"]
        _bars(
            axes[1][2],
            ["TaskFlow @task,\npipeline imported", "product"],
            [r["baseline_value"], r["value"]],
            colors=["grey", "C0"],
            target=1.0,
            target_label="target",
            ylabel="seconds to parse the DAG file (median)",
            title=f"DAG file parse, {r['details']['tenants']} tenants",
        )
    _issue_17_panels(by_name, axes)
    for ax in axes.flat:
        if not ax.has_data():
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _issue_17_panels(by_name: dict[str, dict[str, Any]], axes: Any) -> None:
    """The product as Airflow runs it: task launches, slow stores, a million-customer first load, the plan task,
    the sync page."""
    if "tenants_per_worker" in by_name:
        r = by_name["tenants_per_worker"]
        _bars(
            axes[0][3],
            ["six tasks\n(baseline)", "product"],
            [r["baseline_value"], r["value"]],
            colors=["grey", "C0"],
            target=50,
            target_label="target: < 50%",
            ylabel="% of 2 cores, 500 tenants every 30 min",
            title="no-op runs under a real scheduler",
        )
    if "extract_slow_store_1m" in by_name:
        r = by_name["extract_slow_store_1m"]
        m = r["details"]["magento"]
        _bars(
            axes[2][0],
            ["sequential\npages", "pages x latency\n/ parallelism", "product"],
            [r["baseline_value"], m["ideal_s"], r["value"]],
            colors=["grey", "silver", "C0"],
            target=1.25 * m["ideal_s"],
            target_label="target: 1.25 x the ideal",
            ylabel="seconds",
            title=f"Magento full pass, {m.get('customers', 0):,} customers, slow pages",
        )
    if "first_load_1m" in by_name:
        r = by_name["first_load_1m"]
        steps = r["details"]["steps"]
        _bars(
            axes[2][1],
            list(steps),
            [s["peak_mib"] for s in steps.values()],
            target=1536,
            target_label="target: < 1.5 GiB a task",
            ylabel="peak RSS, MiB",
            title=f"first load: {r['value']:,} credits vs {r['baseline_value']:,} on upsert",
        )
    if "plan_task_1m" in by_name:
        r = by_name["plan_task_1m"]
        _bars(
            axes[2][2],
            ["plain pandas", "product"],
            [r["baseline_value"], r["value"]],
            colors=["grey", "C0"],
            target=8,
            target_label="target: < 8 s",
            ylabel="seconds (median)",
            title=f"plan task, {r['details']['customers']:,} customers, 1% changed",
        )
    if "ui_page" in by_name:
        r = by_name["ui_page"]
        one = r["details"].get("one_tenant_ms", {})
        _bars(
            axes[2][3],
            ["overview", *(name.replace("_", "\n") for name in one)],
            [r["value"], *one.values()],
            target=300,
            target_label="target: < 300 ms",
            ylabel="ms (median)",
            title=f"sync page, {r['details'].get('tenants', 0)} tenants",
        )


def _bars(
    ax: Any,
    labels: list[str],
    values: list[float],
    *,
    target: float,
    target_label: str,
    ylabel: str,
    title: str,
    colors: list[str] | None = None,
) -> None:
    """One panel: a bar per measurement and the target as a dotted line."""
    ax.bar(labels, values, color=colors)
    ax.axhline(target, color="red", linestyle=":", label=target_label)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right")
    ax.set_title(title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("ZOHO_SYNC_BENCH_QUICK") == "1",
        help="tiny sizes (the smoke test)",
    )
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="run only these figures")
    parser.add_argument("--out", type=Path, default=REPO / "bench", help="where results.json/.png go")
    args = parser.parse_args(argv)
    names = args.only or list(FIGURES)
    started = time.perf_counter()
    results = run_figures(names, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    for row in results:
        assert set(row) == set(FIELDS), row.keys()
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    plot(results, args.out / "results.png")
    print()
    print(table(results))
    print(
        f"\n{'quick run' if args.quick else 'full run'} in {time.perf_counter() - started:.0f} s on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; wrote {args.out / 'results.json'} and "
        f"{args.out / 'results.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
