"""Figure extract_slow_store_1m: a full pass over a 1,000,000-customer Magento store whose every page takes 300 ms.

The Magento sandbox runs in its own process with ``--latency 0.3`` (every REST answer waits 300 ms, as a real
store's PHP does for a 300-row page). The product's full pass (``extract``) runs with the tenant parallelism of 8;
its wall time is compared with ``pages x latency / parallelism``, where pages are the calls today's sequential pass
makes. Baseline: today's sequential pass, one page at a time; at a million customers it takes about 36 minutes, so
it is measured on a sample of its pages in the same run and extrapolated to the whole pass (said so in the details).

DecoNetwork's order API (100 orders a call, the same 300 ms) is measured the same way: the full pass's order read
at the parallelism of 8 and one call at a time.
"""

from __future__ import annotations

import os
import tempfile
import time
from math import ceil
from pathlib import Path
from typing import Any

from bench import common

CUSTOMERS, QUICK_CUSTOMERS = 1_000_000, 3_000
LATENCY, QUICK_LATENCY = 0.3, 0.02
PARALLELISM = 8
PAGE_SIZE, QUICK_PAGE_SIZE = 300, 50  # quick: enough pages (60) that the quick run reads in ranges too
SAMPLE_PAGES, QUICK_SAMPLE_PAGES = 100, 5  # sequential pages timed per search (customers, then orders)
DECO_CUSTOMERS, QUICK_DECO_CUSTOMERS = 20_000, 300
TARGET = 1.25  # wall time within 1.25x of pages x latency / parallelism
MAGENTO_CONN, DECO_CONN = "magento_bench", "deconetwork_bench"


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine() -> dict[str, Any]:
    """What else the machine was doing: the pass competes for its cores with the sandbox and anything else."""
    return {"load_average_1m": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}


def _sequential_sample(
    hook: Any, resource: str, id_field: str, fields: str, pages: int, page_size: int
) -> tuple[float, int]:
    """Today's sequential keyset read of ``resource`` for its first ``pages`` pages: (seconds, pages read)."""
    started, read = time.perf_counter(), 0
    for _ in hook.search(resource, fields=fields, page_size=page_size, id_field=id_field):
        read += 1
        if read >= pages:
            break
    return time.perf_counter() - started, read


def measure_magento(
    latency: float, parallelism: int, page_size: int, sample_pages: int, whole_sequential: bool, sandbox_pid: int
) -> dict[str, Any]:
    from zoho_store_sync.config import MagentoOptions
    from zoho_store_sync.sources.magento.extraction import CUSTOMER_FIELDS, ORDER_FIELDS, extract
    from zoho_store_sync.sources.magento.hook import MagentoHook

    options = MagentoOptions(page_size=page_size)
    hook = MagentoHook(MAGENTO_CONN)
    customers = hook.probe("customers/search").total
    orders = hook.probe("orders", id_field="entity_id").total
    # Today's full pass: 2 count probes, then each search's pages and one confirming (empty) page.
    sequential_calls = 2 + ceil(customers / page_size) + 1 + ceil(orders / page_size) + 1
    ideal = sequential_calls * latency / parallelism

    calls_before, machine_before = hook.calls, _machine()
    sandbox_cpu, worker_cpu = _cpu_seconds(sandbox_pid), time.process_time()
    parallel_s, parallel = common.timed(lambda: extract(hook, options, None, parallelism=parallelism))
    sandbox_cpu, worker_cpu = _cpu_seconds(sandbox_pid) - sandbox_cpu, time.process_time() - worker_cpu
    parallel_calls = hook.calls - calls_before
    complete = parallel.incomplete_reason is None and len(parallel.all_customer_keys or []) == customers

    details: dict[str, Any] = {
        "customers": customers,
        "orders": orders,
        "latency_s": latency,
        "parallelism": parallelism,
        "page_size": page_size,
        "sequential_calls": sequential_calls,
        "ideal_s": round(ideal, 2),
        "parallel_s": round(parallel_s, 2),
        "parallel_calls": parallel_calls,
        "parallel_over_ideal": round(parallel_s / ideal, 3),
        "parallel_complete": complete,
        # Each call's time in flight on average (latency + the sandbox's work + waiting for a core).
        "parallel_s_per_call_in_flight": round(parallel_s * parallelism / parallel_calls, 3),
        "parallel_cpu_s": {"sandbox": round(sandbox_cpu, 1), "product": round(worker_cpu, 1)},
        "machine": {"before": machine_before, "after": _machine()},
    }
    if whole_sequential:  # small stores: today's whole pass, and the same rows from both
        sequential_s, sequential = common.timed(lambda: extract(hook, options, None, parallelism=1))
        details |= {
            "sequential_s": round(sequential_s, 2),
            "sequential_measured": "whole pass",
            "same_rows": bool(sequential.customers.equals(parallel.customers)),
        }
    else:
        customers_s, customers_pages = _sequential_sample(
            hook, "customers/search", "id", CUSTOMER_FIELDS, sample_pages, page_size
        )
        orders_s, orders_pages = _sequential_sample(hook, "orders", "entity_id", ORDER_FIELDS, sample_pages, page_size)
        per_page = (customers_s + orders_s) / (customers_pages + orders_pages)
        details |= {
            "sequential_s": round(per_page * sequential_calls, 1),
            "sequential_measured": (
                f"extrapolated: {customers_pages + orders_pages} sequential pages timed in this run "
                f"({per_page:.3f} s a page) x {sequential_calls} calls"
            ),
        }
    return details


