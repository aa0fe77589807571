"""Values Zoho will accept: layout-required fields filled by fallbacks, phones in E.164, picklist values checked.

Run by the plan on the prepared customers, before anything is hashed: each Zoho field that needs one of these gets a
derived column (``_fit__...``) on the frame and the mapping points at it, so the payload sent and its hash agree.

* **Required fields**: a field the org's layout requires (``GET /settings/layouts``, ``required``) is filled, where the
  mapped value is empty, by the tenant's ``required_field_fallbacks`` merged over ``DEFAULT_FALLBACKS``: the first
  non-empty of a list of canonical customer fields, or a constant written ``"=Individual"``. Leads' ``Company``
  defaults to the customer's company, else the full name, else the last name (Zoho's own convention for a person
  without a company, and the last name is never empty): a B2C store's Leads are never rejected for it.
* **Phones** (fields of Zoho type ``phone``): parsed with ``phonenumbers`` in the customer's country (its
  ``country_name``: an ISO code or an English name), else the tenant's ``phone_default_region``; a number written
  with ``+`` needs neither. A valid number is sent in E.164 (``+14155550132``); an invalid one, or one no region
  explains, is left out (null) and reported, never cut. Each (number, region) is parsed once per tenant, not once per
  run: the answers are kept between runs in the tenant's phone book (``phone_book.py``).
* **Picklists**: a value is sent as the org's ``display_value`` it matches (case, a trailing dot and the aliases
  ``Mr``/``Mrs``/``Ms``/``Dr``/``Prof`` forgiven); an unknown one is left out and reported.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

from zoho_store_sync.customers import CUSTOMER_COLUMNS, PreparedCustomers, arrow_text, record_types
from zoho_store_sync.hooks.zoho_crm import ZohoScopeError
from zoho_store_sync.mapping import Mapping
from zoho_store_sync.phone_book import PhoneBook
from zoho_store_sync.phone_book import url_of as phone_book_url

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig
    from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook

log = logging.getLogger(__name__)

# Per module, Zoho field -> what fills it when empty (a canonical customer field, or "=constant"), in order.
DEFAULT_FALLBACKS: dict[str, dict[str, list[str]]] = {"Leads": {"Company": ["company", "full_name", "lastname"]}}
# What a standard org's layouts require, assumed when the token lacks the layouts scope (the plan warns).
STANDARD_REQUIRED: dict[str, list[str]] = {"Leads": ["Last_Name", "Company"], "Contacts": ["Last_Name"]}
# Salutations written without Zoho's dot or spelled out.
PICKLIST_ALIASES = {"mr": "Mr.", "mrs": "Mrs.", "ms": "Ms.", "dr": "Dr.", "prof": "Prof."}
_NONE = "-None-"  # Zoho's empty picklist entry
_MAX_WARNINGS = 20


def fallbacks(tenant: TenantConfig) -> dict[str, dict[str, list[str]]]:
    """The tenant's ``required_field_fallbacks`` merged over the defaults; an empty list removes a default."""
    out = {module: dict(fields) for module, fields in DEFAULT_FALLBACKS.items()}
    for module, fields in tenant.required_field_fallbacks.items():
        out.setdefault(module, {}).update(fields)
    return {module: {f: chain for f, chain in fields.items() if chain} for module, fields in out.items()}


def layout_required(layouts: list[dict[str, Any]]) -> list[str]:
    """The api_names the layout that applies to API writes requires: the layout some profile uses by default
    (a record sent without ``Layout`` gets it), else the first active one."""
    active = [lay for lay in layouts if lay.get("status", "active") == "active"] or layouts
    default = [lay for lay in active if any(p.get("default") for p in lay.get("profiles") or [])]
    chosen = (default or active or [{}])[0]
    return [
        str(f["api_name"])
        for section in chosen.get("sections") or []
        for f in section.get("fields") or []
        if f.get("required") and f.get("api_name")
    ]


def picklist_of(field: dict[str, Any]) -> dict[str, Any]:
    """What the plan keeps of a picklist's metadata: its display and actual values (nothing for other fields)."""
    values = field.get("pick_list_values") or []
    if field.get("data_type") != "picklist" or not values:
        return {}
    kept = [{k: v.get(k) for k in ("display_value", "actual_value")} for v in values if isinstance(v, dict)]
    return {"pick_list_values": kept}


