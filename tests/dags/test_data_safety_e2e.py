"""Never lose or corrupt a CRM (dag.test against the sandboxes, SQLite and PostgreSQL state): mass deletions,
the product's own deletions, shared orgs, invalid rows, duplicate emails under incremental runs, staging."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, connection_env, migrated_state_database, postgres_conn_fields, sqlite_conn_fields

BASE = {
    "source": "magento",
    "store_conn_id": "magento_test",
    "zoho_conn_id": "zoho_test",
    "retries": 0,
    "zoho_max_retries": 1,
    "failure_threshold": 0.2,
    "full_sync_every_hours": 0.0001,
}
MAPPING_WITH_DELETED_FLAG = {"Contacts": {"Customer_Deleted": "deleted"}, "Leads": {"Customer_Deleted": "deleted"}}


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_state_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty, migrated state database per test: tests of shared orgs must not see other tests' tenants."""
    with migrated_state_database(request.param, tmp_path, "zoho_sync_safety") as url:
        yield url


class World:
    """Tenants of one Zoho org (the Zoho sandbox) and one state database, each with its Magento store."""

    def __init__(self, monkeypatch, zoho, state_url: str, stores: dict) -> None:  # type: ignore[no-untyped-def]
        from zoho_store_sync.state import make_engine

        self.monkeypatch, self.zoho, self.state_url, self.stores = monkeypatch, zoho, state_url, stores
        self.engine = make_engine(state_url)
        monkeypatch.setenv(
            *connection_env(
                "zoho_test",
                conn_type="http",
                login=zoho.client_id,
                password=zoho.client_secret,
                extra={
                    "refresh_token": zoho.refresh_token,
                    "accounts_url": zoho.url,
                    "api_domain": zoho.url,
                    "allow_custom_hosts": True,
                },
            )
        )
        for name, magento in stores.items():
            monkeypatch.setenv(
                *connection_env(
                    f"magento_{name}",
                    conn_type="http",
                    host=magento.url,
                    password=magento.integration_token,
                    extra={"auth": "integration_token"},
                )
            )
        fields = sqlite_conn_fields(state_url) if state_url.startswith("sqlite") else postgres_conn_fields(state_url)
        monkeypatch.setenv(*connection_env("zoho_sync_state_db", **fields))
        self.tenants: dict[str, dict] = {}

    def configure(self, tenant_id: str, store: str, **options) -> None:  # type: ignore[no-untyped-def]
        self.tenants[tenant_id] = {**BASE, "tenant_id": tenant_id, "store_conn_id": f"magento_{store}", **options}
        self.monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps(list(self.tenants.values())))

    def run(self, tenant_id: str, *, expect: str = "success", conf: dict | None = None) -> dict:
        from airflow.models import DagBag

        dag = DagBag(dag_folder=str(REPO / "dags")).dags[f"zoho_sync__{tenant_id}"]
        dag_run = dag.test(run_conf=conf or {})
        assert str(getattr(dag_run.state, "value", dag_run.state)) == expect
        summaries = self.store(tenant_id).run_summaries("sync")
        return summaries[-1] if summaries else {}

    def store(self, tenant_id: str):  # type: ignore[no-untyped-def]
        from zoho_store_sync.state import StateStore

        return StateStore(self.engine, tenant_id)

    def state(self, tenant_id: str):  # type: ignore[no-untyped-def]
        return self.store(tenant_id).load().set_index("customer_key")

    def live(self, module: str) -> dict[str, dict]:
        return {r["Email"]: r for r in self.zoho.records(module) if not r.get("Converted__s")}

    def all_live_emails(self) -> set[str]:
        return set(self.live("Contacts")) | set(self.live("Leads"))


@pytest.fixture
def world(airflow_db, monkeypatch, zoho_sandbox, magento_store, fresh_state_url):  # type: ignore[no-untyped-def]
    return World(monkeypatch, zoho_sandbox, fresh_state_url, {"main": magento_store(150, 5)})


def _hide(magento, customer_id: int) -> dict:  # type: ignore[no-untyped-def]
    """The store loses a customer for a while (a restore from backup brings the same row back later)."""
    from sandboxes.magento import _CUSTOMERS

    with magento._lock:
        row = magento._customers.pop(customer_id)
        magento._changed(_CUSTOMERS, (customer_id,))
    return row


def _restore(magento, row: dict) -> None:  # type: ignore[no-untyped-def]
    from sandboxes.magento import _CUSTOMERS

    with magento._lock:
        magento._customers[row["id"]] = row
        magento._changed(_CUSTOMERS, (row["id"],))


