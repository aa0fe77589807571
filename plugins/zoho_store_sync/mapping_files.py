"""The mapping files (include/mappings/<file>) read and checked, with a tenant's overrides applied.

A file must stay inside include/mappings (symlinks resolved), be UTF-8 YAML mapping ``Contacts`` and ``Leads`` to
``{Zoho field: customer field}``, and name only canonical customer fields; each synced module maps ``Email`` to
``email`` (records are matched on it) and has a ``Last_Name``. Run when the tenants Variable is parsed (so a broken
mapping is a broken entry, named with the field to fix), and by ``mapping.load_mapping``: light, it imports no
pandas. The payloads built from a mapping, and their hashes, are ``mapping.py``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoho_store_sync.errors import MappingError
from zoho_store_sync.settings import mappings_dir

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig, ZohoModule

MAPPED_MODULES: tuple[ZohoModule, ...] = ("Contacts", "Leads")
# The canonical customer fields a mapping may name: customers.CUSTOMER_COLUMNS, which imports pandas (the parse
# must not). tests/zoho_store_sync/test_config.py keeps the two equal.
CUSTOMER_FIELDS = frozenset(
    {
        "customer_key",
        "email",
        "company",
        "full_name",
        "firstname",
        "lastname",
        "salutation",
        "address",
        "city",
        "state",
        "zip",
        "country_name",
        "phone_number",
        "store",
        "store_url",
        "store_id",
        "store_is_mine",
        "order_count",
        "balance",
        "total_order_value",
        "newsletter",
        "deleted",
        "registered",
        "source_updated_at",
    }
)


@dataclass(frozen=True)
class _MappingProblem:
    setting: str  # the tenant's field to fix: "mapping" (the file it names) or "mapping_overrides"
    detail: str


_ModuleFields = dict[str, dict[str, Any]]  # module -> {Zoho field: customer field}, as written


def mapping_fields(tenant: TenantConfig) -> dict[str, dict[str, str]]:
    """Per module, Zoho field API name -> customer field: the tenant's mapping file with its overrides applied,
    checked. Raises MappingError naming the tenant (its ``setting``: the tenant field to fix)."""
    fields = _mapping_fields(tenant, {})
    if isinstance(fields, _MappingProblem):
        raise MappingError(f"tenant {tenant.tenant_id!r}: {fields.detail}", setting=fields.setting)
    return fields


def _mapping_fields(tenant: TenantConfig, memo: dict[Any, Any]) -> dict[str, dict[str, str]] | _MappingProblem:
    """``mapping_fields``, or what is wrong. ``memo`` keeps, for one parse of 500 tenants, each file read and the
    result of each (file, record types) without overrides: most tenants share one of those."""
    name, synced = tenant.mapping_file, tenant.modules
    shared = None if tenant.mapping_overrides else (name, synced)
    if shared in memo:
        return memo[shared]
    if name not in memo:
        memo[name] = _mapping_file(name)
    written = memo[name]
    if isinstance(written, _MappingProblem):
        return written
    fields = _merged_fields(tenant, name, written, synced)
    if shared:
        memo[shared] = fields
    return fields


def _merged_fields(
    tenant: TenantConfig, name: str, written: _ModuleFields, synced: tuple[str, ...]
) -> dict[str, dict[str, str]] | _MappingProblem:
    fields: dict[str, dict[str, str]] = {}
    for module in MAPPED_MODULES:
        overrides: dict[str, str | None] = tenant.mapping_overrides.get(module, {})
        merged = dict(written[module])
        for zoho_field, source_field in overrides.items():
            if source_field is None:
                merged.pop(zoho_field, None)  # DecoNetwork's "Delete"
            else:
                merged[zoho_field] = source_field  # "Add new field" or override

        def setting(zoho_field: str) -> str:
            return "mapping_overrides" if zoho_field in overrides else "mapping"  # noqa: B023 - used at once

        for zoho_field, source_field in merged.items():
            if not isinstance(source_field, str) or source_field not in CUSTOMER_FIELDS:
                where = "" if zoho_field in overrides else f" in mapping file {name!r}"
                return _MappingProblem(
                    setting(zoho_field),
                    (
                        f"mapping {module}.{zoho_field}: unknown customer field {source_field!r}{where} "
                        f"(known: {', '.join(sorted(CUSTOMER_FIELDS))})"
                    ),
                )
        if module in synced:
            if merged.get("Email") != "email":
                return _MappingProblem(
                    setting("Email"), f"mapping {module}.Email: must map 'email' (records are matched on it)"
                )
            if "Last_Name" not in merged:
                return _MappingProblem(setting("Last_Name"), f"mapping {module}.Last_Name: missing (Zoho requires it)")
        fields[module] = dict(sorted(merged.items()))
    return fields


def _mapping_file(name: str) -> _ModuleFields | _MappingProblem:
    """include/mappings/<name>, which must stay inside that folder (symlinks resolved), read and shape-checked."""
    folder = mappings_dir()
    try:
        root = folder.resolve()
        path = (folder / name).resolve()
        found = path.stat() if path.is_relative_to(root) else None
    except FileNotFoundError:
        return _MappingProblem("mapping", f"mapping file {name!r} not found in {folder}")
    except (OSError, RuntimeError) as exc:  # a symlink loop, a folder we may not read
        return _MappingProblem("mapping", f"mapping file {name!r} cannot be read: {exc}")
    if found is None:
        return _MappingProblem(
            "mapping",
            f"mapping file {name!r} resolves to {path}, outside the mappings folder "
            f"{root}: only files inside it can be used",
        )
    if not os.path.isfile(path):
        return _MappingProblem("mapping", f"mapping file {name!r} not found in {folder} (not a file)")
    return _read_mapping_file(str(path), name, found.st_mtime_ns, found.st_size)


@functools.lru_cache(maxsize=64)  # one read per version of a file: 500 tenants usually share two files
def _read_mapping_file(path: str, name: str, mtime_ns: int, size: int) -> _ModuleFields | _MappingProblem:
    import yaml  # already loaded with Airflow

    def problem(detail: str) -> _MappingProblem:
        return _MappingProblem("mapping", f"mapping file {name!r} {detail}")

    try:
        with open(path, encoding="utf-8") as stream:
            raw = yaml.safe_load(stream)
    except UnicodeDecodeError:
        return problem("is not UTF-8 text")
    except yaml.YAMLError as exc:
        mark, what = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None and what else ""
        return problem(f"is not valid YAML: {what or ' '.join(str(exc).split())}{where}")
    except OSError as exc:
        return problem(f"cannot be read: {exc}")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return problem(f"must map Contacts and Leads to {{Zoho field: customer field}}, not be a {type(raw).__name__}")
    unknown = [key for key in raw if key not in MAPPED_MODULES]
    if unknown:
        return problem(f"names the module {unknown[0]!r}: only {' and '.join(MAPPED_MODULES)} are synced")
    modules: _ModuleFields = {}
    for module in MAPPED_MODULES:
        fields = raw.get(module) or {}
        if not isinstance(fields, dict):
            return problem(f"must map {module} to {{Zoho field: customer field}}, not a {type(fields).__name__}")
        modules[module] = {str(zoho_field): source_field for zoho_field, source_field in fields.items()}
    return modules
