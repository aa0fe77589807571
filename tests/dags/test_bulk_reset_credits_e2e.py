"""zoho_reset end to end on Bulk Write: one job per chunk of one module, credits as estimated, no workflow storm.

The 45,000-record figure of the issue runs in ``make bench`` (``reset_45k_credits``: about a minute and a half
through the pipeline); here the same rule with smaller jobs, so each module still needs two jobs or more.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO

SHOP = {
    "tenant_id": "shop",
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "retries": 0,
    "zoho_max_retries": 1,
}
BULK_OPERATIONS = ("org", "upload", "bulk_write", "bulk_status", "bulk_download")


@pytest.fixture
def reset_run(airflow_db, configure_tenant, zoho_sandbox, magento_store, sqlite_state_url):  # type: ignore[no-untyped-def]
    from airflow.models import DagBag

    from zoho_store_sync.state import StateStore, make_engine

    configure_tenant([SHOP], zoho=zoho_sandbox, magento=magento_store(400, 21), state_url=sqlite_state_url)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    store = StateStore(make_engine(sqlite_state_url), "shop")

    def run(**conf) -> dict:  # type: ignore[no-untyped-def]
        form = {"tenant": "shop", "record_types": ["Contacts", "Leads"], "confirm": "shop", "wait_for_sync_minutes": 0}
        dag_run = bag.dags["zoho_reset"].test(run_conf={**form, **conf})
        assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
        return [s for s in store.run_summaries() if s.get("reset") is not None][-1]

    return run


def test_a_bulk_reset_spends_within_5_percent_of_its_own_estimate(reset_run, zoho_sandbox, monkeypatch):  # type: ignore[no-untyped-def]
    from zoho_store_sync import reset

    monkeypatch.setattr(reset, "choose_write_path", lambda n: "bulk")  # as for a store above the break-even
    monkeypatch.setattr(reset, "JOB_RECORDS", 100)  # jobs of 100 records: two or more per module

    summary = reset_run()

    jobs = [c for c in zoho_sandbox.calls() if c["operation"] == "bulk_write" and c["status"] == 201]
    assert summary["reset"]["bulk_jobs"]["Contacts"] >= 2 and summary["reset"]["bulk_jobs"]["Leads"] >= 2
    assert len(jobs) == sum(summary["reset"]["bulk_jobs"].values())  # jobs opened exactly as estimated
    assert all(job["records"] <= 100 for job in jobs)
    assert summary["inserted"] == summary["contacts"] + summary["leads"] and summary["failed"] == 0
    # What Zoho charged for Bulk Write: each job's org lookup, upload, job, status polls and result download.
    measured = sum(c["credits"] for c in zoho_sandbox.calls() if c["operation"] in BULK_OPERATIONS)
    estimate = summary["reset"]["bulk_credits_estimate"]
    assert abs(measured - estimate) <= 0.05 * estimate, (measured, estimate)


def test_the_reset_fires_no_workflow_unless_asked(reset_run, zoho_sandbox):  # type: ignore[no-untyped-def]
    reset_run()
    upserts = [c for c in zoho_sandbox.calls() if c["operation"] == "upsert"]
    assert upserts and all(c.get("trigger") == [] for c in upserts)  # the tenant's own setting fires them all

    zoho_sandbox.reset_calls()
    summary = reset_run(fire_workflows=True)
    upserts = [c for c in zoho_sandbox.calls() if c["operation"] == "upsert"]
    assert summary["reset"]["fire_workflows"] is True
    assert upserts and all("trigger" not in c for c in upserts)  # Zoho's default: workflow, approval, blueprint


def test_the_reset_sends_in_the_tenants_pool_with_its_slots(  # type: ignore[no-untyped-def]
    airflow_db, configure_tenant, zoho_sandbox, magento_store, sqlite_state_url
):
    from airflow.models import DagBag
    from airflow.utils.session import create_session

    own_pool = {**SHOP, "zoho_pool": "zoho_org_acme", "zoho_max_concurrency": 4}
    other = {**SHOP, "tenant_id": "other"}  # the default pool, zoho_api with 10 slots
    configure_tenant([own_pool, other], zoho=zoho_sandbox, magento=magento_store(60, 3), state_url=sqlite_state_url)
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["zoho_reset"]
    send = dag.get_task("send_chunk__zoho_org_acme__4")
    assert (send.pool, send.pool_slots) == ("zoho_org_acme", 4)  # as the tenant's sync takes it (upsert_to_zoho)

    dag_run = dag.test(run_conf={"tenant": "shop", "record_types": ["Contacts", "Leads"], "confirm": "shop"})

    assert str(getattr(dag_run.state, "value", dag_run.state)) == "success"
    with create_session() as session:
        states = {
            (ti.task_id, ti.pool, ti.pool_slots): str(getattr(ti.state, "value", ti.state))
            for ti in dag_run.get_task_instances(session=session)
            if ti.task_id.startswith("send_chunk__")
        }
    assert states[("send_chunk__zoho_org_acme__4", "zoho_org_acme", 4)] == "success"
    assert states[("send_chunk__zoho_api__10", "zoho_api", 10)] == "skipped"  # another tenant's lane
    assert len(zoho_sandbox.records("Contacts")) + len(zoho_sandbox.records("Leads")) > 0
