"""Tenant config validation: every error names the tenant and the field; good entries survive bad ones."""

from __future__ import annotations

import json

from zoho_store_sync.config import parse_tenants

GOOD = {"tenant_id": "acme", "source": "magento", "store_conn_id": "magento_acme", "zoho_conn_id": "zoho_acme"}


def test_defaults_sync_both_record_types_every_30_minutes():
    [tenant] = parse_tenants([GOOD]).tenants
    assert tenant.schedule == "*/30 * * * *"
    assert tenant.modules == ("Contacts", "Leads")
    assert tenant.dag_id == "zoho_sync__acme"
    assert tenant.mapping_file == "magento.yaml"


def test_a_json_string_is_accepted():
    assert parse_tenants(json.dumps([GOOD])).tenants[0].tenant_id == "acme"


def test_unknown_field_is_rejected_by_name():
    result = parse_tenants([{**GOOD, "zoho_client_secret": "x" * 20}])
    assert result.tenants == []
    assert result.errors == ["tenant 'acme': field 'zoho_client_secret': Extra inputs are not permitted"]


def test_bad_entry_does_not_hide_the_good_ones():
    result = parse_tenants([GOOD, {**GOOD, "tenant_id": "b", "schedule": "every hour"}, {**GOOD, "tenant_id": "c"}])
    assert [t.tenant_id for t in result.tenants] == ["acme", "c"]
    assert len(result.errors) == 1 and "tenant 'b'" in result.errors[0] and "'schedule'" in result.errors[0]


def test_duplicate_tenant_ids_keep_the_first():
    result = parse_tenants([GOOD, {**GOOD, "store_conn_id": "other"}])
    assert [t.store_conn_id for t in result.tenants] == ["magento_acme"]
    assert "duplicate" in result.errors[0]


def test_tenant_id_must_be_usable_in_a_dag_id():
    result = parse_tenants([{**GOOD, "tenant_id": "acme shop/eu"}])
    assert "field 'tenant_id'" in result.errors[0]


def test_nested_magento_option_errors_name_the_nested_field():
    result = parse_tenants([{**GOOD, "magento": {"page_size": 1000}}])
    assert "field 'magento.page_size'" in result.errors[0]


def test_no_record_type_needs_sync_option_none():
    result = parse_tenants([{**GOOD, "sync_contacts": False, "sync_leads": False}])
    assert "sync_option" in result.errors[0]
    [tenant] = parse_tenants([{**GOOD, "sync_option": "none", "sync_contacts": False, "sync_leads": False}]).tenants
    assert tenant.modules == ()


def test_not_a_list_is_one_clear_error():
    assert parse_tenants({"tenant_id": "acme"}).errors == ["Variable must be a JSON list of tenant objects, got dict"]