def _keys_with_unique_emails(magento) -> set[str]:  # type: ignore[no-untyped-def]
    from collections import Counter

    counts = Counter(c["email"].strip().lower() for c in magento.customers())
    return {str(c["id"]) for c in magento.customers() if counts[c["email"].strip().lower()] == 1}


def _synced_keys(world: World, tenant_id: str, module: str) -> list[str]:
    state = world.state(tenant_id)
    return sorted(state.index[(state["module"] == module) & (state["status"] == "synced")], key=int)


# ---- mass-deletion protection -------------------------------------------------------------------------


def test_a_run_that_would_delete_more_than_the_limit_deletes_nothing_turns_red_and_says_how_to_proceed(world):
    magento = world.stores["main"]
    world.configure("guarded", "main", source_deletions="delete")
    world.run("guarded")
    before = world.all_live_emails()
    unique = _keys_with_unique_emails(magento)
    gone = [k for k in _synced_keys(world, "guarded", "Contacts") if k in unique][:20] + [
        k for k in _synced_keys(world, "guarded", "Leads") if k in unique
    ][:10]
    for key in gone:
        magento.delete_customer(int(key))
    summary = world.run("guarded", expect="failed")
    assert world.all_live_emails() == before  # nothing deleted
    assert summary["deletions_refused"] == 30 and summary["deleted_in_source"] == 0
    assert not [c for c in world.zoho.calls() if c["operation"] == "delete"]
    # the operator confirms the store really lost them: this run only
    summary = world.run("guarded", conf={"allow_deletions": 30})
    assert summary["deleted_in_source"] == 30
    assert len(before - world.all_live_emails()) == 30


def test_a_few_deletions_under_the_limit_go_through(world):
    magento = world.stores["main"]
    world.configure("fewgone", "main", source_deletions="delete")
    world.run("fewgone")
    key = _synced_keys(world, "fewgone", "Contacts")[0]
    magento.delete_customer(int(key))
    assert world.run("fewgone")["deleted_in_source"] == 1


# ---- the product's own deletions are not "deleted in Zoho" ------------------------------------------------


def test_a_customer_the_product_deleted_comes_back_when_it_reappears_in_the_store_without_a_reset(world):
    magento = world.stores["main"]
    world.configure("comeback", "main", source_deletions="delete")
    world.run("comeback")
    key = _synced_keys(world, "comeback", "Contacts")[0]
    email = world.state("comeback").loc[key, "email"]
    row = _hide(magento, int(key))
    assert world.run("comeback")["deleted_in_source"] == 1
    assert email not in world.live("Contacts")
    # Zoho's deleted-records list now holds the product's own deletion: it is not a person's deletion
    summary = world.run("comeback")
    assert summary["deleted_in_zoho"] == 0
    assert world.state("comeback").loc[key, "status"] == "deleted_in_source"
    _restore(magento, row)
    world.run("comeback")
    assert email in world.live("Contacts")
    assert world.state("comeback").loc[key, "status"] == "synced"


# ---- shared Zoho orgs -------------------------------------------------------------------------------


def test_a_tenant_never_deletes_a_record_another_tenant_of_the_org_still_syncs(
    airflow_db, monkeypatch, zoho_sandbox, magento_store, fresh_state_url
):
    store_a, store_c = magento_store(60, 31), magento_store(60, 32)
    world = World(monkeypatch, zoho_sandbox, fresh_state_url, {"a": store_a, "c": store_c})
    world.configure("tenant_a", "a", source_deletions="delete")
    world.configure("tenant_c", "c", source_deletions="delete")
    world.run("tenant_a")
    # a person registered in both stores (a Lead in each): one Zoho record, synced by both tenants
    lead_key = next(k for k in _synced_keys(world, "tenant_a", "Leads") if k in _keys_with_unique_emails(store_a))
    shared = next(c for c in store_a.customers() if str(c["id"]) == lead_key)
    twin = store_c.add_customer(
        world.state("tenant_a").loc[lead_key, "email"], firstname=shared["firstname"], lastname=shared["lastname"]
    )
    shared["email"] = twin["email"]
    world.run("tenant_c")
    shared_id = world.state("tenant_a").loc[str(shared["id"]), "zoho_id"]
    assert world.state("tenant_c").loc[str(twin["id"]), "zoho_id"] == shared_id  # one person, one record
    store_a.delete_customer(shared["id"])
    summary = world.run("tenant_a")
    assert summary["kept_in_zoho"] == 1 and summary["deleted_in_source"] == 0
    assert shared["email"] in world.all_live_emails()
    assert world.state("tenant_a").loc[str(shared["id"]), "status"] == "deleted_in_source"
    world.run("tenant_c")
    assert world.state("tenant_c").loc[str(twin["id"]), "status"] == "synced"
    assert shared["email"] in world.all_live_emails()


