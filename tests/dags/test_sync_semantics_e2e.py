"""Sync semantics end to end (dag.test against the sandboxes): the awkward cases of a CRM sync."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

BASE = {
    "tenant_id": "semantics",
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "full_sync_every_hours": 0.0001,
    "failure_threshold": 1.0,
    "retries": 0,
    "zoho_max_retries": 1,
}


@pytest.fixture
def small_magento(magento_store):
    return magento_store(150, 5)


@pytest.fixture
def world(airflow_db, configure_tenant, zoho_sandbox, small_magento, sqlite_state_url):
    """Runs the tenant DAG with a given config; exposes the sandboxes and the state store."""
    from airflow.models import DagBag

    from zoho_store_sync.state import StateStore, make_engine

    class World:
        zoho = zoho_sandbox
        magento = small_magento
        store = StateStore(make_engine(sqlite_state_url), BASE["tenant_id"])

        def run(self, *, expect: str = "success", dry_run: bool = False, **overrides) -> dict:
            configure_tenant(
                [{**BASE, **overrides}], zoho=zoho_sandbox, magento=small_magento, state_url=sqlite_state_url
            )
            dag = DagBag(dag_folder=str(REPO / "dags")).dags["zoho_sync__semantics"]
            dag_run = dag.test(run_conf={"dry_run": dry_run})
            assert str(getattr(dag_run.state, "value", dag_run.state)) == expect
            kind = "dry_run" if dry_run else "sync"
            return self.store.run_summaries(kind)[-1] if expect == "success" else {}

        def state(self):
            return self.store.load().set_index("customer_key")

        def zoho_by_email(self, module: str) -> dict:
            return {r["Email"]: r for r in zoho_sandbox.records(module) if not r.get("Converted__s")}

        def customer(self, key: str) -> dict:
            return next(c for c in small_magento.customers() if str(c["id"]) == key)

        def synced(self, module: str) -> list[str]:
            state = self.state()
            return sorted(state.index[(state["module"] == module) & (state["status"] == "synced")], key=int)

    return World()


def test_a_lead_who_buys_is_converted_into_one_contact(world):
    world.run()
    key = world.synced("Leads")[0]
    email = world.state().loc[key, "email"]
    lead_id = world.state().loc[key, "zoho_id"]
    world.magento.add_order(int(key), base_grand_total=42.0)
    summary = world.run()
    assert summary["converted"] == 1
    assert world.state().loc[key, "module"] == "Contacts"
    assert email in world.zoho_by_email("Contacts")
    assert email not in world.zoho_by_email("Leads")
    lead = next(r for r in world.zoho.records("Leads") if r["id"] == lead_id)
    assert lead["Converted__s"] is True
    contacts = [r for r in world.zoho.records("Contacts") if r["Email"] == email]
    assert len(contacts) == 1 and contacts[0]["Order_Count"] == 1


def test_a_record_deleted_in_zoho_is_not_sent_again_until_a_reset(world):
    world.run()
    key = world.synced("Contacts")[0]
    zoho_id = world.state().loc[key, "zoho_id"]
    email = world.state().loc[key, "email"]
    world.zoho.delete_record_in_ui("Contacts", zoho_id)
    world.magento.update_customer(int(key), firstname="Edited")
    summary = world.run()
    assert summary["deleted_in_zoho"] == 1
    assert world.state().loc[key, "status"] == "deleted_in_zoho"
    assert email not in world.zoho_by_email("Contacts")
    world.magento.update_customer(int(key), firstname="EditedAgain")
    assert world.run()["updated"] == 0
    assert email not in world.zoho_by_email("Contacts")


@pytest.mark.parametrize("mode", ["ignore", "flag", "delete"])
def test_a_customer_deleted_in_the_store_is_handled_as_the_tenant_chose(world, mode):
    overrides = {
        "source_deletions": mode,
        "mapping_overrides": {"Contacts": {"Customer_Deleted": "deleted"}, "Leads": {"Customer_Deleted": "deleted"}},
    }
    world.run(**overrides)
    key = world.synced("Contacts")[0]
    email = world.state().loc[key, "email"]
    world.magento.delete_customer(int(key))
    summary = world.run(**overrides)
    held = world.zoho_by_email("Contacts")
    if mode == "ignore":
        assert email in held and not held[email].get("Customer_Deleted")
        assert summary["deleted_in_source"] == 0
    elif mode == "flag":
        assert held[email]["Customer_Deleted"] is True
        assert summary["deleted_in_source"] == 1
    else:
        assert email not in held
        assert summary["deleted_in_source"] == 1
    if mode != "ignore":
        assert world.state().loc[key, "status"] == "deleted_in_source"
        assert world.run(**overrides)["write_calls"] == 0  # handled once, not every run


def test_an_email_change_in_the_store_updates_the_same_zoho_record(world):
    world.run()
    key = world.synced("Contacts")[0]
    zoho_id = world.state().loc[key, "zoho_id"]
    count = len(world.zoho.records("Contacts"))
    world.magento.update_customer(int(key), email="brand.new.address@example.org")
    summary = world.run()
    assert summary["updated"] == 1 and summary["inserted"] == 0
    record = next(r for r in world.zoho.records("Contacts") if r["id"] == zoho_id)
    assert record["Email"] == "brand.new.address@example.org"
    assert len(world.zoho.records("Contacts")) == count


def test_bad_rows_are_counted_never_sent_and_fixed_values_fit_zoho(world):
    customers = sorted(world.magento.customers(), key=lambda c: c["id"])
    plain = [c for c in customers if "@" in c["email"] and c["email"].strip() == c["email"]]
    world.magento.update_customer(plain[0]["id"], lastname="")
    world.magento.update_customer(plain[1]["id"], firstname="Maximiliano-Alejandro-Bartholomew-Fitzgerald-Longname")
    world.magento.update_customer(plain[2]["id"], email="not-an-email")
    summary = world.run()
    assert summary["failed"] == 0
    assert summary["invalid"] >= 1
    assert "not-an-email" not in {r["Email"] for m in ("Contacts", "Leads") for r in world.zoho.records(m)}
    records = {r["Source_Customer_ID"]: r for m in ("Contacts", "Leads") for r in world.zoho.records(m)}
    assert records[str(plain[0]["id"])]["Last_Name"]  # derived: never empty
    assert len(records[str(plain[1]["id"])]["First_Name"]) == 40


def test_permanent_rejections_wait_for_a_source_change_and_the_run_stays_green(world):
    # Store_URL is a website field: Zoho rejects a full name (it has a space) for every Contact.
    overrides = {"mapping_overrides": {"Contacts": {"Store_URL": "full_name"}}}
    first = world.run(**overrides)
    assert first["failed"] > 0
    errors = world.store.errors(kind="rejected")
    assert errors and errors[0]["code"] == "INVALID_DATA" and errors[0]["retryable"] is False
    second = world.run(**overrides)
    assert second["write_calls"] == 0 and second["skipped"] >= first["failed"]
    failed_key = errors[0]["customer_key"]
    world.magento.update_customer(int(failed_key), firstname="Changed")
    third = world.run(**overrides)
    assert third["failed"] == 1  # sent again because it changed, and still rejected


def test_too_many_rejections_turn_the_run_red(world):
    world.run(expect="failed", failure_threshold=0.01, mapping_overrides={"Contacts": {"Store_URL": "full_name"}})


def test_a_mapping_that_does_not_fit_the_org_fails_before_anything_is_sent(world):
    world.zoho.reset_calls()
    world.run(expect="failed", mapping_overrides={"Contacts": {"Order_Count": "city", "Nickname": "firstname"}})
    assert not [c for c in world.zoho.calls() if c["operation"] in ("upsert", "update", "convert", "delete")]


def test_a_systemic_failure_fails_the_task_and_loses_nothing(world):
    world.zoho.inject_fault("500", times=100, operation="upsert")
    world.run(expect="failed")
    state = world.store.load()
    # nothing confirmed: the state holds only what was about to be sent (write-ahead), no Zoho id
    assert set(state["status"]) <= {"unconfirmed"} and state["zoho_id"].isna().all()
    with world.zoho._lock:  # Zoho is back
        world.zoho._faults.clear()
    summary = world.run()
    assert summary["inserted"] == summary["contacts"] + summary["leads"]


def test_a_mapping_change_resends_only_records_whose_payload_changed(world):
    world.run()
    with_company = sum(1 for c in world.magento.customers() for a in c.get("addresses", [])[:1] if a.get("company"))
    summary = world.run(mapping_overrides={"Contacts": {"Description": "company"}})
    state = world.state()
    contacts_with_company = sum(
        1
        for c in world.magento.customers()
        if str(c["id"]) in state.index
        and state.loc[str(c["id"]), "module"] == "Contacts"
        and any(a.get("company") for a in c.get("addresses", []) if a.get("default_billing"))
    )
    assert summary["updated"] == contacts_with_company
    assert summary["updated"] <= with_company


def test_a_dry_run_writes_nothing_and_predicts_the_next_real_run(world):
    world.run()
    keys = world.synced("Contacts")[:2] + world.synced("Leads")[:2]
    world.magento.update_customer(int(keys[0]), firstname="Dry")
    world.magento.add_order(int(keys[2]), base_grand_total=10.0)
    world.magento.update_customer(int(keys[3]), email="dry.run.new@example.org")
    before = {m: sorted((r["id"], r["Modified_Time"]) for r in world.zoho.records(m)) for m in ("Contacts", "Leads")}
    world.zoho.reset_calls()
    dry = world.run(dry_run=True)
    writes = [c for c in world.zoho.calls() if c["operation"] in ("upsert", "insert", "update", "delete", "convert")]
    assert writes == []
    assert before == {
        m: sorted((r["id"], r["Modified_Time"]) for r in world.zoho.records(m)) for m in ("Contacts", "Leads")
    }
    real = world.run()
    assert dry["would"]["insert"] == real["inserted"]
    assert dry["would"]["update"] == real["updated"]
    assert dry["would"]["convert"] == real["converted"]
