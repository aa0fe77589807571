"""Lead conversion: a buyer's Lead becomes a Contact with explicit ids, never onto a stranger, and an Account only as
the tenant's ``lead_conversion_account`` allows (the load's first step, run by ``loader.apply_plan``)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd

from zoho_store_sync.adopt import ADOPTED_MARK
from zoho_store_sync.hooks.zoho_crm import RecordJSON, RecordOutcome, ZohoCrmHook, ZohoScopeError
from zoho_store_sync.loader import PlanRow, _duplicate_record, _payload, _Runner, _write_ahead, batches
from zoho_store_sync.state import CONVERTING, StateStore

log = logging.getLogger(__name__)


def _clears_company(rule: str, key: str, fallback: set[str], adopted: set[str]) -> bool:
    """Whether the Lead's Company is cleared before its conversion, so Zoho creates no Account from it."""
    if rule == "always":
        return False
    if rule == "never":
        return True
    return key in fallback and key not in adopted  # an adopted Lead's Company is someone's real entry


def _contacts_to_link(hook: ZohoCrmHook, converts: list[PlanRow], contact_ids: dict[str, str]) -> list[PlanRow]:
    """Fill ``contact_ids`` with the Contacts Zoho has for the buyers' emails; return the buyers without one whose
    name a Contact with another email has (Zoho would attach them to it): their Contact is upserted first."""
    try:
        by_email = hook.find_by_email("Contacts", [row.email for row in converts])
        for row in converts:
            found = by_email.get(str(row.email).strip().lower())
            if found:
                contact_ids[row.customer_key] = str(found[0]["id"])
        rest = [row for row in converts if row.customer_key not in contact_ids]
        if not rest:
            return []
        names = {row.customer_key: _name(row) for row in rest}
        same_last = hook.find_by("Contacts", "Last_Name", [last for _, last in names.values() if last], ["First_Name"])
    except ZohoScopeError as exc:  # connected before COQL: every buyer's Contact is upserted first
        log.warning("conversions: Contacts not looked up (%s); each buyer's Contact is upserted first", exc)
        return list(converts)
    taken = {(_norm(c.get("First_Name")), last) for last, rows in same_last.items() for c in rows}
    return [row for row in rest if names[row.customer_key] in taken]


def _name(row: PlanRow) -> tuple[str, str]:
    payload = json.loads(_payload(row))
    return _norm(payload.get("First_Name")), _norm(payload.get("Last_Name"))


def _norm(value: Any) -> str:
    return str(value).strip().lower() if isinstance(value, str) else ""


