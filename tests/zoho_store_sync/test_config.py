"""Tenant config validation: every error names the tenant and the field; good entries survive bad ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO
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


# ---- booleans are booleans ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"enabled": "no"}, "enabled"),  # was coerced to false: the DAG silently stopped
        ({"enabled": "false"}, "enabled"),
        ({"sync_leads": 0}, "sync_leads"),
        ({"zoho_workflow_triggers": "off"}, "zoho_workflow_triggers"),
        ({"magento": {"guest_orders_as_leads": "yes"}}, "magento.guest_orders_as_leads"),
        ({"source": "deconetwork", "deconetwork": {"use_order_api": 1}}, "deconetwork.use_order_api"),
        (
            {"source": "deconetwork", "deconetwork": {"allow_affiliate_integrations": "true"}},
            "deconetwork.allow_affiliate_integrations",
        ),
    ],
)
def test_a_boolean_written_as_text_or_a_number_is_refused_by_name(entry: dict, where: str):
    result = parse_tenants([{**GOOD, **entry}])
    assert result.tenants == []
    assert result.errors == [f"tenant 'acme': field {where!r}: Input should be a valid boolean"]


def test_json_booleans_are_accepted():
    [tenant] = parse_tenants(
        json.dumps([{**GOOD, "enabled": False, "sync_leads": False, "magento": {"guest_orders_as_leads": True}}])
    ).tenants
    assert tenant.enabled is False and tenant.modules == ("Contacts",) and tenant.magento.guest_orders_as_leads


# ---- schedules: what Airflow accepts, said with the tenant and the field -----------------------------------------
@pytest.mark.parametrize(
    "schedule",
    [
        "61 * * * *",
        "* * * * 8",
        "*/0 * * * *",
        "a b c d e",
        "0 25 * * *",
        "@fortnightly",
        "@",
        "every hour",
        "0 0 * * * *",
    ],
)
def test_a_schedule_airflow_refuses_is_a_tenant_error_naming_the_field(schedule: str):
    result = parse_tenants([{**GOOD, "schedule": schedule}, {**GOOD, "tenant_id": "ok"}])
    assert [t.tenant_id for t in result.tenants] == ["ok"]
    [error] = result.errors
    assert error.startswith("tenant 'acme': field 'schedule': ") and "cron expression" in error, error


def test_a_disabled_tenant_still_needs_a_valid_schedule():
    # enabled=false unschedules the DAG, so Airflow never sees the schedule: it would only fail once re-enabled.
    assert "field 'schedule'" in parse_tenants([{**GOOD, "enabled": False, "schedule": "61 * * * *"}]).errors[0]


@pytest.mark.parametrize(
    "schedule",
    [
        None,
        "*/30 * * * *",
        "0 * * * *",
        "15 2 * * 1-5",
        "0 0 1 jan,jul *",
        "0 0 * * MON",
        "@hourly",
        "@daily",
        "@weekly",
        "@monthly",
        "@quarterly",
        "@yearly",
        "@once",
        "@continuous",
    ],
)
def test_schedules_and_presets_airflow_accepts_are_kept(schedule: str | None):
    [tenant] = parse_tenants([{**GOOD, "schedule": schedule}]).tenants
    assert tenant.schedule == schedule


# ---- mapping files: inside include/mappings, checked at parse time --------------------------------------------
MAGENTO_MAPPING = REPO / "include" / "mappings" / "magento.yaml"


@pytest.fixture
def include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh include/ folder with the shipped mappings: the files each test breaks."""
    (tmp_path / "include" / "mappings").mkdir(parents=True)
    for shipped in (REPO / "include" / "mappings").glob("*.yaml"):
        (tmp_path / "include" / "mappings" / shipped.name).write_bytes(shipped.read_bytes())
    monkeypatch.setenv("ZOHO_SYNC_INCLUDE_DIR", str(tmp_path / "include"))
    return tmp_path / "include"


@pytest.mark.parametrize(
    "mapping",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "sub/../../magento.yaml",
        "..\\secrets.yaml",
        "C:\\mappings\\magento.yaml",
        "",
        "  ",
    ],
)
def test_a_mapping_outside_the_mappings_folder_is_refused(include: Path, mapping: str):
    result = parse_tenants([{**GOOD, "mapping": mapping}])
    assert result.tenants == []
    assert result.errors[0].startswith("tenant 'acme': field 'mapping': "), result.errors


