"""One run per tenant, a lease that frees a crashed run's tenant, and staging files that never outlive their run."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

TENANT = {"tenant_id": "locky", "source": "magento", "store_conn_id": "magento_test", "zoho_conn_id": "zoho_test"}


@pytest.fixture
def tenant(configure_tenant, state_url):  # type: ignore[no-untyped-def]
    from zoho_store_sync.state_migrations import migrate

    migrate(state_url)
    configure_tenant([TENANT], state_url=state_url)
    from zoho_store_sync.state import StateStore, make_engine

    store = StateStore(make_engine(state_url), TENANT["tenant_id"])
    with store.engine.begin() as conn:  # the PostgreSQL database is shared by the session's tests
        from zoho_store_sync.state import tenant_locks

        conn.execute(tenant_locks.delete().where(tenant_locks.c.tenant_id == TENANT["tenant_id"]))
    return store


def test_a_second_run_of_a_tenant_is_refused_while_the_first_holds_the_lock_whatever_its_kind(tenant):
    from zoho_store_sync import pipeline

    pipeline.acquire_tenant_lock("locky", "run-1", "sync")
    for holder in ("sync", "reset"):
        with pytest.raises(pipeline.TenantBusy, match="run-1"):
            pipeline.acquire_tenant_lock("locky", "run-2", holder)
    pipeline.acquire_tenant_lock("locky", "run-1", "sync")  # the same run (a retried task) takes it again


def test_a_lock_whose_release_failed_frees_the_tenant_when_its_lease_ends(tenant):
    from zoho_store_sync import pipeline

    pipeline.acquire_tenant_lock("locky", "crashed", "sync", ttl=timedelta(seconds=1))
    with pytest.raises(pipeline.TenantBusy):
        pipeline.acquire_tenant_lock("locky", "next", "sync")
    time.sleep(1.2)
    pipeline.acquire_tenant_lock("locky", "next", "sync")


def test_the_default_lease_ends_well_within_a_runs_own_time_limit():
    from zoho_store_sync import pipeline

    assert pipeline.LOCK_LEASE <= timedelta(minutes=15)  # a crashed run never locks its tenant for hours


def test_a_working_step_keeps_its_lease_alive_and_a_finished_run_lets_it_lapse(tenant):
    from zoho_store_sync import pipeline

    lease = timedelta(seconds=1)
    pipeline.acquire_tenant_lock("locky", "long", "sync", ttl=lease)
    with pipeline.hold_tenant_lock("locky", "long", "sync", lease=lease, heartbeat_s=0.2):
        time.sleep(1.6)  # longer than the lease: only the heartbeat keeps it
        with pytest.raises(pipeline.TenantBusy):
            pipeline.acquire_tenant_lock("locky", "other", "reset")
    time.sleep(1.2)  # the run died before its release: the lease lapses
    pipeline.acquire_tenant_lock("locky", "other", "reset")


def test_a_run_that_lost_its_lock_stops_before_its_next_step(tenant):
    from zoho_store_sync import pipeline

    pipeline.acquire_tenant_lock("locky", "slow", "sync", ttl=timedelta(seconds=1))
    time.sleep(1.2)
    pipeline.acquire_tenant_lock("locky", "reset-run", "reset")
    with (
        pytest.raises(pipeline.TenantBusy, match="no longer holds"),
        pipeline.hold_tenant_lock("locky", "slow", "sync"),
    ):
        pytest.fail("a step ran without the lock")


def test_a_missing_staging_file_names_the_cause_and_is_not_retried(tmp_path):
    from airflow.sdk import RetryAction

    from zoho_store_sync import staging
    from zoho_store_sync.errors import StagingFileMissing
    from zoho_store_sync.retry_policy import SYNC_RETRY_POLICY

    with pytest.raises(StagingFileMissing, match="ZOHO_SYNC_STAGING_URL") as caught:
        staging.read_frame(f"file://{tmp_path}/gone/customers.parquet")
    decision = SYNC_RETRY_POLICY.evaluate(caught.value, 1, 3)
    assert decision.action == RetryAction.FAIL


def _write_run(tenant_id: str, run_id: str) -> Path:
    from zoho_store_sync import staging

    url = staging.write_frame(f"{staging.run_dir(tenant_id, run_id)}/customers.parquet", pd.DataFrame({"a": [1]}))
    return Path(url.removeprefix("file://"))


def test_a_runs_staging_files_are_removed_when_it_ends_and_kept_data_stays(monkeypatch):
    from zoho_store_sync import staging

    monkeypatch.delenv("ZOHO_SYNC_STAGING_RETENTION_HOURS", raising=False)
    kept = Path(staging.staging_root().removeprefix("file://")) / "tidy" / "deconetwork" / "orders.parquet"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(b"order table kept between runs")
    path = _write_run("tidy", "run/1")
    staging.clean_up_run("tidy", "run/1")
    assert not path.exists() and not path.parent.exists()
    assert kept.exists()


def test_with_a_retention_a_runs_files_stay_until_a_later_run_finds_them_expired(monkeypatch):
    from zoho_store_sync import staging

    monkeypatch.setenv("ZOHO_SYNC_STAGING_RETENTION_HOURS", "2")
    old = _write_run("keeper", "old-run")
    staging.clean_up_run("keeper", "old-run")
    assert old.exists()  # kept for debugging
    new = _write_run("keeper", "new-run")
    staging.clean_up_run("keeper", "new-run", now=time.time() + 3 * 3600)
    assert not old.exists() and not new.exists()  # both past their retention by then


def test_a_staging_retention_that_is_not_a_number_falls_back_to_removing(monkeypatch):
    from zoho_store_sync import staging

    monkeypatch.setenv("ZOHO_SYNC_STAGING_RETENTION_HOURS", "forever")
    assert staging.retention_hours() == 0.0
    path = _write_run("odd", "r")
    staging.clean_up_run("odd", "r")
    assert not path.exists()
