"""End to end against a Zoho sandbox that behaves like a standard org (Leads' layout requires Company), B2C customers.

The Magento sandbox's customers are a B2C store: about 70% have no company. Before issue 13 the plan sent their Leads
without Company and Zoho rejected them (MANDATORY_NOT_FOUND): ``test_without_a_fallback_...`` reproduces that.
"""

from __future__ import annotations

import pytest

from tests.conftest import REPO

TENANT = {"tenant_id": "b2c_shop", "source": "magento", "store_conn_id": "magento_test", "zoho_conn_id": "zoho_test"}


@pytest.fixture
def world(airflow_db, configure_tenant, zoho_sandbox, magento_sandbox, state_url):  # type: ignore[no-untyped-def]
    from airflow.models import DagBag

    from zoho_store_sync.state import StateStore, make_engine
    from zoho_store_sync.state_migrations import migrate

    assert zoho_sandbox.layout_required["Leads"] == ("Company",)  # the sandbox's default: a standard org
    store = StateStore(make_engine(state_url), TENANT["tenant_id"])
    migrate(store.engine)
    store.forget()

    def run(tenant: dict, expect: str = "success") -> dict:
        configure_tenant([tenant], zoho=zoho_sandbox, magento=magento_sandbox, state_url=state_url)
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        dag_run = bag.dags["zoho_sync__b2c_shop"].test()
        assert str(getattr(dag_run.state, "value", dag_run.state)) == expect
        return store.run_summaries("sync")[-1] if store.run_summaries("sync") else {}

    def configure(tenant: dict) -> None:
        configure_tenant([tenant], zoho=zoho_sandbox, magento=magento_sandbox, state_url=state_url)

    return run, configure, store


def _leads_without_company(magento) -> int:  # type: ignore[no-untyped-def]
    import pandas as pd

    from tests.reference import classify
    from zoho_store_sync.customers import prepare
    from zoho_store_sync.sources.magento import customer_rows, order_aggregates

    frame = pd.DataFrame(customer_rows(magento.customers(), magento.url))
    frame = frame.merge(order_aggregates(magento.orders()), on="customer_key", how="left")
    valid = prepare(frame).valid
    leads = valid[classify(valid) == "Leads"]
    return int((leads["company"].isna() | (leads["company"].str.strip() == "")).sum())


def test_no_lead_is_rejected_for_company_with_the_default_fallback(world, zoho_sandbox, magento_sandbox):
    run, _, store = world
    without_company = _leads_without_company(magento_sandbox)
    assert without_company > 50  # most B2C customers have no company
    summary = run(TENANT)
    assert summary["failed"] == 0 and "MANDATORY_NOT_FOUND" not in summary["failure_codes"]
    assert summary["required_filled"] == {"Leads.Company": without_company}
    leads = zoho_sandbox.records("Leads")
    assert len(leads) == summary["leads"] and all(lead.get("Company") for lead in leads)
    # the Company a fallback gave is the person's name, never a placeholder shared by everyone
    by_email = {lead["Email"]: lead for lead in leads}
    assert len({lead["Company"] for lead in by_email.values()}) > without_company // 2
    assert summary["values_left_out"]["Phone"] > 0  # the seed's random numbers Zoho would not take: reported
    zoho_sandbox.reset_calls()
    again = run(TENANT)  # what was filled and normalised hashes as it was sent: nothing to send again
    assert (again["inserted"], again["updated"], again["failed"]) == (0, 0, 0)
    assert not [c for c in zoho_sandbox.calls() if c["operation"] in ("upsert", "insert", "update", "layouts")]


def test_without_a_fallback_most_leads_are_rejected_as_on_the_old_code(world, zoho_sandbox, magento_sandbox):
    run, _, store = world
    without_company = _leads_without_company(magento_sandbox)
    summary = run({**TENANT, "required_field_fallbacks": {"Leads": {"Company": []}}}, expect="failed")
    rejected = store.load().query("status == 'failed'")
    assert len(rejected) == without_company  # every Lead without a company: what main did to 91.5% of them
    assert set(rejected["error_code"]) == {"MANDATORY_NOT_FOUND"}
    assert summary == {} or summary.get("failed", without_company) == without_company


def test_verify_names_the_required_field_and_the_option_when_nothing_fills_it(world):
    from zoho_store_sync import connect
    from zoho_store_sync.errors import VerificationFailed

    _, configure, _ = world
    configure(
        {
            **TENANT,
            "mapping_overrides": {"Leads": {"Company": None}},
            "required_field_fallbacks": {"Leads": {"Company": []}},
        }
    )
    with pytest.raises(VerificationFailed) as failed:
        connect.verify("b2c_shop")
    text = str(failed.value)
    assert "Leads.Company: required by the Zoho org's layout" in text
    assert '"required_field_fallbacks": {"Leads": {"Company"' in text
    configure({**TENANT, "mapping_overrides": {"Leads": {"Company": None}}})  # the default fallback fills it
    assert all(check.ok for check in connect.verify("b2c_shop"))
