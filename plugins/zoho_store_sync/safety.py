"""Data safety: what a run checks before it may trust a store's answer or delete anything in Zoho.

The rules (README, *What the sync will never do*): deletion detection needs a provably complete read; a run
that would delete or flag more than the tenant's limit deletes nothing; a record another tenant (or another
customer with that email) still needs is let go, never deleted; an incremental run that sees an email change
hands reads the whole store.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from zoho_store_sync.config import TenantConfig
from zoho_store_sync.diff import DELETE_ACTIONS
from zoho_store_sync.errors import SourceIncompleteError
from zoho_store_sync.sources import SourceExtract
from zoho_store_sync.state import StateStore

log = logging.getLogger(__name__)
# Below this many deletions the share limit does not apply (a small store losing 2 of 10 customers).
DELETION_SHARE_FLOOR = 10


def pass_kind(result: SourceExtract) -> str:
    if not result.full:
        return "incremental"
    return "full" if result.all_customer_keys is not None else "full read, not provably complete: no deletions"


def check_complete(tenant: TenantConfig, store: StateStore, result: SourceExtract) -> None:
    """An answer that may not be the whole store is never taken for it: deletion detection needs proof."""
    reason = getattr(result, "incomplete_reason", None)
    if result.full and reason:
        log.warning(
            "tenant %s: the store's answer is not provably complete (%s): nothing will be deleted or "
            "flagged in this run",
            tenant.tenant_id,
            reason,
        )
    read_nobody = result.all_customer_keys is not None and not len(result.all_customer_keys)
    if result.full and (read_nobody or getattr(result, "customer_list_empty", False)):
        known = store.count_live_in_zoho()
        if known:
            raise SourceIncompleteError(
                f"tenant {tenant.tenant_id!r}: the store answered with no customer at all, while {known} customers "
                "of this tenant are in Zoho. A store does not lose every customer at once: this looks like a "
                "partial answer (an empty export file, a store in maintenance). Nothing was planned or deleted; "
                "check the store (for DecoNetwork, the customer export file) and run again."
            )


def duplicate_winner_may_change(store: StateStore, customers: pd.DataFrame) -> bool:
    """Whether an incremental read touched an email that another customer holds or held (a new customer with
    a synced customer's email, or a customer whose email changed): the winner of that email may change."""
    if customers.empty:
        return False
    from zoho_store_sync.customers import normalise_email

    keys = customers["customer_key"].astype("string")
    emails = normalise_email(customers["email"].astype("string"))
    known = store.load(customer_keys=keys.tolist())
    old = known.set_index("customer_key")["email"].astype("string")
    new = pd.Series(emails.to_numpy(), index=keys.to_numpy())
    new = new[~new.index.duplicated()]
    differs = (old != new.reindex(old.index)).fillna(True).astype(bool)
    moved = old.index[old.notna().to_numpy() & differs.to_numpy()].tolist()
    holders = store.keys_with_emails(set(emails.dropna().tolist()) | set(old.loc[moved].dropna().tolist()))
    others = holders.loc[~holders["customer_key"].isin(keys.tolist())]
    return bool(moved) or not others.empty


def keep_what_other_tenants_sync(store: StateStore, changes: pd.DataFrame) -> pd.DataFrame:
    """Shared org: a record another tenant still syncs is neither deleted nor flagged; this tenant only lets
    go of it (``release``: its state row says deleted in the source, no call)."""
    deleting = changes["action"].isin(DELETE_ACTIONS)
    if not deleting.any():
        return changes
    shared = store.zoho_ids_synced_by_other_tenants(changes.loc[deleting, "zoho_id"].astype(str))
    if not shared:
        return changes
    changes = changes.copy()
    keep = deleting & changes["zoho_id"].astype(str).isin(shared)
    changes.loc[keep, "action"] = "release"
    changes.loc[keep, "payload"] = None
    log.info("%d records to delete or flag are still synced by another tenant of the org: kept in Zoho", keep.sum())
    return changes


def guard_deletions(
    tenant: TenantConfig, store: StateStore, changes: pd.DataFrame, invalid_share: float, allow_deletions: int
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Mass-deletion protection: a run that would delete or flag more than the tenant's limit, or whose
    share of invalid rows passes ``failure_threshold`` (a broken read looks like that), deletes nothing."""
    deleting = changes["action"].isin(DELETE_ACTIONS)
    count = int(deleting.sum())
    if not count:
        return changes, None
    live = store.count_live_in_zoho()
    share = count / live if live else 1.0
    over_count = count > tenant.max_deletions
    over_share = count > DELETION_SHARE_FLOOR and share > tenant.max_deletion_share
    bad_read = invalid_share > tenant.failure_threshold
    if count <= allow_deletions:
        if over_count or over_share or bad_read:
            log.warning(
                "deleting or flagging %d of %d records: above the tenant's limit, allowed for this run "
                "(allow_deletions = %d)",
                count,
                live,
                allow_deletions,
            )
        return changes, None
    if not (over_count or over_share or bad_read):
        return changes, None
    why = (
        f"{invalid_share:.1%} of the customers read are invalid (failure_threshold "
        f"{tenant.failure_threshold:.0%}), which a broken read also looks like"
        if bad_read
        else f"the limit is {tenant.max_deletions} records and {tenant.max_deletion_share:.0%} of the {live} "
        "records it keeps in Zoho (max_deletions, max_deletion_share)"
    )
    refused = {
        "count": count,
        "live": live,
        "share": round(share, 4),
        "reason": why,
        "message": f"tenant {tenant.tenant_id!r}: this run would delete or flag {count} Zoho records "
        f"({share:.1%} of {live}); {why}. Nothing was deleted or flagged; the other changes "
        "were sent. If the store really lost these customers, trigger the sync DAG with "
        f"allow_deletions = {count} (this run only) or raise the tenant's limit; otherwise fix "
        "the store or its export and run again.",
    }
    log.error("%s", refused["message"])
    return changes.loc[~deleting].reset_index(drop=True), refused
