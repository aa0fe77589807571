"""Figure ui_page: the sync page's overview of 500 tenants (30 days of half-hourly runs each) and one tenant's page
with 1,000,000 state rows, on PostgreSQL, against an overview that counts the state table (GROUP BY)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from bench import common

TENANTS, DAYS, STATE_ROWS, ERRORS_PER_TENANT = 500, 30, 1_000_000, 200
QUICK = {"tenants": 20, "days": 2, "state_rows": 5_000, "errors_per_tenant": 20, "repeats": 3}
REPEATS = 7
TARGET_MS = 300.0
BIG = "tenant_000"  # the tenant with the million state rows


def _copy(engine: Any, table: str, frame: pd.DataFrame) -> None:
    """Bulk-load ``frame`` into ``table`` with COPY (CSV)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.copy_expert(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)", buffer)
        raw.commit()
    finally:
        raw.close()


def _load(engine: Any, tenants: list[str], days: int, state_rows: int, errors_per_tenant: int, now: datetime) -> None:
    """Runs (half-hourly, with the summary a run writes), errors, cursors, credits for every tenant; the first
    tenant's state rows and a running reset."""
    runs_per_tenant = days * 48
    finished = [now - timedelta(minutes=30 * i) for i in range(runs_per_tenant)]
    rng = np.random.default_rng(5)
    run_frames, ledger_frames, error_frames = [], [], []
    for tenant_id in tenants:
        inserted = rng.integers(0, 20, runs_per_tenant)
        failed = rng.integers(0, 3, runs_per_tenant)
        summaries = [
            json.dumps(
                {
                    "tenant": tenant_id,
                    "run": f"scheduled__{i}",
                    "invalid": 2,
                    "inserted": int(inserted[i]),
                    "failed": int(failed[i]),
                    "duration_s": 12.5,
                    "ok": True,
                    "org_key": f"client-{tenant_id}@eu",
                    "state": {
                        "in_zoho": {"Contacts": 550_000, "Leads": 440_000},
                        "deleted_in_zoho": 900,
                        "failed": 9000,
                    },
                }
            )
            for i in range(runs_per_tenant)
        ]
        run_frames.append(
            pd.DataFrame(
                {
                    "tenant_id": tenant_id,
                    "run_id": [f"scheduled__{i}" for i in range(runs_per_tenant)],
                    "kind": "sync",
                    "started_at": [f - timedelta(seconds=12) for f in finished],
                    "finished_at": finished,
                    "extracted": 100,
                    "inserted": inserted,
                    "updated": 5,
                    "unchanged": 95,
                    "failed": failed,
                    "api_calls": 4,
                    "credits": 12,
                    "sent": inserted + 5 + failed,
                    "summary": summaries,
                }
            )
        )
        recent = finished[: 72 * 2]  # the ledger keeps 72 h
        ledger_frames.append(
            pd.DataFrame(
                {
                    "org_key": f"client-{tenant_id}@eu",
                    "tenant_id": tenant_id,
                    "run_id": [f"scheduled__{i}" for i in range(len(recent))],
                    "used_at": recent,
                    "credits": 12,
                    "remaining": [50_000 if i == 20 else None for i in range(len(recent))],
                }
            ).astype({"remaining": "Int64"})
        )
        error_frames.append(
            pd.DataFrame(
                {
                    "tenant_id": tenant_id,
                    "run_id": "scheduled__0",
                    "customer_key": [str(i) for i in range(errors_per_tenant)],
                    "email": [f"customer{i}@example.com" for i in range(errors_per_tenant)],
                    "module": "Contacts",
                    "code": "INVALID_DATA",
                    "message": "invalid data {'api_name': 'Phone'}",
                    "retryable": False,
                    "at": [now - timedelta(minutes=37 * i) for i in range(errors_per_tenant)],
                    "kind": np.where(np.arange(errors_per_tenant) % 4 == 0, "invalid", "rejected"),
                }
            )
        )
    _copy(engine, "zoho_sync_runs", pd.concat(run_frames, ignore_index=True))
    _copy(engine, "zoho_sync_credits", pd.concat(ledger_frames, ignore_index=True))
    _copy(engine, "zoho_sync_errors", pd.concat(error_frames, ignore_index=True))
    _copy(
        engine,
        "zoho_sync_cursors",
        pd.DataFrame(
            {
                "tenant_id": tenants,
                "stream": "source",
                "value": json.dumps({"last_full_at": now.isoformat()}),
                "updated_at": now,
            }
        ),
    )
    status = np.where(rng.random(state_rows) < 0.01, "failed", "synced").astype(object)
    status[rng.random(state_rows) < 0.001] = "deleted_in_zoho"
    keys = np.arange(1, state_rows + 1).astype(str)
    _copy(
        engine,
        "zoho_sync_state",
        pd.DataFrame(
            {
                "tenant_id": BIG,
                "customer_key": keys,
                "email": np.char.add(np.char.add("customer", keys), "@example.com"),
                "module": np.where(rng.random(state_rows) < 0.55, "Contacts", "Leads"),
                "zoho_id": np.char.add("57000000", keys),
                "payload_hash": rng.integers(-(2**62), 2**62, state_rows),
                "status": status,
                "attempts": 1,
                "updated_at": now - timedelta(days=1),
            }
        ),
    )
    _copy(
        engine,
        "zoho_sync_resets",
        pd.DataFrame(
            {
                "tenant_id": [tenants[1]],
                "modules": "Contacts,Leads",
                "status": "in_progress",
                "run_id": "manual__reset",
                "started_at": now - timedelta(minutes=10),
                "records_total": 100_000,
                "records_done": 40_000,
                "progress_at": now - timedelta(seconds=30),
            }
        ),
    )
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")


