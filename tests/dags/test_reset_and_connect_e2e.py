"""The manual DAGs end to end: zoho_reset (confirmation, no duplicates, resume, dry run, exclusion, bulk)
and zoho_connect (grant code → working tenant; every failure has its own actionable message)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.conftest import REPO, connection_env

SHOP = {
    "tenant_id": "shop",
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "retries": 0,
    "zoho_max_retries": 1,
}
OTHER = {**SHOP, "tenant_id": "other"}


@pytest.fixture
def small_magento(magento_store):
    return magento_store(180, 9)


@pytest.fixture
def ops(airflow_db, configure_tenant, zoho_sandbox, small_magento, sqlite_state_url):
    from airflow.models import DagBag

    from zoho_store_sync.state import StateStore, make_engine

    configure_tenant([SHOP, OTHER], zoho=zoho_sandbox, magento=small_magento, state_url=sqlite_state_url)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    engine = make_engine(sqlite_state_url)

    class Ops:
        zoho = zoho_sandbox
        magento = small_magento
        shop = StateStore(engine, "shop")
        other = StateStore(engine, "other")

        def run(self, dag_id: str, conf: dict | None = None, expect: str = "success"):  # type: ignore[no-untyped-def]
            dag_run = bag.dags[dag_id].test(run_conf=conf or {})
            assert str(getattr(dag_run.state, "value", dag_run.state)) == expect
            return dag_run

        def reset(self, expect: str = "success", **conf) -> dict:
            self.run(
                "zoho_reset",
                {
                    "tenant": "shop",
                    "record_types": ["Contacts", "Leads"],
                    "confirm": "shop",
                    "wait_for_sync_minutes": 0,
                    **conf,
                },
                expect,
            )
            runs = [s for s in self.shop.run_summaries() if s.get("reset") is not None]
            return runs[-1] if runs and expect == "success" else {}

        def emails(self) -> dict[str, list[str]]:
            return {
                m: sorted(r["Email"] for r in zoho_sandbox.records(m) if not r.get("Converted__s"))
                for m in ("Contacts", "Leads")
            }

        def writes(self) -> list[dict]:
            return [
                c
                for c in zoho_sandbox.calls()
                if c["operation"] in ("insert", "update", "upsert", "delete", "convert", "upload", "bulk_write")
            ]

    return Ops()


@pytest.mark.parametrize("confirm", ["", "other", "SHOP "])
def test_reset_without_the_right_confirmation_does_nothing(ops, confirm):
    ops.run("zoho_sync__shop")
    before = ops.shop.load()
    ops.zoho.reset_calls()
    ops.reset(expect="failed", confirm=confirm)
    assert ops.writes() == []
    assert len(ops.shop.load()) == len(before)


def test_reset_resends_everything_without_a_duplicate_twice_in_a_row(ops):
    ops.run("zoho_sync__shop")
    synced = ops.emails()
    for _ in range(2):
        ops.zoho.reset_calls()
        summary = ops.reset()
        assert summary["updated"] == len(synced["Contacts"]) + len(synced["Leads"])
        assert summary["inserted"] == 0
        assert ops.emails() == synced
    assert ops.shop.reset_in_progress() is None


def test_reset_brings_back_records_deleted_in_zoho(ops):
    ops.run("zoho_sync__shop")
    state = ops.shop.load()
    row = state[state["module"] == "Contacts"].iloc[0]
    ops.zoho.delete_record_in_ui("Contacts", row["zoho_id"])
    ops.run("zoho_sync__shop")
    assert ops.shop.load().set_index("customer_key").loc[row["customer_key"], "status"] == "deleted_in_zoho"
    ops.reset()
    assert row["email"] in ops.emails()["Contacts"]


def test_reset_killed_halfway_resumes_and_ends_with_one_record_per_email(ops):
    from zoho_store_sync import pipeline, reset

    ops.run("zoho_sync__shop")
    synced = ops.emails()
    # A reset that dies after its first chunk (the worker was killed): state forgotten, partly resent.
    reset.begin("shop", "dying-reset", ("Contacts", "Leads"), dry_run=False)
    extracted = pipeline.extract("shop", "dying-reset", full=True)
    planned = pipeline.plan("shop", "dying-reset", extracted, modules=("Contacts", "Leads"))
    chunks = reset.split("shop", "dying-reset", planned, chunk_records=50)
    reset.send_chunk("shop", "dying-reset", chunks[0], dry_run=False)
    # The plan linked every customer to its record in Zoho (adopted: linked, not yet written); the chunk wrote some.
    state = ops.shop.load()
    assert state["zoho_id"].notna().all()
    confirmed = int(((state["status"] == "synced") & state["error_code"].isna()).sum())
    assert confirmed == ops.shop.count_confirmed(("Contacts", "Leads"))
    assert 0 < confirmed < len(synced["Contacts"]) + len(synced["Leads"])

    ops.zoho.reset_calls()
    summary = ops.reset()
    upserted = sum(c["records"] for c in ops.zoho.calls() if c["operation"] == "upsert")
    assert upserted == len(synced["Contacts"]) + len(synced["Leads"]) - confirmed  # nothing confirmed is resent
    assert summary["updated"] == upserted
    assert ops.emails() == synced


def test_dry_run_reset_writes_nothing_and_forgets_nothing(ops):
    ops.run("zoho_sync__shop")
    before = ops.shop.load().sort_values("customer_key").reset_index(drop=True)
    ops.zoho.reset_calls()
    summary = ops.reset(dry_run=True)
    assert ops.writes() == []
    # The records the sync created are found by email and linked (adopted): the reset would rewrite, never insert.
    assert (summary["would"]["insert"], summary["would"]["update"]) == (0, len(before))
    after = ops.shop.load().sort_values("customer_key").reset_index(drop=True)
    assert after[["customer_key", "zoho_id", "payload_hash", "status"]].equals(
        before[["customer_key", "zoho_id", "payload_hash", "status"]]
    )


def test_reset_waits_for_a_running_sync_and_a_sync_skips_during_a_reset(ops):
    ops.run("zoho_sync__shop")
    acquired, _ = ops.shop.acquire_lock("sync", "a-running-sync", timedelta(minutes=5))
    assert acquired
    ops.zoho.reset_calls()
    ops.reset(expect="failed")  # wait_for_sync_minutes=0: gives up at once
    assert ops.writes() == []
    ops.shop.release_lock("sync", "a-running-sync")

    ops.shop.acquire_lock("reset", "a-running-reset", timedelta(minutes=5))
    ops.magento.update_customer(sorted(c["id"] for c in ops.magento.customers())[0], firstname="Waiting")
    ops.zoho.reset_calls()
    dag_run = ops.run("zoho_sync__shop")
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    assert states["plan_changes"] == "skipped" and states["upsert_to_zoho"] == "skipped"
    assert ops.writes() == []


def test_reset_never_touches_another_tenant(ops):
    ops.run("zoho_sync__shop")
    ops.run("zoho_sync__other")
    before = ops.other.load().sort_values("customer_key").reset_index(drop=True)
    ops.reset()
    after = ops.other.load().sort_values("customer_key").reset_index(drop=True)
    assert after[["customer_key", "zoho_id", "payload_hash", "status"]].equals(
        before[["customer_key", "zoho_id", "payload_hash", "status"]]
    )


def test_bulk_path_gives_the_same_zoho_state_as_the_upsert_path(ops, monkeypatch):
    from zoho_store_sync import reset

    ops.run("zoho_sync__shop")
    synced = ops.emails()
    monkeypatch.setattr(reset, "choose_write_path", lambda n: "bulk")  # as for a store above the break-even
    ops.zoho.reset_calls()
    summary = ops.reset()
    assert summary["reset"]["write_path"] == {"Contacts": "bulk", "Leads": "bulk"}
    assert [c for c in ops.zoho.calls() if c["operation"] == "upsert"] == []
    assert {c["operation"] for c in ops.zoho.calls()} >= {"upload", "bulk_write"}
    assert ops.emails() == synced
    assert summary["failed"] == 0


def test_the_write_path_switches_to_bulk_where_it_costs_fewer_credits():
    from zoho_store_sync.hooks.zoho_crm import choose_write_path, estimate_write_credits

    switch = next(n for n in range(100, 100_001, 100) if choose_write_path(n) == "bulk")
    assert estimate_write_credits(switch, "bulk") < estimate_write_credits(switch, "upsert")
    assert estimate_write_credits(switch - 100, "bulk") >= estimate_write_credits(switch - 100, "upsert")
    assert choose_write_path(100) == "upsert" and choose_write_path(100_000) == "bulk"


# --- connect and verify ---------------------------------------------------------------------------


@pytest.fixture
def unconnected(monkeypatch, ops):
    """The tenant's Connection without a refresh token: zoho_connect must provide it."""
    zoho = ops.zoho
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login=zoho.client_id,
            password=zoho.client_secret,
            extra={"accounts_url": zoho.url, "api_domain": zoho.url, "allow_custom_hosts": True},
        )
    )
    return ops


