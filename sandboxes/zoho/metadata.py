"""Field metadata of Contacts and Leads (GET /settings/fields) and the org (GET /org)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable

from sandboxes._router import SandboxError
from sandboxes.zoho.faults import _INVALID_MODULE, ZohoError, answer
from sandboxes.zoho.routes import MODULES, any_scope, api, control, module_name

if TYPE_CHECKING:
    from sandboxes._router import Request, Response
    from sandboxes.zoho.server import ZohoSandbox

_JSON_TYPES = {
    "text": "string", "textarea": "string", "email": "string", "phone": "string", "website": "string",
    "picklist": "string", "integer": "integer", "currency": "double", "double": "double",
    "boolean": "boolean", "date": "string", "datetime": "string", "lookup": "jsonobject",
    "ownerlookup": "jsonobject", "multiselectpicklist": "jsonarray",
}
_DEFAULT_LENGTHS = {
    "text": 255, "textarea": 32000, "email": 100, "phone": 30, "website": 255, "picklist": 120,
    "integer": 9, "currency": 16, "double": 16, "boolean": 5, "date": 20, "datetime": 120,
    "lookup": 120, "ownerlookup": 120, "multiselectpicklist": 2000,
}
_SALUTATIONS = ("-None-", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.")
_LEAD_SOURCES = ("-None-", "Advertisement", "Cold Call", "Employee Referral", "External Referral",
                 "Online Store", "Partner", "Public Relations", "Seminar Partner", "Trade Show",
                 "Web Download", "Web Research", "Chat")
_LEAD_STATUSES = ("-None-", "Attempted to Contact", "Contact in Future", "Contacted", "Junk Lead",
                  "Lost Lead", "Not Contacted", "Pre-Qualified", "Not Qualified")


def _spec(api_name: str, data_type: str, length: int | None = None, **flags: Any) -> dict:
    return {"api_name": api_name, "data_type": data_type, "length": length, **flags}


def _standard_specs(module: str) -> list[dict]:
    """Standard Contacts/Leads fields per doc §6/§7 (Contacts use Mailing_*, Leads use Street/City/...)."""
    head = [
        _spec("Owner", "ownerlookup"),
        _spec("Salutation", "picklist", picklist=_SALUTATIONS),
        _spec("First_Name", "text", 40),
        _spec("Last_Name", "text", 80, mandatory=True),
        _spec("Full_Name", "text", 120, read_only=True),
        _spec("Email", "email", 100),
        _spec("Secondary_Email", "email", 100),
        _spec("Phone", "phone", 30),
        _spec("Mobile", "phone", 30),
        _spec("Fax", "phone", 30),
        _spec("Lead_Source", "picklist", picklist=_LEAD_SOURCES),
        _spec("Email_Opt_Out", "boolean"),
        _spec("Description", "textarea", 32000),
    ]
    if module == "Contacts":
        address = ["Street", "City", "State", "Zip", "Country"]
        body = [_spec("Home_Phone", "phone", 30), _spec("Other_Phone", "phone", 30),
                _spec("Title", "text", 100), _spec("Department", "text", 100),
                _spec("Date_of_Birth", "date"), _spec("Account_Name", "lookup")]
        for prefix in ("Mailing", "Other"):
            body += [_spec(f"{prefix}_{part}", "text", 250 if part == "Street" else 100) for part in address]
    else:
        body = [_spec("Company", "text", 200), _spec("Designation", "text", 100),
                _spec("Website", "website", 255), _spec("Lead_Status", "picklist", picklist=_LEAD_STATUSES),
                _spec("No_of_Employees", "integer"), _spec("Annual_Revenue", "currency"),
                _spec("Skype_ID", "text", 50), _spec("Twitter", "text", 50),
                _spec("Street", "text", 250), _spec("City", "text", 100), _spec("State", "text", 100),
                _spec("Zip_Code", "text", 100), _spec("Country", "text", 100),
                _spec("Converted__s", "boolean", read_only=True),
                _spec("Converted_Date_Time", "datetime", read_only=True)]
    tail = [_spec("Created_Time", "datetime", read_only=True), _spec("Modified_Time", "datetime", read_only=True),
            _spec("Created_By", "ownerlookup", read_only=True), _spec("Modified_By", "ownerlookup", read_only=True)]
    return head + body + tail


_CUSTOM_SPECS = [
    _spec("Order_Count", "integer"),
    _spec("Total_Order_Value", "currency"),
    _spec("Account_Balance", "currency"),
    _spec("Newsletter_Subscriber", "boolean"),
    _spec("Store_Name", "text", 255),
    _spec("Store_URL", "website", 255),
    _spec("Customer_Deleted", "boolean"),
    _spec("Source_Customer_ID", "text", 50),
]


def _complete_field(spec: dict, field_id: str, custom: bool) -> dict:
    """Expand a short spec into the metadata shape of GET /settings/fields (doc §6)."""
    data_type = spec.get("data_type", "text")
    read_only = bool(spec.get("read_only", False))
    label = spec.get("field_label") or spec["api_name"].replace("__s", "").replace("_", " ")
    picklist = spec.get("picklist") or ()
    unique = spec.get("unique") or {}
    if unique is True:
        unique = {"case_sensitive": False}
    out = {
        "api_name": spec["api_name"], "field_label": label, "display_label": label, "id": field_id,
        "data_type": data_type, "json_type": _JSON_TYPES.get(data_type, "string"),
        "length": spec.get("length") or _DEFAULT_LENGTHS.get(data_type, 255),
        "system_mandatory": bool(spec.get("mandatory", spec.get("system_mandatory", False))),
        "read_only": read_only, "field_read_only": read_only, "custom_field": custom, "visible": True,
        "unique": unique,
        "operation_type": {"api_create": not read_only, "api_update": not read_only,
                           "web_create": not read_only, "web_update": not read_only},
        "decimal_place": 2 if data_type == "currency" else None,
        "pick_list_values": [
            {"display_value": v, "actual_value": v, "reference_value": v, "sequence_number": i + 1,
             "id": f"{field_id}{i:02d}", "type": "used", "colour_code": None} for i, v in enumerate(picklist)],
        "lookup": {"module": {"api_name": "Accounts"}} if data_type == "lookup" else {},
    }
    for key, value in spec.items():  # extra_fields may carry any other metadata key verbatim
        if key not in ("picklist", "mandatory", "unique") and key not in out:
            out[key] = value
    return out


def build_fields(extra: dict[str, list[dict]], new_id: Callable[[], str]) -> dict[str, dict[str, dict]]:
    """Field metadata per module; extra_fields add fields or override same-named ones."""
    out: dict[str, dict[str, dict]] = {}
    for module in MODULES:
        specs = {s["api_name"]: (s, False) for s in _standard_specs(module)}
        specs.update({s["api_name"]: (s, True) for s in _CUSTOM_SPECS})
        for spec in extra.get(module, []):
            base, custom = specs.get(spec["api_name"], ({}, True))
            specs[spec["api_name"]] = ({**base, **spec}, custom)
        out[module] = {name: _complete_field(spec, new_id(), custom) for name, (spec, custom) in specs.items()}
    return out


@api.route("GET", "/crm/v8/settings/fields", operation="fields",
           scope=any_scope("ZohoCRM.settings.fields.READ", "ZohoCRM.settings.fields.ALL", "ZohoCRM.settings.ALL"))
def get_fields(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    module = req.query.get("module")
    if not module:
        raise ZohoError(400, "REQUIRED_PARAM_MISSING", "required param is missing", param_name="module")
    mod = module_name(module)
    if mod not in MODULES:
        raise SandboxError(400, _INVALID_MODULE)
    info["module"] = mod
    return answer(200, {"fields": copy.deepcopy(list(sb._fields[mod].values()))})


@api.route("GET", "/crm/v8/org", operation="org", scope=any_scope("ZohoCRM.org.READ", "ZohoCRM.org.ALL"))
def get_org(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    org = {"id": sb._org_id, "zgid": sb._zgid, "company_name": "Sandbox Org",
           "domain_name": f"org{sb._zgid}", "primary_email": sb._user["email"], "currency": "USD",
           "iso_code": "USD", "currency_symbol": "$", "time_zone": "UTC", "country_code": "US",
           "type": "production", "mc_status": False, "gapps_enabled": False,
           "license_details": {"paid": True, "paid_type": "enterprise", "trial_type": None,
                               "trial_expiry": None, "users_license_purchased": 10}}
    return answer(200, {"org": [org]})


# Layout-required fields on top of system_mandatory (Last_Name), as a standard org's "Standard" layouts have them:
# Zoho's help marks Lead Company mandatory, and its Bulk Write docs show MANDATORY_NOT_FOUND-Company
# (shared/docs/zoho-crm-api.md §6/§7). ``sandbox.layout_required`` switches it: {} is an org without them.
STANDARD_LAYOUT_REQUIRED: dict[str, tuple[str, ...]] = {"Leads": ("Company",), "Contacts": ()}
# Picklists: Zoho's records API documents no rejection of a value missing from a picklist (its OAS error
# catalogue has INVALID_DATA with supported_values for parameters, not for picklist fields), Bulk Write adds unknown
# values to the list (Kaizen #13), and Kaizen #205 says to send the display_value. So the sandbox, like Zoho,
# stores an unknown picklist value as sent: the product checks values against the org's list itself.


def required_fields(sb: ZohoSandbox, module: str) -> tuple[str, ...]:
    """Every field a record created in ``module`` must carry: system-mandatory plus layout-required."""
    extra = tuple(n for n in sb.layout_required.get(module, ()) if n in sb._fields[module])
    return tuple(dict.fromkeys(sb._mandatory[module] + extra))


def _layout(sb: ZohoSandbox, module: str) -> dict:
    """The module's one "Standard" layout in the shape of GET /settings/layouts (Zoho's v8 docs sample)."""
    required = set(required_fields(sb, module))
    fields = []
    for i, spec in enumerate(sb._fields[module].values()):
        fields.append({
            "api_name": spec["api_name"], "field_label": spec["field_label"], "display_label": spec["display_label"],
            "id": spec["id"], "data_type": spec["data_type"], "json_type": spec["json_type"],
            "length": spec["length"], "system_mandatory": spec["system_mandatory"],
            "required": spec["api_name"] in required, "read_only": spec["read_only"], "visible": True,
            "sequence_number": i + 1, "custom_field": spec["custom_field"],
            "pick_list_values": copy.deepcopy(spec["pick_list_values"]),
        })
    label = "Lead Information" if module == "Leads" else "Contact Information"
    layout_id = f"{sb._org_id[:-4]}{9055 if module == 'Leads' else 9033}"
    return {
        "id": layout_id, "name": "Standard", "display_label": "Standard", "api_name": "Standard", "status": "active",
        "visible": True, "generated_type": "system", "source": "crm", "has_more_profiles": False,
        "created_by": None, "created_time": None, "modified_by": {"id": sb._user["id"], "name": sb._user["name"]},
        "modified_time": "2026-01-01T00:00:00+00:00",
        "profiles": [{"default": True, "id": f"{sb._org_id[:-4]}6011", "name": "Administrator",
                      "_default_view": {"id": layout_id, "name": "Standard", "type": "layout"}}],
        "sections": [{"api_name": label, "display_label": label, "name": label, "sequence_number": 1,
                      "column_count": 2, "tab_traversal": 1, "type": "used", "isSubformSection": False,
                      "fields": fields}],
    }


@api.route("GET", "/crm/v8/settings/layouts", operation="layouts",
           scope=any_scope("ZohoCRM.settings.layouts.READ", "ZohoCRM.settings.layouts.ALL", "ZohoCRM.settings.ALL"))
def get_layouts(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    module = req.query.get("module")
    if not module:
        raise ZohoError(400, "REQUIRED_PARAM_MISSING", "required param is missing", param_name="module")
    mod = module_name(module)
    if mod not in MODULES:
        raise SandboxError(400, _INVALID_MODULE)
    info["module"] = mod
    with sb._lock:
        return answer(200, {"layouts": [_layout(sb, mod)]})


@api.route("GET", "/crm/v8/users", operation="users",
           scope=any_scope("ZohoCRM.users.READ", "ZohoCRM.users.ALL"))
def get_users(sb: ZohoSandbox, req: Request, info: dict) -> Response:
    """GET /users?type=CurrentUser (what Zoho's SDKs call at start-up); other types list the one admin too."""
    kind = req.query.get("type", "AllUsers")
    if kind not in ("AllUsers", "ActiveUsers", "AdminUsers", "ActiveConfirmedUsers", "CurrentUser",
                    "ConfirmedUsers", "NotConfirmedUsers", "DeletedUsers", "DeactiveUsers", "ActiveConfirmedAdmins"):
        raise ZohoError(400, "INVALID_DATA", "invalid data", param_name="type")
    if kind in ("NotConfirmedUsers", "DeletedUsers", "DeactiveUsers"):
        return answer(204, None)
    first, _, last = sb._user["name"].partition(" ")
    user = {"id": sb._user["id"], "full_name": sb._user["name"], "first_name": first, "last_name": last,
            "email": sb._user["email"], "status": "active", "confirm": True, "zuid": sb._zgid,
            "role": {"name": "CEO", "id": f"{sb._org_id[:-4]}6005"},
            "profile": {"name": "Administrator", "id": f"{sb._org_id[:-4]}6011"},
            "time_zone": "UTC", "country": "US", "locale": "en_US", "language": "en_US",
            "date_format": "MM-dd-yyyy", "time_format": "HH:mm", "type": "CurrentUser" if kind == "CurrentUser" else None}
    info_page = {"per_page": 200, "count": 1, "page": 1, "more_records": False}
    return answer(200, {"users": [user], "info": info_page})


@control.route("POST", "/__sandbox__/layout_required")
def set_layout_required(sb: ZohoSandbox, body: Any) -> Any:
    """{"Leads": ["Company"]}: the fields each module's layout requires beyond Last_Name ({}: none)."""
    with sb._lock:
        sb.layout_required = {module_name(m): tuple(names) for m, names in body.items()}
    return {"status": "success"}
