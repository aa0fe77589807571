"""The sync page's data (ui/queries.py) on SQLite and PostgreSQL: figures after real runs equal the state database,
the overview never reads the state table and costs the same queries for 1 or 30 tenants, safe CSV, reset progress."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from zoho_store_sync.config import TenantConfig
from zoho_store_sync.state import StateStore, make_engine
from zoho_store_sync.state.tables import credit_ledger, cursors, record_errors, resets, runs
from zoho_store_sync.state_migrations import migrate
from zoho_store_sync.ui import queries


def _tenant(tenant_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "source": "magento",
        "store_conn_id": "magento_test",
        "zoho_conn_id": "zoho_test",
        "retries": 0,
        "zoho_max_retries": 1,
        **extra,
    }


@pytest.fixture
def engine(state_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(state_url)
    migrate(engine)
    yield engine
    engine.dispose()


def _sync(tenant_id: str, run_id: str, *, dry_run: bool = False) -> dict[str, Any]:
    """One scheduled run in this process, task after task (as tests/dags/crash_runner.py runs it)."""
    from zoho_store_sync import pipeline

    pipeline.acquire_tenant_lock(tenant_id, run_id, "sync")
    try:
        started = datetime.now(UTC)
        extracted = pipeline.extract(tenant_id, run_id)
        planned = pipeline.plan(tenant_id, run_id, extracted, dry_run=dry_run)
        loaded = pipeline.load(tenant_id, run_id, planned, dry_run=dry_run)
        return pipeline.report(tenant_id, run_id, extracted, planned, loaded, started)
    finally:
        pipeline.release_tenant_lock(tenant_id, run_id, "sync")


def _state_counts(engine: sa.Engine, tenant_id: str) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT module, status, count(*) FROM zoho_sync_state WHERE tenant_id = :t GROUP BY module, status"
            ),
            {"t": tenant_id},
        ).all()
    return {(module, status): int(n) for module, status, n in rows}


# --- figures after real runs ---------------------------------------------------------------------------------
def test_overview_after_real_runs_shows_what_the_state_database_holds_and_a_dry_run_changes_none_of_it(
    engine: sa.Engine, state_url: str, configure_tenant: Any, zoho_sandbox: Any, magento_store: Any
) -> None:
    from zoho_store_sync import credits

    shop, idle = f"ui_shop_{uuid.uuid4().hex[:6]}", f"ui_idle_{uuid.uuid4().hex[:6]}"
    configure_tenant(
        [_tenant(shop), _tenant(idle)], zoho=zoho_sandbox, magento=magento_store(150, 5), state_url=state_url
    )
    first = _sync(shop, "scheduled__1")
    store = StateStore(engine, shop)
    gone = store.load().query("status == 'synced' and module == 'Contacts'").iloc[0]
    zoho_sandbox.delete_record_in_ui("Contacts", gone["zoho_id"])
    second = _sync(shop, "scheduled__2")
    counts = _state_counts(engine, shop)
    assert counts[("Contacts", "deleted_in_zoho")] == 1
    _sync(shop, "manual__dry", dry_run=True)  # after it, the overview still shows the sync's counts
    now = datetime.now(UTC)
    tenants = [TenantConfig.model_validate(_tenant(t)) for t in (shop, idle)]

    shown = {row["tenant_id"]: row for row in queries.overview(engine, tenants, now)}

    row = shown[shop]
    assert row["dag_id"] == f"zoho_sync__{shop}" and row["modules"] == ["Contacts", "Leads"]
    assert row["in_zoho"] == {m: counts.get((m, "synced"), 0) for m in ("Contacts", "Leads")}
    assert row["in_zoho"]["Contacts"] > 0 and row["in_zoho"]["Leads"] > 0
    assert row["deleted_in_zoho"] == 1
    assert row["failed_records"] == counts.get(("Contacts", "failed"), 0) + counts.get(("Leads", "failed"), 0)
    assert row["last_run"]["kind"] == "dry_run" and row["last_run"]["ok"] is True
    assert row["last_run"]["sent"] == 0
    with engine.connect() as conn:
        invalid = conn.execute(
            sa.select(sa.func.count()).where(record_errors.c.tenant_id == shop, record_errors.c.kind == "invalid")
        ).scalar()
    assert row["last_24h"] == {
        "runs": 3,
        "sent": first["sent"] + second["sent"],
        "rejected": first["failed"] + second["failed"],
        "invalid": invalid,
        "credits": sum(s["credits"] for s in store.run_summaries()),
    }
    assert first["sent"] == first["inserted"] + first["failed"] > 100
    org = credits.org_key_for(tenants[0])
    budget = row["credits_budget"]
    assert budget["org_key"] == org
    assert budget["used_24h"] == credits.availability(store, org, shop).used_24h > 0
    cursor = store.get_cursor("source")
    assert row["next_full_pass"] == (datetime.fromisoformat(cursor["last_full_at"]) + timedelta(hours=24)).isoformat()
    assert row["reset"] is None
    assert shown[idle]["last_run"] is None and shown[idle]["in_zoho"] == {}
    assert shown[idle]["last_24h"]["runs"] == 0 and shown[idle]["next_full_pass"] is None

    plotted = queries.tenant_runs(engine, shop)
    assert [r["run_id"] for r in plotted] == ["scheduled__1", "scheduled__2", "manual__dry"]
    assert [(r["sent"], r["inserted"], r["updated"], r["failed"], r["credits"]) for r in plotted[:2]] == [
        (s["sent"], s["inserted"], s["updated"], s["failed"], s["credits"]) for s in (first, second)
    ]
    assert plotted[0]["duration_s"] == first["duration_s"]
    assert [d["customer_key"] for d in queries.deleted_in_zoho(engine, shop)] == [gone["customer_key"]]


def test_reset_progress_follows_the_reset_chunk_by_chunk_and_the_finished_reset_is_listed(
    engine: sa.Engine, state_url: str, configure_tenant: Any, zoho_sandbox: Any, magento_store: Any
) -> None:
    from zoho_store_sync import pipeline, reset

    shop = f"ui_reset_{uuid.uuid4().hex[:6]}"
    configure_tenant([_tenant(shop)], zoho=zoho_sandbox, magento=magento_store(120, 9), state_url=state_url)
    _sync(shop, "scheduled__1")
    tenant = TenantConfig.model_validate(_tenant(shop))
    run_id = "manual__reset"
    reset.begin(shop, run_id, ("Contacts", "Leads"), dry_run=False)
    extracted = pipeline.extract(shop, run_id, full=True)
    planned = pipeline.plan(shop, run_id, extracted, modules=("Contacts", "Leads"))
    chunks = reset.split(shop, run_id, planned, chunk_records=40)
    assert len(chunks) >= 2
    sent = [reset.send_chunk(shop, run_id, chunks[0], dry_run=False)]
    now = datetime.now(UTC)

    progress = queries.reset_progress(engine, shop, now)

    store = StateStore(engine, shop)
    total = chunks[0]["total"] + chunks[0]["already_confirmed"]
    assert progress is not None and progress["status"] == "in_progress"
    assert (progress["done"], progress["total"]) == (store.count_confirmed(("Contacts", "Leads")), total)
    assert 0 < progress["done"] < total and progress["share"] == round(progress["done"] / total, 4)
    assert progress["rate_per_s"] > 0 and progress["eta_s"] >= 0
    assert queries.overview(engine, [tenant], now)[0]["reset"] == progress

    sent += [reset.send_chunk(shop, run_id, chunk, dry_run=False) for chunk in chunks[1:]]
    summary = reset.finish(shop, run_id, extracted, planned, chunks, sent, dry_run=False)
    done = queries.reset_progress(engine, shop, datetime.now(UTC))
    assert done is not None and done["status"] == "done" and done["done"] == done["total"] == total
    assert queries.overview(engine, [tenant], datetime.now(UTC))[0]["reset"] is None
    listed = queries.last_resets(engine, shop)
    assert [(r["run_id"], r["kind"], r["sent"]) for r in listed] == [(run_id, "reset", summary["sent"])]
    assert listed[0]["started_at"] == done["started_at"]
    counts = _state_counts(engine, shop)
    assert summary["state"]["in_zoho"] == {m: counts.get((m, "synced"), 0) for m in ("Contacts", "Leads")}


def test_a_verify_is_kept_with_each_check_and_shown_as_the_last_verify(
    engine: sa.Engine, state_url: str, configure_tenant: Any, zoho_sandbox: Any
) -> None:
    from zoho_store_sync import connect

    shop = f"ui_verify_{uuid.uuid4().hex[:6]}"
    configure_tenant([_tenant(shop)], zoho=zoho_sandbox, state_url=state_url)
    assert queries.last_verify(engine, shop) is None
    checks = connect.verify(shop, run_id="manual__verify")
    shown = queries.last_verify(engine, shop)
    assert shown is not None and shown["run_id"] == "manual__verify" and shown["ok"] is True
    assert [c["line"] for c in shown["checks"]] == [c.line() for c in checks]
    assert queries.tenant_runs(engine, shop) == []  # a verify is not a sync run


# --- the overview's cost ---------------------------------------------------------------------------------------
def _history(engine: sa.Engine, tenant_ids: list[str], now: datetime) -> None:
    """Each tenant: two days of half-hourly runs carrying their counts, errors, a source cursor, credits; the
    first tenant a running reset."""
    run_rows, error_rows, ledger_rows = [], [], []
    for tenant_id in tenant_ids:
        for i in range(96):
            at = now - timedelta(minutes=30 * i)
            summary = {"invalid": 1, "duration_s": 3.0, "ok": True, "org_key": f"org-{tenant_id}"}
            summary["state"] = {"in_zoho": {"Contacts": 10, "Leads": 5}, "deleted_in_zoho": 2, "failed": 1}
            run_rows.append(
                {
                    "tenant_id": tenant_id,
                    "run_id": f"scheduled__{i}",
                    "kind": "sync",
                    "started_at": at - timedelta(seconds=3),
                    "finished_at": at,
                    "inserted": 1,
                    "updated": 2,
                    "failed": 1,
                    "sent": 3,
                    "credits": 4,
                    "summary": json.dumps(summary),
                }
            )
            ledger_rows.append(
                {
                    "org_key": f"org-{tenant_id}",
                    "tenant_id": tenant_id,
                    "run_id": f"scheduled__{i}",
                    "used_at": at,
                    "credits": 4,
                    "remaining": 5000 if i == 10 else None,
                }
            )
        error_rows += [
            {"tenant_id": tenant_id, "run_id": "scheduled__0", "code": "INVALID_EMAIL", "at": now, "kind": "invalid"}
        ]
    with engine.begin() as conn:
        conn.execute(sa.insert(runs), run_rows)
        conn.execute(sa.insert(record_errors), error_rows)
        conn.execute(sa.insert(credit_ledger), ledger_rows)
        conn.execute(
            sa.insert(cursors),
            [
                {
                    "tenant_id": t,
                    "stream": "source",
                    "value": json.dumps({"last_full_at": now.isoformat()}),
                    "updated_at": now,
                }
                for t in tenant_ids
            ],
        )
        conn.execute(
            sa.insert(resets).values(
                tenant_id=tenant_ids[0],
                modules="Contacts",
                status="in_progress",
                run_id="manual__r",
                started_at=now - timedelta(seconds=100),
                records_total=1000,
                records_done=250,
                progress_at=now - timedelta(seconds=50),
            )
        )


def test_the_overview_never_reads_the_state_table_and_costs_the_same_queries_for_1_or_30_tenants(
    engine: sa.Engine,
) -> None:
    now = datetime.now(UTC)
    prefix = f"ui_cost_{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}_{i:02d}" for i in range(30)]
    _history(engine, ids, now)
    tenants = [TenantConfig.model_validate(_tenant(t)) for t in ids]
    statements: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.strip().upper() != "BEGIN":  # SQLite's own transaction start, not a query
            statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        one = queries.overview(engine, tenants[:1], now)
        for_one = list(statements)
        statements.clear()
        thirty = queries.overview(engine, tenants, now)
    finally:
        sa.event.remove(engine, "before_cursor_execute", capture)
    assert len(statements) == len(for_one) == 8  # runs x2, 24 h runs, 24 h errors, cursors, resets, credits x2
    assert not [s for s in for_one + statements if "zoho_sync_state" in s]
    assert thirty[0] == one[0]
    row = thirty[1]
    assert row["in_zoho"] == {"Contacts": 10, "Leads": 5} and row["failed_records"] == 1
    assert row["last_24h"] == {"runs": 48, "sent": 144, "rejected": 48, "invalid": 1, "credits": 192}
    assert row["last_run"]["finished_at"] == now.isoformat()
    # Zoho's count 5 h ago, less the 10 runs since, plus the 10 runs 24-28.5 h ago whose credits came back since
    assert row["credits_budget"]["remaining"] == 5000 - 10 * 4 + 10 * 4
    assert thirty[0]["reset"]["done"] == 250 and thirty[0]["reset"]["rate_per_s"] == 5.0
    assert thirty[0]["reset"]["eta_s"] == pytest.approx(150 - 50, abs=1)
    assert row["reset"] is None


def test_the_credit_budget_is_what_the_budget_check_reckons(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Zoho's count, what was spent after it, and the calls of the day before whose credits came back since."""
    from zoho_store_sync import credits

    now = datetime.now(UTC).replace(microsecond=0)
    org = f"org-{uuid.uuid4().hex[:6]}"
    entries = [  # (hours ago, credits, remaining Zoho reported)
        (50, 400, None),  # more than 24 h before the count below: already free in it
        (40, 300, None),  # counted as used by the count below, came back since: freed
        (30, 200, 9000),  # a count older than 24 h: not used; its credits came back since: freed
        (28, 150, None),  # freed
        (20, 100, 4000),  # Zoho's last count
        (20, 7, None),  # the same second as the count, written after it: spent since
        (10, 50, None),
        (1, 25, None),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(credit_ledger),
            [
                {
                    "org_key": org,
                    "tenant_id": "t",
                    "run_id": f"r{i}",
                    "used_at": now - timedelta(hours=h),
                    "credits": c,
                    "remaining": r,
                }
                for i, (h, c, r) in enumerate(entries)
            ],
        )
    monkeypatch.setattr(credits, "clock", lambda: now)
    expected = credits.availability(StateStore(engine, "t"), org, "t")

    budget = queries.credit_budgets(engine, [org, "org-without-rows"], now)

    assert budget[org]["remaining"] == expected.remaining == 4000 - (7 + 50 + 25) + (300 + 200 + 150)
    assert budget[org]["used_24h"] == expected.used_24h == 100 + 7 + 50 + 25
    assert budget[org]["limit"] == expected.remaining + expected.used_24h
    assert budget["org-without-rows"] == {
        "org_key": "org-without-rows",
        "used_24h": 0,
        "remaining": None,
        "limit": None,
        "share_used": None,
        "reported_at": None,
    }