# ---- invalid rows are first-class -------------------------------------------------------------------


def test_invalid_rows_are_recorded_with_their_reason_and_their_share_turns_the_run_red(world):
    magento = world.stores["main"]
    world.configure("messy", "main", failure_threshold=0.1)
    keys = sorted((c["id"] for c in magento.customers()), key=int)[:30]
    for key in keys:
        magento.update_customer(key, email=f"broken-{key}-at-example.com")
    summary = world.run("messy", expect="failed")
    invalid = world.store("messy").errors(kind="invalid")
    assert {str(k) for k in keys} <= {row["customer_key"] for row in invalid}
    assert {row["message"] for row in invalid if row["customer_key"] in {str(k) for k in keys}} == {"malformed email"}
    assert summary["invalid_reasons"]["malformed email"] >= 30
    # fixed in the store: the list of invalid rows follows
    for key in keys:
        magento.update_customer(key, email=f"fixed-{key}@example.com")
    world.run("messy")
    assert not {str(k) for k in keys} & {row["customer_key"] for row in world.store("messy").errors(kind="invalid")}


# ---- duplicates by email under incremental runs --------------------------------------------------------


def test_when_the_winner_of_a_shared_email_changes_its_email_the_other_holder_is_synced_in_the_same_run(world):
    magento = world.stores["main"]
    buyer = magento.add_customer("shared.person@example.com", firstname="Buyer", website_id=1)
    magento.add_order(buyer["id"], base_grand_total=50.0)
    other = magento.add_customer("shared.person@example.com", firstname="Other", website_id=2)
    magento.advance_clock(3600)  # the store moves on: the next incremental read's window starts after these two
    bystander = next(c for c in magento.customers() if c["id"] not in (buyer["id"], other["id"]))
    magento.update_customer(bystander["id"], firstname="Bystander")
    world.configure("dupes", "main", full_sync_every_hours=24)
    world.run("dupes")
    assert world.live("Contacts")["shared.person@example.com"]["First_Name"] == "Buyer"
    magento.advance_clock(3600)
    magento.update_customer(buyer["id"], email="buyer.moved@example.com")
    world.run("dupes")  # an incremental run
    assert world.live("Contacts")["buyer.moved@example.com"]["First_Name"] == "Buyer"
    assert world.live("Leads")["shared.person@example.com"]["First_Name"] == "Other"
    assert world.state("dupes").loc[str(other["id"]), "status"] == "synced"


# ---- staging -------------------------------------------------------------------------------------


def test_a_failed_runs_staging_files_are_removed_when_the_run_ends(world):
    import os
    from pathlib import Path

    world.configure("leaky", "main")
    world.zoho.inject_fault("500", times=100, operation="upsert")
    world.run("leaky", expect="failed")
    from zoho_store_sync.staging import kept_dirs

    tenant_dir = Path(os.environ["ZOHO_SYNC_STAGING_URL"].removeprefix("file://")) / "leaky"
    files = [p.relative_to(tenant_dir) for p in tenant_dir.rglob("*") if p.is_file()] if tenant_dir.exists() else []
    # only what is kept between runs on purpose (the phone book, a source's own table), no file of the run
    assert [p for p in files if p.parts[0] not in kept_dirs()] == []


# ---- one run per tenant ----------------------------------------------------------------------------


def test_a_sync_of_a_tenant_held_by_another_run_does_nothing_and_a_crashed_holder_frees_it_when_its_lease_ends(world):
    from datetime import timedelta

    from zoho_store_sync import pipeline

    world.configure("busy", "main")
    # another run of the tenant (a dry run, a reset, a sync still going) holds it, then dies without releasing
    pipeline.acquire_tenant_lock("busy", "other-run", "sync", ttl=timedelta(minutes=5))
    world.zoho.reset_calls()
    assert world.run("busy") == {}  # skipped: no summary, nothing sent
    assert not [c for c in world.zoho.calls() if c["operation"] in ("upsert", "update", "delete", "convert")]
    assert world.store("busy").lock_holder()["run_id"] == "other-run"
    from zoho_store_sync.state import now_utc, tenant_locks

    with world.engine.begin() as conn:  # the dead holder's lease runs out
        conn.execute(
            tenant_locks.update()
            .where(tenant_locks.c.tenant_id == "busy")
            .values(expires_at=now_utc() - timedelta(seconds=1))
        )
    assert world.run("busy")["inserted"] > 0
    assert world.store("busy").lock_holder() is None  # released by the run's teardown
