"""Figure 1, diff_full_1m: prepare + plan_changes on N customers with 1% changed, against plain Python per record."""

from __future__ import annotations

import gc
import hashlib
import json
import re
from typing import Any

import numpy as np
import pandas as pd

from bench import common, data

SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000, 5_000)
CHANGED_SHARE = 0.01
TARGET_SPEEDUP, TARGET_SECONDS, TARGET_MIB = 12.0, 3.0, 1536.0  # issue 17 raised the ratio from 8x


# --- the baseline: the same rules, one record at a time, in plain Python -------------------------------
def _email_pattern() -> re.Pattern[str]:
    from zoho_store_sync.customers import _EMAIL_PATTERN

    return re.compile(_EMAIL_PATTERN)


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The customers as a source API hands them over: one dict per customer, None for missing values."""
    names = list(frame.columns)
    columns = [frame[name].to_numpy(dtype=object, na_value=None).tolist() for name in names]
    return [dict(zip(names, row)) for row in zip(*columns)]


def _wins(candidate: dict[str, Any], holder: dict[str, Any]) -> bool:
    """Most orders, then latest update, then smallest id (the product's duplicate rule)."""
    a, b = (
        (candidate["order_count"], candidate["source_updated_at"] or ""),
        (holder["order_count"], holder["source_updated_at"] or ""),
    )
    if a != b:
        return a > b
    return int(candidate["customer_key"]) < int(holder["customer_key"])


def _last_name(record: dict[str, Any]) -> str:
    for value in (record["lastname"], (record["full_name"] or "").split()[-1:] or [None], record["firstname"]):
        value = value[0] if isinstance(value, list) else value
        if value and value.strip():
            return value.strip()
    return record["email"].split("@")[0]


def baseline_plan(
    records: list[dict[str, Any]],
    state: dict[str, tuple[str, str]],
    fields: dict[str, list[tuple[str, str, int]]],
    pattern: re.Pattern[str],
) -> dict[str, Any]:
    """dict → canonical JSON → SHA-1 → dict lookup, per record. ``state``: customer key → (digest, module)."""
    best: dict[str, dict[str, Any]] = {}
    invalid = 0
    for record in records:
        email = (record["email"] or "").strip().lower()
        if not email or len(email) > 100 or not pattern.match(email):
            invalid += 1
            continue
        record = {**record, "email": email}
        holder = best.get(email)
        if holder is None or _wins(record, holder):
            best[email] = record
    counts = {"new": 0, "changed": 0, "unchanged": 0, "invalid": invalid}
    send: list[tuple[str, str, str, str]] = []
    for record in best.values():
        key = record["customer_key"]
        before = state.get(key)
        module = (
            "Contacts" if record["order_count"] > 0 else "Leads" if record["registered"] or record["newsletter"] else ""
        )
        if before is not None and before[1] == "Contacts":
            module = "Contacts"  # never flipped back to a Lead
        if module not in fields:
            continue
        record["lastname"] = _last_name(record)
        payload: dict[str, Any] = {}
        for zoho_field, source, length in fields[module]:
            value = record[source]
            if isinstance(value, str):
                value = value.strip()[:length] or None
            elif isinstance(value, float):
                value = None if value != value else round(value, 2)
            payload[zoho_field] = value
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha1(body.encode()).hexdigest()
        if before is not None and before[0] == digest and before[1] == module:
            counts["unchanged"] += 1
            continue
        counts["new" if before is None else "changed"] += 1
        send.append((key, module, digest, body))
    return {"counts": counts, "send": send}


def baseline_fields(mapping: Any) -> dict[str, list[tuple[str, str, int]]]:
    return {
        module: [(z, s, mapping.max_length(module, z)) for z, s in fields.items()]
        for module, fields in mapping.fields.items()
    }


# --- the product ------------------------------------------------------------------------------------------
def product_plan(frame: pd.DataFrame, state: pd.DataFrame, mapping: Any, modules: tuple[str, ...]) -> Any:
    from zoho_store_sync.customers import prepare
    from zoho_store_sync.diff import plan_changes

    prepared = prepare(frame)
    return plan_changes(prepared.valid, state, mapping, modules, email_hashes=prepared.email_hashes)


def state_frame(changes: pd.DataFrame) -> pd.DataFrame:
    """The state table after a successful run, with the dtypes StateStore.load() returns."""
    from zoho_store_sync.state import STATE_COLUMNS

    state = changes.assign(
        status="synced",
        zoho_id=[str(5_700_000_000_000_000_000 + i) for i in range(len(changes))],
        error_code=None,
        error_message=None,
        retryable=None,
        attempts=0,
    )[STATE_COLUMNS]
    return like_loaded(state)


def like_loaded(state: pd.DataFrame) -> pd.DataFrame:
    """The dtypes pandas' read_sql gives StateStore.load(): text as "str" (NaN for NULL), an all-NULL column
    as object None, booleans with NULLs as object, then load()'s own payload_hash and customer_key casts."""
    out = {}
    for name in state.columns:
        values = state[name].to_numpy(dtype=object)
        missing = pd.isna(values)
        if name in ("payload_hash", "attempts"):
            out[name] = pd.Series(values.astype("int64"))
        elif missing.all():
            out[name] = pd.Series([None] * len(values), dtype=object)
        elif name == "retryable":
            out[name] = pd.Series(np.where(missing, None, values), dtype=object)
        else:
            out[name] = pd.Series(np.where(missing, None, values), dtype="str")
    frame = pd.DataFrame(out)
    return frame.astype({"customer_key": "string"})


def measure(n: int, repeats: int) -> dict[str, Any]:
    """One size, in this (fresh) process: both sides timed alternately on the same data."""
    from zoho_store_sync.config import TenantConfig
    from zoho_store_sync.customers import use_system_allocator
    from zoho_store_sync.mapping import load_mapping
    from zoho_store_sync.state import STATE_COLUMNS

    use_system_allocator()  # as zoho_store_sync.pipeline configures a task process
    tenant = TenantConfig(tenant_id="bench", source="magento", store_conn_id="m", zoho_conn_id="z")
    mapping, modules = load_mapping(tenant), tenant.modules
    before = data.customers(n, seed=7)
    empty = pd.DataFrame({name: pd.Series(dtype="object") for name in STATE_COLUMNS}).astype({"payload_hash": "int64"})
    state = state_frame(product_plan(before, empty, mapping, modules).changes)
    fields, pattern = baseline_fields(mapping), _email_pattern()
    first = baseline_plan(records_of(before), {}, fields, pattern)
    base_state = {key: (digest, module) for key, module, digest, _ in first["send"]}
    del first
    after, edited = data.change(before, CHANGED_SHARE)
    del before
    records = records_of(after)
    gc.collect()
    gc.freeze()  # the inputs (a million dicts) are setup: the collector need not rescan them during either side

    start_rss = common.reset_peak_rss()
    product_times, baseline_times = [], []
    product_peak = baseline_peak = None
    for round_ in range(repeats):
        sides = [
            ("product", lambda: product_plan(after, state, mapping, modules)),
            ("baseline", lambda: baseline_plan(records, base_state, fields, pattern)),
        ]
        for side, run in sides if round_ % 2 == 0 else sides[::-1]:
            gc.collect()
            rss = common.reset_peak_rss()
            seconds, result = common.timed(run)
            peak = common.peak_rss() - rss
            if side == "product":
                product_times.append(seconds)
                product_peak = peak if product_peak is None else max(product_peak, peak)
                product_result = result
            else:
                baseline_times.append(seconds)
                baseline_peak = peak if baseline_peak is None else max(baseline_peak, peak)
                baseline_result = result
            del result
    sent = set(product_result.changes["customer_key"].tolist())
    baseline_sent = {key for key, *_ in baseline_result["send"]}
    return {
        "n": n,
        "product_s": product_times,
        "baseline_s": baseline_times,
        "product_peak_mib": product_peak,
        "baseline_peak_mib": baseline_peak,
        "inputs_rss_mib": start_rss,
        "edited": len(edited),
        "product_counts": {k: v for k, v in product_result.counts.items() if v},
        "baseline_counts": baseline_result["counts"],
        "same_records_sent": sent == baseline_sent,
        "sent": len(sent),
    }


def run(quick: bool = False) -> list[common.Figure]:
    sizes = QUICK_SIZES if quick else SIZES
    points = []
    for n in sizes:
        repeats = 2 if quick else (3 if n >= 1_000_000 else 5)
        points.append(common.run_worker("bench.diff_full", {"n": n, "repeats": repeats}, timeout=3600))
    for point in points:
        point["product_median_s"] = common.median(point["product_s"])
        point["baseline_median_s"] = common.median(point["baseline_s"])
        point["speedup"] = point["baseline_median_s"] / point["product_median_s"]
        point["product_us_per_customer"] = point["product_median_s"] / point["n"] * 1e6
    top = points[-1]
    met = (
        top["speedup"] >= TARGET_SPEEDUP
        and top["product_median_s"] < TARGET_SECONDS
        and top["product_peak_mib"] < TARGET_MIB
        and all(p["same_records_sent"] for p in points)
    )
    return [
        common.Figure(
            name="diff_full_1m",
            value=round(top["product_median_s"], 3),
            unit="s",
            baseline="plain Python per record: dict -> canonical JSON -> SHA-1 -> dict lookup",
            baseline_value=round(top["baseline_median_s"], 3),
            ratio=round(top["speedup"], 1),
            target=f">= {TARGET_SPEEDUP:g}x faster, < {TARGET_SECONDS:g} s, peak memory < 1.5 GiB",
            met=met,
            details={
                "customers": top["n"],
                "changed_share": CHANGED_SHARE,
                "peak_memory_mib": round(top["product_peak_mib"], 1),
                "memory_measure": "peak RSS increase during one prepare+plan (VmHWM after clear_refs), inputs "
                "already in memory",
                "scaling": [
                    {
                        k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in p.items()
                        if k not in ("product_s", "baseline_s")
                    }
                    for p in points
                ],
                "runs": {
                    p["n"]: {
                        "product_s": [round(t, 3) for t in p["product_s"]],
                        "baseline_s": [round(t, 3) for t in p["baseline_s"]],
                    }
                    for p in points
                },
            },
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(args["n"], args["repeats"]))
