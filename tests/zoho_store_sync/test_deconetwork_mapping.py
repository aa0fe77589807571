"""The default DecoNetwork mapping: loads for a DecoNetwork tenant, fits the Zoho org, covers the mappable fields."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pandas as pd
import pytest
import requests

from sandboxes.deconetwork import DecoNetworkSandbox, generate_deconetwork_store
from sandboxes.zoho_crm import ZohoSandbox
from zoho_store_sync.config import TenantConfig
from zoho_store_sync.mapping import MappingError, build_payloads, check_against_org, load_mapping
from zoho_store_sync.sources.deconetwork import export_rows, merge_customers, order_rows

# DecoNetwork's "Map This Customer Data" list (the seed), every one a canonical field
DECONETWORK_FIELDS = (
    "company",
    "full_name",
    "firstname",
    "lastname",
    "salutation",
    "address",
    "city",
    "state",
    "zip",
    "country_name",
    "phone_number",
    "store",
    "store_url",
    "order_count",
    "balance",
    "total_order_value",
    "newsletter",
    "deleted",
)


def tenant(**fields) -> TenantConfig:
    return TenantConfig(
        tenant_id="deco_shop", source="deconetwork", store_conn_id="deco", zoho_conn_id="zoho", **fields
    )


@pytest.fixture(scope="module")
def org_fields() -> Iterator[dict[str, list[dict]]]:
    with ZohoSandbox() as zoho:
        token = requests.post(
            f"{zoho.url}/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": zoho.client_id,
                "client_secret": zoho.client_secret,
                "refresh_token": zoho.refresh_token,
            },
            timeout=10,
        ).json()["access_token"]
        yield {
            m: requests.get(
                f"{zoho.url}/crm/v8/settings/fields",
                params={"module": m},
                timeout=10,
                headers={"Authorization": f"Zoho-oauthtoken {token}"},
            ).json()["fields"]
            for m in ("Contacts", "Leads")
        }


def test_default_mapping_loads_for_a_deconetwork_tenant() -> None:
    mapping = load_mapping(tenant())
    assert tenant().mapping_file == "deconetwork.yaml"
    for module in ("Contacts", "Leads"):
        assert mapping.fields[module]["Email"] == "email" and mapping.fields[module]["Last_Name"] == "lastname"


def test_default_mapping_fits_the_zoho_orgs_real_fields(org_fields) -> None:
    mapping = load_mapping(tenant())
    for module in ("Contacts", "Leads"):
        assert check_against_org(mapping, module, org_fields[module]) == []


def test_default_mapping_covers_every_mappable_field_zoho_can_hold() -> None:
    mapping = load_mapping(tenant())
    mapped = set(mapping.fields["Contacts"].values()) | set(mapping.fields["Leads"].values())
    # full_name: Zoho's Full_Name is read-only (built from first and last name); add it to a field of your own.
    assert set(DECONETWORK_FIELDS) - mapped == {"full_name"}
    custom = {
        "Order_Count",
        "Total_Order_Value",
        "Account_Balance",
        "Newsletter_Subscriber",
        "Store_Name",
        "Store_URL",
        "Customer_Deleted",
        "Source_Customer_ID",
    }
    assert custom <= set(mapping.fields["Contacts"])


def test_a_tenant_adds_and_deletes_mappings_like_deconetworks_mapping_window(org_fields) -> None:
    mapping = load_mapping(
        tenant(
            mapping_overrides={
                "Leads": {"Description": "full_name", "Phone": None},
                "Contacts": {"Description": "company"},
            }
        )
    )
    assert mapping.fields["Leads"]["Description"] == "full_name" and "Phone" not in mapping.fields["Leads"]
    assert mapping.fields["Contacts"]["Description"] == "company"
    assert check_against_org(mapping, "Leads", org_fields["Leads"]) == []


def test_a_mapping_to_an_unknown_deconetwork_field_fails_naming_tenant_field_and_reason() -> None:
    with pytest.raises(MappingError, match="'deco_shop'.*Leads.Description.*'shoe_size'"):
        load_mapping(tenant(mapping_overrides={"Leads": {"Description": "shoe_size"}}))


def test_every_mapped_field_of_an_extracted_customer_builds_a_payload() -> None:
    site = DecoNetworkSandbox(generate_deconetwork_store(60, seed=2))  # data only: no server needed
    raw = pd.read_csv(io.StringIO(site.export_csv(bom=False)), dtype=str, keep_default_na=False)
    frame = merge_customers(export_rows(raw), order_rows(site.orders()), "https://shop.example.com")
    mapping = load_mapping(tenant())
    for module in ("Contacts", "Leads"):
        assert list(build_payloads(frame, mapping, module).columns) == list(mapping.fields[module])
    contacts = build_payloads(frame, mapping, "Contacts")
    buyer = contacts[frame["order_count"] > 0].iloc[0]
    assert buyer["Order_Count"] > 0 and buyer["Total_Order_Value"] > 0 and buyer["Email"]
