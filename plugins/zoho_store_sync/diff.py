"""The diff: classify, map and hash every customer in pandas, and keep only what Zoho must receive.

(Over 400 lines: the rules below are one decision over the same coded columns, and the fast join must give what
the plain merge gives row for row, so they stay together; the payloads and their hashes are ``mapping.py``.)

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
* state ``deleted_in_zoho`` → ``skipped_deleted`` until the tenant is reset;
* write-ahead states a crash left (``state.UNCONFIRMED``, ``state.CONVERTING``) → sent again (``retry``) in the
  module they were sent to, or the conversion finished (``convert``): never a second record for one person.
  A customer whose email moved meanwhile (or since its Lead was synced, for a conversion) is sent under the
  email Zoho knows, and moved to the new one by id the next run;
* one email, one record: a customer without a state row takes over the record another customer of the store
  synced under its email (``_take_over_records``), and a customer whose email moved away from a record that the
  email's new holder took over is sent as new (``_taken_over``).

Source deletions (the tenant's ``source_deletions``): a customer missing from a provably complete full pass
(Magento deletes outright) or flagged ``deleted`` (DecoNetwork) is, with ``flag``, updated by id with the
field mapped from ``deleted`` set to true, or with ``delete``, deleted in Zoho. ``ignore`` does neither. A
record whose email another customer of the store still has, or whose id another customer's state row still
holds, is only let go (``release``), never deleted.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zoho_store_sync.customers import arrow_text, is_arrow_string, record_types
from zoho_store_sync.mapping import Mapping, MappingError, build_payloads, payload_hashes_by_module, payload_json
from zoho_store_sync.state import CONVERTING, DELETED_IN_SOURCE, DELETED_IN_ZOHO, FAILED, SYNCED, UNCONFIRMED

SEND_ACTIONS = ("new", "changed", "retry", "convert", "email_changed")
DELETE_ACTIONS = ("flag_deleted", "delete")
RELEASE_ACTION = "release"  # the tenant lets go of a record someone else still needs: state only, no call
PLAN_COLUMNS = ["customer_key", "email", "module", "action", "payload_hash", "zoho_id", "attempts", "payload"]
COUNTED_ACTIONS = (
    "new",
    "changed",
    "retry",
    "convert",
    "email_changed",
    "unchanged",
    "skipped_failed",
    "skipped_deleted",
)
assert COUNTED_ACTIONS[: len(SEND_ACTIONS)] == SEND_ACTIONS  # _actions' codes: below len(SEND_ACTIONS) = send
ACTION_NAMES = np.array(COUNTED_ACTIONS, dtype=object)


@dataclass
class Plan:
    changes: pd.DataFrame  # PLAN_COLUMNS: rows to send (SEND_ACTIONS) and source deletions (DELETE_ACTIONS)
    counts: dict[str, int] = field(default_factory=dict)


def _empty_planned() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_key": pd.Series(dtype="string"),
            "email": pd.Series(dtype="string"),
            "module": pd.Series(dtype="object"),
            "payload_hash": pd.Series(dtype="int64"),
            "_row": pd.Series(dtype="int64"),
        }
    )


STATE_JOIN_COLUMNS = [
    "customer_key",
    "state_module",
    "state_email",
    "state_hash",
    "status",
    "retryable",
    "zoho_id",
    "attempts",
]


def plan_changes(
    customers: pd.DataFrame,
    state: pd.DataFrame,
    mapping: Mapping,
    modules: tuple[str, ...],
    *,
    source_deletions: str = "ignore",
    all_customer_keys: list[str] | None = None,
    email_hashes: np.ndarray | None = None,
) -> Plan:
    """``customers``: the prepared frame (one row per valid email); ``state``: the tenant's state rows.

    ``all_customer_keys`` is given on a full pass only: state rows missing from it were deleted in the store.
    ``email_hashes``: ``PreparedCustomers.email_hashes``, when prepare computed them (saves hashing them again).

    Built for a million customers: one hash lookup joins every customer to its state row, the payloads are
    hashed a column at a time (``payload_hashes_by_module``), and only the rows to send become payload frames
    and JSON. The result is the same as mapping, hashing and merging each module's frame in full.
    """
    flagged_deleted = pd.Series(False, index=customers.index)
    if source_deletions == "delete" and "deleted" in customers:
        flagged_deleted = customers["deleted"].astype("boolean").fillna(False).astype(bool)
    frame = customers.loc[~flagged_deleted] if flagged_deleted.any() else customers
    if email_hashes is not None and flagged_deleted.any():
        email_hashes = email_hashes[~flagged_deleted.to_numpy()]
    module = record_types(frame)  # numpy text: a million comparisons take milliseconds
    state_row = _unique_state_rows(frame["customer_key"], state["customer_key"])  # None: keys not unique
    if state_row is not None and len(state) and (state_row < 0).any():
        state, state_row = _take_over_records(frame, state, state_row)
    if state_row is not None:
        state_module = _Coded(state["module"], state_row)
        was_contact = state_module == "Contacts"
        state_status = _Coded(state["status"], state_row)
        # Write-ahead rows a crash left: a Lead whose insert is unconfirmed stays a Lead until Zoho gives its id
        # (then it is converted, never doubled by a new Contact); a conversion under way is finished.
        if "Leads" in modules:
            module[(state_module == "Leads") & (state_status == UNCONFIRMED) & (module == "Contacts")] = "Leads"
        if "Contacts" in modules:
            module[state_status == CONVERTING] = "Contacts"
    else:
        was_contact = frame["customer_key"].isin(state.loc[state["module"] == "Contacts", "customer_key"]).to_numpy()
    module[was_contact & (module == "Leads")] = "Contacts"  # never flipped back to a Lead

    counts = {"contacts": int((module == "Contacts").sum()), "leads": int((module == "Leads").sum())}
    in_scope = _among(module, modules)
    counts["skipped_record_type"] = int((~in_scope).sum())
    module[~in_scope] = ""
    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(payload_hashes_by_module, frame, mapping, module, email_hashes)  # meanwhile: the state
        known = state.rename(columns={"payload_hash": "state_hash", "module": "state_module", "email": "state_email"})
        # Nullable integers: new customers have no state hash, and a float64 column would round 64-bit hashes
        # (every existing customer would look changed).
        known = known.assign(state_hash=known["state_hash"].astype("Int64"))
        if state_row is not None:
            status, retryable = (
                _Coded(state["status"], state_row),
                _at(known["retryable"].astype("boolean").fillna(False).to_numpy(dtype=bool), state_row),
            )
            has_id = _at(known["zoho_id"].notna().to_numpy(), state_row)
            email_moved = _email_moved(state["email"], state_row, frame["email"])
            taken = _taken_over(state, state_row, frame["email"], email_moved)
            if taken.any():  # its record is now the one of the customer holding its old email: sent as new
                status.codes[taken], has_id[taken] = -1, False
        hashes = hashing.result()
    if state_row is not None:  # one state row at most per customer: decide in frame order, then pick
        action = _actions(
            status=status,
            state_module=state_module,
            module=module,
            modules=modules,
            same=_same_hash(known["state_hash"], state_row, hashes),
            retryable=retryable,
            has_id=has_id,
            email_moved=email_moved,
        )
        send = _joined(frame, known, modules, module, hashes, state_row, in_scope & (action < len(SEND_ACTIONS)))
        send.loc[taken[send["_frame_row"].to_numpy()], "zoho_id"] = None
        # A write a crash may have applied unrecorded (an insert left unconfirmed, a conversion) goes out under the
        # email it was sent with, whose record Zoho may have: never a second record under the new email. The next
        # run moves that record to the new email by its id.
        under_old = (email_moved & ((status == UNCONFIRMED) | (action == COUNTED_ACTIONS.index("convert"))))[
            send["_frame_row"].to_numpy()
        ]
        if under_old.any():
            send.loc[under_old, "email"] = (
                state["email"].astype("object").to_numpy()[state_row[send["_frame_row"].to_numpy()[under_old]]]
            )
        send_action = ACTION_NAMES[action[send["_frame_row"].to_numpy()]]
        action = action[in_scope]
    else:  # several state rows per customer key (never from the state table): pandas' merge pairs them up
        planned = _planned(frame, [(m, np.flatnonzero(module == m)) for m in modules], hashes)
        merged = planned.merge(known[STATE_JOIN_COLUMNS], on="customer_key", how="left")
        state_email = merged["state_email"].astype("object")
        action = _actions(
            status=_Coded(merged["status"]),
            state_module=_Coded(merged["state_module"]),
            module=merged["module"].to_numpy(dtype=object),
            modules=modules,
            same=merged["state_hash"].eq(merged["payload_hash"]).fillna(False).astype(bool).to_numpy(),
            retryable=merged["retryable"].astype("boolean").fillna(False).astype(bool).to_numpy(),
            has_id=merged["zoho_id"].notna().to_numpy(),
            email_moved=(state_email.notna() & (state_email != merged["email"].astype("object"))).to_numpy(),
        )
        send = merged.loc[action < len(SEND_ACTIONS)]
        send_action = ACTION_NAMES[action[action < len(SEND_ACTIONS)]]
    send = send.assign(action=pd.Series(send_action, index=send.index, dtype="object"))
    for name, count in zip(COUNTED_ACTIONS, np.bincount(action, minlength=len(COUNTED_ACTIONS)).tolist()):
        counts[name] = int(count)

    send["payload"] = pd.Series(dtype="object")
    for name in modules:
        mask = (send["module"] == name).to_numpy()
        if mask.any():
            # JSON only for the rows to send: building it for unchanged rows would be wasted work
            rows = frame.iloc[send.loc[mask, "_frame_row"].to_numpy()]
            if state_row is not None and under_old.any():  # those rows' payloads carry the email sent before
                rows = rows.assign(email=pd.array(send.loc[mask, "email"].to_numpy(), dtype=frame["email"].dtype))
            payloads = build_payloads(rows, mapping, name)
            send.loc[mask, "payload"] = payload_json(payloads)
    send["attempts"] = send["attempts"].fillna(0).astype("int64")
    deletions = _source_deletions(customers, flagged_deleted, state, mapping, source_deletions, all_customer_keys)
    counts["source_deleted"] = len(deletions)
    changes = pd.concat([send[PLAN_COLUMNS], deletions], ignore_index=True) if len(deletions) else send[PLAN_COLUMNS]
    return Plan(changes=changes.reset_index(drop=True), counts=counts)


def _planned(frame: pd.DataFrame, blocks: list[tuple[str, np.ndarray]], hashes: np.ndarray) -> pd.DataFrame:
    """The planned rows (key, email, module, hash) of ``blocks`` (module, frame rows), in block order."""
    parts = [
        pd.DataFrame(
            {
                "customer_key": frame["customer_key"].iloc[rows].to_numpy(),
                "email": frame["email"].iloc[rows].to_numpy(),
                "module": module,
                "payload_hash": hashes[rows],
                "_frame_row": rows,
            }
        )
        for module, rows in blocks
        if len(rows)
    ]
    return pd.concat(parts, ignore_index=True) if parts else _empty_planned().rename(columns={"_row": "_frame_row"})


def _joined(
    frame: pd.DataFrame,
    known: pd.DataFrame,
    modules: tuple[str, ...],
    module: np.ndarray,
    hashes: np.ndarray,
    state_row: np.ndarray,
    sending: np.ndarray,
) -> pd.DataFrame:
    """The rows to send merged with their state rows, exactly as merging every planned row would give them.

    pandas' merge picks column dtypes from what it sees (a planned row without a state row turns integer
    columns into floats, an empty side changes the key's dtype). So a planned row with and one without a
    state row (when the rows to send lack one) and one state row join the merge as anchors, dropped after it.
    """
    blocks = [(m, np.flatnonzero(sending & (module == m))) for m in modules]  # planned order: by module
    picked = np.concatenate([rows for _, rows in blocks] + [np.zeros(0, dtype="int64")])
    for kind in (state_row < 0, state_row >= 0):
        if not kind[picked].any() and (anchor := np.flatnonzero(kind & (module != ""))[:1]).size:
            blocks.append((str(module[anchor[0]]), anchor))
    left = _planned(frame, blocks, hashes)
    own = state_row[left["_frame_row"].to_numpy()]
    state_rows = np.unique(np.concatenate([own[own >= 0], [0] if len(known) else []]).astype("int64"))
    merged = left.merge(known[STATE_JOIN_COLUMNS].iloc[state_rows], on="customer_key", how="left")
    return merged.iloc[: len(picked)].copy()


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


def _take_over_records(
    frame: pd.DataFrame, state: pd.DataFrame, state_row: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """The same email twice is one Zoho record. A customer without a state row, whose email's record another
    customer synced (one no longer the email's winner, or gone from the store), takes that record over: it is
    planned against a copy of that row under its own key. So a buyer who wins the email of a synced Lead converts
    that Lead, and a non-buyer who wins a Contact's email updates that Contact: never a Lead and a Contact for one
    person. Rows of customers planned now are theirs (a winner who moved to another email keeps its record)."""
    orphans = np.flatnonzero(state_row < 0)
    wanted = frame["email"].iloc[orphans].dropna().astype("object").unique()
    hits = np.flatnonzero(state["email"].isin(wanted).to_numpy(dtype=bool, na_value=False))  # one pass, a few hits
    planned = np.zeros(len(state), dtype=bool)
    planned[state_row[state_row >= 0]] = True
    live = state["status"].iloc[hits].isin([SYNCED, FAILED, UNCONFIRMED, CONVERTING]).to_numpy()
    holders = state.iloc[hits[live & ~planned[hits]]]
    if holders.empty:
        return state, state_row
    # several former holders of one email: a Contact's record first (a Contact stays one), then a confirmed one
    rank = 2 * (holders["module"] != "Contacts").to_numpy(dtype=int) + holders["zoho_id"].isna().to_numpy(dtype=int)
    holders = holders.iloc[np.argsort(rank, kind="stable")].drop_duplicates("email")
    at = pd.Index(holders["email"].astype("object")).get_indexer(frame["email"].iloc[orphans].astype("object"))
    takers, picked = orphans[at >= 0], at[at >= 0]
    if not len(takers):
        return state, state_row
    copies = holders.iloc[picked].assign(customer_key=frame["customer_key"].iloc[takers].to_numpy())
    state_row = state_row.copy()
    state_row[takers] = len(state) + np.arange(len(takers))
    copies = copies.astype({"customer_key": state["customer_key"].dtype})
    return pd.concat([state, copies], ignore_index=True), state_row


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


class _Coded:
    """A low-cardinality column (status, module) as integer codes: ``coded == "synced"`` costs milliseconds."""

    def __init__(self, values: pd.Series, rows: np.ndarray | None = None) -> None:
        codes, names = pd.factorize(values)  # missing: -1
        if rows is not None:  # the values at these positions; -1: none
            codes = np.where(rows >= 0, codes.take(np.maximum(rows, 0)) if len(codes) else -1, -1)
        self.codes = codes
        self.names = {name: code for code, name in enumerate(names.tolist())}

    def __eq__(self, name: object) -> np.ndarray:  # type: ignore[override]
        return self.codes == self.names.get(name, -2)

    def isna(self) -> np.ndarray:
        return self.codes < 0


def _at(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Booleans of the state rows at ``rows``; False where a customer has no state row (-1)."""
    return np.where(rows >= 0, values.take(np.maximum(rows, 0)) if len(values) else False, False)


def _same_hash(state_hashes: pd.Series, rows: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Whether the state row's hash equals the new one (False without a state row or hash)."""
    if not len(state_hashes):
        return np.zeros(len(rows), dtype=bool)
    at = np.maximum(rows, 0)
    present = (rows >= 0) & ~state_hashes.isna().to_numpy().take(at)
    return present & (state_hashes.to_numpy(dtype="int64", na_value=0).take(at) == hashes)


def _email_moved(state_emails: pd.Series, rows: np.ndarray, emails: pd.Series) -> np.ndarray:
    """The state row has an email and it is not the customer's (a missing customer email differs from any)."""
    try:
        theirs, ours = _text(state_emails), _text(emails)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all text: compare as Python objects, as pandas would
        theirs_at = pd.Series(
            np.asarray(state_emails, dtype=object).take(np.maximum(rows, 0))
            if len(state_emails)
            else np.full(len(rows), None),
            dtype=object,
        ).where(rows >= 0, None)
        return (theirs_at.notna() & (theirs_at != emails.astype("object").reset_index(drop=True))).to_numpy()
    theirs = theirs.take(pa.array(rows, mask=rows < 0)) if len(theirs) else pa.nulls(len(rows), pa.large_string())
    differs = pc.fill_null(pc.not_equal(theirs, ours), True)
    return pc.and_(theirs.is_valid(), differs).to_numpy(zero_copy_only=False)


def _taken_over(state: pd.DataFrame, rows: np.ndarray, emails: pd.Series, email_moved: np.ndarray) -> np.ndarray:
    """Customers whose email moved away from a Zoho record that another customer of the store holds now: one
    planned under the old email, whose state row has the same Zoho id (it won the email, and the record matched
    on it). Updating or converting that record by id would take it from them: these customers are sent as new."""
    taken = np.zeros(len(rows), dtype=bool)
    movers = np.flatnonzero(email_moved & (rows >= 0))
    if not len(movers):
        return taken
    old = state["email"].iloc[rows[movers]].astype("object").tolist()
    holders = np.flatnonzero(emails.isin(old).to_numpy(dtype=bool, na_value=False))  # one pass, a few hits
    holder_of = dict(zip(emails.iloc[holders].astype("object").tolist(), holders.tolist()))
    for mover, email in zip(movers.tolist(), old):
        holder = holder_of.get(email)
        theirs = rows[holder] if holder is not None else -1
        if theirs < 0:
            continue
        mine = rows[mover]
        mine_id, their_id = state["zoho_id"].iat[mine], state["zoho_id"].iat[theirs]
        taken[mover] = (
            state["status"].iat[mine] in (SYNCED, FAILED, CONVERTING)
            and isinstance(mine_id, str)
            and mine_id == their_id
        )
    return taken


def _text(values: pd.Series) -> pa.ChunkedArray:
    """A text column as Arrow large strings; raises for a column holding anything but text."""
    if is_arrow_string(values):
        return arrow_text(values).cast(pa.large_string())
    return pa.chunked_array([pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)])


def _among(values: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """``np.isin`` for a few names, without sorting a million values."""
    found = np.zeros(len(values), dtype=bool)
    for name in names:
        found |= values == name
    return found


def _actions(
    *,
    status: _Coded,
    state_module: _Coded,
    module: np.ndarray,
    modules: tuple[str, ...],
    same: np.ndarray,
    retryable: np.ndarray,
    has_id: np.ndarray,
    email_moved: np.ndarray,
) -> np.ndarray:
    """The action per customer (rules in the module docstring) from its state row's columns (NaN: none),
    as a position in ``COUNTED_ACTIONS`` (the send actions come first)."""
    code = {name: np.int8(i) for i, name in enumerate(COUNTED_ACTIONS)}
    action = np.full(len(module), code["changed"], dtype="int8")
    action[status.isna() | (status == DELETED_IN_SOURCE)] = code["new"]
    synced, failed, converting = status == SYNCED, status == FAILED, status == CONVERTING
    action[synced & same] = code["unchanged"]
    action[(failed & retryable) | (status == UNCONFIRMED)] = code["retry"]
    action[failed & ~retryable & same] = code["skipped_failed"]
    same_module = np.zeros(len(module), dtype=bool)
    for name in modules:
        same_module |= (state_module == name) & (module == name)
    email_changed = has_id & (synced | failed) & email_moved
    action[email_changed & same_module & (action != code["skipped_failed"])] = code["email_changed"]
    became_buyer = has_id & (state_module == "Leads") & (module == "Contacts") & (synced | failed | converting)
    action[became_buyer & (action != code["skipped_failed"])] = code["convert"]
    action[status == DELETED_IN_ZOHO] = code["skipped_deleted"]
    return action


def _source_deletions(
    customers: pd.DataFrame,
    flagged: pd.Series,
    state: pd.DataFrame,
    mapping: Mapping,
    mode: str,
    all_customer_keys: list[str] | None,
) -> pd.DataFrame:
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
    # The Zoho record is matched on email: while a customer of the store still has that email (a duplicate
    # that now wins it), the record is theirs. Let go of it (``release``), never delete or flag it.
    still_wanted = out["email"].isin(customers.loc[~flagged, "email"].dropna()).to_numpy()
    # So is a record another customer still in the store holds (its state row has the id: it took the email over,
    # or took the record to its new email).
    kept = live.loc[~gone & live["zoho_id"].isin(out["zoho_id"]).to_numpy(), "zoho_id"]
    still_wanted = still_wanted | out["zoho_id"].isin(kept).to_numpy()
    if mode == "delete":
        out["action"], out["payload"] = "delete", None
        out.loc[still_wanted, "action"] = "release"
        return out[PLAN_COLUMNS]
    payloads = []
    for module, zoho_id in zip(out["module"], out["zoho_id"]):
        flag_fields = [z for z, source in mapping.fields.get(module, {}).items() if source == "deleted"]
        if not flag_fields:
            raise MappingError(
                f"source_deletions 'flag' needs a {module} field mapped from 'deleted' (e.g. Customer_Deleted: deleted)"
            )
        payloads.append(json.dumps({"id": zoho_id, **{name: True for name in flag_fields}}, sort_keys=True))
    out["action"], out["payload"] = "flag_deleted", payloads
    out.loc[still_wanted, ["action", "payload"]] = ["release", None]
    return out[PLAN_COLUMNS]
