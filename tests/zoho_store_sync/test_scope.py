"""Sync options and the affiliate rule: which extracted customers each tenant sends to its Zoho."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from zoho_store_sync.config import TenantConfig
from zoho_store_sync.customers import conform
from zoho_store_sync.scope import ScopeError, claimed_stores, scope_customers

# store 1 is the site owner's, 2-4 belong to affiliates; one buyer has no known store (a guest)
CUSTOMERS = conform(
    pd.DataFrame(
        [
            {"customer_key": "1", "email": "a@example.com", "store_id": "1", "store_is_mine": True},
            {"customer_key": "2", "email": "b@example.com", "store_id": "1", "store_is_mine": True},
            {"customer_key": "3", "email": "c@example.com", "store_id": "2", "store_is_mine": False},
            {"customer_key": "4", "email": "d@example.com", "store_id": "3", "store_is_mine": False},
            {"customer_key": "5", "email": "e@example.com", "store_id": "4", "store_is_mine": False},
            {"customer_key": "email:g@example.com", "email": "g@example.com", "store_id": None, "store_is_mine": True},
        ]
    )
)


def tenant(tenant_id: str = "acme", **fields: Any) -> TenantConfig:
    deco = fields.pop("deconetwork", {})
    return TenantConfig(
        tenant_id=tenant_id,
        source=fields.pop("source", "deconetwork"),
        store_conn_id="deco",
        zoho_conn_id=f"zoho_{tenant_id}",
        deconetwork=deco,
        **fields,
    )


def keys(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["customer_key"])


def test_dont_sync_any_customer_data_scopes_out_everyone() -> None:
    t = tenant(sync_option="none")
    scoped, counts = scope_customers(CUSTOMERS, t, [t])
    assert scoped.empty and list(scoped.columns) == list(CUSTOMERS.columns)
    assert counts["out_of_scope"] == len(CUSTOMERS)


def test_all_stores_keeps_every_store_including_affiliates() -> None:
    t = tenant(sync_option="all_stores")
    scoped, counts = scope_customers(CUSTOMERS, t, [t])
    assert keys(scoped) == keys(CUSTOMERS) and counts == {
        "out_of_scope": 0,
        "affiliate_owned": 0,
        "affiliate_not_allowed": 0,
    }


def test_my_stores_keeps_only_the_site_owners_stores_and_storeless_buyers() -> None:
    t = tenant(sync_option="my_stores")
    scoped, counts = scope_customers(CUSTOMERS, t, [t])
    assert keys(scoped) == ["1", "2", "email:g@example.com"] and counts["out_of_scope"] == 3


def test_a_parent_allowing_affiliate_integrations_leaves_out_the_stores_its_affiliates_claim() -> None:
    parent = tenant("acme", deconetwork={"allow_affiliate_integrations": True})
    club = tenant("club", deconetwork={"affiliate_of": "acme", "store_ids": ["2"]})
    school = tenant("school", deconetwork={"affiliate_of": "acme", "store_ids": ["3"]}, enabled=False)
    everyone = [parent, club, school]
    scoped, counts = scope_customers(CUSTOMERS, parent, everyone)
    assert keys(scoped) == ["1", "2", "5", "email:g@example.com"]  # store 4 has no integration of its own
    assert counts["affiliate_owned"] == 2 and claimed_stores(parent, everyone) == {"2", "3"}
    club_scoped, club_counts = scope_customers(CUSTOMERS, club, everyone)
    assert keys(club_scoped) == ["3"] and club_counts["out_of_scope"] == 5


def test_each_customer_lands_in_exactly_one_zoho_under_the_affiliate_rule() -> None:
    parent = tenant("acme", deconetwork={"allow_affiliate_integrations": True})
    affiliates = [tenant(f"aff{s}", deconetwork={"affiliate_of": "acme", "store_ids": [s]}) for s in ("2", "3", "4")]
    everyone = [parent, *affiliates]
    landed = [k for t in everyone for k in scope_customers(CUSTOMERS, t, everyone)[0]["customer_key"]]
    assert sorted(landed) == keys(CUSTOMERS)


def test_my_stores_parent_and_an_affiliate_count_each_left_out_customer_once() -> None:
    parent = tenant("acme", sync_option="my_stores", deconetwork={"allow_affiliate_integrations": True})
    club = tenant("club", deconetwork={"affiliate_of": "acme", "store_ids": ["2"]})
    scoped, counts = scope_customers(CUSTOMERS, parent, [parent, club])
    assert keys(scoped) == ["1", "2", "email:g@example.com"]
    assert (counts["out_of_scope"], counts["affiliate_owned"]) == (3, 0)


def test_a_parent_not_allowing_affiliates_keeps_their_stores_and_the_affiliate_syncs_nothing() -> None:
    parent = tenant("acme", deconetwork={"allow_affiliate_integrations": False})
    club = tenant("club", deconetwork={"affiliate_of": "acme", "store_ids": ["2"]})
    scoped, counts = scope_customers(CUSTOMERS, parent, [parent, club])
    assert keys(scoped) == keys(CUSTOMERS) and counts["affiliate_owned"] == 0
    club_scoped, club_counts = scope_customers(CUSTOMERS, club, [parent, club])
    assert club_scoped.empty and club_counts["affiliate_not_allowed"] == 1


def test_an_affiliate_syncs_its_own_stores_under_either_store_option() -> None:
    parent = tenant("acme", deconetwork={"allow_affiliate_integrations": True})
    for option in ("all_stores", "my_stores"):
        club = tenant("club", sync_option=option, deconetwork={"affiliate_of": "acme", "store_ids": ["2", "4"]})
        assert keys(scope_customers(CUSTOMERS, club, [parent, club])[0]) == ["3", "5"]
    club = tenant("club", sync_option="none", deconetwork={"affiliate_of": "acme", "store_ids": ["2"]})
    assert scope_customers(CUSTOMERS, club, [parent, club])[0].empty


def test_affiliate_settings_that_cannot_work_fail_naming_the_tenant_and_field() -> None:
    from zoho_store_sync.config import parse_tenants

    base = {"source": "deconetwork", "store_conn_id": "deco", "zoho_conn_id": "zoho"}
    result = parse_tenants(
        [
            {**base, "tenant_id": "acme"},
            {**base, "tenant_id": "club", "deconetwork": {"affiliate_of": "acme"}},
            {**base, "tenant_id": "lost", "deconetwork": {"affiliate_of": "gone", "store_ids": ["2"]}},
        ]
    )
    assert [t.tenant_id for t in result.tenants] == ["acme"]
    assert any("tenant 'club'" in e and "deconetwork.store_ids" in e for e in result.errors)
    assert any("tenant 'lost'" in e and "'deconetwork.affiliate_of'" in e and "'gone'" in e for e in result.errors)
    orphan = tenant("club", deconetwork={"affiliate_of": "gone", "store_ids": ["2"]})
    with pytest.raises(ScopeError, match="'club'.*deconetwork.affiliate_of.*'gone'"):
        scope_customers(CUSTOMERS, orphan, [orphan])


def test_another_parents_affiliates_do_not_claim_stores() -> None:
    parent = tenant("acme", deconetwork={"allow_affiliate_integrations": True})
    stranger = tenant("club", deconetwork={"affiliate_of": "other", "store_ids": ["2"]})
    assert claimed_stores(parent, [parent, stranger]) == set()


def test_a_magento_frame_passes_through_every_option_but_none() -> None:
    magento = conform(
        pd.DataFrame(
            [
                {"customer_key": str(i), "email": f"m{i}@example.com", "store_id": str(w), "store_is_mine": True}
                for i, w in ((1, 1), (2, 2), (3, 1))
            ]
        )
    )
    for option in ("all_stores", "my_stores"):
        t = tenant("shop", source="magento", sync_option=option)
        scoped, counts = scope_customers(magento, t, [t, tenant("acme")])
        assert keys(scoped) == ["1", "2", "3"] and sum(counts.values()) == 0
    t = tenant("shop", source="magento", sync_option="none")
    assert scope_customers(magento, t, [t])[0].empty
