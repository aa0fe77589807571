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
  without orders, or a newsletter subscriber, is a Lead. A record type the tenant does not sync is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def empty_customers() -> pd.DataFrame:
    return conform(pd.DataFrame({name: [] for name in CUSTOMER_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Add missing canonical columns and set every column's dtype."""
    out = frame.copy()
    for name, dtype in CUSTOMER_COLUMNS.items():
        if name not in out.columns:
            out[name] = pd.NA
        if dtype == "int64":
            out[name] = pd.to_numeric(out[name], errors="coerce").fillna(0).astype("int64")
        elif dtype == "float64":
            out[name] = pd.to_numeric(out[name], errors="coerce").astype("float64")
        elif dtype == "boolean":
            out[name] = out[name].astype("boolean").fillna(False)
        else:
            out[name] = out[name].astype("string")
    return out[list(CUSTOMER_COLUMNS)]


@dataclass
class PreparedCustomers:
    valid: pd.DataFrame  # one row per normalised email, with a derived last name
    invalid: pd.DataFrame  # customer_key, email, reason
    duplicates: int


def normalise_email(emails: pd.Series) -> pd.Series:
    return emails.astype("string").str.strip().str.lower()


def prepare(customers: pd.DataFrame) -> PreparedCustomers:
    """Normalise emails, set aside invalid ones with a reason, keep one customer per email."""
    frame = conform(customers)
    frame["email"] = normalise_email(frame["email"])
    reason = pd.Series(pd.NA, index=frame.index, dtype="string")
    missing = frame["email"].isna() | (frame["email"] == "")
    too_long = ~missing & (frame["email"].str.len() > ZOHO_EMAIL_MAX_LENGTH)
    malformed = ~missing & ~too_long & ~frame["email"].str.match(_EMAIL_PATTERN).fillna(False).astype(bool)
    reason[missing] = "missing email"
    reason[too_long] = f"email longer than {ZOHO_EMAIL_MAX_LENGTH} characters"
    reason[malformed] = "malformed email"
    bad = reason.notna()
    invalid = frame.loc[bad, ["customer_key", "email"]].assign(reason=reason[bad]).reset_index(drop=True)

    valid = frame.loc[~bad]
    # Deterministic winner per email: most orders, latest update, smallest id.
    ranked = valid.assign(
        _id_num=pd.to_numeric(valid["customer_key"], errors="coerce"),
        _updated=valid["source_updated_at"].fillna(""),
    ).sort_values(
        ["email", "order_count", "_updated", "_id_num", "customer_key"],
        ascending=[True, False, False, True, True],
        kind="mergesort",
    )
    winners = ranked.drop_duplicates("email", keep="first").drop(columns=["_id_num", "_updated"])
    duplicates = len(valid) - len(winners)
    winners = winners.assign(lastname=derive_last_name(winners)).sort_values("customer_key").reset_index(drop=True)
    return PreparedCustomers(valid=winners, invalid=invalid, duplicates=duplicates)


def derive_last_name(frame: pd.DataFrame) -> pd.Series:
    """Zoho requires Last_Name: last name, else last word of the full name, else first name, else email."""
    def blank(series: pd.Series) -> pd.Series:
        return series.isna() | (series.str.strip() == "")

    last = frame["lastname"].str.strip()
    from_full = frame["full_name"].str.strip().str.split().str[-1].astype("string")
    from_email = frame["email"].str.split("@").str[0].astype("string")
    last = last.mask(blank(last), from_full)
    last = last.mask(blank(last), frame["firstname"].str.strip())
    last = last.mask(blank(last), from_email)
    return last.astype("string")


def classify(frame: pd.DataFrame) -> pd.Series:
    """Contacts bought at least once; Leads registered without buying or only subscribed."""
    bought = frame["order_count"] > 0
    lead = ~bought & (frame["registered"].astype(bool) | frame["newsletter"].astype(bool))
    return pd.Series(np.select([bought, lead], ["Contacts", "Leads"], default=""), index=frame.index, dtype="string")
