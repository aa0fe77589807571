"""Records the sync did not create (dag.test against the sandboxes): adopted on the first sync with no twins, a buyer's
foreign Lead converted, conversion never attached to a same-named stranger, DUPLICATE_DATA linked instead of stuck."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from sandboxes.zoho.records import create_in_ui
from tests.conftest import migrated_state_database
from tests.dags.test_data_safety_e2e import World


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_state_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with migrated_state_database(request.param, tmp_path, "zoho_sync_adopt") as url:
        yield url


@pytest.fixture
def world(airflow_db, monkeypatch, zoho_sandbox, magento_store, fresh_state_url):  # type: ignore[no-untyped-def]
    return World(monkeypatch, zoho_sandbox, fresh_state_url, {"main": magento_store(20, 11)})


def _customer(world: World, email: str, *, first: str = "Pat", last: str = "Boyle", buyer: bool = False) -> int:
    magento = world.stores["main"]
    customer = magento.add_customer(email, firstname=first, lastname=last)
    if buyer:
        magento.add_order(customer["id"], base_grand_total=42.0)
    return int(customer["id"])


def _records(world: World, email: str) -> dict[str, list[dict]]:
    """Every live (not converted) record with ``email`` per module, and the converted Leads."""
    out: dict[str, list[dict]] = {"Contacts": [], "Leads": [], "converted": []}
    for module in ("Contacts", "Leads"):
        for record in world.zoho.records(module):
            if str(record.get("Email", "")).lower() != email:
                continue
            out["converted" if record.get("Converted__s") else module].append(record)
    return out


def _twins(world: World) -> dict[str, int]:
    """Emails with more than one live record across Contacts and Leads."""
    counts: dict[str, int] = {}
    for module in ("Contacts", "Leads"):
        for record in world.zoho.records(module):
            if not record.get("Converted__s") and record.get("Email"):
                email = str(record["Email"]).lower()
                counts[email] = counts.get(email, 0) + 1
    return {email: n for email, n in counts.items() if n > 1}


def test_existing_leads_and_contacts_are_adopted_on_the_first_sync_with_no_twins(world):
    zoho = world.zoho
    web_lead = create_in_ui(zoho, "Leads", {"Last_Name": "Form", "Email": "web.lead@shop.example", "Company": "Web"})
    old_contact = create_in_ui(zoho, "Contacts", {"Last_Name": "Old", "Email": "old.contact@shop.example"})
    kept_contact = create_in_ui(zoho, "Contacts", {"Last_Name": "Kept", "Email": "was.contact@shop.example"})
    foreign = create_in_ui(
        zoho, "Leads", {"Last_Name": "Fair", "Email": "foreign.lead@shop.example", "Company": "Acme"}
    )
    _customer(world, "web.lead@shop.example", first="Wendy", last="Lead")  # registered: a Lead
    _customer(world, "old.contact@shop.example", first="Olga", last="Buyer", buyer=True)  # a Contact
    _customer(world, "was.contact@shop.example", first="Kim", last="Kept")  # a Lead here, a Contact in Zoho
    _customer(world, "foreign.lead@shop.example", first="Fred", last="Fair", buyer=True)  # a buyer with a foreign Lead
    world.configure("adopter", "main")

    summary = world.run("adopter")

    assert _twins(world) == {}  # 0 twins: no email has two live records
    assert [r["id"] for r in _records(world, "web.lead@shop.example")["Leads"]] == [web_lead["id"]]
    assert _records(world, "web.lead@shop.example")["Leads"][0]["First_Name"] == "Wendy"  # our fields on top
    assert [r["id"] for r in _records(world, "old.contact@shop.example")["Contacts"]] == [old_contact["id"]]
    kept = _records(world, "was.contact@shop.example")
    assert [r["id"] for r in kept["Contacts"]] == [kept_contact["id"]] and kept["Leads"] == []  # never downgraded
    converted = _records(world, "foreign.lead@shop.example")
    assert [r["id"] for r in converted["converted"]] == [foreign["id"]] and converted["Leads"] == []
    assert len(converted["Contacts"]) == 1 and converted["Contacts"][0]["First_Name"] == "Fred"
    assert summary["converted"] == 1 and summary["failed"] == 0
    state = world.state("adopter").set_index("email")
    assert state.loc["foreign.lead@shop.example", "module"] == "Contacts"
    assert state.loc["foreign.lead@shop.example", "zoho_id"] == converted["Contacts"][0]["id"]
    assert state.loc["was.contact@shop.example", "zoho_id"] == kept_contact["id"]

    world.run("adopter")  # and a second run has nothing left to fix
    assert _twins(world) == {}
    assert world.store("adopter").run_summaries("sync")[-1]["converted"] == 0


def test_a_converted_buyer_gets_his_own_contact_never_a_same_named_strangers(world):
    stranger = create_in_ui(
        world.zoho, "Contacts", {"First_Name": "John", "Last_Name": "Smith", "Email": "john.smith@elsewhere.example"}
    )
    before = copy.deepcopy(stranger)
    john = _customer(world, "john@shop.example", first="John", last="Smith")
    world.configure("smiths", "main")
    world.run("smiths")
    assert len(_records(world, "john@shop.example")["Leads"]) == 1  # registered, not a buyer yet: a Lead

    world.stores["main"].add_order(john, base_grand_total=10.0)
    summary = world.run("smiths")

    assert summary["converted"] == 1
    ours = _records(world, "john@shop.example")
    assert len(ours["Contacts"]) == 1 and ours["Leads"] == [] and len(ours["converted"]) == 1
    assert ours["Contacts"][0]["id"] != stranger["id"]
    assert ours["converted"][0]["$converted_detail"]["Contacts"] == ours["Contacts"][0]["id"]  # the Lead went to him
    now = next(r for r in world.zoho.records("Contacts") if r["id"] == stranger["id"])
    assert now == before  # the stranger was not touched: no Account, no field of ours
    assert world.state("smiths").loc[str(john), "zoho_id"] == ours["Contacts"][0]["id"]


def test_duplicate_data_from_duplicate_check_preferences_links_the_named_record_instead_of_failing_forever(world):
    zoho = world.zoho
    zoho.duplicate_check = {"Contacts": {"Email": ["Contacts", "Leads"]}, "Leads": {"Email": ["Leads", "Contacts"]}}
    lead = create_in_ui(zoho, "Leads", {"Last_Name": "Dupe", "Email": "dup.buyer@shop.example", "Company": "Acme"})
    contact = create_in_ui(zoho, "Contacts", {"Last_Name": "Dupe", "Email": "dup.lead@shop.example"})
    buyer = _customer(world, "dup.buyer@shop.example", first="Dana", last="Dupe", buyer=True)
    registered = _customer(world, "dup.lead@shop.example", first="Lee", last="Dupe")
    world.configure("dupes", "main", adopt_existing_records=False)  # nothing adopted first: Zoho's answer links

    first = world.run("dupes")

    assert first["failed"] == 0  # linked, not rejected
    state = world.state("dupes")
    assert (state.loc[str(buyer), "module"], state.loc[str(buyer), "zoho_id"]) == ("Leads", lead["id"])
    assert (state.loc[str(registered), "module"], state.loc[str(registered), "zoho_id"]) == ("Contacts", contact["id"])

    second = world.run("dupes")

    assert second["converted"] == 1 and second["failed"] == 0
    bought = _records(world, "dup.buyer@shop.example")
    assert [r["id"] for r in bought["converted"]] == [lead["id"]] and len(bought["Contacts"]) == 1
    assert bought["Contacts"][0]["First_Name"] == "Dana"
    kept = _records(world, "dup.lead@shop.example")
    assert [r["id"] for r in kept["Contacts"]] == [contact["id"]] and kept["Leads"] == []
    assert kept["Contacts"][0]["First_Name"] == "Lee"
    assert set(world.state("dupes")["status"]) == {"synced"}
    assert _twins(world) == {}


@pytest.fixture
def big_world(airflow_db, monkeypatch, zoho_sandbox, magento_store, fresh_state_url):  # type: ignore[no-untyped-def]
    return World(monkeypatch, zoho_sandbox, fresh_state_url, {"main": magento_store(450, 12)})


def _adoption_calls(world: World) -> list[tuple[str, str | None]]:
    return [(c["operation"], c.get("module")) for c in world.zoho.calls() if c["operation"] in ("count", "coql")]


def test_a_first_sync_into_an_empty_org_counts_each_module_and_looks_nothing_up(big_world):
    big_world.configure("newcomer", "main")
    big_world.zoho.reset_calls()

    summary = big_world.run("newcomer")

    # Before: one COQL query per 100 emails and module, to find nothing (5 + 5 here; 20,000 for a million).
    assert sorted(_adoption_calls(big_world)) == [("count", "Contacts"), ("count", "Leads")]
    assert summary["failed"] == 0 and summary["inserted"] > 400 and _twins(big_world) == {}


def test_a_small_org_is_read_whole_and_its_records_are_adopted_as_by_email(big_world):
    email = "web.form@shop.example"
    _customer(big_world, email, first="Wendy", last="Form")  # registered only: a Lead, nothing to convert
    lead = create_in_ui(big_world.zoho, "Leads", {"Last_Name": "Form", "Email": email.upper(), "Company": "Web"})
    create_in_ui(big_world.zoho, "Leads", {"Last_Name": "Stranger", "Email": "nobody@else.example", "Company": "X"})
    big_world.configure("small_org", "main")
    big_world.zoho.reset_calls()

    big_world.run("small_org")

    # 450 emails by lookup: 5 credits for Leads; the whole module (2 records): one 3-credit page.
    assert sorted(_adoption_calls(big_world)) == [("coql", "Leads"), ("count", "Contacts"), ("count", "Leads")]
    assert _twins(big_world) == {}
    state = big_world.state("small_org").set_index("email")
    assert state.loc[email, "zoho_id"] == lead["id"]
