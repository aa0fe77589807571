"""Zoho credits as a budget: the daily limit told from a concurrency throttle (against the Zoho sandbox), the
per-org ledger and the deferral it decides (real SQLite/PostgreSQL), and tokens reused for their lifetime."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from sandboxes.zoho_crm import ZohoSandbox
from tests.zoho_store_sync.test_zoho_hook import calls, conn_env, contact, make_hook
from zoho_store_sync import credits
from zoho_store_sync.config import TenantConfig
from zoho_store_sync.errors import CreditBudgetExceeded, ZohoCreditsExhausted, ZohoUnavailable
from zoho_store_sync.state import CreditLedger, StateStore, make_engine
from zoho_store_sync.state_migrations import migrate
from zoho_store_sync.zoho.oauth import AccessToken, TokenPolicy

ORG = "1000.CLIENT@eu"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def hundred(start: int) -> list[dict[str, Any]]:
    return [contact(n) for n in range(start, start + 100)]  # one upsert call: 10 credits


# ---- the daily limit is not a concurrency throttle ----------------------------------------------------------
def test_the_daily_credit_limit_stops_at_the_first_refusal_without_retrying_and_says_so(
    zoho_sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 25 credits a day: two 100-record upserts (20), then Zoho refuses the third for the past 24 hours. Zoho sends
    # no remaining count below half the day's credits, so only its answer can tell the product.
    sandbox = ZohoSandbox(daily_credits=25).start()
    try:
        monkeypatch.setenv(*conn_env(sandbox))
        hook = make_hook(max_retries=6)
        hook.upsert("Contacts", hundred(0))
        hook.client.stats.credits_remaining = None  # as if Zoho had sent no count: the message alone must tell
        hook.upsert("Contacts", hundred(100))
        hook.client.stats.credits_remaining = None
        with pytest.raises(ZohoCreditsExhausted, match=r"daily API credits for this org are used up.*24 h") as raised:
            hook.upsert("Contacts", hundred(200))
        assert not isinstance(raised.value, ZohoUnavailable)  # not "HTTP 429 7 times", which Airflow retries
        refused = [c for c in calls(sandbox, "upsert") if c["status"] == 429]
        assert len(refused) == 1 and hook.waits == []  # one refusal, no in-task retry, no wait
        # the client now sends nothing more: every call would be refused
        with pytest.raises(ZohoCreditsExhausted, match="not sent"):
            hook.upsert("Contacts", hundred(300))
        assert len(calls(sandbox, "upsert")) == 3
    finally:
        sandbox.stop()


def test_a_concurrency_throttle_is_still_waited_out_and_retried(
    zoho_sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_env(zoho_sandbox))
    hook = make_hook(max_retries=3)
    zoho_sandbox.concurrency_limit = 0  # every call over the limit: the concurrency answer
    with pytest.raises(ZohoUnavailable, match="429"):
        hook.upsert("Contacts", [contact(1)])
    assert len(calls(zoho_sandbox, "upsert")) == 4 and len(hook.waits) == 3  # retried, as a throttle should be
    zoho_sandbox.concurrency_limit = None
    assert hook.upsert("Contacts", [contact(1)])[0].ok


def test_a_call_costing_more_than_zoho_says_remain_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    # 40 a day: the header appears once half is used; after three 10-credit calls Zoho says 10 remain, after the
    # fourth 0: the fifth is not sent at all (the run kept sending 10-credit calls with 26 left... then 70
    # refusals).
    sandbox = ZohoSandbox(daily_credits=40).start()
    try:
        monkeypatch.setenv(*conn_env(sandbox))
        hook = make_hook(max_retries=6)
        for start in range(0, 400, 100):
            hook.upsert("Contacts", hundred(start))
        assert hook.stats.credits_remaining == 0
        with pytest.raises(ZohoCreditsExhausted, match="0 credits remaining"):
            hook.upsert("Contacts", hundred(400))
        assert len(calls(sandbox, "upsert")) == 4 and not [c for c in sandbox.calls() if c["status"] == 429]
    finally:
        sandbox.stop()


# ---- the ledger and the budget --------------------------------------------------------------------------------
@pytest.fixture
def store(state_url: str) -> StateStore:
    engine = make_engine(state_url)
    migrate(engine)
    store = StateStore(engine, "t_credits")
    with engine.begin() as conn:
        from zoho_store_sync.state.tables import credit_ledger

        conn.execute(credit_ledger.delete())
    return store


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The ledger's clock, moved by the test."""
    moment = [NOW]
    monkeypatch.setattr(credits, "clock", lambda: moment[0])
    return moment


def tenant(**options: Any) -> TenantConfig:
    return TenantConfig(tenant_id="t_credits", source="magento", store_conn_id="m", zoho_conn_id="z", **options)


def book(store: StateStore, now: list[datetime]) -> CreditLedger:
    return CreditLedger(store.engine, clock=lambda: now[0])


