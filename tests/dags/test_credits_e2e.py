"""Zoho credits end to end (the sandboxes, SQLite and PostgreSQL state): the org's daily credits running out
mid-run, the next day's run, and a retried upsert task that must not pay again for what Zoho confirmed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import REPO
from tests.dags.test_data_safety_e2e import World, fresh_state_url  # noqa: F401 - fixture

WRITES = ("insert", "update", "upsert", "delete", "convert", "upload", "bulk_write")


def _run(world: World, tenant_id: str):  # type: ignore[no-untyped-def]
    from airflow.models import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags[f"zoho_sync__{tenant_id}"]
    return dag.test()


def _state_of(dag_run) -> str:  # type: ignore[no-untyped-def]
    return str(getattr(dag_run.state, "value", dag_run.state))


def _task(dag_run, task_id: str):  # type: ignore[no-untyped-def]
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = next(t for t in dag_run.get_task_instances(session=session) if t.task_id == task_id)
        return str(getattr(ti.state, "value", ti.state)), ti.try_number


def _live(zoho, module: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r for r in zoho.records(module) if not r.get("Converted__s")]


def _no_twins(zoho) -> None:  # type: ignore[no-untyped-def]
    contacts, leads = (Counter(r["Email"] for r in _live(zoho, m)) for m in ("Contacts", "Leads"))
    assert max(contacts.values(), default=1) == 1 and max(leads.values(), default=1) == 1
    assert not set(contacts) & set(leads)


@pytest.fixture
def ledger_clock(monkeypatch: pytest.MonkeyPatch) -> list[timedelta]:
    """The credit ledger's clock, moved with the sandbox's credit window (``[0]``: how far ahead)."""
    from zoho_store_sync import credits

    ahead = [timedelta(0)]
    monkeypatch.setattr(credits, "clock", lambda: datetime.now(UTC) + ahead[0])
    return ahead


def test_credits_running_out_mid_run_stop_it_at_once_clearly_without_retry_and_the_next_days_run_completes(
    airflow_db,
    monkeypatch,
    magento_store,
    fresh_state_url,  # noqa: F811
    ledger_clock,
    capfd,
):  # type: ignore[no-untyped-def]
    from sandboxes.zoho_crm import ZohoSandbox

    magento = magento_store(1000, 41)
    with ZohoSandbox(daily_credits=60) as zoho:
        world = World(monkeypatch, zoho, fresh_state_url, {"main": magento})
        # Airflow may retry the task twice: the daily limit must not use those retries
        world.configure("thrifty", "main", retries=2, zoho_max_retries=6, zoho_max_concurrency=2)
        dag_run = _run(world, "thrifty")
        logged = "".join(capfd.readouterr())
        assert _state_of(dag_run) == "failed"
        assert _task(dag_run, "upsert_to_zoho") == ("failed", 1)  # failed at once: no Airflow retry
        message = next(line for line in logged.splitlines() if "ZohoCreditsExhausted: " in line)
        assert "tenant 'thrifty': the org's daily Zoho API credits are used up" in message
        assert "without retrying" in message and "in the last 24 h" in message and "run again after" in message
        calls = zoho.calls()
        assert len([c for c in calls if c["status"] == 429]) <= 2  # at most the calls in flight (was 7 per call)
        assert zoho.credits_used() <= 60
        # nothing is marked synced that Zoho does not hold; the rest stays to be sent
        state = world.state("thrifty")
        synced = state[state["status"] == "synced"]
        held = {r["id"]: r["Email"] for m in ("Contacts", "Leads") for r in zoho.records(m)}
        assert 0 < len(synced) < len(state)
        assert all(held.get(row.zoho_id) == row.email for row in synced.itertuples())
        assert len(held) == len(synced)

        # the same day: deferred before sending anything
        zoho.reset_calls()
        assert _state_of(_run(world, "thrifty")) == "failed"
        assert not [c for c in zoho.calls() if c["operation"] in WRITES]

        # the next day: Zoho gave the credits back, and the ledger knows it
        zoho.daily_credits = 100_000
        zoho.advance_credit_clock(86_400)
        ledger_clock[0] = timedelta(days=1, minutes=1)
        summary = world.run("thrifty")
        assert summary["failed"] == 0
        state = world.state("thrifty")
        assert set(state["status"]) == {"synced"}
        assert len({r["id"] for m in ("Contacts", "Leads") for r in _live(zoho, m)}) == len(state)
        _no_twins(zoho)


def test_a_retried_upsert_task_resends_none_of_the_records_an_earlier_attempt_got_confirmed(
    airflow_db,
    monkeypatch,
    zoho_sandbox,
    magento_store,
    fresh_state_url,  # noqa: F811
):  # type: ignore[no-untyped-def]
    from zoho_store_sync import pipeline
    from zoho_store_sync.errors import ZohoUnavailable

    world = World(monkeypatch, zoho_sandbox, fresh_state_url, {"main": magento_store(1000, 42)})
    world.configure("retried", "main", zoho_max_retries=0, zoho_max_concurrency=1)
    run_id = "manual__retried_upsert"
    # What the DAG's tasks call, in order; the load task's Airflow retry runs it again with the same plan.
    pipeline.acquire_tenant_lock("retried", run_id, "sync")
    try:
        extracted = pipeline.extract("retried", run_id)
        planned = pipeline.plan("retried", run_id, extracted)
        upserts = planned["new"]
        assert upserts > 500
        # the fourth upsert call fails (Zoho down): the first attempt confirmed 300 records, then stopped
        zoho_sandbox.inject_fault("500", operation="upsert", after=3)
        with pytest.raises(ZohoUnavailable):
            pipeline.load("retried", run_id, planned)
        confirmed = set(world.state("retried").query("status == 'synced'")["email"])
        assert len(confirmed) == 300

        zoho_sandbox.reset_calls()
        loaded = pipeline.load("retried", run_id, planned)  # the retry
        sent = sum(c["records"] for c in zoho_sandbox.calls() if c["operation"] == "upsert")
        assert loaded["already_confirmed"] == 300
        assert sent == upserts - 300  # 0 confirmed records resent
        pipeline.report("retried", run_id, extracted, planned, loaded)
    finally:
        pipeline.release_tenant_lock("retried", run_id, "sync")
    state = world.state("retried")
    assert set(state["status"]) == {"synced"}
    _no_twins(zoho_sandbox)
