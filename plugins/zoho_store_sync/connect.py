"""Connect a tenant's Zoho org (grant code → refresh token, stored encrypted) and verify it works.

``connect`` runs from the CLI (``python -m zoho_store_sync.cli connect <tenant>``, the grant code prompted for and
never stored; the ``zoho_connect`` DAG only verifies). Airflow tasks cannot write Connections, so the refresh token
is stored in the state database
(``zoho_sync_refresh_tokens``), encrypted with a key derived from the Connection's client secret; the
tenant's hook reads it there whenever the Connection has no ``refresh_token`` extra. Nobody copies the
refresh token by hand, and it never appears in a log line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from zoho_store_sync import field_values, pipeline
from zoho_store_sync.config import TenantConfig, get_tenant
from zoho_store_sync.errors import VerificationFailed
from zoho_store_sync.hooks.zoho_crm import ZohoConfigError, ZohoError, ZohoOAuthError, ZohoScopeError
from zoho_store_sync.mapping import check_against_org, load_mapping
from zoho_store_sync.state import RefreshTokenStore, StateStore

log = logging.getLogger(__name__)

# What each record type needs, as alternatives: any one scope of a group is enough.
REQUIRED_SCOPES: dict[str, list[tuple[str, ...]]] = {
    "Contacts": [("ZohoCRM.modules.ALL", "ZohoCRM.modules.contacts.ALL", "ZohoCRM.modules.contacts.WRITE")],
    "Leads": [("ZohoCRM.modules.ALL", "ZohoCRM.modules.leads.ALL", "ZohoCRM.modules.leads.WRITE")],
    "_always": [
        ("ZohoCRM.settings.fields.READ", "ZohoCRM.settings.fields.ALL", "ZohoCRM.settings.ALL"),
        ("ZohoCRM.settings.layouts.READ", "ZohoCRM.settings.layouts.ALL", "ZohoCRM.settings.ALL"),
    ],
}
_ALWAYS_WHAT = ("field metadata", "layouts")  # what each "_always" group is for


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[{'ok' if self.ok else 'FAILED'}] {self.name}: {self.detail}"


def _mask(secret: str) -> None:
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(secret)
    except Exception:  # outside a task: nothing to mask
        pass


def connect(tenant_id: str, grant_code: str, redirect_uri: str | None = None) -> dict[str, Any]:
    """Exchange a one-time grant code for a refresh token and store it for the tenant's hook."""
    grant_code = (grant_code or "").strip()
    if not grant_code:
        raise ZohoConfigError("no grant code given: generate one in the Zoho API console (it lives only minutes)")
    _mask(grant_code)
    tenant = get_tenant(tenant_id)
    store = pipeline.state_store(tenant)
    store.check_schema()
    hook = pipeline.zoho_hook(tenant, store)
    try:
        body = hook.exchange_grant_code(grant_code, redirect_uri or None)
    except ZohoOAuthError as exc:
        if exc.code == "invalid_code":
            raise ZohoOAuthError(
                "invalid_code",
                "the grant code expired (it lives only a few minutes) or was "
                "already used: generate a new one and run `python -m zoho_store_sync.cli "
                f"connect {tenant_id}` again at once",
            ) from None
        raise
    RefreshTokenStore(store.engine).save(
        tenant.zoho_conn_id,
        hook.settings["client_secret"],
        body["refresh_token"],
        scope=str(body.get("scope", "")),
        api_domain=str(body.get("api_domain", "")),
    )
    log.info(
        "tenant %s connected: refresh token stored for connection %s (scopes: %s)",
        tenant_id,
        tenant.zoho_conn_id,
        body.get("scope", ""),
    )
    return {
        "tenant": tenant_id,
        "zoho_conn_id": tenant.zoho_conn_id,
        "scope": body.get("scope", ""),
        "api_domain": body.get("api_domain", ""),
    }


def _scope_checks(tenant: TenantConfig, granted: set[str]) -> list[Check]:
    checks = []
    for module in (*tenant.modules, "_always"):
        for index, group in enumerate(REQUIRED_SCOPES[module]):
            ok = bool(granted & set(group))
            what = _ALWAYS_WHAT[index] if module == "_always" else module
            checks.append(
                Check(
                    f"scope for {what}",
                    ok,
                    "granted" if ok else f"missing: grant one of {', '.join(group)} when generating the grant code",
                )
            )
    return checks


def verify(tenant_id: str, run_id: str | None = None) -> list[Check]:
    """Every check, in order; raises VerificationFailed listing the failed ones with what to do. The result is
    kept as a run of kind ``verify`` (``run_id``, default ``verify__<time>``): the sync page shows the last one."""
    tenant = get_tenant(tenant_id)
    store = pipeline.state_store(tenant)
    store.check_schema()
    started_at = datetime.now(UTC)
    run_id = run_id or f"verify__{started_at.isoformat()}"
    finish = partial(_finish, tenant_id, store=store, run_id=run_id, started_at=started_at)
    hook = pipeline.zoho_hook(tenant, store)
    checks: list[Check] = []
    try:
        token = hook.get_access_token()
    except ZohoConfigError as exc:
        checks.append(Check("connection", False, str(exc)))
        return finish(checks)
    except ZohoOAuthError as exc:
        checks.append(Check("access token", False, str(exc)))
        return finish(checks)
    checks.append(Check("access token", True, "obtained from the refresh token"))
    checks.append(
        Check("data centre", True, f"the token's API domain {token.api_domain} belongs to the connection's data centre")
    )
    granted = {s.strip() for s in token.scope.replace(" ", ",").split(",") if s.strip()}
    if granted:
        checks.extend(_scope_checks(tenant, granted))
    mapping = load_mapping(tenant)
    for module in tenant.modules:
        try:
            fields = hook.get_fields(module)
        except ZohoScopeError as exc:
            checks.append(Check(f"{module} fields", False, str(exc)))
            continue
        except ZohoError as exc:
            checks.append(Check(f"{module} fields", False, f"could not read the field list: {exc}"))
            continue
        try:
            required = set(field_values.layout_required(hook.get_layouts(module)))
        except ZohoScopeError:
            detail = "the token lacks ZohoCRM.settings.layouts.READ: generate a grant code with it and connect again"
            checks.append(Check(f"{module} layouts", False, f"could not read the required fields: {detail}"))
            required = set()
        except ZohoError as exc:
            checks.append(Check(f"{module} layouts", False, f"could not read the required fields: {exc}"))
            required = set()
        fields = [{**f, "required": f.get("api_name") in required} for f in fields]
        problems = check_against_org(mapping, module, fields)
        problems += field_values.unfilled_required(tenant, mapping, module, fields)
        checks.append(
            Check(
                f"{module} mapping",
                not problems,
                "every mapped field exists and is writable, every required field is filled"
                if not problems
                else "; ".join(problems),
            )
        )
    return finish(checks)


def _finish(
    tenant_id: str, checks: list[Check], *, store: StateStore, run_id: str, started_at: datetime
) -> list[Check]:
    for check in checks:
        log.info("verify %s %s", tenant_id, check.line())
    failed = [c for c in checks if not c.ok]
    result = {
        "tenant": tenant_id,
        "run": run_id,
        "ok": not failed,
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail, "line": c.line()} for c in checks],
    }
    try:
        store.record_run(run_id, "verify", result, started_at)
    except Exception:  # noqa: BLE001 - the checks' answer matters more than keeping it for the page
        log.warning("could not record the verify result in the state database", exc_info=True)
    if failed:
        raise VerificationFailed(f"tenant {tenant_id!r} is not ready:\n  " + "\n  ".join(c.line() for c in failed))
    return checks