def test_what_remains_is_zohos_last_count_less_what_the_orgs_tenants_spent_since(
    store: StateStore, now: list[datetime]
) -> None:
    ledger = book(store, now)
    ledger.record(ORG, "t_credits", "r1", 600, 400, used_at=NOW - timedelta(hours=5))
    ledger.record(ORG, "other_shop", "r7", 150, None, used_at=NOW - timedelta(hours=2))  # same org, no count
    ledger.record("1000.OTHER@us", "t_credits", "r1", 999, 1, used_at=NOW - timedelta(hours=1))  # another org
    seen = credits.availability(store, ORG, "t_credits")
    assert (seen.remaining, seen.reported, seen.used_since) == (250, 400, 150)
    assert (seen.used_24h, seen.tenant_used_24h) == (750, 600)
    # 300 credits are needed: the 600 spent 5 h ago come back 24 h after them
    assert seen.free_at(300) == NOW + timedelta(hours=19)
    assert seen.free_at(200) == NOW


def test_credits_spent_more_than_24_hours_ago_count_as_free_again(store: StateStore, now: list[datetime]) -> None:
    ledger = book(store, now)
    ledger.record(ORG, "t_credits", "r1", 500, None, used_at=NOW - timedelta(hours=30))
    ledger.record(ORG, "t_credits", "r2", 100, 50, used_at=NOW - timedelta(hours=20))  # counted the 500 as used
    assert credits.availability(store, ORG, "t_credits").remaining == 550
    now[0] = NOW + timedelta(hours=21)  # Zoho's count is now older than 24 h: not known any more
    assert credits.availability(store, ORG, "t_credits").remaining is None


def test_a_run_whose_estimate_exceeds_what_remains_less_the_reserve_is_deferred_with_a_clear_message(
    store: StateStore, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(credits, "org_key_for", lambda t: ORG)
    book(store, now).record(ORG, "t_credits", "r1", 900, 300, used_at=NOW - timedelta(hours=3))
    credits.check_budget(tenant(), store, 250)  # fits: nothing raised
    with pytest.raises(CreditBudgetExceeded) as raised:
        credits.check_budget(tenant(zoho_credit_reserve=100), store, 250)
    message = str(raised.value)
    assert "tenant 't_credits'" in message and "needs about 250" in message and "only 200" in message
    assert "zoho_credit_reserve 100" in message and "used 900 credits on this org in the last 24 h" in message
    assert "2026-03-03 09:00 UTC" in message  # the 900 spent at 09:00 come back a day later
    # unknown (no count in 24 h): go ahead, Zoho's own answer stops the run if need be
    now[0] = NOW + timedelta(days=2)
    assert credits.check_budget(tenant(zoho_credit_reserve=100), store, 10**6).remaining is None


def test_the_load_estimate_counts_conversions_writes_and_deletions() -> None:
    changes = pd.DataFrame(
        {
            "customer_key": [str(i) for i in range(306)],
            "module": ["Contacts"] * 250 + ["Leads"] * 50 + ["Contacts"] * 6,
            "action": ["new"] * 248 + ["convert"] * 2 + ["changed"] * 50 + ["email_changed"] * 3 + ["delete"] * 3,
            "payload_hash": [1] * 306,
        }
    )
    # Contacts upserts 250 (25) + Leads 50 (5) + 2 converts (10) + 3 updates by id (1) + 1 delete call (1)
    assert credits.estimate_changes(changes) == 42
    assert credits.estimate_changes(changes.iloc[:0]) == 0


def test_a_retried_load_drops_only_rows_the_state_shows_confirmed_with_the_planned_payload() -> None:
    changes = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d", "e", "f"],
            "module": ["Contacts", "Contacts", "Leads", "Contacts", "Contacts", "Contacts"],
            "action": ["new", "changed", "new", "convert", "delete", "flag_deleted"],
            "payload_hash": [11, 22, 33, 44, 0, 66],
        }
    )
    state = pd.DataFrame(
        {
            "customer_key": ["a", "b", "c", "d", "e", "f"],
            "module": ["Contacts", "Contacts", "Leads", "Leads", "Contacts", "Contacts"],
            "status": ["synced", "synced", "unconfirmed", "converting", "deleted_in_source", "deleted_in_source"],
            "payload_hash": [11, 21, 0, 44, 5, 66],
            "zoho_id": ["1", "2", None, "4", "5", "6"],
        }
    )
    # a: done; b: an older payload; c: sent, never confirmed; d: mid-conversion; e, f: done
    assert credits.confirmed_mask(changes, state).tolist() == [True, False, False, False, True, True]


# ---- tokens live their lifetime ------------------------------------------------------------------------------
def test_the_refresh_margin_is_proportional_to_the_tokens_lifetime() -> None:
    policy = TokenPolicy()
    hour = AccessToken("t", "https://x", time.time() + 3600, lifetime=3600)
    short = AccessToken("t", "https://x", time.time() + 120, lifetime=120)
    assert policy.margin(hour) == 300 and policy.margin(short) == pytest.approx(12)
    assert policy.margin(AccessToken("t", "https://x", time.time() + 100)) == 300  # lifetime unknown: the fixed one


def test_a_two_minute_token_is_reused_across_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox = ZohoSandbox(access_token_ttl=120).start()
    try:
        monkeypatch.setenv(*conn_env(sandbox))
        hook = make_hook()
        for n in range(8):
            hook.upsert("Contacts", [contact(n)])
        assert len(calls(sandbox, "upsert")) == 8 and sandbox.token_calls() == 1
    finally:
        sandbox.stop()
