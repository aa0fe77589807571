"""The load SIGKILLed at every write point, the customer changing module before the rerun: one person, one live
record."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import connection_env, migrated_state_database, postgres_conn_fields, sqlite_conn_fields
from tests.dags import crash_runner
from tests.dags.crash_runner import ZohoHold, crm_problems, expected_crm, live_records

TENANT = {
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "zoho_max_concurrency": 1,  # one call at a time: the write points come in plan order
    "retries": 0,
    "zoho_max_retries": 1,
    "full_sync_every_hours": 1e-6,  # every run a full pass: the pass that finds deletions
    "source_deletions": "delete",
    "max_deletions": 1000,
    "max_deletion_share": 1.0,
}
STORE_SIZE, STORE_SEED = 120, 3  # 49 Contacts and 62 Leads: one upsert batch per module
MOVERS = 3  # customers changing module (or edited) between the kill and the rerun


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_state_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty, migrated state database per test."""
    with migrated_state_database(request.param, tmp_path, "zoho_sync_kills") as url:
        yield url


@dataclass
class World:
    """One tenant on the Zoho and Magento sandboxes; runs in this process or as a crash_runner.py subprocess."""

    zoho: object
    magento: object
    tenant_id: str
    state_url: str
    runs: int = 0
    kills: int = 0
    checked: int = 0
    contacts_for_good: set[str] = field(default_factory=set)  # live Contacts once: Contacts for ever
    may_be_contacts: set[str] = field(default_factory=set)  # bought once, no longer a buyer

    def run(self) -> dict:
        from zoho_store_sync import pipeline

        run_id = f"run-{self.runs + 1}"
        self.runs += 1
        extracted = pipeline.extract(self.tenant_id, run_id)
        planned = pipeline.plan(self.tenant_id, run_id, extracted)
        loaded = pipeline.load(self.tenant_id, run_id, planned)
        summary = pipeline.report(self.tenant_id, run_id, extracted, planned, loaded)
        self.note_contacts()
        return summary

    def run_killed(self, kill: tuple[str, ...]) -> crash_runner.Runner:
        """A run in a subprocess, SIGKILLed at ``kill``: ("client", hold spec) or ("zoho", operation, module)."""
        hold = ZohoHold(self.zoho, kill[1], kill[2]) if kill[0] == "zoho" else None
        self.runs += 1
        runner = crash_runner.start(
            self.tenant_id, f"run-{self.runs}", dict(os.environ), hold_at=kill[1] if kill[0] == "client" else None
        )
        try:
            assert crash_runner.kill_when_held(runner, *([hold.applied] if hold else [])), (
                f"the run never reached {kill}:\n{runner.output}"
            )
        finally:
            if hold is not None:
                hold.remove()
        self.kills += 1
        self.note_contacts()
        return runner

    def note_contacts(self) -> None:
        self.contacts_for_good |= {str(r["Email"]) for r in live_records(self.zoho)["Contacts"]}

    def state(self):  # type: ignore[no-untyped-def]
        from zoho_store_sync.state import StateStore, make_engine

        return StateStore(make_engine(self.state_url), self.tenant_id).load()

    def problems(self) -> list[str]:
        found, checked = crm_problems(
            self.zoho, self.magento, contacts_for_good=self.contacts_for_good, may_be_contacts=self.may_be_contacts
        )
        self.checked += checked
        return found

    def twins(self) -> list[str]:
        """Emails with more than one live record (a person twice), whatever the store says."""
        held = Counter(str(r["Email"]) for records in live_records(self.zoho).values() for r in records)
        return sorted(email for email, n in held.items() if n > 1)


@pytest.fixture
def world(monkeypatch, zoho_sandbox, magento_store, fresh_state_url) -> World:  # type: ignore[no-untyped-def]
    magento = magento_store(STORE_SIZE, STORE_SEED)
    tenant = {**TENANT, "tenant_id": f"killed_{uuid.uuid4().hex[:8]}"}
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login=zoho_sandbox.client_id,
            password=zoho_sandbox.client_secret,
            extra={
                "refresh_token": zoho_sandbox.refresh_token,
                "accounts_url": zoho_sandbox.url,
                "api_domain": zoho_sandbox.url,
                "allow_custom_hosts": True,
            },
        )
    )
    monkeypatch.setenv(
        *connection_env(
            "magento_test",
            conn_type="http",
            host=magento.url,
            password=magento.integration_token,
            extra={"auth": "integration_token"},
        )
    )
    fields = (
        sqlite_conn_fields(fresh_state_url)
        if fresh_state_url.startswith("sqlite")
        else postgres_conn_fields(fresh_state_url)
    )
    monkeypatch.setenv(*connection_env("zoho_sync_state_db", **fields))
    monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps([tenant]))
    return World(zoho_sandbox, magento, tenant["tenant_id"], fresh_state_url)


