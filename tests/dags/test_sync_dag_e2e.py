"""End to end: the tenant DAG (dag.test) against the Magento and Zoho sandboxes, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

TENANT = {"tenant_id": "e2e_shop", "source": "magento", "store_conn_id": "magento_test", "zoho_conn_id": "zoho_test"}


def _run(dag):  # type: ignore[no-untyped-def]
    dag_run = dag.test()
    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    return dag_run


def _expected_records(magento) -> dict[str, dict[str, dict]]:
    """What Zoho must hold, computed independently of the pipeline's diff code: module → email → customer."""
    import pandas as pd

    from tests.reference import classify
    from zoho_store_sync.customers import prepare
    from zoho_store_sync.sources.magento import customer_rows, order_aggregates

    frame = pd.DataFrame(customer_rows(magento.customers(), magento.url))
    frame = frame.merge(order_aggregates(magento.orders()), on="customer_key", how="left")
    valid = prepare(frame).valid
    valid["module"] = classify(valid)
    return {m: {r["email"]: r for r in valid[valid["module"] == m].to_dict("records")} for m in ("Contacts", "Leads")}


@pytest.fixture
def sync_dag(airflow_db, configure_tenant, zoho_sandbox, magento_sandbox, state_url):
    from airflow.models import DagBag

    from zoho_store_sync.state import StateStore, make_engine
    from zoho_store_sync.state_migrations import migrate

    store = StateStore(make_engine(state_url), TENANT["tenant_id"])
    migrate(store.engine)  # what `cli db migrate` does; the DAG's first task only checks the revision
    store.forget()  # the PostgreSQL database is shared by the session
    configure_tenant([TENANT], zoho=zoho_sandbox, magento=magento_sandbox, state_url=state_url)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.dags["zoho_sync__e2e_shop"]


def test_sync_puts_one_record_per_valid_email_in_the_right_module_and_a_second_run_changes_nothing(
    sync_dag, zoho_sandbox, magento_sandbox
):
    _run(sync_dag)
    expected = _expected_records(magento_sandbox)
    for module in ("Contacts", "Leads"):
        held = zoho_sandbox.records(module)
        by_email = {r["Email"]: r for r in held}
        assert len(by_email) == len(held), f"duplicate emails in {module}"
        assert set(by_email) == set(expected[module])
        for email, customer in expected[module].items():
            record = by_email[email]
            assert record["Last_Name"] == customer["lastname"][:80]
            assert record["Source_Customer_ID"] == customer["customer_key"]
            if module == "Contacts":
                assert record["Order_Count"] == customer["order_count"]
                assert record["Total_Order_Value"] == pytest.approx(round(customer["total_order_value"], 2))
    before = {m: sorted((r["id"], r["Modified_Time"]) for r in zoho_sandbox.records(m)) for m in ("Contacts", "Leads")}

    zoho_sandbox.reset_calls()
    _run(sync_dag)
    calls = zoho_sandbox.calls()
    writes = [
        c
        for c in calls
        if c["operation"] in ("insert", "update", "upsert", "delete", "convert", "upload", "bulk_write")
    ]
    assert writes == []
    reads = [c for c in calls if c["operation"] not in ("token",)]
    assert len(reads) <= 2  # at most one cheap read per module (the deleted-records check)
    after = {m: sorted((r["id"], r["Modified_Time"]) for r in zoho_sandbox.records(m)) for m in ("Contacts", "Leads")}
    assert after == before


def test_changed_customers_are_the_only_records_sent(sync_dag, zoho_sandbox, magento_sandbox, state_url):
    from zoho_store_sync.state import StateStore, make_engine

    _run(sync_dag)
    store = StateStore(make_engine(state_url), "e2e_shop")
    synced = sorted(int(k) for k in store.load().query("status == 'synced'")["customer_key"])
    for customer_id in synced[:3]:
        magento_sandbox.update_customer(customer_id, firstname="Renamed")
    zoho_sandbox.reset_calls()
    _run(sync_dag)
    summary = store.run_summaries("sync")[-1]
    assert (summary["updated"], summary["inserted"], summary["failed"]) == (3, 0, 0)
    upserts = [c for c in zoho_sandbox.calls() if c["operation"] == "upsert"]
    assert sum(c["records"] for c in upserts) == 3


def test_a_run_with_nothing_to_write_ends_in_plan_changes_and_starts_no_other_task(sync_dag, state_url):
    """Issue 17: at 500 tenants every 30 minutes, each task process costs ~0.5 CPU s. A no-op run (nothing changed)
    reports in plan_changes and skips the rest, so the scheduler starts none of them; it is still a green run with
    its summary, its Asset events, and the tenant's lock let go."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from zoho_store_sync.state import StateStore, make_engine

    _run(sync_dag)
    dag_run = _run(sync_dag)

    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    assert states == {
        "plan_changes": "success",
        "upsert_to_zoho": "skipped",
        "report_summary": "skipped",
        "release_tenant_lock": "skipped",
    }
    store = StateStore(make_engine(state_url), TENANT["tenant_id"])
    [summary] = [s for s in store.run_summaries("sync") if s["run"] == dag_run.run_id]
    assert summary["inserted"] == summary["updated"] == summary["failed"] == 0 and summary["ok"]
    assert store.lock_holder() is None  # let go by plan_changes itself
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        assert sorted(e.extra["module"] for e in events) == ["Contacts", "Leads"]
        assert {e.source_task_id for e in events} == {"plan_changes"}


def test_a_run_with_changes_records_its_events_once_in_report_summary(sync_dag, magento_sandbox):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    dag_run = _run(sync_dag)

    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).all()
        assert sorted((e.source_task_id, e.extra["module"]) for e in events) == [
            ("report_summary", "Contacts"),
            ("report_summary", "Leads"),
        ]
