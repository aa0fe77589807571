"""The canonical customer frame every source produces, and the rules applied to it before mapping.

Rules (documented in the README):

* **Email** is trimmed and lower-cased; a missing or malformed email is never sent, it is counted as
  ``invalid`` with its reason. Emails longer than Zoho's 100 characters are invalid too (Zoho would
  truncate them and the next upsert would no longer match).
* **Duplicates**: the same email twice in one tenant is one Zoho record. The winner is the customer with
  the most orders, then the most recently updated, then the smallest source id; the others are counted
  as ``duplicates``.
* **Last name** is mandatory in Zoho: the last name, else the last word of the full name, else the first
  name, else the part of the email before ``@``.
* **Classification**: a customer with at least one counted order is a Contact; a registered customer
  without orders, or a newsletter subscriber, is a Lead (so is a guest buyer, when a Magento tenant opts
  into ``guest_orders_as_leads``). A record type the tenant does not sync is skipped.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# column -> pandas dtype. Sources fill what they know; missing columns are added empty.
CUSTOMER_COLUMNS: dict[str, str] = {
    "customer_key": "string",  # the source's stable id, unique per tenant
    "email": "string",
    "company": "string",
    "full_name": "string",
    "firstname": "string",
    "lastname": "string",
    "salutation": "string",
    "address": "string",
    "city": "string",
    "state": "string",
    "zip": "string",
    "country_name": "string",
    "phone_number": "string",
    "store": "string",
    "store_url": "string",
    "store_id": "string",  # the source's id of the store/website the customer belongs to (scoping)
    "store_is_mine": "boolean",  # False for an affiliate's store (DecoNetwork "belongs to someone else")
    "order_count": "int64",
    "balance": "float64",
    "total_order_value": "float64",
    "newsletter": "boolean",
    "deleted": "boolean",
    "registered": "boolean",
    "source_updated_at": "string",
}
ZOHO_EMAIL_MAX_LENGTH = 100
# What Zoho's email fields accept: an ASCII local part without empty dot-parts, and a domain of
# dot-separated labels (letters, digits, inner hyphens).
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_EMAIL_PATTERN = rf"^[a-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*@{_LABEL}(?:\.{_LABEL})+$"


def use_system_allocator() -> None:
    """Arrow's buffers from the C library's allocator instead of its bundled mimalloc, unless the
    ``ARROW_DEFAULT_MEMORY_POOL`` environment variable chooses: a plan's million-row, short-lived arrays
    run ~20% faster with it on Linux (``make bench``, diff_full_1m). Process-wide: the pipeline calls it."""
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())


def empty_customers() -> pd.DataFrame:
    return conform(pd.DataFrame({name: [] for name in CUSTOMER_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Add missing canonical columns and set every column's dtype."""
    out = frame.copy()
    for name, dtype in CUSTOMER_COLUMNS.items():
        if name not in out.columns:
            out[name] = pd.NA
        elif _has_dtype(out[name], dtype):
            continue  # already canonical (a frame conformed once): converting again costs a copy per column
        if dtype == "int64":
            out[name] = pd.to_numeric(out[name], errors="coerce").fillna(0).astype("int64")
        elif dtype == "float64":
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
        elif dtype == "boolean":
            out[name] = out[name].astype("boolean").fillna(False)
        else:
            out[name] = out[name].astype("string")
    return out[list(CUSTOMER_COLUMNS)]


def _has_dtype(column: pd.Series, dtype: str) -> bool:
    """True when conform would leave ``column`` as it is (booleans also need no missing value)."""
    if dtype == "string":
        return column.dtype == pd.StringDtype()  # the default storage and NA, exactly what astype("string") gives
    if dtype == "boolean":
        return column.dtype == pd.BooleanDtype() and not column.hasnans
    return column.dtype == np.dtype(dtype)


@dataclass
class PreparedCustomers:
    valid: pd.DataFrame  # one row per normalised email, with a derived last name
    invalid: pd.DataFrame  # customer_key, email, reason
    duplicates: int
    # string_hashes(valid["email"]) when prepare computed them anyway (large frames): plan_changes reuses them
    email_hashes: np.ndarray | None = None


def normalise_email(emails: pd.Series) -> pd.Series:
    """Trimmed (Unicode whitespace, as ``str.strip``) and lower-cased."""
    if is_arrow_string(emails):  # the same Arrow kernels ``.str`` calls, without two Series in between
        text = pc.utf8_lower(pc.utf8_trim_whitespace(arrow_text(emails)))
        return pd.Series(pd.arrays.ArrowStringArray(text), index=emails.index, name=emails.name)
    return emails.astype("string").str.strip().str.lower()