def convert_leads(
    hook: ZohoCrmHook,
    store: StateStore,
    runner: _Runner,
    converts: list[PlanRow],
    upserts: list[PlanRow],
    changes: pd.DataFrame,
    *,
    trigger: list[str] | None,
    account_rule: str,
) -> None:
    """Convert the Leads of customers who became buyers, never onto a stranger, with Accounts as the tenant says.

    1. Contacts: without ids Zoho matches the lead's Email against Contacts, then its *name* (another John Smith).
       So the Contacts with the buyers' emails are looked up (COQL, 1 credit per 100) and passed by id. A buyer
       without one whose name a Contact with another email has gets his Contact upserted first (matched on email)
       and that id passed; the others convert into a new Contact, as before (no window in which a crash leaves a
       Lead and a Contact for one person, except in that rare case, which the next run converts).
    2. Account: Zoho creates one on conversion whenever the Lead has a Company, and documents no other switch
       (help "Convert Leads": an account is created "if the Company Name detail is available for the lead"; Zoho
       KB "convert leads into contacts without creating an account": leave Company empty). So where
       ``account_rule`` wants no Account (``never``; ``real_company`` when the Company is a fallback), the Lead's
       Company is cleared by id first. An org that refuses that (a Leads layout requiring Company) converts the
       Lead with Zoho's Account, and the log says so.
    3. Convert with ``Contacts: {id}`` when known; then the Contact is upserted as before (unless step 1 did).
    """
    result = runner.result
    fallback: set[str] = set()
    if "company_is_fallback" in changes:
        flags = changes["company_is_fallback"].astype("boolean").fillna(False).astype(bool)
        fallback = set(changes.loc[flags, "customer_key"].astype(str))
    known = store.load(customer_keys=[row.customer_key for row in converts])
    adopted = set(known.loc[known["error_code"] == ADOPTED_MARK, "customer_key"].astype(str))

    pre: dict[str, RecordOutcome] = {}
    contact_ids: dict[str, str] = {}

    def upsert_contacts(batch: list[PlanRow]) -> list[RecordOutcome]:
        records = [RecordJSON(_payload(row)) for row in batch]
        return hook.upsert("Contacts", records, duplicate_check_fields=("Email",), trigger=trigger)

    def after_contacts(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
        for row, outcome in zip(batch, outcomes):
            pre[row.customer_key] = outcome
            duplicate = _duplicate_record(outcome)
            if outcome.ok and outcome.zoho_id:
                contact_ids[row.customer_key] = outcome.zoho_id
            elif duplicate and duplicate[0] == "Contacts":
                contact_ids[row.customer_key] = duplicate[1]

    risky = _contacts_to_link(hook, converts, contact_ids)
    if risky:
        runner.run("contacts before convert", batches(risky), upsert_contacts, after_contacts)
        if runner.systemic is not None:
            return
    # A Contact payload Zoho refuses (other than a duplicate naming the Lead itself) fails the conversion too.
    blocked = {k for k, o in pre.items() if not o.ok and k not in contact_ids and not _duplicate_record(o)}
    for row in converts:
        if row.customer_key in blocked:
            runner.save([row._replace(module="Leads")], [pre[row.customer_key]])
    todo = [row for row in converts if row.customer_key not in blocked]

    clear = [
        row._replace(module="Leads")
        for row in todo
        if _clears_company(account_rule, row.customer_key, fallback, adopted)
    ]
    if clear:
        kept: list[str] = []

        def clear_company(batch: list[PlanRow]) -> list[RecordOutcome]:
            return hook.update_records(
                "Leads", [{"id": str(row.zoho_id), "Company": None} for row in batch], trigger=[]
            )

        def after_clear(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
            kept.extend(row.customer_key for row, outcome in zip(batch, outcomes) if not outcome.ok)

        runner.run("clear placeholder company", batches(clear), clear_company, after_clear)
        if runner.systemic is not None:
            return
        if kept:
            log.warning(
                "%d Leads kept their placeholder Company (the org refused to clear it, e.g. its Leads layout requires "
                "Company): Zoho creates an Account from it on conversion. Make Company optional on the Leads layout, "
                "or set lead_conversion_account to 'always' to accept these Accounts",
                len(kept),
            )

    def convert(batch: list[PlanRow]) -> list[RecordOutcome]:
        row = batch[0]
        store.write_ahead([_write_ahead(row, CONVERTING, "Leads")])
        return [hook.convert_lead(str(row.zoho_id), contact_id=contact_ids.get(row.customer_key))]

    def after_convert(batch: list[PlanRow], outcomes: list[RecordOutcome]) -> None:
        row, outcome = batch[0], outcomes[0]
        if outcome.ok or outcome.code == "ID_ALREADY_CONVERTED":  # a crashed run may have converted it
            result.converted += int(outcome.ok)
            written = pre.get(row.customer_key)
            if written is not None and written.ok:  # the Contact already carries this payload
                runner.save([row], [written])
                result.updated += 1  # the person's record, now a Contact (as the dry run counts it)
            else:
                upserts.append(row._replace(zoho_id=outcome.zoho_id or None))
        else:
            # the Lead keeps its state (and a failed status) until the convert works
            runner.save([row._replace(module="Leads")], outcomes)

    runner.run("convert", [[row] for row in todo], convert, after_convert)