def naive_overview(engine: Any, tenants: list[Any], now: datetime) -> dict[str, Any]:
    """The overview as one would first write it: the records in Zoho counted from the state table (GROUP BY over
    every tenant's rows), the rest as the product reads it."""
    import sqlalchemy as sa

    from zoho_store_sync.ui import queries

    rows = queries.overview(engine, tenants, now)
    with engine.connect() as conn:
        counted = conn.execute(
            sa.text(
                "SELECT tenant_id, module, status, count(*) FROM zoho_sync_state WHERE tenant_id = ANY(:ids) "
                "GROUP BY tenant_id, module, status"
            ),
            {"ids": [t.tenant_id for t in tenants]},
        ).all()
    return {"rows": len(rows), "groups": len(counted)}


def _page_client(engine: Any, configs: list[Any]) -> Any:
    """The page's own app (ui/app.py) in-process: every tenant on ``engine``, the permission checks of Airflow's
    SimpleAuthManager for an admin. Not timed: the JWT's decoding (the user is given to the app, as FastAPI tests
    do) and the latest Airflow runs, read from a metadata database this bench does not start (one query for all
    tenants' DAGs)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from zoho_store_sync.config import TenantsParseResult
    from zoho_store_sync.ui.app import PageSources, create_app, schema_problem

    manager = SimpleAuthManager()
    sources = PageSources(
        load_tenants=lambda: TenantsParseResult(tenants=list(configs), errors=[]),
        engine_for=lambda _conn_id: engine,
        schema_problem=schema_problem,
        last_dag_runs=lambda _dag_ids: {},
        auth_manager=lambda: manager,
    )
    app = create_app(sources)
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin", role="admin")
    return TestClient(app)


def _ok(response: Any) -> Any:
    if response.status_code != 200:
        raise RuntimeError(f"the page answered {response.status_code}: {response.text[:500]}")
    return response.json()


def measure(tenants: int, days: int, state_rows: int, errors_per_tenant: int, repeats: int) -> dict[str, Any]:
    from zoho_store_sync.config import TenantConfig
    from zoho_store_sync.state import make_engine
    from zoho_store_sync.state_migrations import migrate
    from zoho_store_sync.ui import queries

    now = datetime.now(UTC)
    ids = [f"tenant_{i:03d}" for i in range(tenants)]
    configs = [
        TenantConfig.model_validate(
            {"tenant_id": t, "source": "magento", "store_conn_id": "magento", "zoho_conn_id": "zoho"}
        )
        for t in ids
    ]
    with common.scratch_postgres() as url:
        engine = make_engine(url)
        migrate(engine)
        load_s = common.timed(lambda: _load(engine, ids, days, state_rows, errors_per_tenant, now))[0]
        timings: dict[str, list[float]] = {}

        def time(name: str, fn: Any) -> Any:
            fn()  # warm: the first call plans and caches
            timings[name] = [common.timed(fn)[0] for _ in range(repeats)]
            return fn()

        shown = time("overview", lambda: queries.overview(engine, configs, now))
        time("tenant_runs", lambda: queries.tenant_runs(engine, BIG))
        time("tenant_errors", lambda: queries.tenant_errors(engine, BIG, email_contains="customer1", limit=100))
        time("deleted_in_zoho", lambda: queries.deleted_in_zoho(engine, BIG))
        time("reset_progress", lambda: queries.reset_progress(engine, ids[1], now))
        time("naive_overview", lambda: naive_overview(engine, configs, now))
        client = _page_client(engine, configs)
        time("overview_http", lambda: _ok(client.get("/api/tenants")))
        time("tenant_http", lambda: _ok(client.get(f"/api/tenants/{BIG}")))
        engine.dispose()
    return {
        "tenants": tenants,
        "runs": tenants * days * 48,
        "state_rows": state_rows,
        "load_s": round(load_s, 1),
        "timings_s": timings,
        "overview_rows": len(shown),
        "overview_budget_known": sum(1 for r in shown if r["credits_budget"] and r["credits_budget"]["remaining"]),
        "overview_reset_running": sum(1 for r in shown if r["reset"]),
    }


def run(quick: bool = False) -> list[common.Figure]:
    args = (
        QUICK
        if quick
        else {
            "tenants": TENANTS,
            "days": DAYS,
            "state_rows": STATE_ROWS,
            "errors_per_tenant": ERRORS_PER_TENANT,
            "repeats": REPEATS,
        }
    )
    if not common.postgres_available():
        return [
            common.Figure(
                "ui_page",
                None,
                "ms",
                "n/a (no PostgreSQL)",
                None,
                None,
                f"< {TARGET_MS:g} ms",
                False,
                {"note": "PostgreSQL not reachable at " + common.POSTGRES_ADMIN_URL},
            )
        ]
    out = common.run_worker("bench.ui_page", args, timeout=3600)
    ms = {name: round(common.median(values) * 1000, 2) for name, values in out["timings_s"].items()}
    value, naive = ms["overview_http"], ms["naive_overview"]
    # The naive overview counted one tenant's state rows (the one with all of them); 500 such tenants are 500x.
    naive_extrapolated = round(naive * out["tenants"], 1)
    details = {
        **out,
        "medians_ms": ms,
        "value_is": f"GET /api/tenants of the page's app (ui/app.py, in-process) for {out['tenants']} tenants "
        f"({out['runs']:,} runs in the table), median of {args['repeats']}; queries.overview alone: "
        f"{ms['overview']} ms",
        "baseline_is": "the same overview plus a GROUP BY over the state table for the records in Zoho; measured on "
        f"one tenant's {out['state_rows']:,} rows (naive_overview_measured_ms), times {out['tenants']} tenants "
        "(linear in rows scanned)",
        "naive_overview_measured_ms": naive,
        "one_tenant_ms": {
            k: ms[k] for k in ("tenant_http", "tenant_runs", "tenant_errors", "deleted_in_zoho", "reset_progress")
        },
        "http_not_timed": "the JWT's decoding and the one metadata-DB query for the tenants' latest Airflow runs",
    }
    return [
        common.Figure(
            name="ui_page",
            value=value,
            unit="ms",
            baseline="overview counting the state table (GROUP BY), extrapolated to every tenant's rows",
            baseline_value=naive_extrapolated,
            ratio=round(naive_extrapolated / value, 1) if value else None,
            target=f"< {TARGET_MS:g} ms for {out['tenants']} tenants",
            met=value < TARGET_MS and max(details["one_tenant_ms"].values()) < TARGET_MS,
            details=details,
        )
    ]


if __name__ == "__main__":
    common.emit(measure(**common.worker_args()))
