"""Adopt what the org already has: on a first sync or a reset, link the customers to their existing Zoho records.

A real org holds Leads and Contacts the product did not create (web forms, an earlier integration). Upsert matches
on email inside one module only, so without this a buyer with a web-form Lead gets a second record as a Contact.
Before the plan, the customers without a state row are looked up by email (``existing_records``: an empty module
is skipped, a small one read whole, else COQL, 100 emails a 1-credit call) and linked in the state as if synced,
with a hash no payload has, so the plan sends one write that puts the mapped fields on top of the existing record:

* a Contact with the email → linked as that Contact (a would-be Lead stays a Contact: never downgraded);
* else a Lead with the email → linked as that Lead; a buyer's linked Lead is then converted (``diff``), with the
  Contact of that email when one exists (``loader``), never duplicated.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from zoho_store_sync.customers import record_types
from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook, ZohoScopeError
from zoho_store_sync.state import SYNCED, StateStore
from zoho_store_sync.state.tables import ADOPTED
from zoho_store_sync.zoho.query import COQL_MAX_REACH, lookup_credits, scan_credits

log = logging.getLogger(__name__)
ADOPTED_HASH = 0  # matches no payload's hash: the first plan after adoption writes the mapped fields once
ADOPTED_MARK = ADOPTED  # error_code of an adopted row until its first write: the record is not the product's
DUPLICATE_LINKED = "DUPLICATE_LINKED"  # a write Zoho refused as a duplicate, linked to the record it named
LOOKUP_MODULES = ("Contacts", "Leads")


def modules_to_adopt(state: pd.DataFrame, modules: tuple[str, ...], forget: bool) -> list[str]:
    """The modules whose state is empty (first sync, a reset's forget) or forgotten by this plan."""
    if forget:
        return list(modules)
    return [m for m in modules if not (state["module"] == m).any()]


def existing_records(
    hook: ZohoCrmHook, emails: pd.Series
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, str], int]:
    """Per module, the org's records with one of ``emails``, read the cheapest way, and how and the credits spent.

    A first sync of a big store into an empty org must not pay one query per 100 emails to find nothing (a million
    customers: 20,000 credits, as much as the Bulk Write itself): each module is counted first (1 credit); an
    empty one is not searched, a small one is read whole (2,000 records a 3-credit page), else by email."""
    distinct = int(emails.nunique())
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    how: dict[str, str] = {}
    spent = 0
    for module in LOOKUP_MODULES:
        size = hook.count_records(module)
        spent += 1
        if size == 0:
            found[module], how[module] = {}, "empty"
            continue
        if size <= COQL_MAX_REACH and scan_credits(size) < lookup_credits(distinct):
            whole = hook.all_by_email(module)
            if whole is not None:  # None: the module grew past COQL's reach meanwhile
                wanted = set(emails.dropna().tolist())
                found[module] = {email: rows for email, rows in whole.items() if email in wanted}
                how[module] = "read whole"
                spent += scan_credits(size)
                continue
        found[module] = hook.find_by_email(module, emails.tolist())
        how[module] = "by email"
        spent += lookup_credits(distinct)
    log.info("the org's existing records looked up (%s): about %d credits", how, spent)
    return found, how, spent


def adopt_existing(
    hook: ZohoCrmHook,
    store: StateStore,
    customers: pd.DataFrame,
    state: pd.DataFrame,
    modules: tuple[str, ...],
    *,
    forget: bool = False,
    apply: bool = True,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Link the customers without a state row to the org's records with their email; returns the state with the
    linked rows added (written to the table when ``apply``) and what was found and spent."""
    wanted = modules_to_adopt(state, modules, forget)
    if not wanted or customers.empty:
        return state, {}
    known = set(state["customer_key"].astype("string").tolist())
    orphans = customers.loc[~customers["customer_key"].astype("string").isin(known) & customers["email"].notna()]
    if orphans.empty:
        return state, {}
    emails = orphans["email"].astype("string").str.strip().str.lower()
    try:
        found, how, spent = existing_records(hook, emails)
    except ZohoScopeError as exc:
        # Connected before COQL was needed: sync as before (upsert by email per module), say how to adopt.
        log.warning(
            "existing Zoho records not adopted: %s. Connect the tenant again with ZohoCRM.coql.READ among the scopes "
            "(zoho_connect), or set adopt_existing_records to false to silence this",
            exc,
        )
        return state, {"adopted": 0, "adopt_skipped": "ZohoCRM.coql.READ not granted"}
    taken = set(state["zoho_id"].dropna().astype(str).tolist())  # a record another state row already holds
    classified = record_types(orphans)
    rows: list[dict[str, Any]] = []
    twins = 0
    for key, email, kind in zip(orphans["customer_key"].tolist(), emails.tolist(), classified.tolist()):
        contacts = [r for r in found["Contacts"].get(email, []) if str(r["id"]) not in taken]
        leads = [r for r in found["Leads"].get(email, []) if str(r["id"]) not in taken]
        twins += int(len(contacts) > 1 or len(leads) > 1)
        if leads and (kind == "Contacts" or not contacts):
            module, record = "Leads", leads[0]  # a buyer's Lead is converted (with the Contact, if any)
        elif contacts:
            module, record = "Contacts", contacts[0]
        else:
            continue
        taken.add(str(record["id"]))
        rows.append(
            {
                "customer_key": str(key),
                "email": email,
                "module": module,
                "zoho_id": str(record["id"]),
                "payload_hash": ADOPTED_HASH,
                "status": SYNCED,
                "error_code": ADOPTED_MARK,
                "error_message": None,
                "retryable": None,
                "attempts": 0,
            }
        )
    summary = {
        "adopted": len(rows),
        "adopted_contacts": sum(r["module"] == "Contacts" for r in rows),
        "adopted_leads": sum(r["module"] == "Leads" for r in rows),
        "adopt_lookup_credits": spent,
        "adopt_lookup": how,
        "adopt_emails_with_twins": twins,
    }
    log.info("adopted: %s", summary)
    if twins:
        log.warning("%d emails have several records in one Zoho module already; the oldest is linked", twins)
    if not rows:
        return state, summary
    if apply:
        store.save_outcomes(rows)
    linked = pd.DataFrame(rows).reindex(columns=list(state.columns))
    linked = linked.astype({name: state[name].dtype for name in ("customer_key", "payload_hash") if name in state})
    return (pd.concat([state, linked], ignore_index=True) if len(state) else linked), summary