# --- errors: search and CSV ------------------------------------------------------------------------------------
def _errors(engine: sa.Engine, tenant_id: str) -> None:
    now = datetime.now(UTC)
    rows = [
        ("1", "Alice@Example.com", "INVALID_DATA", '=HYPERLINK("http://evil","x")', "rejected"),
        ("2", "+33@example.com", "INVALID_EMAIL", "-2+3", "invalid"),
        ("3", "@admin@example.com", "INVALID_EMAIL", "@SUM(A1:A2)", "invalid"),
        ("4", "bob_100%@example.com", "DUPLICATE_DATA", "plain, with a comma", "rejected"),
    ]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(record_errors),
            [
                {
                    "tenant_id": tenant_id,
                    "run_id": "scheduled__1",
                    "customer_key": key,
                    "email": email,
                    "module": "Contacts",
                    "code": code,
                    "message": message,
                    "retryable": False,
                    "at": now - timedelta(minutes=int(key)),
                    "kind": kind,
                }
                for key, email, code, message, kind in rows
            ],
        )


def test_errors_are_searched_by_email_without_case_and_wildcards_are_literal(engine: sa.Engine) -> None:
    shop = f"ui_err_{uuid.uuid4().hex[:6]}"
    _errors(engine, shop)
    assert queries.tenant_errors(engine, shop)["total"] == 4
    found = queries.tenant_errors(engine, shop, email_contains="ALICE")
    assert [r["customer_key"] for r in found["rows"]] == ["1"] and found["total"] == 1
    assert [r["customer_key"] for r in queries.tenant_errors(engine, shop, email_contains="0%")["rows"]] == ["4"]
    assert queries.tenant_errors(engine, shop, email_contains="_")["total"] == 1  # "_" is not "any character"
    invalid = queries.tenant_errors(engine, shop, kind="invalid", limit=1, offset=1)
    assert invalid["total"] == 2 and [r["customer_key"] for r in invalid["rows"]] == ["3"]  # newest first


