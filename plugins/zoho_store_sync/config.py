"""Tenant configuration: the `zoho_sync_tenants` Variable parsed and validated, one tenant at a time."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zoho_store_sync.settings import DEFAULT_SCHEDULE, DEFAULT_ZOHO_POOL, STATE_DB_CONN_ID

ZohoModule = Literal["Contacts", "Leads"]
SyncOption = Literal["none", "all_stores", "my_stores"]
TENANT_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"


class MagentoOptions(BaseModel):
    """Magento-only settings: which store view answers, and which websites belong to the tenant."""

    model_config = ConfigDict(extra="forbid")

    store_code: str = Field("default", pattern=r"^[a-z0-9_]+$")
    website_ids: list[int] | None = None  # None: every website of the store
    page_size: int = Field(300, ge=1, le=300)  # Magento's input limit caps pages at 300
    guest_orders_as_leads: bool = False  # guests have no account: not customers unless the tenant opts in
    overlap_seconds: int = Field(300, ge=0, le=86_400)  # incremental window overlap (many rows share a second)


class DecoNetworkOptions(BaseModel):
    """DecoNetwork-only settings: the customer export file, and the stores this tenant answers for."""

    model_config = ConfigDict(extra="forbid")

    # ObjectStoragePath URL of DecoNetwork's customer export CSV: file:///..., s3://conn_id@bucket/key, gs://...
    customers_export_url: str | None = None
    use_order_api: bool = True  # buyers, order count and order value from /api/json/manage_orders/find
    # Affiliate tenants: the affiliate stores they own. Their parent's sync leaves these stores out.
    store_ids: list[str] | None = None
    affiliate_of: str | None = Field(None, pattern=TENANT_ID_PATTERN)  # the parent tenant's id
    allow_affiliate_integrations: bool = False  # parent: affiliates may run their own Zoho integration
    # DecoNetwork's docs disagree on codes 6/7 (Date Shipped / Date Invoiced); only 8 (Date Modified) is used.
    date_modified_field: int = Field(8, ge=1, le=8)
    overlap_minutes: int = Field(60, ge=0, le=24 * 60)


class TenantConfig(BaseModel):
    """One store synced to one Zoho org. Secrets are never here: only the ids of Connections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    source: Literal["magento", "deconetwork"]
    store_conn_id: str = Field(min_length=1)
    zoho_conn_id: str = Field(min_length=1)
    state_conn_id: str = STATE_DB_CONN_ID
    schedule: str | None = DEFAULT_SCHEDULE
    enabled: bool = True
    sync_option: SyncOption = "all_stores"
    sync_contacts: bool = True
    sync_leads: bool = True
    mapping: str | None = None  # file in include/mappings/, default "<source>.yaml"
    # {"Contacts": {"Zoho_Field": "source_field" | null}}: add, override, or (null) delete a mapping
    mapping_overrides: dict[ZohoModule, dict[str, str | None]] = Field(default_factory=dict)
    zoho_pool: str = DEFAULT_ZOHO_POOL
    zoho_max_concurrency: int = Field(10, ge=1, le=25)
    zoho_workflow_triggers: bool = True
    zoho_max_retries: int = Field(6, ge=0, le=12)  # in-task retries of a 429/5xx/dropped call (backoff with jitter)
    retries: int = Field(3, ge=0, le=10)  # Airflow task retries
    failure_threshold: float = Field(0.1, ge=0.0, le=1.0)
    magento: MagentoOptions = Field(default_factory=MagentoOptions)
    deconetwork: DecoNetworkOptions = Field(default_factory=DecoNetworkOptions)
    # What to do when a customer disappears from (Magento) or is flagged deleted in (DecoNetwork) the store
    source_deletions: Literal["ignore", "flag", "delete"] = "ignore"
    full_sync_every_hours: float = Field(24.0, gt=0)  # incremental runs in between
    tags: list[str] = Field(default_factory=list)

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron_or_preset(cls, value: str | None) -> str | None:
        if value is None or value.startswith("@") or len(value.split()) == 5:
            return value
        raise ValueError("must be a 5-field cron expression, an @preset, or null for manual only")

    @model_validator(mode="after")
    def _affiliate_names_its_stores(self) -> TenantConfig:
        if self.deconetwork.affiliate_of and not self.deconetwork.store_ids:
            raise ValueError("deconetwork.affiliate_of needs deconetwork.store_ids (the affiliate's own stores)")
        if self.deconetwork.affiliate_of == self.tenant_id:
            raise ValueError("deconetwork.affiliate_of names the tenant itself")
        return self

    @model_validator(mode="after")
    def _something_to_sync(self) -> TenantConfig:
        if self.sync_option != "none" and not (self.sync_contacts or self.sync_leads):
            raise ValueError("sync_contacts and sync_leads are both false: set sync_option to 'none' instead")
        return self

    @property
    def dag_id(self) -> str:
        from zoho_store_sync.settings import DAG_ID_PREFIX

        return f"{DAG_ID_PREFIX}{self.tenant_id}"

    @property
    def mapping_file(self) -> str:
        return self.mapping or f"{self.source}.yaml"

    @property
    def modules(self) -> tuple[ZohoModule, ...]:
        if self.sync_option == "none":
            return ()
        return tuple(m for m, on in (("Contacts", self.sync_contacts), ("Leads", self.sync_leads)) if on)


