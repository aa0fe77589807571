"""Alerts through Airflow notifiers: a red run, a mass-deletion refusal, the org's credits near their end, a rejected
share above a threshold, each told once per run to the notifiers of the tenant's ``alerts`` option.

A notifier is any ``airflow.sdk.BaseNotifier`` subclass (Slack, SMTP, ... from Airflow's providers, or the built-in
``LogNotifier``), named by dotted path and imported only when an alert fires: the DAG files stay light. It is called
as Airflow calls an ``on_failure_callback`` notifier, with the run's context plus ``zoho_alert`` (kind, tenant, run,
message, figures), so a provider's templated text can say ``{{ zoho_alert.message }}``. A notifier that fails is
logged (its arguments never) and never fails the run. No alert for a dry run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from zoho_store_sync.errors import NeedsOperator

if TYPE_CHECKING:
    from zoho_store_sync.config import NotifierOption, TenantConfig
    from zoho_store_sync.state import StateStore

log = logging.getLogger(__name__)

ALERT_LOG_PREFIX = "ZOHO_SYNC_ALERT "
RUN_FAILED = "run_failed"
DELETIONS_REFUSED = "mass_deletion_refused"
CREDITS_LOW = "credits_low"
REJECTED_SHARE = "rejected_share"
ALERT_CURSOR = "alerts.{kind}"  # the run last told of each kind: a retried task tells no one twice


@dataclass(frozen=True)
class Alert:
    """What a notifier is told: the kind, whose run, one line of text (no secret), and the figures behind it."""

    kind: str
    tenant_id: str
    run_id: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LogNotifier(BaseNotifier):
    """The built-in notifier, usable without any provider: one ``ZOHO_SYNC_ALERT {...}`` line (JSON) at ``level``
    in the log of the task (or, for a red run, of the DAG processor) that fired it, for a log-based alert to catch."""

    def __init__(self, level: str = "ERROR") -> None:
        super().__init__()
        self.level = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
        if not isinstance(self.level, int):
            raise ValueError(f"LogNotifier: level {level!r} is not a logging level (ERROR, WARNING, INFO)")

    def notify(self, context: Any) -> None:
        alert = context.get("zoho_alert") or {}
        log.log(self.level, "%s%s", ALERT_LOG_PREFIX, json.dumps(alert, ensure_ascii=False, default=str))


class NotifierNotUsable(NeedsOperator, TypeError):
    """A notifier's dotted path names no class, or a class that is not an Airflow notifier: the tenant's `alerts`
    option must be fixed (it is logged when an alert fires; it never fails the run)."""


def notifier_class(path: str) -> type[BaseNotifier]:
    """The class at ``path``, imported now; NotifierNotUsable unless it subclasses ``airflow.sdk.BaseNotifier``."""
    from airflow.sdk.module_loading import import_string

    try:
        found = import_string(path)
    except ImportError as exc:
        raise NotifierNotUsable(f"notifier class {path!r} cannot be imported ({exc})") from None
    if not (isinstance(found, type) and issubclass(found, BaseNotifier)):
        raise NotifierNotUsable(
            f"{path!r} is not an Airflow notifier: alerts.notifiers[].class must name a subclass of "
            "airflow.sdk.BaseNotifier (e.g. zoho_store_sync.alerts.LogNotifier)"
        )
    return found


def _redacted(text: str, args: Mapping[str, Any]) -> str:
    """``text`` without any string the notifier was given (a webhook URL, an address): errors often quote them."""
    values: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str) and len(value) >= 4:
            values.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)

    collect(args)
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def send(notifiers: list[NotifierOption], alert: Alert, context: Mapping[str, Any] | None = None) -> int:
    """Tell every notifier; how many did. Never raises: a notifier that fails is logged and the run goes on."""
    told = 0
    # A copy (BaseNotifier adds its template fields to the context it is given). Its templates render with the DAG's
    # Jinja environment; a DAG that has none (the scheduler's copy dag.test() hands its callbacks) gets the default.
    given = {**(context or {}), "zoho_alert": alert.as_dict()}
    if given.get("dag") is not None and not hasattr(given["dag"], "get_template_env"):
        given["dag"] = None
    for index, option in enumerate(notifiers):
        try:
            notifier = notifier_class(option.class_path)(**option.args)
            notifier(dict(given))
            told += 1
        except Exception as exc:  # noqa: BLE001 - an alert that cannot be sent must not fail the sync
            log.error(
                "alert %s of tenant %r: notifier #%d (%s) failed, the run goes on: %s: %s",
                alert.kind,
                alert.tenant_id,
                index,
                option.class_path,
                type(exc).__name__,
                _redacted(str(exc), option.args)[:500],
            )
    return told


def _first_time(store: StateStore, alert: Alert) -> bool:
    """Mark the alert told for its run; False when it already was (a retried task, a second report step)."""
    cursor = ALERT_CURSOR.format(kind=alert.kind)
    if (store.get_cursor(cursor) or {}).get("run_id") == alert.run_id:
        return False
    store.set_cursor(cursor, {"run_id": alert.run_id})
    return True


# ---- the checks after a run's summary (task side) -----------------------------------------------------------
def refusal_alert(tenant_id: str, run_id: str, planned: Mapping[str, Any]) -> Alert | None:
    refused = planned.get("deletions_refused")
    if not refused:
        return None
    return Alert(
        DELETIONS_REFUSED,
        tenant_id,
        run_id,
        f"Mass-deletion refusal, tenant {tenant_id!r}, run {run_id}: the run would have deleted or flagged "
        f"{refused['count']} Zoho records ({refused.get('share', 0):.1%} of {refused.get('live', 0)}); nothing was "
        f"deleted. If the store really lost them, trigger the sync with allow_deletions = {refused['count']}.",
        {"would_delete": refused["count"], "in_zoho": refused.get("live"), "share": refused.get("share")},
    )


def rejected_alert(tenant: TenantConfig, run_id: str, loaded: Mapping[str, Any]) -> Alert | None:
    threshold = tenant.alerts.rejected_share_above if tenant.alerts else None
    sent, failed = int(loaded.get("sent") or 0), int(loaded.get("failed") or 0)
    if threshold is None or not sent or not failed or failed / sent <= threshold:
        return None
    codes = loaded.get("failure_codes") or {}
    return Alert(
        REJECTED_SHARE,
        tenant.tenant_id,
        run_id,
        f"Rejected records, tenant {tenant.tenant_id!r}, run {run_id}: Zoho rejected {failed} of {sent} records sent "
        f"({failed / sent:.1%}, above alerts.rejected_share_above {threshold:.1%})"
        + (": " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items())) if codes else "")
        + ". See zoho_sync_errors (kind 'rejected').",
        {"rejected": failed, "sent": sent, "share": round(failed / sent, 4), "failure_codes": dict(codes)},
    )


def credits_alert(tenant: TenantConfig, store: StateStore, run_id: str) -> Alert | None:
    """The org's credits left after the run, as the ledger sees them, below ``credits_left_below`` of its day.
    Zoho says what remains only once half the day's credits are used: unknown means more than half is left."""
    threshold = tenant.alerts.credits_left_below if tenant.alerts else None
    if threshold is None:
        return None
    from zoho_store_sync import credits

    seen = credits.availability(store, credits.org_key_for(tenant), tenant.tenant_id)
    if seen.remaining is None:
        return None
    per_day = tenant.alerts.credits_per_day if tenant.alerts and tenant.alerts.credits_per_day else None
    day = per_day or max(seen.remaining + seen.used_24h, 1)
    share = seen.remaining / day
    if share >= threshold:
        return None
    of_day = f"{day} daily credits" if per_day else f"about {day} credits of its day (estimated: set credits_per_day)"
    return Alert(
        CREDITS_LOW,
        tenant.tenant_id,
        run_id,
        f"Zoho credits low, tenant {tenant.tenant_id!r}, after run {run_id}: about {seen.remaining} of the org's "
        f"{of_day} remain ({share:.1%}, below alerts.credits_left_below {threshold:.0%}); this product used "
        f"{seen.used_24h} in the last 24 h ({seen.tenant_used_24h} by this tenant). Runs whose estimate does not fit "
        "are deferred until Zoho frees credits, 24 h after each call.",
        {
            "remaining": seen.remaining,
            "per_day": day,
            "per_day_estimated": per_day is None,
            "share": round(share, 4),
            "used_24h": seen.used_24h,
            "tenant_used_24h": seen.tenant_used_24h,
        },
    )