def measure_deconetwork(latency: float, parallelism: int) -> dict[str, Any]:
    from zoho_store_sync.sources.deconetwork.extraction import ALL_ORDERS_SINCE
    from zoho_store_sync.sources.deconetwork.hook import FIELD_DATE_MODIFIED, GREATER_OR_EQUAL, DecoNetworkHook

    hook = DecoNetworkHook(DECO_CONN)
    conditions = [(FIELD_DATE_MODIFIED, GREATER_OR_EQUAL, ALL_ORDERS_SINCE, None, None)]
    sequential_s, pages = common.timed(lambda: list(hook.find_orders(conditions)))
    orders = sum(len(page) for page in pages)
    calls = ceil(orders / 100)
    details: dict[str, Any] = {
        "orders": orders,
        "calls": calls,
        "latency_s": latency,
        "sequential_s": round(sequential_s, 2),
        "ideal_s": round(calls * latency / parallelism, 2),
    }
    parallel_s, parallel_pages = common.timed(lambda: list(hook.find_orders(conditions, parallelism=parallelism)))
    details |= {
        "parallel_s": round(parallel_s, 2),
        "parallel_over_ideal": round(parallel_s / (calls * latency / parallelism), 3),
        "same_orders": [o["order_id"] for page in parallel_pages for o in page]
        == [o["order_id"] for page in pages for o in page],
    }
    return details


def measure(
    latency: float, parallelism: int, page_size: int, sample_pages: int, whole_sequential: bool, magento_pid: int
) -> dict[str, Any]:
    return {
        "magento": measure_magento(latency, parallelism, page_size, sample_pages, whole_sequential, magento_pid),
        "deconetwork": measure_deconetwork(latency, parallelism),
    }


def run(quick: bool = False) -> list[common.Figure]:
    customers = QUICK_CUSTOMERS if quick else CUSTOMERS
    latency = QUICK_LATENCY if quick else LATENCY
    deco_customers = QUICK_DECO_CUSTOMERS if quick else DECO_CUSTOMERS
    home = Path(tempfile.mkdtemp(prefix="bench-slow-store-"))
    with (
        common.sandbox_process(
            "magento", "--customers", str(customers), "--seed", "7", "--latency", str(latency), timeout=1800
        ) as magento,
        common.sandbox_process(
            "deconetwork", "--customers", str(deco_customers), "--seed", "7", "--latency", str(latency)
        ) as deco,
    ):
        env = common.base_env(home)
        env.update(
            dict(
                [
                    common.magento_connection(MAGENTO_CONN, magento["url"]),
                    common.connection_env(
                        DECO_CONN, conn_type="http", host=deco["url"], login=deco["username"], password=deco["password"]
                    ),
                ]
            )
        )
        out = common.run_worker(
            "bench.extract_slow_store",
            {
                "latency": latency,
                "parallelism": PARALLELISM,
                "page_size": QUICK_PAGE_SIZE if quick else PAGE_SIZE,
                "sample_pages": QUICK_SAMPLE_PAGES if quick else SAMPLE_PAGES,
                "whole_sequential": quick,
                "magento_pid": magento["pid"],
            },
            env=env,
            timeout=3600,
        )
    m = out["magento"]
    ratio = m["parallel_s"] / m["ideal_s"]
    return [
        common.Figure(
            name="extract_slow_store_1m",
            value=m["parallel_s"],
            unit="s",
            baseline="today's sequential pages (one page at a time)",
            baseline_value=m["sequential_s"],
            ratio=round(m["sequential_s"] / m["parallel_s"], 2),
            target=f"<= {TARGET}x pages x latency / {PARALLELISM} (ratio here: sequential / parallel)",
            met=ratio <= TARGET and m["parallel_complete"] and m.get("same_rows", True),
            details={"magento": m, "deconetwork": out["deconetwork"], "parallel_over_ideal": round(ratio, 3)},
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(**args))
