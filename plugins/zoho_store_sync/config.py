"""Tenant configuration: the `zoho_sync_tenants` Variable parsed and validated, one tenant at a time.

Everything is checked where it is written, when the Variable is parsed (by the DAG processor, and by each task):
the schedule by Airflow's own cron parser, the mapping file (inside include/mappings, valid YAML, known fields)
and its overrides. A broken entry is one line naming the tenant and the field, never a failure mid-run.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from zoho_store_sync.errors import TenantNotConfigured
from zoho_store_sync.mapping_files import (  # noqa: F401 - re-exported: the mapping files were checked here
    CUSTOMER_FIELDS,
    MAPPED_MODULES,
    _mapping_fields,
    _MappingProblem,
    mapping_fields,
)
from zoho_store_sync.settings import DEFAULT_SCHEDULE, DEFAULT_ZOHO_POOL, STATE_DB_CONN_ID
from zoho_store_sync.sources import registry as source_registry  # light: names, not the stores' code

if TYPE_CHECKING:
    from airflow.sdk import Param

ZohoModule = Literal["Contacts", "Leads"]
SyncOption = Literal["none", "all_stores", "my_stores"]
TENANT_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
# customers.CUSTOMER_COLUMNS not of kind "string" (that module imports pandas; test_field_values keeps them equal)
_NON_TEXT_FIELDS = frozenset(
    {"store_is_mine", "order_count", "balance", "total_order_value", "newsletter", "deleted", "registered"}
)
_DRIVE = re.compile(r"^[A-Za-z]:")  # C:\..., C:file: a Windows absolute or drive path
_SCHEDULE_HELP = (
    "a 5-field cron expression, an @preset (@hourly, @daily, @once, @continuous...), or null for manual only"
)


@functools.lru_cache(maxsize=256)  # 500 tenants share a few schedules
def _schedule_problem(schedule: str) -> str | None:
    """Why Airflow would refuse ``schedule`` as a DAG's schedule (None: it accepts it), asking Airflow itself: the
    presets it maps to no cron, then the cron parser behind its timetables (presets such as @daily included)."""
    if schedule in ("@once", "@continuous"):
        return None
    if not schedule.startswith("@") and len(schedule.split()) != 5:
        return f"must be {_SCHEDULE_HELP}"
    from airflow.sdk.definitions.timetables.trigger import CronTriggerTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    try:
        CronTriggerTimetable(schedule, timezone="UTC").validate()
    except AirflowTimetableInvalid as exc:
        return f"{schedule!r} is not a schedule Airflow accepts ({exc}): must be {_SCHEDULE_HELP}"
    return None


class MagentoOptions(BaseModel):
    """Magento-only settings: which store view answers, and which websites belong to the tenant."""

    model_config = ConfigDict(extra="forbid")

    store_code: str = Field("default", pattern=r"^[a-z0-9_]+$")
    website_ids: list[int] | None = None  # None: every website of the store
    page_size: int = Field(300, ge=1, le=300)  # Magento's input limit caps pages at 300
    guest_orders_as_leads: StrictBool = False  # guests have no account: not customers unless the tenant opts in
    overlap_seconds: int = Field(300, ge=0, le=86_400)  # incremental window overlap (many rows share a second)


class DecoNetworkOptions(BaseModel):
    """DecoNetwork-only settings: the customer export file, and the stores this tenant answers for."""

    model_config = ConfigDict(extra="forbid")

    # ObjectStoragePath URL of DecoNetwork's customer export CSV: file:///..., s3://conn_id@bucket/key, gs://...
    customers_export_url: str | None = None
    use_order_api: StrictBool = True  # buyers, order count and order value from /api/json/manage_orders/find
    # Affiliate tenants: the affiliate stores they own. Their parent's sync leaves these stores out.
    store_ids: list[str] | None = None
    affiliate_of: str | None = Field(None, pattern=TENANT_ID_PATTERN)  # the parent tenant's id
    allow_affiliate_integrations: StrictBool = False  # parent: affiliates may run their own Zoho integration
    # DecoNetwork's docs disagree on codes 6/7 (Date Shipped / Date Invoiced); only 8 (Date Modified) is used.
    date_modified_field: int = Field(8, ge=1, le=8)
    overlap_minutes: int = Field(60, ge=0, le=24 * 60)


# A notifier's class by its dotted path (imported only when an alert fires, never at parse time: 500 tenants)
_DOTTED_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class NotifierOption(BaseModel):
    """One Airflow notifier: a BaseNotifier subclass by dotted path, and its keyword arguments (Connection ids,
    addresses, templates: never a secret, the Variable is readable by every DAG author)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    class_path: str = Field(alias="class")
    args: dict[str, Any] = Field(default_factory=dict)

    @field_validator("class_path")
    @classmethod
    def _a_dotted_path(cls, value: str) -> str:
        if not re.match(_DOTTED_PATH, value):
            raise ValueError(
                f"{value!r} is not the dotted path of a notifier class (a subclass of airflow.sdk.BaseNotifier, "
                "e.g. 'zoho_store_sync.alerts.LogNotifier' or "
                "'airflow.providers.smtp.notifications.smtp.SmtpNotifier')"
            )
        return value