def test_a_valid_grant_code_ends_with_a_working_tenant_and_no_secret_in_the_logs(unconnected, caplog):
    code = unconnected.zoho.issue_grant_code(
        unconnected.zoho.client_id,
        ("ZohoCRM.modules.ALL", "ZohoCRM.settings.fields.READ", "ZohoCRM.org.READ", "ZohoCRM.settings.layouts.READ"),
    )
    caplog.set_level("DEBUG")
    from zoho_store_sync import connect

    connect.connect("shop", code)  # what `python -m zoho_store_sync.cli connect shop` does after its hidden prompt
    unconnected.run("zoho_connect", {"tenant": "shop"})  # verify: nothing to type
    unconnected.run("zoho_sync__shop")
    assert unconnected.emails()["Contacts"]
    logged = caplog.text
    assert code not in logged
    assert unconnected.zoho.client_secret not in logged
    for token in list(unconnected.zoho._refresh_tokens) + list(unconnected.zoho._access_tokens):
        assert token not in logged


def _verify_failure(ops, conf: dict, caplog) -> str:  # type: ignore[no-untyped-def]
    caplog.clear()
    ops.run("zoho_connect", {"tenant": "shop", **conf}, expect="failed")
    return caplog.text


def test_an_expired_or_used_grant_code_says_to_generate_a_new_one(unconnected):
    from zoho_store_sync import connect

    code = unconnected.zoho.issue_grant_code(unconnected.zoho.client_id, ("ZohoCRM.modules.ALL",), ttl_seconds=0.0)
    with pytest.raises(Exception) as failure:
        connect.connect("shop", code)
    text = str(failure.value)
    assert "grant code" in text and "generate a new" in text and code not in text