def mark_layout_required(hook: ZohoCrmHook, fields: dict[str, list[dict[str, Any]]]) -> bool:
    """Set each field's ``required`` from the module's layouts; False when the token lacks the layouts scope (a
    standard org's required fields are then assumed, with a warning: connect the tenant again with it)."""
    read = True
    for module, module_fields in fields.items():
        try:
            required = set(layout_required(hook.get_layouts(module)))
        except ZohoScopeError:
            read = False
            required = set(STANDARD_REQUIRED.get(module, []))
            log.warning(
                "%s layouts: the token lacks ZohoCRM.settings.layouts.READ; assuming a standard org's required "
                "fields (%s): generate a grant code with that scope and connect the tenant again",
                module,
                ", ".join(sorted(required)),
            )
        for field in module_fields:
            field["required"] = field.get("api_name") in required
    return read


def required_fields(fields: list[dict[str, Any]]) -> list[str]:
    """Writable fields a record must carry: system-mandatory or layout-required (``org_fields``' ``required``)."""
    return [
        str(f["api_name"])
        for f in fields
        if (f.get("system_mandatory") or f.get("required")) and not (f.get("read_only") or f.get("field_read_only"))
    ]


def unfilled_required(tenant: TenantConfig, mapping: Mapping, module: str, fields: list[dict[str, Any]]) -> list[str]:
    """Problems: each required field neither mapped nor filled by a fallback, with the tenant option that fixes it."""
    chains = fallbacks(tenant).get(module, {})
    mapped = mapping.fields.get(module, {})
    return [
        f"{module}.{name}: required by the Zoho org's layout but neither mapped nor filled by a fallback: set "
        f'"required_field_fallbacks": {{"{module}": {{"{name}": ["full_name"]}}}} (customer fields, or "=a constant") '
        f'or map it with "mapping_overrides": {{"{module}": {{"{name}": "<customer field>"}}}}'
        for name in required_fields(fields)
        if name not in mapped and name not in chains
    ]


def _blank(values: pd.Series) -> np.ndarray:
    text = values.astype("string").str.strip()
    return (text.isna() | (text == "")).to_numpy(dtype=bool, na_value=True)


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().replace("", pd.NA)


def fill(frame: pd.DataFrame, chain: list[str]) -> tuple[pd.Series, np.ndarray]:
    """The first non-empty of ``chain`` per row, and whether it came after the chain's first entry."""
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    used_later = np.zeros(len(frame), dtype=bool)
    for position, entry in enumerate(chain):
        todo = out.isna().to_numpy()
        if not todo.any():
            break
        constant = entry.startswith("=")
        values = pd.Series(entry[1:], index=frame.index, dtype="string") if constant else _text(frame[entry])
        take = todo & values.notna().to_numpy()
        out[take] = values[take]
        if position:
            used_later |= take
    return out, used_later


# ----------------------------------------------------------------------------------------------------- phones


@functools.lru_cache(maxsize=1)
def _region_names() -> dict[str, str]:
    """English country name (lower case) -> ISO region, from phonenumbers' own locale data, with common aliases."""
    from phonenumbers.geodata.locale import LOCALE_DATA

    names: dict[str, str] = {}
    for region, by_language in LOCALE_DATA.items():
        for language in ("en", "aa"):
            name = by_language.get(language)
            while isinstance(name, str) and name.startswith("*"):
                name = by_language.get(name[1:])
            if name:
                names.setdefault(name.lower(), region)
    aliases = {
        "usa": "US",
        "united states of america": "US",
        "america": "US",
        "uk": "GB",
        "great britain": "GB",
        "england": "GB",
        "scotland": "GB",
        "wales": "GB",
        "northern ireland": "GB",
        "holland": "NL",
        "the netherlands": "NL",
        "south korea": "KR",
        "russia": "RU",
        "uae": "AE",
        "czech republic": "CZ",
    }
    names.update(aliases)
    return names


def region_of(country: object, default: str | None) -> str | None:
    """The phone region of a customer's country (an ISO code or a name), else ``default``."""
    if isinstance(country, str) and country.strip():
        text = country.strip()
        if len(text) == 2 and text.upper() in phonenumbers.SUPPORTED_REGIONS:
            return text.upper()
        found = _region_names().get(text.lower())
        if found:
            return found
    return default


# Bump when e164() changes what it returns for some input: phone books saved before are then not read.
PHONE_RULES = 1
# A phone book's key: the region the number is parsed in ("-": none), this separator, the number as the store wrote it.
_KEY_SEPARATOR = "\x1f"  # never in a region
_NO_REGION = "-"


