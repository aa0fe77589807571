"""Lead conversion: POST /Leads/{id}/actions/convert links or creates the contact, account and deal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sandboxes._router import SandboxError
from sandboxes.zoho.faults import ZohoError, _err, answer
from sandboxes.zoho.routes import api, module_name, module_scope
from sandboxes.zoho.store import _blank, _iso, _norm

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox

# Lead → Contact field mapping on conversion (same-named custom fields map too).
_LEAD_TO_CONTACT = {
    "Salutation": "Salutation", "First_Name": "First_Name", "Last_Name": "Last_Name", "Email": "Email",
    "Secondary_Email": "Secondary_Email", "Phone": "Phone", "Mobile": "Mobile", "Fax": "Fax",
    "Lead_Source": "Lead_Source", "Email_Opt_Out": "Email_Opt_Out", "Description": "Description",
    "Designation": "Title", "Street": "Mailing_Street", "City": "Mailing_City", "State": "Mailing_State",
    "Zip_Code": "Mailing_Zip", "Country": "Mailing_Country",
}


@api.route("POST", "/crm/v8/{module}/{lead_id}/actions/convert", operation="convert",
           scope=module_scope("CREATE", "WRITE"), cost=5, where={"module": lambda m: module_name(m) == "Leads"})
def convert(sb: ZohoSandbox, req: Request, info: dict, module: str, lead_id: str) -> Response:
    try:
        body = req.json() if req.body else {}
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "body", expected_data_type="jsonobject") from None
    data = body.get("data") if isinstance(body, dict) else None
    options = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    info["records"] = 1
    with sb._lock:
        lead = sb._store["Leads"].get(lead_id)
        if lead is None:
            raise ZohoError(400, "INVALID_DATA", "invalid data", resource_path_index=1)
        if lead.get("Converted__s"):
            raise ZohoError(400, "ID_ALREADY_CONVERTED", "id already converted", resource_path_index=1)
        deal = _convert_deal(sb, options.get("Deals"))
        contact = _convert_contact(sb, lead, options)
        account = _convert_account(sb, lead, options.get("Accounts"))
        if account is not None and "Account_Name" not in contact:
            contact = sb._apply("Contacts", contact["id"], {"Account_Name": dict(account)})
        # Zoho keeps where a converted lead went ($converted_detail on the converted Lead record)
        converted_to = {"Contacts": contact["id"], "Accounts": (account or {}).get("id"), "Deals": (deal or {}).get("id")}
        sb._apply("Leads", lead_id, {"Converted__s": True, "Converted_Date_Time": _iso(time.time()),
                                     "$converted_detail": converted_to})
    details = {"Contacts": {"name": contact.get("Full_Name"), "id": contact["id"]}, "Deals": deal,
               "Accounts": account}
    return answer(200, {"data": [{"code": "SUCCESS", "details": details,
                                  "message": "The record has been converted successfully", "status": "success"}]})


def _convert_contact(sb: ZohoSandbox, lead: dict, options: dict) -> dict:
    """Link the given contact, else the contact with the lead's Email, else create one from the lead."""
    mapped = {dst: lead[src] for src, dst in _LEAD_TO_CONTACT.items() if not _blank(lead.get(src))}
    mapped.update({name: lead[name] for name, spec in sb._fields["Contacts"].items()
                   if spec["custom_field"] and name in sb._fields["Leads"] and not _blank(lead.get(name))})
    linked = options.get("Contacts")
    if isinstance(linked, dict) and linked.get("id"):
        contact_id = str(linked["id"])
        if contact_id not in sb._store["Contacts"]:
            raise SandboxError(400, {"data": [_err("INVALID_DATA", "invalid data", api_name="Contacts",
                                                   json_path="$.data[0].Contacts.id")]})
    else:
        # Zoho's matching without ids (doc §4.7, Kaizen #137): the lead's Email against Contacts, then (after the
        # Company against Account names, _convert_account) the lead's name against Contacts' names. So a lead
        # "John Smith" whose email no Contact has is attached to whichever Contact is called John Smith.
        matches = sb._matches("Contacts", "Email", lead.get("Email")) or sb._matches(
            "Contacts", "Full_Name", lead.get("Full_Name"))
        contact_id = matches[0] if matches else None
    if contact_id is None:
        return sb._create("Contacts", mapped)
    if options.get("overwrite"):  # without overwrite the existing contact keeps its values
        return sb._apply("Contacts", contact_id, mapped)
    return sb._store["Contacts"][contact_id]


def _convert_account(sb: ZohoSandbox, lead: dict, linked: Any) -> dict | None:
    """The given account, else the account named like the lead's Company, else a new one from the Company."""
    if isinstance(linked, dict) and linked.get("id"):
        known = next((a for a in sb._accounts.values() if a["id"] == str(linked["id"])), None)
        return dict(known) if known else {"name": None, "id": str(linked["id"])}
    company = lead.get("Company")
    if _blank(company):
        # Zoho creates an Account on conversion only when the lead has a Company (help "Convert Leads"; Zoho KB
        # "convert leads into contacts without creating an account": leave Company empty). No other switch exists.
        return None
    key = _norm(company)
    if key not in sb._accounts:  # Zoho matches an existing account by name before creating one
        sb._accounts[key] = {"name": company, "id": sb._new_id()}
    return dict(sb._accounts[key])


def _convert_deal(sb: ZohoSandbox, deal: Any) -> dict | None:
    if not isinstance(deal, dict) or not deal:
        return None
    for name in ("Deal_Name", "Closing_Date", "Stage", "Pipeline"):
        if _blank(deal.get(name)):
            raise SandboxError(400, {"data": [_err("MANDATORY_NOT_FOUND", "required field not found", api_name=name,
                                                   json_path=f"$.data[0].Deals.{name}")]})
    return {"name": deal["Deal_Name"], "id": sb._new_id()}
