"""Sync options and the affiliate rule: which of a tenant's extracted customers go to the tenant's Zoho.

DecoNetwork's options, per tenant (``sync_option``):

* ``none``: "Don't sync any customer data": nothing.
* ``all_stores``: "Sync all customers over all affiliate stores": every store, the site owner's and the
  affiliates'.
* ``my_stores``: "Only sync customers from 'my' stores": only stores that belong to the site owner
  (``store_is_mine``; export ``store_owner`` = ``me``). Buyers without a known store count as the owner's.

**Affiliate stores with their own Zoho integration.** A parent tenant that ticks "Allow each affiliate store
to set up their own Zoho integration" (``deconetwork.allow_affiliate_integrations``) lets an affiliate run its
own tenant (``deconetwork.affiliate_of`` = the parent's tenant id, ``deconetwork.store_ids`` = its stores, its
own Zoho connection). The decision: **each customer lands in exactly one Zoho.**

* The affiliate tenant syncs only the customers of its own ``store_ids`` (``all_stores`` and ``my_stores``
  mean the same there: its stores are "someone else's" from the site's point of view, but they are its own).
* The parent leaves out every store claimed by one of its affiliate tenants, whatever that tenant's state
  (a paused or ``none`` affiliate keeps its customers out of the parent's CRM: the affiliate owns them).
  Counted as ``affiliate_owned``.
* A parent that does not allow affiliate integrations keeps syncing those stores (under ``all_stores``) and
  its affiliate tenants sync nothing (counted as ``affiliate_not_allowed``), as in DecoNetwork, where the
  affiliate's settings exist only while the parent allows them.

Magento frames pass through the same rules: every customer is ``store_is_mine`` and no tenant claims a
Magento website, so only ``none`` removes anyone.
"""

from __future__ import annotations

import pandas as pd

from zoho_store_sync.config import TenantConfig
from zoho_store_sync.errors import ScopeError  # noqa: F401 - re-exported


def _ids(values: list[str] | None) -> set[str]:
    return {str(v).strip() for v in values or () if str(v).strip()}


def claimed_stores(tenant: TenantConfig, all_tenants: list[TenantConfig]) -> set[str]:
    """Store ids that affiliate tenants of ``tenant`` sync into their own Zoho (empty if not allowed)."""
    if not tenant.deconetwork.allow_affiliate_integrations:
        return set()
    claimed: set[str] = set()
    for other in all_tenants:
        if other.tenant_id != tenant.tenant_id and other.deconetwork.affiliate_of == tenant.tenant_id:
            claimed |= _ids(other.deconetwork.store_ids)
    return claimed


def scope_customers(
    customers: pd.DataFrame, tenant: TenantConfig, all_tenants: list[TenantConfig]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The customers in the tenant's scope, and how many were left out for each reason."""
    counts = {"out_of_scope": 0, "affiliate_owned": 0, "affiliate_not_allowed": 0}
    keep = pd.Series(True, index=customers.index)
    store_ids = customers["store_id"].astype("string").str.strip()
    if tenant.sync_option == "none":
        counts["out_of_scope"] = len(customers)
        return customers.iloc[0:0].copy(), counts

    parent_id = tenant.deconetwork.affiliate_of
    if parent_id:
        own = _ids(tenant.deconetwork.store_ids)
        if not own:
            raise ScopeError(
                f"tenant {tenant.tenant_id!r}: field 'deconetwork.store_ids' must list the affiliate "
                f"stores it syncs (it is an affiliate of {parent_id!r})"
            )
        parent = next((t for t in all_tenants if t.tenant_id == parent_id), None)
        if parent is None or parent_id == tenant.tenant_id:
            raise ScopeError(
                f"tenant {tenant.tenant_id!r}: field 'deconetwork.affiliate_of': {parent_id!r} is "
                "not another configured tenant"
            )
        mine = store_ids.isin(own).fillna(False).astype(bool)
        counts["out_of_scope"] = int((~mine).sum())
        if not parent.deconetwork.allow_affiliate_integrations:
            counts["affiliate_not_allowed"] = int(mine.sum())
            return customers.iloc[0:0].copy(), counts
        return customers[mine].copy(), counts

    if tenant.sync_option == "my_stores":
        is_mine = customers["store_is_mine"].astype("boolean").fillna(False).astype(bool)
        counts["out_of_scope"] = int((~is_mine).sum())
        keep &= is_mine
    claimed = claimed_stores(tenant, all_tenants)
    if claimed:
        owned = store_ids.isin(claimed).fillna(False).astype(bool) & keep
        counts["affiliate_owned"] = int(owned.sum())
        keep &= ~owned
    return customers[keep].copy(), counts