def e164(number: str, region: str | None) -> str | None:
    """``number`` in E.164, or None when it is not a valid number (in ``region``, unless written with +)."""
    text = number.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+") and region is None:
        return None
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _parse_key(key: str) -> str | None:
    region, _, number = key.partition(_KEY_SEPARATOR)
    return e164(number, None if region == _NO_REGION else region)


def phone_book(tenant_id: str, *, full_pass: bool) -> PhoneBook:
    """The tenant's phone book (kept between runs), under this module's rules and this ``phonenumbers``."""
    return PhoneBook(phone_book_url(tenant_id), _phone_book_version(), full_pass=full_pass)


def _call_book() -> PhoneBook:
    """A phone book for one call only (nothing read or saved): a caller that passes none, a benchmark or a test."""
    return PhoneBook(None, _phone_book_version(), full_pass=False)


def _phone_book_version() -> str:
    return f"rules {PHONE_RULES}, phonenumbers {phonenumbers.__version__}"


def _phone_regions(countries: pd.Series, default_region: str | None) -> pa.Array:
    """Each row's region (``region_of`` its country, once per distinct country), ``-`` for none."""
    codes, distinct = pd.factorize(countries)
    regions = [region_of(country, default_region) for country in distinct] + [default_region]
    table = pa.array([region or _NO_REGION for region in regions], pa.large_string())
    return table.take(pa.array(np.where(codes < 0, len(regions) - 1, codes)))


def _phone_text(numbers: pd.Series) -> pa.Array:
    if numbers.dtype == object:  # anything but a string is no number
        numbers = numbers.map(lambda v: v if isinstance(v, str) else None).astype("string")
    return arrow_text(numbers).combine_chunks().cast(pa.large_string())  # pandas' own type: no copy


