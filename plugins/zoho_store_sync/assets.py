"""Airflow Assets of the sync, one per tenant and Zoho module, updated by each sync and reset with its figures.

Name ``zoho_sync/<tenant_id>/<Module>``, URI ``zoho-crm://<tenant_id>/<Module>``, group ``zoho_sync``. A tenant's
sync DAG declares its modules' assets as the outlets of ``report_summary``: Airflow records an event for each when
that task succeeds, which a dry run prevents (``suppress_events``). The reset DAG, one for every tenant, emits
through the alias ``zoho_reset`` for the tenant and modules it reset. Each event's extra carries the run's figures
(``event_extra``). Light on purpose: the sync DAG file imports this module for 500 tenants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from airflow.sdk import Asset, AssetAlias

ASSET_GROUP = "zoho_sync"
URI_SCHEME = "zoho-crm"
RESET_ALIAS = "zoho_reset"


def asset_for(tenant_id: str, module: str) -> Asset:
    """The asset of one tenant's records of one Zoho module."""
    return Asset(name=f"zoho_sync/{tenant_id}/{module}", uri=f"{URI_SCHEME}://{tenant_id}/{module}", group=ASSET_GROUP)


def tenant_assets(tenant_id: str, modules: Iterable[str]) -> list[Asset]:
    return [asset_for(tenant_id, module) for module in modules]


def declared_modules(tenant_id: str, outlets: Iterable[Any]) -> list[str]:
    """The modules whose assets of this tenant a task declares as outlets (its DAG file's parse decided them)."""
    prefix = f"{URI_SCHEME}://{tenant_id}/"
    return [asset.uri[len(prefix) :] for asset in outlets if isinstance(asset, Asset) and asset.uri.startswith(prefix)]


def reset_alias() -> AssetAlias:
    return AssetAlias(name=RESET_ALIAS, group=ASSET_GROUP)


def run_figures(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The whole run's figures (every module together): what the loader and the plan count per run only."""
    return {key: summary.get(key, 0) for key in ("sent", "inserted", "updated", "failed", "invalid", "credits")}


def event_extra(
    kind: str, summary: Mapping[str, Any], module: str, module_figures: Mapping[str, Any] | None
) -> dict[str, Any]:
    """An asset event's extra: which run, this module's own figures (as far as they are counted per module), the
    whole run's, and the module's records in Zoho after the run (None when not counted)."""
    in_zoho = ((summary.get("state") or {}).get("in_zoho") or {}).get(module)
    return {
        "tenant_id": summary.get("tenant"),
        "module": module,
        "run_id": summary.get("run"),
        "kind": kind,
        "in_zoho": in_zoho,
        "module_figures": dict(module_figures or {}),
        "run_figures": run_figures(summary),
    }


def record_events(
    context: Any,
    kind: str,
    summary: Mapping[str, Any],
    by_module: Mapping[str, Mapping[str, Any]],
    modules: Iterable[str],
    *,
    through_alias: bool = False,
) -> dict[str, dict[str, Any]]:
    """Give each module's asset event its extra (declared outlets), or add the events to the reset's alias."""
    outlet_events = context["outlet_events"]
    tenant_id = str(summary.get("tenant"))
    extras = {}
    for module in modules:
        extra = event_extra(kind, summary, module, by_module.get(module))
        asset = asset_for(tenant_id, module)
        if through_alias:
            outlet_events[reset_alias()].add(asset, extra=extra)
        else:
            outlet_events[asset].extra.update(extra)
        extras[module] = extra
    return extras


def suppress_events(context: Any) -> None:
    """No asset event for this try (a dry run): Airflow records one per outlet the task has when it succeeds, and
    reads them from the running task's ``outlets`` then; the copy the task runs on is this try's alone."""
    context["task"].outlets = []  # a new list: the DAG's own task object keeps its outlets


def summary_text(summary: Mapping[str, Any], modules: Iterable[str] = ()) -> str:
    """One line for the XCom view: 'Contacts+Leads: 120 sent, 118 inserted/updated, 2 rejected (INVALID_DATA 2);
    3 invalid not sent; 14 credits'."""
    names = "+".join(modules) or "no module"
    if summary.get("dry_run"):
        would = summary.get("would") or {}
        if would:
            return (
                f"dry run, {names}: would insert {would.get('insert', 0)}, update {would.get('update', 0)}, "
                f"delete or flag {would.get('delete_or_flag', 0)}; {summary.get('invalid', 0)} invalid; "
                "nothing sent"
            )
        return f"dry run, {names}: nothing sent"
    codes = summary.get("failure_codes") or {}
    rejected = f"{summary.get('failed', 0)} rejected"
    if codes:
        rejected += " (" + ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) + ")"
    parts = [
        f"{names}: {summary.get('sent', 0)} sent, "
        f"{int(summary.get('inserted', 0)) + int(summary.get('updated', 0))} inserted/updated, {rejected}"
    ]
    if summary.get("invalid"):
        parts.append(f"{summary['invalid']} invalid not sent")
    if summary.get("deleted_in_source"):
        parts.append(f"{summary['deleted_in_source']} deleted or flagged")
    if summary.get("deletions_refused"):
        parts.append(f"{summary['deletions_refused']} deletions refused")
    in_zoho = (summary.get("state") or {}).get("in_zoho")
    if in_zoho:
        parts.append("in Zoho: " + ", ".join(f"{m} {n}" for m, n in in_zoho.items()))
    parts.append(f"{summary.get('credits', 0)} credits")
    return "; ".join(parts)


def chunk_text(chunk: Mapping[str, Any], sent: Mapping[str, Any], dry_run: bool) -> str:
    """A reset's send_chunk in one line: 'chunk 3 of 10: 1000 sent, 998 inserted/updated, 2 rejected; 100 credits'."""
    head = f"chunk {chunk['index'] + 1} of {chunk['of']}"
    if dry_run:
        return f"{head}, dry run: {chunk['records']} records would be sent; nothing written to Zoho"
    written = int(sent["inserted"]) + int(sent["updated"])
    return (
        f"{head}: {sent['records']} sent, {written} inserted/updated, {sent['failed']} rejected; "
        f"{sent['credits']} credits"
    )
