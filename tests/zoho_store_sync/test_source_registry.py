"""Stores are plug-ins: a store added through the registry syncs like the built-in ones, a tenant naming no known
store is refused when the Variable is parsed, and the registry and TenantConfig agree on every store."""

from __future__ import annotations

import pandas as pd
import pytest

from zoho_store_sync.config import TenantConfig, parse_tenants
from zoho_store_sync.errors import TenantConfigError
from zoho_store_sync.settings import mappings_dir
from zoho_store_sync.sources import SourceExtract, registry

TOY = {"tenant_id": "toy_shop", "source": "toy", "store_conn_id": "toy_store", "zoho_conn_id": "zoho_test"}
PEOPLE = [
    {"customer_key": "1", "email": "ada@example.com", "lastname": "Lovelace", "order_count": 2},
    {"customer_key": "2", "email": "alan@example.com", "lastname": "Turing", "order_count": 0},
]


def toy_extract(tenant, cursor, *, state_url, full_every_hours) -> SourceExtract:  # type: ignore[no-untyped-def]
    from zoho_store_sync.customers import conform

    customers = conform(pd.DataFrame(PEOPLE).assign(registered=True, store_is_mine=True))
    return SourceExtract(
        customers, full=True, cursor={"people": len(PEOPLE)}, all_customer_keys=customers["customer_key"].tolist()
    )


@pytest.fixture
def toy():  # type: ignore[no-untyped-def]
    with registry.registered(registry.Source("toy", toy_extract, default_mapping="magento.yaml")) as source:
        yield source


def test_a_toy_store_registered_in_one_line_is_extracted_and_planned_like_any_store(
    toy, configure_tenant, zoho_sandbox, sqlite_state_url
):  # type: ignore[no-untyped-def]
    from zoho_store_sync import pipeline
    from zoho_store_sync.state_migrations import migrate

    migrate(sqlite_state_url)
    configure_tenant([TOY], zoho=zoho_sandbox, state_url=sqlite_state_url)
    extracted = pipeline.extract("toy_shop", "run-1")
    assert (extracted["extracted"], extracted["full"], extracted["cursor"]) == (2, True, {"people": 2})
    planned = pipeline.plan("toy_shop", "run-1", extracted)
    assert (planned["new"], planned["contacts"], planned["leads"], planned["invalid"]) == (2, 1, 1, 0)


def test_an_unknown_source_is_a_broken_tenant_entry_naming_the_field_and_the_known_stores() -> None:
    parsed = parse_tenants([TOY, {**TOY, "tenant_id": "fine", "source": "magento"}])
    assert [t.tenant_id for t in parsed.tenants] == ["fine"]
    assert parsed.errors == [
        "tenant 'toy_shop': field 'source': Value error, unknown source 'toy': the known "
        "sources are 'deconetwork', 'magento'"
    ]


def test_the_pipeline_never_runs_another_store_for_a_source_it_does_not_know() -> None:
    from zoho_store_sync import pipeline

    unvalidated = TenantConfig.model_construct(**{**TOY, "source": "shopify"})
    with pytest.raises(TenantConfigError, match="unknown source 'shopify'.*'deconetwork', 'magento'"):
        pipeline.extract_source(unvalidated, None)


def test_tenants_accept_exactly_the_registrys_stores_and_each_declaration_fits_tenant_config(toy) -> None:
    for name in registry.names():
        source = registry.get(name)
        assert TenantConfig.model_validate({**TOY, "source": name}).mapping_file == source.default_mapping
        assert (mappings_dir() / source.default_mapping).is_file()
        if source.options_field:
            assert TenantConfig.model_fields[source.options_field].annotation is source.options_class()
        if source.hook:
            assert source.hook_class().conn_type == source.conn_type  # type: ignore[union-attr]
    registry.unregister("toy")
    with pytest.raises(ValueError, match="unknown source 'toy'"):
        TenantConfig.model_validate(TOY)