class AlertOptions(BaseModel):
    """Who is told, and when: a red run and a mass-deletion refusal always; a rejected share and the org's credits
    left only with their threshold set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notifiers: list[NotifierOption] = Field(min_length=1)
    rejected_share_above: float | None = Field(None, ge=0.0, lt=1.0)  # rejected / sent, of one run
    credits_left_below: float | None = Field(None, gt=0.0, lt=1.0)  # the org's credits left / its daily credits
    # The org's daily API credits (Zoho: Setup > Developer Hub > APIs > API dashboard). Unset: estimated as what
    # remains plus what this product spent on the org in the last 24 h (a lower bound: the alert may come late).
    credits_per_day: int | None = Field(None, ge=1)


class TenantConfig(BaseModel):
    """One store synced to one Zoho org. Secrets are never here: only the ids of Connections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: str = Field(pattern=TENANT_ID_PATTERN)
    source: str  # a store of sources/registry.py: "magento", "deconetwork" (checked below)
    store_conn_id: str = Field(min_length=1)
    zoho_conn_id: str = Field(min_length=1)
    state_conn_id: str = STATE_DB_CONN_ID
    schedule: str | None = DEFAULT_SCHEDULE
    enabled: StrictBool = True  # strict, as every boolean here: "no" or 0 is an error, not false
    sync_option: SyncOption = "all_stores"
    sync_contacts: StrictBool = True
    sync_leads: StrictBool = True
    mapping: str | None = None  # file in include/mappings/, default "<source>.yaml"
    # {"Contacts": {"Zoho_Field": "source_field" | null}}: add, override, or (null) delete a mapping
    mapping_overrides: dict[ZohoModule, dict[str, str | None]] = Field(default_factory=dict)
    zoho_pool: str = DEFAULT_ZOHO_POOL
    zoho_max_concurrency: int = Field(10, ge=1, le=25)
    zoho_workflow_triggers: StrictBool = True
    zoho_max_retries: int = Field(6, ge=0, le=12)  # in-task retries of a 429/5xx/dropped call (backoff with jitter)
    retries: int = Field(3, ge=0, le=10)  # Airflow task retries
    failure_threshold: float = Field(0.1, ge=0.0, le=1.0)  # share of rejected, or of invalid, records: red
    # Mass-deletion protection: a run deleting or flagging more than this many records, or more than this share
    # of the records the tenant keeps in Zoho (from 10 records on), deletes nothing and turns red.
    max_deletions: int = Field(500, ge=0)
    max_deletion_share: float = Field(0.1, ge=0.0, le=1.0)
    # Fields a Zoho layout requires that the mapping may leave empty: per module, Zoho field -> what fills it, in
    # order: a canonical customer field ("full_name") or a constant ("=Individual"). Merged over the defaults
    # (Leads.Company: the customer's company, else the full name, else the last name); [] removes a default.
    required_field_fallbacks: dict[ZohoModule, dict[str, list[str]]] = Field(default_factory=dict)
    # Lead conversion: "real_company" creates (or attaches) an Account only from a company the customer gave,
    # never from a fallback; "never" creates no Account; "always" lets Zoho use the Lead's Company as it is.
    lead_conversion_account: Literal["real_company", "never", "always"] = "real_company"
    adopt_existing_records: StrictBool = True  # first sync / reset: link the org's records found by email
    phone_default_region: str | None = Field(None, pattern=r"^[A-Z]{2}$")  # ISO 3166 code when no country is known
    zoho_credit_reserve: int = Field(0, ge=0)  # credits of the org's day this tenant's runs leave for others
    magento: MagentoOptions = Field(default_factory=MagentoOptions)
    deconetwork: DecoNetworkOptions = Field(default_factory=DecoNetworkOptions)
    # What to do when a customer disappears from (Magento) or is flagged deleted in (DecoNetwork) the store
    source_deletions: Literal["ignore", "flag", "delete"] = "ignore"
    full_sync_every_hours: float = Field(24.0, gt=0)  # incremental runs in between
    # Requests in flight at once to the store during a full pass (Magento id ranges, DecoNetwork pages); 1: one
    # page at a time. 8 keeps a shop's server comfortable (published DecoNetwork clients use at most 10).
    store_parallelism: int = Field(8, ge=1, le=16)
    tags: list[str] = Field(default_factory=list)
    alerts: AlertOptions | None = None  # Airflow notifiers told of a red run, a refusal, rejections, credits

    @field_validator("source")
    @classmethod
    def _source_is_a_registered_store(cls, value: str) -> str:
        if value not in source_registry.names():
            raise ValueError(source_registry.unknown_source_message(value))
        return value

    @field_validator("required_field_fallbacks")
    @classmethod
    def _fallbacks_name_text_fields_or_constants(
        cls, value: dict[str, dict[str, list[str]]]
    ) -> dict[str, dict[str, list[str]]]:
        for module, fields in value.items():
            for zoho_field, chain in fields.items():
                for entry in chain:
                    if not entry.startswith("=") and (entry not in CUSTOMER_FIELDS or entry in _NON_TEXT_FIELDS):
                        raise ValueError(
                            f"{module}.{zoho_field}: {entry!r} is neither a text customer field "
                            f"({', '.join(sorted(CUSTOMER_FIELDS - _NON_TEXT_FIELDS))}) nor a constant written '=value'"
                        )
                    if entry == "=":
                        raise ValueError(f"{module}.{zoho_field}: the constant '=' is empty")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron_or_preset(cls, value: str | None) -> str | None:
        problem = None if value is None else _schedule_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("mapping")
    @classmethod
    def _mapping_is_a_file_name_in_the_mappings_folder(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.strip()
            or value.startswith(("/", "\\"))
            or _DRIVE.match(value)
            or ".." in re.split(r"[/\\]", value)
        ):
            raise ValueError(f"must name a file in include/mappings/ (a relative path without '..'), got {value!r}")
        return value

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
        return self.mapping or source_registry.get(self.source).default_mapping

    @property
    def modules(self) -> tuple[ZohoModule, ...]:
        if self.sync_option == "none":
            return ()
        switches: tuple[tuple[ZohoModule, bool], ...] = (("Contacts", self.sync_contacts), ("Leads", self.sync_leads))
        return tuple(m for m, on in switches if on)


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
    mappings: dict[Any, Any] = {}  # each mapping file is checked once per parse
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
        mapping = _mapping_fields(tenant, mappings)
        if isinstance(mapping, _MappingProblem):
            result.errors.append(f"{who}: field {mapping.setting!r}: {mapping.detail}")
            continue
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
    raise TenantNotConfigured(f"tenant {tenant_id!r} is not configured in the Variable{detail}")


def tenant_param(description: str) -> Param:
    """A trigger-form drop-down of the configured tenants, for the manual DAGs (read at parse time)."""
    from airflow.sdk import Param

    tenant_ids = [t.tenant_id for t in load_tenants().tenants]
    choices: dict[str, Any] = {"enum": tenant_ids} if tenant_ids else {}
    return Param(tenant_ids[0] if tenant_ids else "", type="string", title="Tenant", description=description, **choices)
