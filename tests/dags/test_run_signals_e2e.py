"""Airflow-native signals of a run, end to end (dag.test against the sandboxes): Asset events per tenant and module
with the run's figures (none for a dry run), the one-line XCom summaries, and the tenant's alerts through notifiers."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import BaseNotifier

from tests.conftest import REPO

TENANT = {
    "tenant_id": "signals",
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "retries": 0,
    "zoho_max_retries": 1,
}
WEBHOOK_SECRET = "https://hooks.example.com/services/T000/B000/sEcReT-tOkEn-42"
HERE = "tests.dags.test_run_signals_e2e"


class RecordingNotifier(BaseNotifier):
    """Appends each alert it is told (and its templated line) to a JSON-lines file: the test reads it back."""

    template_fields = ("line",)

    def __init__(self, path: str, line: str = "{{ zoho_alert.kind }}: {{ zoho_alert.message }}") -> None:
        super().__init__()
        self.path, self.line = path, line

    def notify(self, context: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as sink:
            sink.write(json.dumps({**context["zoho_alert"], "line": self.line}) + "\n")


class BrokenNotifier(BaseNotifier):
    """A notifier whose service is down, and whose error quotes its secret webhook URL."""

    def __init__(self, webhook: str) -> None:
        super().__init__()
        self.webhook = webhook

    def notify(self, context: Any) -> None:
        raise ConnectionError(f"could not post to {self.webhook}: connection refused")


def _state(dag_run) -> str:  # type: ignore[no-untyped-def]
    return str(getattr(dag_run.state, "value", dag_run.state))


class Signals:
    """One tenant on the Zoho and Magento sandboxes: runs its DAGs and reads what Airflow recorded of them."""

    def __init__(self, configure_tenant, zoho, magento, state_url: str, alerts_file: Path) -> None:  # type: ignore[no-untyped-def]
        from zoho_store_sync.state import StateStore, make_engine
        from zoho_store_sync.state_migrations import migrate

        self.configure_tenant, self.zoho, self.magento, self.state_url = configure_tenant, zoho, magento, state_url
        self.alerts_file = alerts_file
        self.store = StateStore(make_engine(state_url), TENANT["tenant_id"])
        migrate(self.store.engine)
        self.store.forget()  # the PostgreSQL database is shared by the session
        self.configure()

    def configure(self, **options: Any) -> None:
        self.configure_tenant([{**TENANT, **options}], zoho=self.zoho, magento=self.magento, state_url=self.state_url)

    def run(self, dag_id: str = "zoho_sync__signals", conf: dict | None = None, expect: str = "success"):  # type: ignore[no-untyped-def]
        from airflow.models import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        dag_run = bag.dags[dag_id].test(run_conf=conf or {})
        assert _state(dag_run) == expect
        return dag_run

    @staticmethod
    def events(run_id: str) -> dict[str, dict]:
        """The Asset events the run recorded, by asset URI: their extras."""
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            rows = session.execute(
                select(AssetModel.uri, AssetEvent.extra)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetEvent.source_run_id == run_id)
            ).all()
        uris = [uri for uri, _ in rows]
        assert len(uris) == len(set(uris)), f"more than one event per asset: {uris}"
        return {uri: dict(extra) for uri, extra in rows}

    @staticmethod
    def xcom(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            value = session.scalar(
                select(XComModel.value).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run_id,
                    XComModel.task_id == task_id,
                    XComModel.key == key,
                )
            )
        return XComModel.deserialize_value(type("Row", (), {"value": value})())

    def last_summary(self, kind: str = "sync") -> dict:
        return self.store.run_summaries(kind)[-1]

    def alerts(self) -> list[dict]:
        if not self.alerts_file.exists():
            return []
        return [json.loads(line) for line in self.alerts_file.read_text().splitlines()]

    def alert_config(self, **thresholds: Any) -> dict:
        return {
            "notifiers": [
                {"class": f"{HERE}.BrokenNotifier", "args": {"webhook": WEBHOOK_SECRET}},
                {"class": "zoho_store_sync.config.TenantConfig"},  # not a notifier: refused, the others still told
                {"class": f"{HERE}.RecordingNotifier", "args": {"path": str(self.alerts_file)}},
                {"class": "zoho_store_sync.alerts.LogNotifier"},
            ],
            **thresholds,
        }


@pytest.fixture
def signals(airflow_db, configure_tenant, zoho_sandbox, magento_store, state_url, tmp_path) -> Signals:
    return Signals(configure_tenant, zoho_sandbox, magento_store(120, 31), state_url, tmp_path / "alerts.jsonl")


@pytest.fixture
def sqlite_signals(airflow_db, configure_tenant, zoho_sandbox, magento_store, sqlite_state_url, tmp_path) -> Signals:
    return Signals(configure_tenant, zoho_sandbox, magento_store(120, 37), sqlite_state_url, tmp_path / "alerts.jsonl")


def _unique_email_keys(magento) -> set[str]:  # type: ignore[no-untyped-def]
    emails = Counter(c["email"].strip().lower() for c in magento.customers())
    return {str(c["id"]) for c in magento.customers() if emails[c["email"].strip().lower()] == 1}


# ---- Asset events -------------------------------------------------------------------------------------------


def test_a_sync_records_one_asset_event_per_module_with_the_summarys_figures_and_a_dry_run_records_none(signals):
    dry = signals.run(conf={"dry_run": True})
    assert signals.events(dry.run_id) == {}
    # a dry run writes nothing: it ends in plan_changes, whose line is the report's
    assert "dry run" in signals.xcom("zoho_sync__signals", dry.run_id, "plan_changes", "summary_text")

    dag_run = signals.run()
    summary = signals.last_summary()
    events = signals.events(dag_run.run_id)
    assert set(events) == {"zoho-crm://signals/Contacts", "zoho-crm://signals/Leads"}
    synced = signals.store.load().query("status == 'synced'")
    for module in ("Contacts", "Leads"):
        extra = events[f"zoho-crm://signals/{module}"]
        assert (extra["tenant_id"], extra["module"], extra["run_id"], extra["kind"]) == (
            "signals",
            module,
            dag_run.run_id,
            "sync",
        )
        assert extra["run_figures"] == {
            key: summary[key] for key in ("sent", "inserted", "updated", "failed", "invalid", "credits")
        }
        # what Zoho holds of the module after the run, as the state table counts it
        assert extra["in_zoho"] == int((synced["module"] == module).sum()) == len(signals.zoho.records(module))
    module_sent = sum(events[uri]["module_figures"]["sent"] for uri in events)
    module_failed = sum(events[uri]["module_figures"]["failed"] for uri in events)
    assert (module_sent, module_failed) == (summary["sent"], summary["failed"]) and module_sent > 0

    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:  # the Assets view lists them under the group zoho_sync
        groups = dict(session.execute(select(AssetModel.uri, AssetModel.group)).all())
    assert groups["zoho-crm://signals/Contacts"] == groups["zoho-crm://signals/Leads"] == "zoho_sync"


def test_the_upsert_and_report_tasks_say_their_figures_in_one_line_of_xcom(signals):
    dag_run = signals.run()
    summary = signals.last_summary()
    upsert = signals.xcom("zoho_sync__signals", dag_run.run_id, "upsert_to_zoho", "summary_text")
    report = signals.xcom("zoho_sync__signals", dag_run.run_id, "report_summary", "summary_text")
    written = summary["inserted"] + summary["updated"]
    assert upsert.startswith(f"Contacts+Leads: {summary['sent']} sent, {written} inserted/updated, ")
    assert report.startswith(f"Contacts+Leads: {summary['sent']} sent, {written} inserted/updated, ")
    assert report.endswith(f"; {summary['credits']} credits")
    in_zoho = summary["state"]["in_zoho"]
    assert f"in Zoho: Contacts {in_zoho['Contacts']}, Leads {in_zoho['Leads']}" in report
    # the value other tasks read is still the dict
    assert (
        signals.xcom("zoho_sync__signals", dag_run.run_id, "report_summary", "return_value")["sent"]
        == (summary["sent"])
    )


def test_a_reset_records_events_for_the_modules_it_reset_only_and_its_dry_run_none(sqlite_signals):
    conf = {"tenant": "signals", "confirm": "signals", "wait_for_sync_minutes": 0}
    dry = sqlite_signals.run("zoho_reset", {**conf, "record_types": ["Leads"], "dry_run": True})
    assert sqlite_signals.events(dry.run_id) == {}

    dag_run = sqlite_signals.run("zoho_reset", {**conf, "record_types": ["Leads"]})
    summary = sqlite_signals.last_summary("reset")
    events = sqlite_signals.events(dag_run.run_id)
    assert set(events) == {"zoho-crm://signals/Leads"}
    extra = events["zoho-crm://signals/Leads"]
    assert (extra["kind"], extra["run_id"], extra["module"]) == ("reset", dag_run.run_id, "Leads")
    assert extra["run_figures"]["sent"] == summary["sent"] == extra["module_figures"]["sent"] > 0
    assert extra["in_zoho"] == summary["state"]["in_zoho"]["Leads"] == len(sqlite_signals.zoho.records("Leads"))
    text = sqlite_signals.xcom("zoho_reset", dag_run.run_id, "report_reset", "summary_text")
    assert text.startswith(f"reset Leads: {summary['sent']} sent, ")


# ---- alerts ---------------------------------------------------------------------------------------------------


def _kinds(alerts: list[dict], run_id: str) -> Counter:
    return Counter(a["kind"] for a in alerts if a["run_id"] == run_id)


def test_rejections_above_the_share_alert_once_and_a_broken_notifier_fails_nothing_nor_leaks_its_secret(
    sqlite_signals, caplog
):
    caplog.set_level(logging.INFO)
    sqlite_signals.configure(
        failure_threshold=1.0,  # the run stays green: the alert is the signal
        mapping_overrides={"Contacts": {"Store_URL": "full_name"}},  # Zoho rejects every Contact (a space)
        alerts=sqlite_signals.alert_config(rejected_share_above=0.05),
    )
    dag_run = sqlite_signals.run()
    summary = sqlite_signals.last_summary()
    assert summary["failed"] > 0
    alerts = sqlite_signals.alerts()
    assert _kinds(alerts, dag_run.run_id) == Counter({"rejected_share": 1})
    [alert] = alerts
    assert alert["figures"]["rejected"] == summary["failed"] and alert["figures"]["sent"] == summary["sent"]
    assert f"rejected {summary['failed']} of {summary['sent']} records" in alert["message"]
    assert alert["line"] == f"rejected_share: {alert['message']}"  # the notifier's template saw zoho_alert
    assert "ZOHO_SYNC_ALERT " in caplog.text  # the built-in notifier's line
    assert "BrokenNotifier) failed, the run goes on: ConnectionError" in caplog.text
    assert "is not an Airflow notifier" in caplog.text
    assert "sEcReT-tOkEn-42" not in caplog.text


def test_a_mass_deletion_refusal_alerts_once_with_its_count_and_the_red_run_once(sqlite_signals):
    sqlite_signals.configure(
        source_deletions="delete",
        max_deletions=2,
        full_sync_every_hours=0.0001,  # every run a full pass: it sees the customers gone from the store
        alerts=sqlite_signals.alert_config(),
    )
    first = sqlite_signals.run()
    assert _kinds(sqlite_signals.alerts(), first.run_id) == Counter()
    unique = _unique_email_keys(sqlite_signals.magento)
    synced = sqlite_signals.store.load().query("status == 'synced'")["customer_key"].astype(str)
    gone = [key for key in sorted(synced, key=int) if key in unique][:5]
    for key in gone:
        sqlite_signals.magento.delete_customer(int(key))

    refused = sqlite_signals.run(expect="failed")
    alerts = sqlite_signals.alerts()
    assert _kinds(alerts, refused.run_id) == Counter({"mass_deletion_refused": 1, "run_failed": 1})
    refusal = next(a for a in alerts if a["kind"] == "mass_deletion_refused")
    assert refusal["figures"]["would_delete"] == 5
    assert "Mass-deletion refusal" in refusal["message"] and "5 Zoho records" in refusal["message"]
    red = next(a for a in alerts if a["kind"] == "run_failed")
    assert red["figures"]["task_id"] == "plan_changes"  # nothing to write but the refused deletions: it ends there


def test_the_orgs_credits_below_the_threshold_alert_once_and_an_unknown_remainder_never(sqlite_signals):
    # failure_threshold 1: the incremental run reads 3 customers, one invalid; green, the credits alert is alone
    sqlite_signals.configure(failure_threshold=1.0, alerts=sqlite_signals.alert_config(credits_left_below=0.9))
    first = sqlite_signals.run()  # Zoho sends no remaining count before half the day is used: unknown, no alert
    assert _kinds(sqlite_signals.alerts(), first.run_id) == Counter()

    zoho = sqlite_signals.zoho
    zoho.daily_credits = zoho.credits_used() + 20  # past half the day: Zoho now says how few remain
    customer = sorted(sqlite_signals.magento.customers(), key=lambda c: c["id"])[0]
    sqlite_signals.magento.update_customer(customer["id"], firstname="Changed")
    second = sqlite_signals.run()
    alerts = sqlite_signals.alerts()
    assert _kinds(alerts, second.run_id) == Counter({"credits_low": 1})
    [alert] = alerts
    assert 0 <= alert["figures"]["remaining"] <= 20
    assert alert["figures"]["per_day_estimated"] is True
    assert alert["figures"]["share"] < 0.9


def test_a_dry_run_alerts_no_one(sqlite_signals):
    sqlite_signals.configure(
        failure_threshold=1.0,
        mapping_overrides={"Contacts": {"Store_URL": "full_name"}},
        alerts=sqlite_signals.alert_config(rejected_share_above=0.0, credits_left_below=0.99),
    )
    sqlite_signals.run(conf={"dry_run": True})
    assert sqlite_signals.alerts() == []


def test_a_class_that_is_not_a_notifier_is_refused_by_name():
    from zoho_store_sync.alerts import NotifierNotUsable, notifier_class

    assert notifier_class(f"{HERE}.RecordingNotifier").__name__ == "RecordingNotifier"
    with pytest.raises(NotifierNotUsable, match="'zoho_store_sync.config.TenantConfig' is not an Airflow notifier"):
        notifier_class("zoho_store_sync.config.TenantConfig")
    with pytest.raises(NotifierNotUsable, match="cannot be imported"):
        notifier_class("zoho_store_sync.alerts.NoSuchNotifier")


def test_a_red_reset_alerts_its_tenant_once(sqlite_signals):
    sqlite_signals.configure(alerts=sqlite_signals.alert_config())
    conf = {"tenant": "signals", "record_types": ["Leads"], "confirm": "not-the-tenant", "wait_for_sync_minutes": 0}
    dag_run = sqlite_signals.run("zoho_reset", conf, expect="failed")
    alerts = sqlite_signals.alerts()
    assert _kinds(alerts, dag_run.run_id) == Counter({"run_failed": 1})
    assert alerts[0]["tenant_id"] == "signals" and alerts[0]["figures"]["task_id"] == "check_request"
    assert alerts[0]["message"].startswith("Red reset run, tenant 'signals'")
