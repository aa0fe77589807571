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
import pyarrow as pa
import pyarrow.compute as pc

from zoho_store_sync.customers import classify
from zoho_store_sync.mapping import Mapping, MappingError, build_payloads, payload_hashes_by_module, payload_json

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


STATE_JOIN_COLUMNS = ["customer_key", "state_module", "state_email", "state_hash", "status", "retryable", "zoho_id",
                      "attempts"]


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

    Built for a million customers: one hash lookup joins every customer to its state row, the payloads are
    hashed a column at a time (``payload_hashes_by_module``), and only the rows to send become payload frames
    and JSON. The result is the same as mapping, hashing and merging each module's frame in full.
    """
    flagged_deleted = pd.Series(False, index=customers.index)
    if source_deletions == "delete" and "deleted" in customers:
        flagged_deleted = customers["deleted"].astype("boolean").fillna(False).astype(bool)
    frame = customers.loc[~flagged_deleted] if flagged_deleted.any() else customers
    module = classify(frame).to_numpy(dtype=object)
    state_row = _unique_state_rows(frame["customer_key"], state["customer_key"])  # None: keys not unique
    if state_row is not None:
        was_contact = _at(state["module"], state_row) == "Contacts"
    else:
        was_contact = frame["customer_key"].isin(state.loc[state["module"] == "Contacts", "customer_key"]).to_numpy()
    module[was_contact & (module == "Leads")] = "Contacts"  # never flipped back to a Lead

    counts = {"contacts": int((module == "Contacts").sum()), "leads": int((module == "Leads").sum())}
    in_scope = np.isin(module, list(modules))
    counts["skipped_record_type"] = int((~in_scope).sum())
    module[~in_scope] = ""
    hashes = payload_hashes_by_module(frame, mapping, module)
    blocks = [(m, rows) for m in modules if len(rows := np.flatnonzero(module == m))]
    planned_rows = np.concatenate([rows for _, rows in blocks]) if blocks else np.zeros(0, dtype="int64")

    known = state.rename(columns={"payload_hash": "state_hash", "module": "state_module", "email": "state_email"})
    # Nullable integers: new customers have no state hash, and a float64 column would round 64-bit hashes
    # (every existing customer would look changed).
    known = known.assign(state_hash=known["state_hash"].astype("Int64"))
    if state_row is not None:
        at = state_row[planned_rows]
        action = _actions(
            status=_at(state["status"], at), state_module=_at(state["module"], at), state_email=_at(state["email"], at),
            email=frame["email"].iloc[planned_rows], module=module[planned_rows],
            same=_same_hash(known["state_hash"], at, hashes[planned_rows]),
            retryable=_at(known["retryable"].astype("boolean").fillna(False).to_numpy(dtype=bool), at, False),
            has_id=_at(known["zoho_id"].notna().to_numpy(), at, False),
        )
        sending = np.isin(action, SEND_ACTIONS)
        send = _joined(frame, known, blocks, module, hashes, planned_rows, at, sending)
        send["action"] = pd.Series(action[sending], index=send.index, dtype="object")
    else:  # several state rows per customer key (never from the state table): pandas' merge pairs them up
        planned = _planned(frame, blocks, hashes)
        merged = planned.merge(known[STATE_JOIN_COLUMNS], on="customer_key", how="left")
        action = _actions(
            status=merged["status"].to_numpy(dtype=object), state_module=merged["state_module"].to_numpy(dtype=object),
            state_email=merged["state_email"].to_numpy(dtype=object), email=merged["email"],
            module=merged["module"].to_numpy(dtype=object),
            same=merged["state_hash"].eq(merged["payload_hash"]).fillna(False).astype(bool).to_numpy(),
            retryable=merged["retryable"].astype("boolean").fillna(False).astype(bool).to_numpy(),
            has_id=merged["zoho_id"].notna().to_numpy(),
        )
        sending = np.isin(action, SEND_ACTIONS)
        send = merged.loc[sending]
        send = send.assign(action=pd.Series(action[sending], index=send.index, dtype="object"))
    for name in COUNTED_ACTIONS:
        counts[name] = int((action == name).sum())

    send["payload"] = pd.Series(dtype="object")
    for name, rows in blocks:
        mask = (send["module"] == name).to_numpy()
        if mask.any():
            # JSON only for the rows to send: building it for unchanged rows would be wasted work
            payloads = build_payloads(frame.iloc[send.loc[mask, "_frame_row"].to_numpy()], mapping, name)
            send.loc[mask, "payload"] = payload_json(payloads)
    send["attempts"] = send["attempts"].fillna(0).astype("int64")
    deletions = _source_deletions(customers, flagged_deleted, state, mapping, source_deletions, all_customer_keys)
    counts["source_deleted"] = len(deletions)
    changes = pd.concat([send[PLAN_COLUMNS], deletions], ignore_index=True) if len(deletions) else send[PLAN_COLUMNS]
    return Plan(changes=changes.reset_index(drop=True), counts=counts)


def _planned(frame: pd.DataFrame, blocks: list[tuple[str, np.ndarray]], hashes: np.ndarray) -> pd.DataFrame:
    """The planned rows (key, email, module, hash) of ``blocks``, one block per module, in block order."""
    parts = [pd.DataFrame({
        "customer_key": frame["customer_key"].iloc[rows].to_numpy(),
        "email": frame["email"].iloc[rows].to_numpy(),
        "module": module,
        "payload_hash": hashes[rows],
        "_frame_row": rows,  # position in frame
    }) for module, rows in blocks]
    return pd.concat(parts, ignore_index=True) if parts else _empty_planned().rename(columns={"_row": "_frame_row"})


def _joined(frame: pd.DataFrame, known: pd.DataFrame, blocks: list[tuple[str, np.ndarray]], module: np.ndarray,
            hashes: np.ndarray, planned_rows: np.ndarray, at: np.ndarray, sending: np.ndarray) -> pd.DataFrame:
    """The rows to send merged with their state rows, exactly as merging every planned row would give them.

    pandas' merge picks column dtypes from what it sees (a planned row without a state row turns integer
    columns into floats, an empty side changes the key's dtype). So a planned row with and one without a
    state row, if the rows to send lack one, and one state row join the merge as anchors, dropped after it.
    """
    picked = np.flatnonzero(sending)
    anchors = [kind[:1] for kind, seen in ((np.flatnonzero(at < 0), (at[picked] < 0).any()),
                                           (np.flatnonzero(at >= 0), (at[picked] >= 0).any())) if not seen]
    chosen = np.concatenate([picked, *anchors]).astype("int64")
    parts = []
    for group in (picked, *anchors):  # the rows to send in planned order (grouped by module), then the anchors
        rows = planned_rows[group]
        parts += [(m, rows[module[rows] == m]) for m, _ in blocks]
    left = _planned(frame, [(m, rows) for m, rows in parts if len(rows)], hashes)
    own = at[chosen]
    state_rows = np.unique(np.concatenate([own[own >= 0], [0] if len(known) else []]).astype("int64"))
    merged = left.merge(known[STATE_JOIN_COLUMNS].iloc[state_rows], on="customer_key", how="left")
    return merged.iloc[:len(picked)].copy()


def _unique_state_rows(keys: pd.Series, state_keys: pd.Series) -> np.ndarray | None:
    """Per customer, the position of its state row (-1: none); None when state keys repeat or are missing."""
    if state_keys.isna().any():
        return None
    if not len(state_keys):
        return np.full(len(keys), -1, dtype="int64")
    numbers, state_numbers = _integer_keys(keys), _integer_keys(state_keys)
    if numbers is not None and state_numbers is not None:
        index, wanted = pd.Index(state_numbers), numbers  # Magento ids: an integer hash table is far faster
    else:
        index, wanted = pd.Index(state_keys.astype("string")), keys.astype("string")
    if not index.is_unique:
        return None
    return index.get_indexer(wanted).astype("int64")


def _integer_keys(keys: pd.Series) -> np.ndarray | None:
    """The keys as int64 when every one is an integer written canonically ("42", not "042" or "+42")."""
    if keys.dtype != object and not isinstance(keys.dtype, pd.StringDtype):
        return None
    try:
        text = pa.array(keys.astype("string").array, type=pa.large_string())
        numbers = pc.cast(text, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    if text.null_count or not pc.all(pc.equal(pc.cast(numbers, text.type), text), min_count=0).as_py():
        return None
    return numbers.to_numpy()


def _at(values: pd.Series | np.ndarray, rows: np.ndarray, missing: object = None) -> np.ndarray:
    """``values`` at positions ``rows`` (an object array unless ``missing`` says otherwise); -1: ``missing``."""
    array = np.asarray(values, dtype=object) if missing is None else np.asarray(values)
    if not len(array):
        return np.full(len(rows), missing, dtype=array.dtype)
    taken = array.take(np.maximum(rows, 0))
    taken[rows < 0] = missing
    return taken


def _same_hash(state_hashes: pd.Series, rows: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Whether the state row's hash equals the new one (False without a state row or hash)."""
    if not len(state_hashes):
        return np.zeros(len(rows), dtype=bool)
    values = state_hashes.to_numpy(dtype="int64", na_value=0).take(np.maximum(rows, 0))
    present = ~state_hashes.isna().to_numpy().take(np.maximum(rows, 0)) & (rows >= 0)
    return present & (values == hashes)