def after_run(
    tenant_id: str,
    run_id: str,
    planned: Mapping[str, Any],
    loaded: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
) -> list[Alert]:
    """The alerts a finished (or refused) run calls for, each sent once per run; the ones sent. Never raises."""
    sent: list[Alert] = []
    try:
        from zoho_store_sync import pipeline
        from zoho_store_sync.config import get_tenant

        tenant = get_tenant(tenant_id)
        if tenant.alerts is None or loaded.get("dry_run"):
            return sent
        store = pipeline.state_store(tenant)
        checks = (
            lambda: refusal_alert(tenant_id, run_id, planned),
            lambda: rejected_alert(tenant, run_id, loaded),
            lambda: credits_alert(tenant, store, run_id),
        )
        for check in checks:
            try:
                alert = check()
                if alert is not None and _first_time(store, alert):
                    send(tenant.alerts.notifiers, alert, context)
                    sent.append(alert)
            except Exception:  # noqa: BLE001 - one check that fails must not stop the others, nor the run
                log.warning("tenant %r: an alert check failed", tenant_id, exc_info=True)
    except Exception:  # noqa: BLE001 - the run's outcome stands whatever the alerts do
        log.warning("tenant %r: alerts not checked", tenant_id, exc_info=True)
    return sent


# ---- a red run (DAG on_failure_callback: the DAG processor runs it) -----------------------------------------
def run_failed_alert(tenant_id: str, context: Mapping[str, Any], what: str = "sync") -> Alert:
    run_id = str(context.get("run_id") or "")
    ti = context.get("ti")
    task_id = getattr(ti, "task_id", None)
    return Alert(
        RUN_FAILED,
        tenant_id,
        run_id,
        f"Red {what} run, tenant {tenant_id!r}, run {run_id}: "
        + (f"task {task_id} failed" if task_id else "the run failed")
        + f" ({context.get('reason') or 'task_failure'}). Its log says why.",
        {"dag_id": getattr(context.get("dag"), "dag_id", None), "task_id": task_id, "what": what},
    )


