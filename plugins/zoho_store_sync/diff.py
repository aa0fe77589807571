"""The diff: classify, map and hash every customer in pandas, and keep only what Zoho must receive.

Per customer, against the tenant's state row:

* no state row (or deleted in the source and back again) → ``new``: upserted, matched on email, so a
  customer Zoho already has is updated, never duplicated;
* state ``synced`` with the same hash → ``unchanged`` (nothing sent);
* a different hash → ``changed``; a different email with a known Zoho id → ``email_changed`` (updated by
  its Zoho id, so it stays the same Zoho record);
* synced as a Lead and now a buyer → ``convert``: Zoho's convert API turns the Lead into a Contact
  (linking the Contact Zoho already has with that email), then the Contact is upserted;
* a customer once synced as a Contact stays a Contact (never flipped back to a Lead);
* state ``failed``: a retryable failure is sent again (``retry``); a permanent one only when the payload
  changed, otherwise ``skipped_failed`` (it waits for the source row to change);
* state ``deleted_in_zoho`` → ``skipped_deleted`` until the tenant is reset.

Source deletions (the tenant's ``source_deletions``): a customer missing from a full pass (Magento
deletes outright) or flagged ``deleted`` (DecoNetwork) is, with ``flag``, updated by id with the field
mapped from ``deleted`` set to true, or with ``delete``, deleted in Zoho. ``ignore`` does neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zoho_store_sync.customers import classify
from zoho_store_sync.mapping import Mapping, MappingError, build_payloads, payload_hashes, payload_json

SEND_ACTIONS = ("new", "changed", "retry", "convert", "email_changed")
DELETE_ACTIONS = ("flag_deleted", "delete")
PLAN_COLUMNS = ["customer_key", "email", "module", "action", "payload_hash", "zoho_id", "attempts", "payload"]
COUNTED_ACTIONS = ("new", "changed", "retry", "convert", "email_changed", "unchanged", "skipped_failed",
                   "skipped_deleted")


@dataclass
class Plan:
    changes: pd.DataFrame  # PLAN_COLUMNS: rows to send (SEND_ACTIONS) and source deletions (DELETE_ACTIONS)
    counts: dict[str, int] = field(default_factory=dict)


def _empty_planned() -> pd.DataFrame:
    return pd.DataFrame({"customer_key": pd.Series(dtype="string"), "email": pd.Series(dtype="string"),
                         "module": pd.Series(dtype="object"), "payload_hash": pd.Series(dtype="int64"),
                         "_row": pd.Series(dtype="int64")})


def plan_changes(
    customers: pd.DataFrame,
    state: pd.DataFrame,
    mapping: Mapping,
    modules: tuple[str, ...],
    *,
    source_deletions: str = "ignore",
    all_customer_keys: list[str] | None = None,
) -> Plan:
    """``customers``: the prepared frame (one row per valid email); ``state``: the tenant's state rows.

    ``all_customer_keys`` is given on a full pass only: state rows missing from it were deleted in the store.
    """
    flagged_deleted = pd.Series(False, index=customers.index)
    if source_deletions == "delete" and "deleted" in customers:
        flagged_deleted = customers["deleted"].astype("boolean").fillna(False).astype(bool)
    frame = customers.loc[~flagged_deleted].assign(module=classify(customers.loc[~flagged_deleted]))
    contacts_before = state.loc[state["module"] == "Contacts", "customer_key"]
    never_flip = frame["customer_key"].isin(contacts_before) & (frame["module"] == "Leads")
    frame.loc[never_flip, "module"] = "Contacts"

    counts = {"contacts": int((frame["module"] == "Contacts").sum()), "leads": int((frame["module"] == "Leads").sum())}
    in_scope = frame["module"].isin(list(modules))
    counts["skipped_record_type"] = int((~in_scope).sum())
    frame = frame.loc[in_scope]

    parts = []
    payload_frames: dict[str, pd.DataFrame] = {}
    for module in modules:
        rows = frame.loc[frame["module"] == module]
        if rows.empty:
            continue
        payloads = build_payloads(rows, mapping, module).reset_index(drop=True)
        payload_frames[module] = payloads
        parts.append(pd.DataFrame({
            "customer_key": rows["customer_key"].to_numpy(),
            "email": rows["email"].to_numpy(),
            "module": module,
            "payload_hash": payload_hashes(payloads, module),
            "_row": np.arange(len(rows)),  # position in payload_frames[module]
        }))
    planned = pd.concat(parts, ignore_index=True) if parts else _empty_planned()

    known = state.rename(columns={"payload_hash": "state_hash", "module": "state_module", "email": "state_email"})
    # Nullable integers: after the left merge, new customers have no state hash, and a float64 column
    # would round 64-bit hashes (every existing customer would look changed).
    known = known.assign(state_hash=known["state_hash"].astype("Int64"))
    merged = planned.merge(
        known[["customer_key", "state_module", "state_email", "state_hash", "status", "retryable", "zoho_id",
               "attempts"]],
        on="customer_key", how="left",
    )
    merged["action"] = _actions(merged)
    for name in COUNTED_ACTIONS:
        counts[name] = int((merged["action"] == name).sum())

    send = merged.loc[merged["action"].isin(SEND_ACTIONS)].copy()
    send["payload"] = pd.Series(dtype="object")
    for module, payloads in payload_frames.items():
        mask = send["module"] == module
        if mask.any():
            # JSON only for the rows to send: building it for unchanged rows would be wasted work
            send.loc[mask, "payload"] = payload_json(payloads.iloc[send.loc[mask, "_row"].to_numpy()])
    send["attempts"] = send["attempts"].fillna(0).astype("int64")
    deletions = _source_deletions(customers, flagged_deleted, state, mapping, source_deletions, all_customer_keys)
    counts["source_deleted"] = len(deletions)
    changes = pd.concat([send[PLAN_COLUMNS], deletions], ignore_index=True) if len(deletions) else send[PLAN_COLUMNS]
    return Plan(changes=changes.reset_index(drop=True), counts=counts)


def _actions(merged: pd.DataFrame) -> pd.Series:
    status = merged["status"].astype("object")
    same = merged["state_hash"].eq(merged["payload_hash"]).fillna(False).astype(bool)
    retryable = merged["retryable"].astype("boolean").fillna(False).astype(bool)
    has_id = merged["zoho_id"].notna()
    action = pd.Series("changed", index=merged.index, dtype="object")
    action[status.isna() | (status == "deleted_in_source")] = "new"
    synced = status == "synced"
    action[synced & same] = "unchanged"
    failed = status == "failed"
    action[failed & retryable] = "retry"
    action[failed & ~retryable & same] = "skipped_failed"
    email_changed = has_id & (synced | failed) & merged["state_email"].notna() & \
        (merged["state_email"].astype("object") != merged["email"].astype("object"))
    action[email_changed & (merged["state_module"] == merged["module"]) & (action != "skipped_failed")] = "email_changed"
    became_buyer = has_id & (merged["state_module"] == "Leads") & (merged["module"] == "Contacts") & (synced | failed)
    action[became_buyer & (action != "skipped_failed")] = "convert"
    action[status == "deleted_in_zoho"] = "skipped_deleted"
    return action


def _source_deletions(customers: pd.DataFrame, flagged: pd.Series, state: pd.DataFrame, mapping: Mapping,
                      mode: str, all_customer_keys: list[str] | None) -> pd.DataFrame:
    if mode == "ignore":
        return pd.DataFrame(columns=PLAN_COLUMNS)
    live = state.loc[state["status"].isin(["synced", "failed"]) & state["zoho_id"].notna()]
    gone = pd.Series(False, index=live.index)
    if all_customer_keys is not None:
        gone |= ~live["customer_key"].isin(pd.Index(all_customer_keys, dtype="string"))
    if mode == "delete" and flagged.any():
        gone |= live["customer_key"].isin(customers.loc[flagged, "customer_key"])
    # With "flag", a customer the store flags deleted (DecoNetwork) is sent as usual: its payload carries
    # the mapped deleted field. Only customers gone from the store need a separate flag update.
    rows = live.loc[gone]
    if rows.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    out = rows[["customer_key", "email", "module", "payload_hash", "zoho_id", "attempts"]].copy()
    out["attempts"] = out["attempts"].fillna(0).astype("int64")
    if mode == "delete":
        out["action"], out["payload"] = "delete", None
        return out[PLAN_COLUMNS]
    payloads = []
    for module, zoho_id in zip(out["module"], out["zoho_id"]):
        flag_fields = [z for z, source in mapping.fields.get(module, {}).items() if source == "deleted"]
        if not flag_fields:
            raise MappingError(f"source_deletions 'flag' needs a {module} field mapped from 'deleted' "
                               "(e.g. Customer_Deleted: deleted)")
        payloads.append(json.dumps({"id": zoho_id, **{name: True for name in flag_fields}}, sort_keys=True))
    out["action"], out["payload"] = "flag_deleted", payloads
    return out[PLAN_COLUMNS]