def _actions(*, status: np.ndarray, state_module: np.ndarray, state_email: np.ndarray, email: pd.Series,
             module: np.ndarray, same: np.ndarray, retryable: np.ndarray, has_id: np.ndarray) -> np.ndarray:
    """The action of every planned row (rules in the module docstring); arrays aligned on the planned rows."""
    status = pd.Series(status, dtype=object)
    action = np.full(len(status), "changed", dtype=object)
    action[(status.isna() | (status == "deleted_in_source")).to_numpy()] = "new"
    synced = (status == "synced").to_numpy()
    action[synced & same] = "unchanged"
    failed = (status == "failed").to_numpy()
    action[failed & retryable] = "retry"
    action[failed & ~retryable & same] = "skipped_failed"
    state_module = pd.Series(state_module, dtype=object)
    same_module = (state_module == pd.Series(module, dtype=object)).to_numpy()
    candidates = np.flatnonzero(has_id & (synced | failed) & same_module & (action != "skipped_failed")
                                & pd.notna(state_email))
    if len(candidates):
        # Compared as Python objects, as pandas compares object columns (a missing email differs from any)
        differs = (pd.Series(state_email[candidates], dtype=object)
                   != pd.Series(email.iloc[candidates].to_numpy(dtype=object), dtype=object)).to_numpy()
        action[candidates[differs]] = "email_changed"
    became_buyer = has_id & (state_module == "Leads").to_numpy() & (module == "Contacts") & (synced | failed)
    action[became_buyer & (action != "skipped_failed")] = "convert"
    action[(status == "deleted_in_zoho").to_numpy()] = "skipped_deleted"
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