def phones(
    numbers: pd.Series,
    countries: pd.Series,
    default_region: str | None,
    max_length: int,
    book: PhoneBook | None = None,
) -> pd.Series:
    """E.164 numbers; null where empty, invalid, or longer than the Zoho field (then reported, never cut).

    Each distinct (number, region) is looked up in ``book`` (the tenant's, kept between runs; none: one for this
    call) and parsed only when it is not there. Arrow arrays throughout: no Python object per customer."""
    book = book if book is not None else _call_book()
    keys = pc.binary_join_element_wise(
        _phone_regions(countries, default_region), _phone_text(numbers), pa.scalar(_KEY_SEPARATOR, pa.large_string())
    )
    encoded = pc.dictionary_encode(keys)  # the per-run de-duplication: one lookup per distinct key
    del keys  # a million keys less at the lookup's peak
    found = book.resolve(encoded.dictionary, _parse_key).take(encoded.indices)
    fits = pc.less_equal(pc.utf8_length(found), max_length)  # outside the book: fields differ in length
    sent = pc.if_else(fits, found, pa.scalar(None, pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(sent), index=numbers.index).astype("string")


# -------------------------------------------------------------------------------------------------- picklists


def _key(value: str) -> str:
    return value.strip().rstrip(".").strip().lower()


def picklist_lookup(meta: dict[str, Any]) -> dict[str, str]:
    """Normalised spelling -> the display_value Zoho takes (display and actual values, and the aliases)."""
    lookup: dict[str, str] = {}
    for entry in meta.get("pick_list_values") or []:
        display = entry.get("display_value") if isinstance(entry, dict) else entry
        if not isinstance(display, str) or display == _NONE:
            continue
        lookup.setdefault(_key(display), display)
        actual = entry.get("actual_value") if isinstance(entry, dict) else None
        if isinstance(actual, str) and actual != _NONE:
            lookup.setdefault(_key(actual), display)
    for alias, target in PICKLIST_ALIASES.items():
        if _key(target) in lookup:
            lookup.setdefault(alias, lookup[_key(target)])
    return lookup


def picklist_values(values: pd.Series, lookup: dict[str, str]) -> pd.Series:
    """Each value as the org's display_value; null when empty, ``-None-`` or unknown."""
    text = _text(values)
    return text.map(lambda v: None if pd.isna(v) or v == _NONE else lookup.get(_key(v))).astype("string")


# ------------------------------------------------------------------------------------------------------- plan


def fit_to_org(
    tenant: TenantConfig,
    prepared: PreparedCustomers,
    mapping: Mapping,
    org_fields: dict[str, list[dict[str, Any]]],
    modules: tuple[str, ...],
    phone_book: PhoneBook | None = None,
) -> tuple[PreparedCustomers, Mapping, dict[str, Any]]:
    """The prepared customers with a derived column per fitted Zoho field, the mapping pointing at them, and the
    plan's counts: ``values_left_out`` {Zoho field: customers} and ``required_filled`` {"Module.Field": customers}
    (counted over the customers of that record type). Adds ``company_is_fallback``: True where the customer has no
    company of its own (a Lead's Company is then a fallback). ``phone_book``: the tenant's, looked up for its phone
    fields and saved after them (none: one for this call only)."""
    frame = prepared.valid
    book = phone_book if phone_book is not None else _call_book()
    derived: dict[str, pd.Series] = {"company_is_fallback": pd.Series(_blank(frame["company"]), index=frame.index)}
    derived["company_is_fallback"] = derived["company_is_fallback"].astype("boolean")
    kinds = record_types(frame)
    fields = {m: dict(mapping.fields.get(m, {})) for m in mapping.fields}
    left_out: dict[str, int] = {}
    filled: dict[str, int] = {}
    warnings: list[str] = []
    chains = fallbacks(tenant)

    def column(name: str) -> pd.Series:
        return derived[name] if name in derived else frame[name]

    def note(module: str, zoho_field: str, dropped: np.ndarray, why: str) -> None:
        mine = dropped & (kinds == module)
        if mine.any():
            left_out[zoho_field] = left_out.get(zoho_field, 0) + int(mine.sum())
            for key in frame["customer_key"].to_numpy()[mine][: _MAX_WARNINGS - len(warnings)]:
                warnings.append(f"value left out: customer {key}: {module}.{zoho_field} {why}")

    for module in modules:
        meta = {f.get("api_name"): f for f in org_fields.get(module, [])}
        for zoho_field, source in list(fields.get(module, {}).items()):
            spec = meta.get(zoho_field) or {}
            if CUSTOMER_COLUMNS.get(source) != "string":
                continue
            name, make, why = _fitter(module, zoho_field, source, spec, frame, tenant, book)
            if make is None:
                continue
            if name not in derived:
                derived[name] = make()
            given = ~_blank(frame[source]) & (frame[source].astype("string").str.strip() != _NONE).to_numpy(
                dtype=bool, na_value=False
            )
            note(module, zoho_field, given & derived[name].isna().to_numpy(), why)
            fields[module][zoho_field] = name
        for zoho_field in required_fields(list(meta.values())):
            chain = chains.get(module, {}).get(zoho_field)
            if not chain:
                continue
            mapped = fields.get(module, {}).get(zoho_field)
            full = list(dict.fromkeys(([mapped] if mapped else []) + chain))
            name = f"_fit__{module}__{zoho_field}__fill"
            view = frame.assign(**{k: v for k, v in derived.items() if k in full})
            derived[name], later = fill(view, full)
            if mapped is None:
                later = derived[name].notna().to_numpy()
            count = int((later & (kinds == module)).sum())
            if count:
                filled[f"{module}.{zoho_field}"] = count
            fields.setdefault(module, {})[zoho_field] = name
    book.save()
    for line in warnings:
        log.warning("%s", line)
    valid = frame.assign(**derived)
    fitted = PreparedCustomers(
        valid=valid, invalid=prepared.invalid, duplicates=prepared.duplicates, email_hashes=prepared.email_hashes
    )
    counts = {"values_left_out": left_out, "required_filled": filled}
    return fitted, Mapping(fields=fields, lengths=mapping.lengths), counts


def _fitter(
    module: str,
    zoho_field: str,
    source: str,
    spec: dict[str, Any],
    frame: pd.DataFrame,
    tenant: TenantConfig,
    book: PhoneBook,
) -> tuple[str, Callable[[], pd.Series] | None, str]:
    """The derived column's name and how to build it, for a phone or picklist field (no builder: sent as it is)."""
    data_type = spec.get("data_type")
    if data_type == "phone":
        length = int(spec.get("length") or 30)
        return (
            f"_fit__phone__{source}__{length}",
            lambda: phones(frame[source], frame["country_name"], tenant.phone_default_region, length, book),
            "is not a valid phone number for the customer's country (or phone_default_region)",
        )
    if data_type == "picklist" and spec.get("pick_list_values"):
        lookup = picklist_lookup(spec)
        return (
            f"_fit__{module}__{zoho_field}__{source}",
            lambda: picklist_values(frame[source], lookup),
            "is not one of the org's picklist values",
        )
    return "", None, ""