@dataclass
class TenantsParseResult:
    tenants: list[TenantConfig] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _describe(entry: Any, index: int) -> str:
    tenant_id = entry.get("tenant_id") if isinstance(entry, dict) else None
    return f"tenant {tenant_id!r}" if isinstance(tenant_id, str) and tenant_id else f"tenant entry #{index}"


def _format_validation_error(who: str, error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"]) or "(entry)"
        parts.append(f"field {location!r}: {item['msg']}")
    return f"{who}: " + "; ".join(parts)


def parse_tenants(raw: Any) -> TenantsParseResult:
    """Validate every entry on its own, so one broken tenant never hides the others.

    ``raw`` is the Variable's value: a JSON string, or the already decoded list.
    """
    result = TenantsParseResult()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as exc:
            result.errors.append(f"Variable is not valid JSON: {exc}")
            return result
    if raw is None:
        return result
    if not isinstance(raw, list):
        result.errors.append(f"Variable must be a JSON list of tenant objects, got {type(raw).__name__}")
        return result
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        who = _describe(entry, index)
        if not isinstance(entry, dict):
            result.errors.append(f"{who}: must be a JSON object, got {type(entry).__name__}")
            continue
        try:
            tenant = TenantConfig.model_validate(entry)
        except ValidationError as exc:
            result.errors.append(_format_validation_error(who, exc))
            continue
        if tenant.tenant_id in seen:
            result.errors.append(f"{who}: field 'tenant_id': duplicate, already used by an earlier entry")
            continue
        seen.add(tenant.tenant_id)
        result.tenants.append(tenant)
    _check_affiliates(result)
    result.tenants.sort(key=lambda t: t.tenant_id)
    return result


def _check_affiliates(result: TenantsParseResult) -> None:
    """An affiliate must name a configured parent, and two affiliates of one parent can't share a store."""
    by_id = {t.tenant_id: t for t in result.tenants}
    claimed: dict[tuple[str, str], str] = {}
    for tenant in list(result.tenants):
        parent = tenant.deconetwork.affiliate_of
        if not parent:
            continue
        problem = None
        if parent not in by_id:
            problem = f"names {parent!r}, which is not a configured tenant"
        else:
            for store in tenant.deconetwork.store_ids or []:
                other = claimed.setdefault((parent, store), tenant.tenant_id)
                if other != tenant.tenant_id:
                    problem = f"store {store!r} is already claimed by affiliate {other!r}"
        if problem:
            result.errors.append(f"tenant {tenant.tenant_id!r}: field 'deconetwork.affiliate_of': {problem}")
            result.tenants.remove(tenant)


def load_tenants() -> TenantsParseResult:
    """Read the Variable once (one metadata/secrets round trip per parse) and validate it."""
    from airflow.sdk import Variable

    from zoho_store_sync.settings import TENANTS_VARIABLE

    return parse_tenants(Variable.get(TENANTS_VARIABLE, default="[]"))


def get_tenant(tenant_id: str) -> TenantConfig:
    """The validated config of one tenant, read at task run time (never a stale parse-time copy)."""
    parsed = load_tenants()
    for tenant in parsed.tenants:
        if tenant.tenant_id == tenant_id:
            return tenant
    problems = [e for e in parsed.errors if repr(tenant_id) in e]
    detail = f": {problems[0]}" if problems else ""
    raise LookupError(f"tenant {tenant_id!r} is not configured in the Variable{detail}")


def tenant_param(description: str):  # type: ignore[no-untyped-def]
    """A trigger-form drop-down of the configured tenants, for the manual DAGs (read at parse time)."""
    from airflow.sdk import Param

    tenant_ids = [t.tenant_id for t in load_tenants().tenants]
    choices = {"enum": tenant_ids} if tenant_ids else {}
    return Param(tenant_ids[0] if tenant_ids else "", type="string", title="Tenant", description=description, **choices)
