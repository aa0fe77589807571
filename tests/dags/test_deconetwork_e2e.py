"""DecoNetwork tenants end to end (dag.test against the DecoNetwork and Zoho sandboxes): sync options,
record-type switches, the affiliate rule, custom and bad mappings."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, connection_env

PARENT = {
    "tenant_id": "acme",
    "source": "deconetwork",
    "store_conn_id": "deco_test",
    "zoho_conn_id": "zoho_test",
    "retries": 0,
    "zoho_max_retries": 1,
}


@pytest.fixture
def deco(tmp_path):
    from sandboxes.deconetwork import DecoNetworkSandbox, generate_deconetwork_store

    with DecoNetworkSandbox(generate_deconetwork_store(160, seed=4)) as sandbox:
        sandbox.export_path = sandbox.write_export(tmp_path / "customers.csv")
        yield sandbox


@pytest.fixture
def affiliate_zoho():
    from sandboxes.zoho_crm import ZohoSandbox

    with ZohoSandbox(seed=99) as sandbox:
        yield sandbox


@pytest.fixture
def deco_world(airflow_db, monkeypatch, zoho_sandbox, affiliate_zoho, deco, sqlite_state_url):
    from airflow.models import DagBag

    from tests.conftest import sqlite_conn_fields

    def zoho_conn(conn_id: str, zoho) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.setenv(
            *connection_env(
                conn_id,
                conn_type="http",
                login=zoho.client_id,
                password=zoho.client_secret,
                extra={
                    "refresh_token": zoho.refresh_token,
                    "accounts_url": zoho.url,
                    "api_domain": zoho.url,
                    "allow_custom_hosts": True,
                },
            )
        )

    zoho_conn("zoho_test", zoho_sandbox)
    zoho_conn("zoho_affiliate", affiliate_zoho)
    monkeypatch.setenv(
        *connection_env("deco_test", conn_type="http", host=deco.url, login=deco.username, password=deco.password)
    )
    monkeypatch.setenv(*connection_env("zoho_sync_state_db", **sqlite_conn_fields(sqlite_state_url)))
    export = f"file://{deco.export_path}"

    def run(tenants: list[dict], dag_id: str, expect: str = "success") -> dict:
        for t in tenants:
            t.setdefault("deconetwork", {}).setdefault("customers_export_url", export)
        monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps(tenants))
        bag = DagBag(dag_folder=str(REPO / "dags"))
        dag_run = bag.dags[dag_id].test()
        assert str(getattr(dag_run.state, "value", dag_run.state)) == expect
        if expect != "success":
            return {}
        from zoho_store_sync.state import StateStore, make_engine

        return StateStore(make_engine(sqlite_state_url), dag_id.removeprefix("zoho_sync__")).run_summaries("sync")[-1]

    return run


def _stores_in(zoho, module: str | None = None) -> set[str]:
    modules = [module] if module else ["Contacts", "Leads"]
    return {r.get("Store_Name") for m in modules for r in zoho.records(m)}


def _store_names(deco, owner: str | None = None) -> set[str]:
    return {s["name"] for s in deco.stores() if owner is None or s["owner"] == owner}


def test_all_stores_syncs_customers_of_every_store_including_affiliates(deco_world, zoho_sandbox, deco):
    summary = deco_world([dict(PARENT)], "zoho_sync__acme")
    assert summary["inserted"] > 0 and summary["failed"] == 0
    assert _stores_in(zoho_sandbox) - {None} == _store_names(deco)


def test_only_my_stores_leaves_affiliate_customers_out(deco_world, zoho_sandbox, deco):
    summary = deco_world([{**PARENT, "sync_option": "my_stores"}], "zoho_sync__acme")
    assert summary["out_of_scope"] > 0
    assert _stores_in(zoho_sandbox) - {None} <= _store_names(deco, "me")


def test_dont_sync_sends_nothing(deco_world, zoho_sandbox):
    summary = deco_world(
        [{**PARENT, "sync_option": "none", "sync_contacts": False, "sync_leads": False}], "zoho_sync__acme"
    )
    assert summary["write_calls"] == 0
    assert zoho_sandbox.records("Contacts") == [] and zoho_sandbox.records("Leads") == []


@pytest.mark.parametrize(
    "switch, synced, empty",
    [({"sync_leads": False}, "Contacts", "Leads"), ({"sync_contacts": False}, "Leads", "Contacts")],
)
def test_each_record_type_can_be_switched_off(deco_world, zoho_sandbox, switch, synced, empty):
    summary = deco_world([{**PARENT, **switch}], "zoho_sync__acme")
    assert zoho_sandbox.records(synced) and zoho_sandbox.records(empty) == []
    assert summary["skipped"] > 0


def test_an_affiliate_with_its_own_integration_gets_its_stores_and_the_parent_leaves_them_out(
    deco_world, zoho_sandbox, affiliate_zoho, deco
):
    northside = next(s for s in deco.stores() if s["store_id"] == "2")["name"]
    tenants = [
        {**PARENT, "deconetwork": {"allow_affiliate_integrations": True}},
        {
            **PARENT,
            "tenant_id": "northside",
            "zoho_conn_id": "zoho_affiliate",
            "deconetwork": {"affiliate_of": "acme", "store_ids": ["2"]},
        },
    ]
    deco_world([dict(t) for t in tenants], "zoho_sync__acme")
    deco_world([dict(t) for t in tenants], "zoho_sync__northside")
    assert _stores_in(affiliate_zoho) - {None} == {northside}
    assert northside not in _stores_in(zoho_sandbox)
    parent_emails = {r["Email"] for m in ("Contacts", "Leads") for r in zoho_sandbox.records(m)}
    affiliate_emails = {r["Email"] for m in ("Contacts", "Leads") for r in affiliate_zoho.records(m)}
    assert affiliate_emails and not (parent_emails & affiliate_emails - _shared_emails(deco))


def _shared_emails(deco) -> set[str]:  # type: ignore[no-untyped-def]
    """Emails used in more than one store (legitimately in both orgs, as different store customers)."""
    seen: dict[str, set[str]] = {}
    for customer in deco.customers():
        seen.setdefault((customer.get("email") or "").strip().lower(), set()).add(str(customer.get("store_id")))
    return {email for email, stores in seen.items() if len(stores) > 1}


def test_a_parent_that_does_not_allow_affiliate_integrations_keeps_syncing_those_stores(deco_world, zoho_sandbox, deco):
    northside = next(s for s in deco.stores() if s["store_id"] == "2")["name"]
    tenants = [
        dict(PARENT),
        {
            **PARENT,
            "tenant_id": "northside",
            "zoho_conn_id": "zoho_affiliate",
            "deconetwork": {"affiliate_of": "acme", "store_ids": ["2"]},
        },
    ]
    deco_world([dict(t) for t in tenants], "zoho_sync__acme")
    assert northside in _stores_in(zoho_sandbox)


def test_a_custom_mapping_adds_and_removes_fields(deco_world, zoho_sandbox):
    custom = {**PARENT, "mapping_overrides": {"Contacts": {"Description": "store_url", "Phone": None}}}
    deco_world([custom], "zoho_sync__acme")
    contacts = zoho_sandbox.records("Contacts")
    assert contacts and all(r.get("Phone") is None for r in contacts)
    assert any((r.get("Description") or "").startswith("https://") for r in contacts)


def test_a_bad_mapping_fails_naming_tenant_field_and_reason_before_anything_is_sent(deco_world, zoho_sandbox, caplog):
    bad = {**PARENT, "mapping_overrides": {"Leads": {"Loyalty_Points": "balance"}}}
    deco_world([bad], "zoho_sync__acme", expect="failed")
    assert zoho_sandbox.records("Contacts") == [] and zoho_sandbox.records("Leads") == []
    assert "tenant 'acme'" in caplog.text and "Leads.Loyalty_Points: no such field in the Zoho org" in caplog.text