# ---- the store moves on while the sync is down ------------------------------------------------------------


def _unique_customers(magento, module: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The store's customers of ``module`` (by the classification rules) whose email no one else has."""
    expected = expected_crm(magento)
    counts = Counter(str(c.get("email", "")).strip().lower() for c in magento.customers())
    keys = {str(k) for k in expected.loc[expected["module"] == module, "customer_key"]}
    return sorted(
        (c for c in magento.customers() if str(c["id"]) in keys and counts[str(c["email"]).strip().lower()] == 1),
        key=lambda c: c["id"],
    )


def _buy(world: World, customers: list[dict]) -> None:
    for customer in customers:
        world.magento.add_order(customer["id"], base_grand_total=42.0)


def _edit(world: World, customers: list[dict]) -> None:
    for customer in customers:
        world.magento.update_customer(customer["id"], firstname=f"Edited{customer['id']}")


def _stop_buying(world: World, customers: list[dict]) -> None:
    """Every order of these customers is cancelled (a cancelled order does not count): no longer buyers."""
    from sandboxes.magento import _ORDERS

    magento = world.magento
    with magento._lock:
        stamp = magento.now()
        cancelled = [
            entity_id
            for entity_id, order in magento._orders.items()
            if order.get("customer_id") in {c["id"] for c in customers}
        ]
        for entity_id in cancelled:
            magento._orders[entity_id] = {
                **magento._orders[entity_id],
                "state": "canceled",
                "status": "canceled",
                "updated_at": stamp,
            }
        magento._changed(_ORDERS, cancelled)
    world.may_be_contacts |= {str(c["email"]).strip().lower() for c in customers}


def _rerun_and_check(world: World, *, edited: list[dict]) -> None:
    """Two clean runs after the kill: never a person twice after either, and after the second exactly one
    live record per valid email, in its module, with the store's latest values, and no write-ahead row left."""
    world.run()
    assert world.twins() == []
    world.run()
    assert world.problems() == []
    for customer in edited:  # no lost update: the edit made while the sync was down is in Zoho
        email = str(customer["email"]).strip().lower()
        holders = [r for records in live_records(world.zoho).values() for r in records if r["Email"] == email]
        assert [r["First_Name"] for r in holders] == [f"Edited{customer['id']}"]
    state = world.state()
    assert sorted(state.loc[state["status"].isin(["unconfirmed", "converting"]), "customer_key"]) == []
    print(f"\nFIGURES runs={world.runs} kills={world.kills} records_checked={world.checked}")


# ---- the first sync killed while it inserts --------------------------------------------------------------

INSERT_KILLS = {
    "after_the_write_ahead_before_the_upsert_is_sent": lambda m: ("client", f"write_ahead:{m}"),
    "after_zoho_applied_the_inserts_before_it_answered": lambda m: ("zoho", "upsert", m),
    "after_zoho_answered_before_the_outcomes_are_written": lambda m: ("client", f"upsert_answered:{m}"),
    "after_the_outcomes_are_written": lambda m: ("client", f"outcome_written:{m}"),
}


@pytest.mark.parametrize("module", ["Leads", "Contacts"])
@pytest.mark.parametrize("kill", list(INSERT_KILLS))
def test_a_first_sync_killed_while_inserting_then_leads_buying_and_contacts_cancelling_ends_with_one_live_record_per_person(  # noqa: E501 - the name is the specification
    world, kill, module
):
    leads, contacts = _unique_customers(world.magento, "Leads"), _unique_customers(world.magento, "Contacts")
    world.run_killed(INSERT_KILLS[kill](module))
    assert world.twins() == []
    # While the sync is down: Leads buy, Contacts cancel every order, others are edited, in both modules.
    _buy(world, leads[:MOVERS])
    _stop_buying(world, contacts[:MOVERS])
    edited = leads[MOVERS : 2 * MOVERS] + contacts[MOVERS : 2 * MOVERS] + leads[:1]
    _edit(world, edited)
    _rerun_and_check(world, edited=edited)
    movers = {str(c["email"]).strip().lower() for c in leads[:MOVERS]}
    assert movers <= {r["Email"] for r in live_records(world.zoho)["Contacts"]}
    assert not movers & {r["Email"] for r in live_records(world.zoho)["Leads"]}


# ---- a Lead's conversion killed ----------------------------------------------------------------------------

CONVERT_KILLS = {
    "after_the_converting_row_before_the_convert_is_sent": ("client", "converting"),
    "after_zoho_converted_before_it_answered": ("zoho", "convert", "Leads"),
    "after_zoho_answered_the_convert_before_the_contact_upsert": ("client", "convert_answered"),
    "after_zoho_applied_the_contact_upsert_of_the_converted_before_it_answered": ("zoho", "upsert", "Contacts"),
}


@pytest.mark.parametrize("kill", list(CONVERT_KILLS))
def test_a_conversion_killed_then_the_customer_edited_and_another_lead_buying_ends_with_one_contact_per_person(
    world, kill
):
    world.run()
    leads = _unique_customers(world.magento, "Leads")
    _buy(world, leads[:MOVERS])
    world.run_killed(CONVERT_KILLS[kill])
    assert world.twins() == []
    _edit(world, leads[:MOVERS])
    _buy(world, leads[MOVERS : MOVERS + 1])
    _rerun_and_check(world, edited=leads[:MOVERS])
    buyers = {str(c["email"]).strip().lower() for c in leads[: MOVERS + 1]}
    converted = {r["Email"] for r in world.zoho.records("Leads") if r.get("Converted__s")}
    assert buyers <= converted  # converted, not doubled by a new Contact beside a live Lead


# ---- a source deletion killed ------------------------------------------------------------------------------

DELETE_KILLS = {
    "after_the_deletions_are_recorded_before_the_delete_is_sent": ("client", "deletion_recorded"),
    "after_zoho_deleted_before_it_answered": ("zoho", "delete", None),
    "after_zoho_answered_the_delete_before_the_outcomes_are_written": ("client", "delete_answered"),
}


@pytest.mark.parametrize("kill", list(DELETE_KILLS))
def test_a_source_deletion_killed_then_a_lead_buying_ends_deleted_once_and_never_taken_for_a_deletion_in_zoho(
    world, kill
):
    world.run()
    leads, contacts = _unique_customers(world.magento, "Leads"), _unique_customers(world.magento, "Contacts")
    gone = contacts[:2] + leads[:1]
    for customer in gone:
        world.magento.delete_customer(customer["id"])
    world.run_killed(DELETE_KILLS[kill])
    assert world.twins() == []
    _buy(world, leads[1:2])
    _edit(world, contacts[2:3])
    _rerun_and_check(world, edited=contacts[2:3])
    live = {r["Email"] for records in live_records(world.zoho).values() for r in records}
    assert not {str(c["email"]).strip().lower() for c in gone} & live
    state = world.state().set_index("customer_key")
    assert set(state.loc[[str(c["id"]) for c in gone], "status"]) == {"deleted_in_source"}


# ---- a write killed unconfirmed, then the customer changes email ---------------------------------------------

MOVE_KILLS = {
    "an_insert_applied_unanswered": (("zoho", "upsert", "Leads"), False),
    "an_insert_applied_unanswered_then_the_lead_buys": (("zoho", "upsert", "Leads"), True),
    "a_conversion_applied_unanswered": (("zoho", "convert", "Leads"), False),
}


@pytest.mark.parametrize("case", list(MOVE_KILLS))
def test_after_a_write_killed_unconfirmed_a_customer_changing_email_ends_as_one_record_under_the_new_email(world, case):
    kill, buys = MOVE_KILLS[case]
    leads = _unique_customers(world.magento, "Leads")
    if kill[1] == "convert":
        world.run()
        _buy(world, leads[:MOVERS])
    world.run_killed(kill)
    for customer in leads[:MOVERS]:  # while the sync is down: a new email, and maybe a first order
        world.magento.update_customer(customer["id"], email=f"moved.{customer['id']}@example.org")
    if buys:
        _buy(world, leads[:MOVERS])
    for _ in range(3):  # the write again under the email it was sent with, convert, then the move by id
        world.run()
        assert world.twins() == []
    assert world.problems() == []  # no record left under an old email, one under each new one
    state = world.state()
    assert sorted(state.loc[state["status"].isin(["unconfirmed", "converting"]), "customer_key"]) == []
    print(f"\nFIGURES runs={world.runs} kills={world.kills} records_checked={world.checked}")