def test_the_csv_neutralises_formulas_from_stores_and_zoho(engine: sa.Engine) -> None:
    shop = f"ui_csv_{uuid.uuid4().hex[:6]}"
    _errors(engine, shop)
    lines = list(queries.errors_csv(engine, shop))
    table = list(csv.reader("".join(lines).splitlines()))
    assert table[0] == list(queries.CSV_COLUMNS)
    by_key = {row[3]: dict(zip(table[0], row)) for row in table[1:]}
    assert by_key["1"]["message"] == '\'=HYPERLINK("http://evil","x")'
    assert by_key["2"]["email"] == "'+33@example.com" and by_key["2"]["message"] == "'-2+3"
    assert by_key["3"]["email"] == "'@admin@example.com" and by_key["3"]["message"] == "'@SUM(A1:A2)"
    assert by_key["4"]["message"] == "plain, with a comma" and by_key["4"]["email"] == "bob_100%@example.com"
    searched = list(csv.reader("".join(queries.errors_csv(engine, shop, email_contains="alice")).splitlines()))
    assert [row[3] for row in searched[1:]] == ["1"]


def test_the_mapping_in_force_lists_the_synced_modules_fields_with_overrides() -> None:
    tenant = TenantConfig.model_validate(
        _tenant("ui_map", sync_leads=False, mapping_overrides={"Contacts": {"Department": "store"}})
    )
    shown = queries.mapping_in_force(tenant)
    assert shown["file"] == "magento.yaml" and list(shown["modules"]) == ["Contacts"]
    assert shown["modules"]["Contacts"]["Email"] == "email" and shown["modules"]["Contacts"]["Department"] == "store"