def test_a_grant_code_typed_into_the_dag_conf_is_refused_unused_and_never_logged(unconnected, caplog):
    code = unconnected.zoho.issue_grant_code(unconnected.zoho.client_id, ("ZohoCRM.modules.ALL",))
    text = _verify_failure(unconnected, {"mode": "connect", "grant_code": code}, caplog)
    assert code not in text
    exchanges = [c for c in unconnected.zoho.calls() if c.get("grant_type") == "authorization_code"]
    assert exchanges == []  # the code was not used


def test_a_wrong_client_secret_says_to_copy_it_again(ops, monkeypatch, caplog):
    zoho = ops.zoho
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login=zoho.client_id,
            password="not-the-client-secret-0000",
            extra={
                "refresh_token": zoho.refresh_token,
                "accounts_url": zoho.url,
                "api_domain": zoho.url,
                "allow_custom_hosts": True,
            },
        )
    )
    text = _verify_failure(ops, {"mode": "verify"}, caplog)
    assert "invalid_client_secret" in text and "copy it again" in text


def test_an_unknown_client_for_the_data_centre_says_to_check_the_data_centre(ops, monkeypatch, caplog):
    zoho = ops.zoho
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login="1000.UNKNOWNCLIENT",
            password=zoho.client_secret,
            extra={
                "refresh_token": zoho.refresh_token,
                "accounts_url": zoho.url,
                "api_domain": zoho.url,
                "allow_custom_hosts": True,
            },
        )
    )
    text = _verify_failure(ops, {"mode": "verify"}, caplog)
    assert "invalid_client" in text and "data_centre" in text


def test_a_missing_scope_is_named(ops, monkeypatch, caplog):
    zoho = ops.zoho
    narrow = zoho.add_refresh_token(zoho.client_id, ("ZohoCRM.modules.contacts.ALL", "ZohoCRM.settings.fields.READ"))
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login=zoho.client_id,
            password=zoho.client_secret,
            extra={
                "refresh_token": narrow,
                "accounts_url": zoho.url,
                "api_domain": zoho.url,
                "allow_custom_hosts": True,
            },
        )
    )
    text = _verify_failure(ops, {"mode": "verify"}, caplog)
    assert "scope for Leads" in text and "ZohoCRM.modules.leads.ALL" in text


def test_a_mapped_field_missing_from_the_org_is_named(ops, monkeypatch, caplog):
    monkeypatch.setenv(
        "AIRFLOW_VAR_ZOHO_SYNC_TENANTS",
        json.dumps([{**SHOP, "mapping_overrides": {"Contacts": {"Loyalty_Tier": "store"}}}]),
    )
    text = _verify_failure(ops, {"mode": "verify"}, caplog)
    assert "Contacts.Loyalty_Tier: no such field in the Zoho org" in text


def test_a_wrong_data_centre_host_is_refused_before_any_token_is_sent(ops, monkeypatch, caplog):
    zoho = ops.zoho
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login=zoho.client_id,
            password=zoho.client_secret,
            extra={"refresh_token": zoho.refresh_token, "data_centre": "mars"},
        )
    )
    text = _verify_failure(ops, {"mode": "verify"}, caplog)
    assert "data_centre" in text and "must be one of" in text
