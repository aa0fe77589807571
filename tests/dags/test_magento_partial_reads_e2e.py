"""End to end (issue 12): a partial Magento read is never taken for a full pass, on SQLite and PostgreSQL state.

The tenant deletes Zoho records of customers gone from the store (``source_deletions: delete``) and runs a
full pass every run. The Magento sandbox answers one search page with ``200 {"items": [], "total_count": 0}``
in the middle of paging, as a production store did: the run must turn red and leave Zoho as it was, and the
run after the fault is gone must be green and have lost nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import REPO

TENANT = {
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "source_deletions": "delete",
    "full_sync_every_hours": 0.0001,  # every run is a full pass: the pass that detects deletions
    "magento": {"page_size": 100},  # 400 customers, ~1,000 orders: the fault lands mid-paging
    "retries": 0,
    "zoho_max_retries": 1,
    # The mass-deletion limit is a separate safeguard (in the plan): switched off, so the read itself is tested.
    "max_deletions": 100_000,
    "max_deletion_share": 1.0,
}
MODULES = ("Contacts", "Leads")


@pytest.fixture
def world(airflow_db, configure_tenant, zoho_sandbox, magento_sandbox, state_url):
    """Runs the tenant's DAG with dag.test() against the Zoho and Magento sandboxes; state on ``state_url``."""
    from airflow.models import DagBag

    from zoho_store_sync.state import StateStore, make_engine

    tenant = {**TENANT, "tenant_id": f"partial_reads_{uuid.uuid4().hex[:8]}"}  # the PostgreSQL database is shared
    store = StateStore(make_engine(state_url), tenant["tenant_id"])
    _schema_ready(store)
    configure_tenant([tenant], zoho=zoho_sandbox, magento=magento_sandbox, state_url=state_url)

    class World:
        zoho = zoho_sandbox
        magento = magento_sandbox
        state = store

        def run(self, expect: str) -> dict[str, str]:
            """Run the DAG once; the state of each task (a red run must fail at the extraction)."""
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            dag_run = bag.dags[f"zoho_sync__{tenant['tenant_id']}"].test()
            assert str(getattr(dag_run.state, "value", dag_run.state)) == expect
            tasks = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
            if expect == "failed":
                assert tasks["plan_changes"] == "failed" and tasks["upsert_to_zoho"] != "success", tasks
            return tasks

        def records(self) -> dict[str, dict[str, dict]]:
            """module → Zoho id → record, as Zoho holds them (a converted Lead is a Contact now)."""
            return {m: {r["id"]: r for r in zoho_sandbox.records(m) if not r.get("Converted__s")} for m in MODULES}

        def order_counts(self) -> dict[str, int]:
            return {r["Email"]: r.get("Order_Count") or 0 for r in self.records()["Contacts"].values()}

        def both_contact_and_lead(self) -> set[str]:
            held = self.records()
            return {r["Email"] for r in held["Contacts"].values()} & {r["Email"] for r in held["Leads"].values()}

    return World()


def _schema_ready(store: Any) -> None:
    """The state tables at this code's revision (versioned migrations where the code has them)."""
    try:
        from zoho_store_sync.state_migrations import migrate
    except ImportError:
        store.create_schema()
    else:
        migrate(store.engine)


def count(records: dict[str, dict[str, dict]]) -> dict[str, int]:
    return {m: len(held) for m, held in records.items()}


def test_an_empty_customers_page_mid_paging_turns_the_run_red_and_deletes_nothing_in_zoho(world):
    world.run("success")
    before = world.records()
    assert before["Contacts"] and before["Leads"]

    # page 2 of the customers' full pass (after the count probe and page 1), and every retry of it
    world.magento.inject_fault("empty_page", path="customers", after_pages=2, times=None)
    world.zoho.reset_calls()
    world.run("failed")
    assert world.magento.applied_faults(), "the fault never fired"
    after = world.records()
    assert count(after) == count(before)
    deleted = {m: sorted(set(before[m]) - set(after[m])) for m in MODULES}
    assert deleted == {"Contacts": [], "Leads": []}
    assert [c for c in world.zoho.calls() if c["operation"] in ("delete", "update", "upsert", "convert")] == []

    world.magento.clear_faults()
    world.run("success")
    again = world.records()
    assert set(again["Contacts"]) == set(before["Contacts"]) and set(again["Leads"]) == set(before["Leads"])
    summary = world.state.run_summaries("sync")[-1]
    assert summary["deleted_in_source"] == 0 and summary["full_pass"] is True


def test_an_empty_orders_page_mid_paging_turns_the_run_red_and_lowers_no_order_count(world):
    world.run("success")
    counts_before = world.order_counts()
    records_before = count(world.records())
    assert sum(counts_before.values()) > 0

    world.magento.inject_fault("empty_page", path="orders", after_pages=2, times=None)
    world.zoho.reset_calls()
    world.run("failed")
    assert [c for c in world.zoho.calls() if c["operation"] in ("delete", "update", "upsert", "convert")] == []
    assert world.magento.applied_faults(), "the fault never fired"
    counts_after = world.order_counts()
    lowered = sorted(e for e, n in counts_before.items() if counts_after.get(e, 0) < n)
    assert lowered == []
    assert world.both_contact_and_lead() == set()
    assert count(world.records()) == records_before

    world.magento.clear_faults()
    world.run("success")
    assert world.order_counts() == counts_before  # the store did not change: every count as it was
    assert world.both_contact_and_lead() == set()
    assert count(world.records()) == records_before


def test_a_transient_empty_page_is_retried_and_the_run_stays_green_with_nothing_lost(world):
    world.run("success")
    before = world.records()
    world.magento.inject_fault("empty_page", path="customers", after_pages=2, times=1)
    world.magento.inject_fault("empty_page", path="orders", after_pages=3, times=1)
    world.run("success")
    assert len(world.magento.applied_faults()) == 2
    after = world.records()
    assert {m: set(held) for m, held in after.items()} == {m: set(held) for m, held in before.items()}
    summary = world.state.run_summaries("sync")[-1]
    assert summary["deleted_in_source"] == 0 and summary["extracted"] == len(world.magento.customers())