def test_a_symlink_out_of_the_mappings_folder_is_refused(include: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere.yaml"
    outside.write_bytes(MAGENTO_MAPPING.read_bytes())  # a valid mapping: only its place is wrong
    (include / "mappings" / "escape.yaml").symlink_to(outside)
    (include / "mappings" / "alias.yaml").symlink_to(include / "mappings" / "magento.yaml")
    result = parse_tenants([{**GOOD, "mapping": "escape.yaml"}, {**GOOD, "tenant_id": "b", "mapping": "alias.yaml"}])
    assert [t.tenant_id for t in result.tenants] == ["b"]  # a link that stays inside is fine
    [error] = result.errors
    assert (
        error.startswith("tenant 'acme': field 'mapping': mapping file 'escape.yaml' resolves to ")
        and "outside the mappings folder" in error
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "mapping file 'shop.yaml' not found in "),
        ("Contacts:\n  Email: email\n   Last_Name: [lastname\n", "mapping file 'shop.yaml' is not valid YAML: "),
        (
            "- Email\n- Last_Name\n",
            "mapping file 'shop.yaml' must map Contacts and Leads to {Zoho field: customer field}, not be a list",
        ),
        ("Contacts: [email, lastname]\n", "mapping file 'shop.yaml' must map Contacts to {Zoho field: customer field}"),
        ("Contact:\n  Email: email\n", "mapping file 'shop.yaml' names the module 'Contact': only Contacts and Leads"),
        (
            "Contacts:\n  Email: email\n  Last_Name: lastname\n  Title: job_title\nLeads:\n  Email: email\n"
            "  Last_Name: lastname\n",
            "mapping Contacts.Title: unknown customer field 'job_title' in mapping file 'shop.yaml' (known: ",
        ),
        (
            "Contacts:\n  Email: email\n  Last_Name:\nLeads:\n  Email: email\n  Last_Name: lastname\n",
            "mapping Contacts.Last_Name: unknown customer field None in mapping file 'shop.yaml'",
        ),
        (
            "Contacts:\n  Email: email\nLeads:\n  Email: email\n  Last_Name: lastname\n",
            "mapping Contacts.Last_Name: missing (Zoho requires it)",
        ),
        (
            "Contacts:\n  Email: lastname\n  Last_Name: lastname\nLeads:\n  Email: email\n  Last_Name: lastname\n",
            "mapping Contacts.Email: must map 'email'",
        ),
        (b"Contacts:\n  Email: email\n  First_Name: \xe9\n", "mapping file 'shop.yaml' is not UTF-8 text"),
    ],
    ids=[
        "missing",
        "not-yaml",
        "a-list",
        "module-not-a-dict",
        "unknown-module",
        "unknown-field",
        "null-field",
        "no-last-name",
        "email-not-email",
        "not-utf8",
    ],
)
def test_a_broken_mapping_file_is_a_parse_time_tenant_error(include: Path, content, problem: str):
    if content is not None:
        path = include / "mappings" / "shop.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = parse_tenants([{**GOOD, "mapping": "shop.yaml"}, {**GOOD, "tenant_id": "other"}])
    assert [t.tenant_id for t in result.tenants] == ["other"]  # the others' DAGs still load
    [error] = result.errors
    assert error.startswith(f"tenant 'acme': field 'mapping': {problem}"), error


def test_a_mapping_file_for_only_the_synced_module_needs_only_that_module(include: Path):
    (include / "mappings" / "contacts_only.yaml").write_text("Contacts:\n  Email: email\n  Last_Name: lastname\n")
    entry = {**GOOD, "mapping": "contacts_only.yaml", "sync_leads": False}
    assert parse_tenants([entry]).tenants and not parse_tenants([{**entry, "sync_leads": True}]).tenants


def test_a_broken_override_is_named_as_the_overrides_field(include: Path):
    result = parse_tenants(
        [
            {**GOOD, "mapping_overrides": {"Contacts": {"Title": "job_title"}}},
            {**GOOD, "tenant_id": "b", "mapping_overrides": {"Leads": {"Last_Name": None}}},
        ]
    )
    assert result.tenants == []
    assert result.errors[0].startswith(
        "tenant 'acme': field 'mapping_overrides': mapping Contacts.Title: unknown customer field 'job_title' (known: "
    )
    assert (
        result.errors[1] == "tenant 'b': field 'mapping_overrides': mapping Leads.Last_Name: missing (Zoho requires it)"
    )


def test_an_override_may_repair_what_the_file_lacks(include: Path):
    (include / "mappings" / "shop.yaml").write_text(
        "Contacts:\n  Email: email\nLeads:\n  Email: email\n  Last_Name: lastname\n  Title: job_title\n"
    )
    repaired = {
        **GOOD,
        "mapping": "shop.yaml",
        "mapping_overrides": {"Contacts": {"Last_Name": "lastname"}, "Leads": {"Title": None}},
    }
    assert [t.tenant_id for t in parse_tenants([repaired]).tenants] == ["acme"]


