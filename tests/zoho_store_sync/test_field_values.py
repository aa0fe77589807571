"""Values Zoho will accept: required-field fallbacks, phones in E.164 (never cut), picklist values with aliases."""

from __future__ import annotations

import pandas as pd
import pytest

from zoho_store_sync import field_values
from zoho_store_sync.config import _NON_TEXT_FIELDS, TenantConfig
from zoho_store_sync.customers import CUSTOMER_COLUMNS, prepare
from zoho_store_sync.mapping import Mapping, build_payloads, payload_hashes_by_module, with_org_lengths

TENANT = {"tenant_id": "shop", "source": "magento", "store_conn_id": "m", "zoho_conn_id": "z"}
SALUTATION = {
    "api_name": "Salutation",
    "data_type": "picklist",
    "pick_list_values": [
        {"display_value": v, "actual_value": v} for v in ("-None-", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.")
    ],
}
ORG = {
    "Leads": [
        {"api_name": "Email", "data_type": "email", "length": 100},
        {"api_name": "Last_Name", "data_type": "text", "length": 80, "system_mandatory": True, "required": True},
        {"api_name": "Company", "data_type": "text", "length": 200, "required": True},
        {"api_name": "Phone", "data_type": "phone", "length": 30},
        SALUTATION,
    ]
}
MAPPING = Mapping(
    fields={
        "Leads": {
            "Email": "email",
            "Last_Name": "lastname",
            "Company": "company",
            "Phone": "phone_number",
            "Salutation": "salutation",
        }
    }
)


def tenant(**options: object) -> TenantConfig:
    return TenantConfig.model_validate({**TENANT, **options})


def leads(*rows: dict) -> pd.DataFrame:
    base = {"registered": True, "order_count": 0}
    return pd.DataFrame(
        [{**base, "customer_key": str(i), "email": f"p{i}@example.com", **r} for i, r in enumerate(rows)]
    )


def fitted(frame: pd.DataFrame, **options: object) -> tuple[pd.DataFrame, dict]:
    prepared = prepare(frame)
    mapping = with_org_lengths(MAPPING, ORG)
    out, fitted_mapping, counts = field_values.fit_to_org(tenant(**options), prepared, mapping, ORG, ("Leads",))
    return build_payloads(out.valid, fitted_mapping, "Leads"), {**counts, "valid": out.valid, "mapping": fitted_mapping}


def test_a_lead_without_a_company_gets_its_full_name_and_is_marked_as_a_fallback():
    payload, info = fitted(leads({"full_name": "Ann Lee", "lastname": "Lee"}, {"company": "Acme", "lastname": "Roe"}))
    assert payload["Company"].tolist() == ["Ann Lee", "Acme"]
    assert info["valid"]["company_is_fallback"].tolist() == [True, False]
    assert info["required_filled"] == {"Leads.Company": 1}


def test_the_last_name_fills_company_when_there_is_no_full_name():
    payload, _ = fitted(leads({"lastname": "Roe"}))
    assert payload["Company"].tolist() == ["Roe"]


def test_a_tenant_constant_fallback_replaces_the_default():
    payload, _ = fitted(
        leads({"full_name": "Ann Lee"}), required_field_fallbacks={"Leads": {"Company": ["=Individual"]}}
    )
    assert payload["Company"].tolist() == ["Individual"]


def test_an_unmapped_required_field_without_a_fallback_is_named_with_the_option_to_set():
    mapping = Mapping(fields={"Leads": {"Email": "email", "Last_Name": "lastname"}})
    problems = field_values.unfilled_required(
        tenant(required_field_fallbacks={"Leads": {"Company": []}}), mapping, "Leads", ORG["Leads"]
    )
    assert len(problems) == 1 and problems[0].startswith("Leads.Company: required")
    assert '"required_field_fallbacks": {"Leads": {"Company"' in problems[0]
    assert field_values.unfilled_required(tenant(), mapping, "Leads", ORG["Leads"]) == []  # the default fills it


def test_a_fallback_naming_a_number_field_is_refused_naming_the_tenant_field():
    with pytest.raises(ValueError, match="Leads.Company: 'order_count' is neither a text customer field"):
        tenant(required_field_fallbacks={"Leads": {"Company": ["order_count"]}})
    assert _NON_TEXT_FIELDS == {name for name, kind in CUSTOMER_COLUMNS.items() if kind != "string"}


def test_phones_are_sent_in_e164_from_the_customers_country_code_or_name():
    payload, info = fitted(
        leads(
            {"phone_number": "(415) 555-0132", "country_name": "US"},
            {"phone_number": "020 7946 0958", "country_name": "United Kingdom"},
            {"phone_number": "+61 2 9374 4000", "country_name": None},
            {"phone_number": "030 901820", "country_name": None},
        ),
        phone_default_region="DE",
    )
    assert payload["Phone"].tolist() == ["+14155550132", "+442079460958", "+61293744000", "+4930901820"]
    assert info["values_left_out"] == {}


def test_an_invalid_or_over_long_phone_is_left_out_and_reported_never_cut():
    too_long = "+1 415 555 0132 0000 0000 0000 0000 0000"  # 40 characters: the old code sent its first 30
    payload, info = fitted(
        leads(
            {"phone_number": too_long, "country_name": "US"},
            {"phone_number": "12", "country_name": "US"},
            {"phone_number": "415 555 0132", "country_name": None},  # no region known, no +
        )
    )
    assert payload["Phone"].isna().all()
    assert info["values_left_out"] == {"Phone": 3}


def test_picklist_values_are_matched_with_aliases_and_unknown_ones_left_out():
    payload, info = fitted(
        leads(
            {"salutation": "Mr"},
            {"salutation": "mrs."},
            {"salutation": "DR"},
            {"salutation": "Prof."},
            {"salutation": "Sir"},
            {"salutation": "-None-"},
            {"salutation": None},
        )
    )
    assert payload["Salutation"].tolist()[:4] == ["Mr.", "Mrs.", "Dr.", "Prof."]
    assert payload["Salutation"].iloc[4:].isna().all()
    assert info["values_left_out"] == {"Salutation": 1}


def test_the_hash_covers_the_filled_payload():
    frame = leads({"full_name": "Ann Lee"}, {"full_name": "Bob Roe"})
    _, info = fitted(frame)
    both = payload_hashes_by_module(info["valid"], info["mapping"], pd.Series(["Leads", "Leads"]).to_numpy())
    assert both[0] != both[1]  # the two rows differ only in the Company a fallback gave them