def _is_dry_run(context: Mapping[str, Any]) -> bool:
    params = context.get("params") or {}
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    return bool(params.get("dry_run") or conf.get("dry_run"))


class RunFailedAlert:
    """A tenant's sync DAG ``on_failure_callback``: tells the tenant's notifiers its run is red (not a dry run's).
    Built only for tenants with alerts, holding just the tenant id: parsing 500 tenants stays cheap."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id

    def __call__(self, context: Any) -> None:
        fire_run_failed(self.tenant_id, context, "sync")


def fire_run_failed(tenant_id: str, context: Mapping[str, Any], what: str) -> Alert | None:
    """Tell the tenant's notifiers its run is red; never raises (a callback's failure only gets logged anyway)."""
    try:
        if _is_dry_run(context):
            return None
        from zoho_store_sync.config import get_tenant

        tenant = get_tenant(tenant_id)
        if tenant.alerts is None:
            return None
        alert = run_failed_alert(tenant_id, context, what)
        send(tenant.alerts.notifiers, alert, context)
        return alert
    except Exception:  # noqa: BLE001 - a red run must not be hidden by its alert failing
        log.warning("tenant %r: the red-run alert was not sent", tenant_id, exc_info=True)
        return None


def reset_failed(context: Any) -> None:
    """The reset DAG's ``on_failure_callback``: the tenant is the run's ``tenant`` param."""
    params = context.get("params") or {}
    tenant_id = params.get("tenant") or (getattr(context.get("dag_run"), "conf", None) or {}).get("tenant")
    if tenant_id:
        fire_run_failed(str(tenant_id), context, "reset")