def string_hashes(values: pd.Series) -> np.ndarray:
    """``pd.util.hash_pandas_object(values, index=False)`` of a string column, for its non-missing rows."""
    return arrow_hashes(arrow_text(values))


def arrow_hashes(text: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """pandas' hash of each string (``hash_pandas_object``), fed UTF-8 bytes straight from Arrow.

    The same siphash per value, without a Python ``str`` per value and without the dictionary encoding
    pandas does first (a waste on mostly distinct values: emails, ids, phones): 2-4x faster. Missing
    values get an arbitrary hash: callers mask them.
    """
    raw = text.cast(pa.large_binary()).to_numpy(zero_copy_only=False)  # missing: None, hashed as b"None"
    return pd.util.hash_array(raw, categorize=False)


def is_arrow_string(values: pd.Series) -> bool:
    return isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"


def arrow_text(values: pd.Series) -> pa.ChunkedArray:
    """A string column as Arrow: zero-copy for pandas' default string dtype."""
    if is_arrow_string(values):
        return values.array._pa_array
    return values.astype("string[pyarrow]").array._pa_array


def _matches_email(emails: pd.Series) -> np.ndarray:
    """``emails.str.match(_EMAIL_PATTERN)``, False for missing ones.

    pandas runs this pattern on Arrow's RE2 anyway (it has no look-arounds and no ``\\w``); calling it
    directly skips pandas' pattern analysis and its nullable-boolean result. pandas would switch to
    Python's ``re`` only for values holding a newline, where ``$`` differs; the emails are stripped, so a
    newline can only sit inside one, where the character classes refuse it under both engines.
    """
    if not is_arrow_string(emails):
        return emails.str.match(_EMAIL_PATTERN).fillna(False).astype(bool).to_numpy()
    matched = pc.match_substring_regex(arrow_text(emails), f"^({_EMAIL_PATTERN[1:]})")
    return pc.fill_null(matched, False).to_numpy(zero_copy_only=False)


def prepare(customers: pd.DataFrame) -> PreparedCustomers:
    """Normalise emails, set aside invalid ones with a reason, keep one customer per email."""
    frame = conform(customers)
    frame["email"] = normalise_email(frame["email"])
    email = frame["email"]
    with ThreadPoolExecutor(max_workers=2) as pool:  # Arrow's regex and sort run while the emails are hashed
        matching = pool.submit(_matches_email, email)
        sorting = pool.submit(_key_order, frame["customer_key"])
        fingerprints = string_hashes(email) if len(email) >= 10_000 and is_arrow_string(email) else None
        missing = (email.isna() | (email == "")).to_numpy(dtype=bool, na_value=True)
        too_long = ~missing & (email.str.len() > ZOHO_EMAIL_MAX_LENGTH).to_numpy(dtype=bool, na_value=False)
        malformed = ~missing & ~too_long & ~matching.result()
        key_order = sorting.result()
    bad = missing | too_long | malformed
    reasons = ["missing email", f"email longer than {ZOHO_EMAIL_MAX_LENGTH} characters", "malformed email"]
    reason = np.select([missing[bad], too_long[bad], malformed[bad]], reasons, "")  # a few rows, not a million
    invalid = frame.loc[bad, ["customer_key", "email"]]
    invalid = invalid.assign(reason=pd.Series(reason, index=invalid.index, dtype="string")).reset_index(drop=True)

    valid = np.flatnonzero(~bad)  # positions in frame
    shared = _shared_email(email.iloc[valid], None if fingerprints is None else fingerprints[valid])
    duplicates = 0
    if shared.any():
        # Deterministic winner per email: most orders, latest update, smallest id. Only rows sharing
        # an email need ranking, and a stable sort ranks a subset exactly as it ranks the whole.
        rows = frame.iloc[valid[shared]]
        ranked = rows.assign(
            _id_num=pd.to_numeric(rows["customer_key"], errors="coerce"),
            _updated=rows["source_updated_at"].fillna(""),
            _position=valid[shared],
        ).sort_values(
            ["email", "order_count", "_updated", "_id_num", "customer_key"],
            ascending=[True, False, False, True, True],
            kind="mergesort",
        )
        kept = ranked.drop_duplicates("email", keep="first")["_position"].to_numpy()
        duplicates = int(shared.sum()) - len(kept)
        valid = np.concatenate([valid[~shared], kept])
    order = _by_customer_key(frame, valid, key_order)
    winners = _take(frame, order)
    winners = winners.assign(lastname=derive_last_name(winners))
    return PreparedCustomers(
        valid=winners,
        invalid=invalid,
        duplicates=duplicates,
        email_hashes=None if fingerprints is None else fingerprints[order],
    )


def _take(frame: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``frame.take(positions).reset_index(drop=True)``, two columns at a time: Arrow's take releases the GIL."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        arrays = list(pool.map(lambda name: frame[name].array.take(positions), frame.columns))
    return pd.DataFrame(dict(zip(frame.columns, arrays)))


def _shared_email(emails: pd.Series, fingerprints: np.ndarray | None) -> np.ndarray:
    """``emails.duplicated(keep=False)``: 64-bit hashes find the few candidates, then the emails decide."""
    if fingerprints is None:
        return emails.duplicated(keep=False).to_numpy()
    candidates = pd.Series(fingerprints).duplicated(keep=False).to_numpy()
    shared = np.zeros(len(emails), dtype=bool)
    if candidates.any():
        shared[candidates] = emails.iloc[np.flatnonzero(candidates)].duplicated(keep=False).to_numpy()
    return shared


def _key_order(keys: pd.Series) -> np.ndarray:
    """Every row's position, by customer key (stable, missing keys last), as pandas sorts Arrow strings."""
    return pc.array_sort_indices(arrow_text(keys), null_placement="at_end").to_numpy()


def _by_customer_key(frame: pd.DataFrame, positions: np.ndarray, key_order: np.ndarray) -> np.ndarray:
    """``positions`` (the winners) ordered as ``sort_values("customer_key")`` orders them.

    The winners come out of the ranking in email order, and pandas sorts stably with missing keys last:
    so the order is by customer key, then (for equal or missing keys) by email. With unique keys that is
    the order of all rows by key (``key_order``), without the others.
    """
    winner = np.zeros(len(frame), dtype=bool)
    winner[positions] = True
    order = key_order[winner[key_order]]
    keys = arrow_text(frame["customer_key"]).take(pa.array(order))
    tied = len(order) > 1 and pc.any(pc.equal(keys.slice(1), keys.slice(0, len(order) - 1))).as_py()
    if not tied and not keys.null_count:
        return order
    table = pa.table({"k": keys, "e": arrow_text(frame["email"]).take(pa.array(order))})
    by_key_then_email = [("k", "ascending", "at_end"), ("e", "ascending", "at_end")]
    return order[pc.sort_indices(table, sort_keys=by_key_then_email).to_numpy()]


def derive_last_name(frame: pd.DataFrame) -> pd.Series:
    """Zoho requires Last_Name: last name, else last word of the full name, else first name, else email."""

    def blank(series: pd.Series) -> pd.Series:
        return series.isna() | (series.str.strip() == "")

    if is_arrow_string(frame["lastname"]):
        trimmed = pc.utf8_trim_whitespace(arrow_text(frame["lastname"]))
        last = pd.Series(pd.arrays.ArrowStringArray(trimmed), index=frame.index, name="lastname")
        blank_last = pc.fill_null(pc.equal(trimmed, ""), True).to_numpy(zero_copy_only=False)
    else:
        last = frame["lastname"].astype("string").str.strip()
        blank_last = (last.isna() | (last == "")).to_numpy(dtype=bool, na_value=True)
    todo = np.flatnonzero(blank_last)
    if len(todo):  # the fallbacks split strings in Python: only for the few rows that need them
        rows = frame.iloc[todo]
        fallback = last.iloc[todo]
        from_full = rows["full_name"].str.strip().str.split().str[-1].astype("string")
        from_email = rows["email"].str.split("@").str[0].astype("string")
        fallback = fallback.mask(blank(fallback), from_full)
        fallback = fallback.mask(blank(fallback), rows["firstname"].str.strip())
        fallback = fallback.mask(blank(fallback), from_email)
        last = last.astype("string")  # a copy, whatever the input's string storage
        last.iloc[todo] = fallback.astype("string").array
    return last.astype("string")


def record_types(frame: pd.DataFrame) -> np.ndarray:
    """Per customer, "Contacts" (bought at least once), "Leads" (registered without buying, or only subscribed)
    or "": a numpy text array, cheap to compare a million times (``tests/reference.py``: ``classify``)."""
    bought = (frame["order_count"] > 0).to_numpy(dtype=bool)
    lead = ~bought & (frame["registered"].astype(bool).to_numpy() | frame["newsletter"].astype(bool).to_numpy())
    return np.select([bought, lead], ["Contacts", "Leads"], default="")