def test_each_mapping_file_is_read_once_per_version(include: Path, monkeypatch: pytest.MonkeyPatch):
    import yaml

    reads: list[str] = []
    real = yaml.safe_load
    monkeypatch.setattr(yaml, "safe_load", lambda stream: reads.append(stream.name) or real(stream))
    tenants = [{**GOOD, "tenant_id": f"t{i:03d}", "source": ("magento", "deconetwork")[i % 2]} for i in range(500)]
    for _ in range(3):
        assert len(parse_tenants(tenants).tenants) == 500
    assert sorted(Path(name).name for name in reads) == ["deconetwork.yaml", "magento.yaml"]
    # A changed file is read again at the next parse (its modification time and size are the cache key).
    path = include / "mappings" / "magento.yaml"
    path.write_text(path.read_text() + "  Description: company\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert len(parse_tenants(tenants).tenants) == 500 and len(reads) == 3
    path.write_text("Contacts: [\n")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000))
    assert len(parse_tenants(tenants).errors) == 250


def test_the_task_time_mapping_is_the_parse_time_check(include: Path):
    from zoho_store_sync.config import TenantConfig, mapping_fields
    from zoho_store_sync.errors import MappingError

    tenant = TenantConfig.model_validate({**GOOD, "mapping_overrides": {"Contacts": {"Description": "company"}}})
    assert mapping_fields(tenant)["Contacts"]["Description"] == "company"
    (include / "mappings" / "magento.yaml").write_text("Contacts: {Email: email\n")  # broken after the parse
    with pytest.raises(MappingError, match=r"^tenant 'acme': mapping file 'magento.yaml' is not valid YAML") as raised:
        mapping_fields(tenant)
    assert raised.value.setting == "mapping"


def test_the_parse_knows_every_customer_field_the_pipeline_has():
    from zoho_store_sync.config import CUSTOMER_FIELDS
    from zoho_store_sync.customers import CUSTOMER_COLUMNS

    assert CUSTOMER_FIELDS == set(CUSTOMER_COLUMNS)


def test_alerts_name_notifier_classes_by_dotted_path_and_thresholds_as_shares():
    alerts = {
        "notifiers": [{"class": "zoho_store_sync.alerts.LogNotifier", "args": {"level": "WARNING"}}],
        "rejected_share_above": 0.05,
        "credits_left_below": 0.1,
    }
    [tenant] = parse_tenants([{**GOOD, "alerts": alerts}]).tenants
    assert tenant.alerts is not None
    assert tenant.alerts.notifiers[0].class_path == "zoho_store_sync.alerts.LogNotifier"
    assert tenant.alerts.notifiers[0].args == {"level": "WARNING"}
    assert (tenant.alerts.rejected_share_above, tenant.alerts.credits_left_below) == (0.05, 0.1)
    assert parse_tenants([GOOD]).tenants[0].alerts is None  # no alerts unless asked for


@pytest.mark.parametrize(
    ("alerts", "field", "says"),
    [
        ({"notifiers": []}, "alerts.notifiers", "at least 1 item"),
        ({"notifiers": [{"class": "SmtpNotifier"}]}, "alerts.notifiers.0.class", "not the dotted path"),
        ({"notifiers": [{"klass": "a.B"}]}, "alerts.notifiers.0.class", "Field required"),
        ({"notifiers": [{"class": "a.B", "args": ["x"]}]}, "alerts.notifiers.0.args", "valid dictionary"),
        ({"notifiers": [{"class": "a.B"}], "credits_left_below": 10}, "alerts.credits_left_below", "less than 1"),
        ({"notifiers": [{"class": "a.B"}], "rejected_share_above": -1}, "alerts.rejected_share_above", "greater"),
    ],
)
def test_a_malformed_alerts_option_names_the_tenant_and_the_field(alerts, field, says):
    result = parse_tenants([{**GOOD, "alerts": alerts}])
    assert result.tenants == []
    [error] = result.errors
    assert error.startswith(f"tenant 'acme': field '{field}': ") and says in error


def test_store_parallelism_is_8_by_default_and_a_value_a_shop_could_not_take_names_the_field():
    [tenant] = parse_tenants([GOOD]).tenants
    assert tenant.store_parallelism == 8
    for bad in (0, 17, "eight"):
        [error] = parse_tenants([{**GOOD, "store_parallelism": bad}]).errors
        assert "tenant 'acme'" in error and "'store_parallelism'" in error, error


@pytest.mark.parametrize("source", ["magento", "deconetwork"])
def test_the_tenants_store_parallelism_reaches_its_sources_full_pass(source: str, monkeypatch: pytest.MonkeyPatch):
    import importlib

    extraction = importlib.import_module(f"zoho_store_sync.sources.{source}.extraction")
    seen: dict[str, int] = {}
    monkeypatch.setattr(extraction, "extract", lambda *a, **kw: seen.setdefault("parallelism", kw["parallelism"]))
    monkeypatch.setattr(extraction, "MagentoHook" if source == "magento" else "DecoNetworkHook", lambda *a, **kw: None)
    [tenant] = parse_tenants([{**GOOD, "source": source, "store_parallelism": 3}]).tenants
    extraction.extract_tenant(tenant, None, state_url="file:///tmp/x", full_every_hours=24.0)
    assert seen == {"parallelism": 3}
