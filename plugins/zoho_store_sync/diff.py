"""The diff: classify, map and hash every customer in pandas, and keep only what Zoho must receive.

Per customer, against the tenant's state row:

* no state row → ``new`` (upserted, matched on email, so a customer Zoho already has is updated);
* state ``synced`` with the same hash → ``unchanged`` (nothing sent);
* a different hash → ``changed``;
* state ``failed``: a retryable failure is sent again (``retry``); a permanent one only when the payload
  changed, otherwise ``skipped_failed`` (it waits for the source row to change);
* state ``deleted_in_zoho`` → ``skipped_deleted`` until the tenant is reset;
* a customer once synced as a Contact stays a Contact (never flipped back to a Lead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from zoho_store_sync.customers import classify
from zoho_store_sync.mapping import Mapping, build_payloads, payload_hashes, payload_json

SEND_ACTIONS = ("new", "changed", "retry")
PLAN_COLUMNS = ["customer_key", "email", "module", "action", "payload_hash", "zoho_id", "attempts", "payload"]


@dataclass
class Plan:
    changes: pd.DataFrame  # PLAN_COLUMNS, only rows to send
    counts: dict[str, int] = field(default_factory=dict)


def plan_changes(customers: pd.DataFrame, state: pd.DataFrame, mapping: Mapping, modules: tuple[str, ...]) -> Plan:
    """``customers`` is the prepared frame (one row per valid email); ``state`` the tenant's state rows."""
    frame = customers.assign(module=classify(customers))
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
            "payload_hash": payload_hashes(payloads, mapping.signature(module)),
            "_row": range(len(rows)),  # position in payload_frames[module]
        }))
    planned = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"customer_key": pd.Series(dtype="string"), "email": pd.Series(dtype="string"),
         "module": pd.Series(dtype="object"), "payload_hash": pd.Series(dtype="int64"),
         "_row": pd.Series(dtype="int64")})

    known = state.rename(columns={"payload_hash": "state_hash", "module": "state_module"})
    merged = planned.merge(
        known[["customer_key", "state_module", "state_hash", "status", "retryable", "zoho_id", "attempts"]],
        on="customer_key", how="left",
    )
    status = merged["status"].astype("object")
    same = merged["state_hash"].astype("Int64").eq(merged["payload_hash"]).fillna(False).astype(bool)
    retryable = merged["retryable"].astype("boolean").fillna(False).astype(bool)
    action = pd.Series("changed", index=merged.index, dtype="object")
    action[status.isna()] = "new"
    action[(status == "synced") & same] = "unchanged"
    failed = status == "failed"
    action[failed & retryable] = "retry"
    action[failed & ~retryable & same] = "skipped_failed"
    action[status == "deleted_in_zoho"] = "skipped_deleted"
    merged["action"] = action
    for name in ("new", "changed", "retry", "unchanged", "skipped_failed", "skipped_deleted"):
        counts[name] = int((action == name).sum())

    send = merged.loc[merged["action"].isin(SEND_ACTIONS)].copy()
    send["payload"] = pd.Series(dtype="object")
    for module, payloads in payload_frames.items():
        mask = send["module"] == module
        if mask.any():
            # JSON only for the rows to send: building it for unchanged rows would be wasted work
            send.loc[mask, "payload"] = payload_json(payloads.iloc[send.loc[mask, "_row"].to_numpy()])
    send["attempts"] = send["attempts"].fillna(0).astype("int64")
    return Plan(changes=send[PLAN_COLUMNS].reset_index(drop=True), counts=counts)
