"""Specification tests of the Zoho CRM hook against the Zoho sandbox, a real HTTP server on loopback.

(Over 400 lines: the hook's whole specification, one section per concern, shares these fixtures.)
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import multiprocessing
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from sandboxes.zoho_crm import ZohoSandbox
from zoho_store_sync.hooks.zoho_crm import (
    BULK_POLLS_ESTIMATE,
    RecordJSON,
    RecordOutcome,
    ZohoAuthError,
    ZohoConfigError,
    ZohoCrmHook,
    ZohoOAuthError,
    ZohoScopeError,
    ZohoTokenThrottled,
    ZohoUnavailable,
    choose_write_path,
    estimate_write_credits,
    parse_bulk_result,
)
from zoho_store_sync.hooks.zoho_tokens import AccessToken, MemoryTokenCache
from zoho_store_sync.zoho import bulk as zoho_bulk
from zoho_store_sync.zoho.oauth import ZohoOAuth

CONN_ID = "zoho_hook_test"
VOLATILE = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By", "Owner"}


# ------------------------------------------------------------------------------------------ helpers


def conn_env(
    sandbox: ZohoSandbox, *, conn_id: str = CONN_ID, login: str | None = None, password: str | None = None, **extra: Any
) -> tuple[str, str]:
    """The AIRFLOW_CONN_<ID> env var (JSON) of a connection to the sandbox, like conftest.configure_tenant."""
    fields = {
        "refresh_token": sandbox.refresh_token,
        "accounts_url": sandbox.url,
        "api_domain": sandbox.url,
        "allow_custom_hosts": True,
        **extra,
    }
    conn = {
        "conn_type": "http",
        "login": login or sandbox.client_id,
        "password": password or sandbox.client_secret,
        "extra": fields,
    }
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn)


def dc_env(conn_id: str, **extra: Any) -> tuple[str, str]:
    conn = {
        "conn_type": "http",
        "login": "1000.CLIENT",
        "password": "dc-secret",
        "extra": {"refresh_token": "1000.rt", **extra},
    }
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn)


def make_hook(conn_id: str = CONN_ID, **options: Any) -> ZohoCrmHook:
    """A hook with its own token cache and millisecond backoff; its waits are recorded in ``hook.waits``."""
    settings = {"token_cache": MemoryTokenCache(), "backoff_base": 0.002, "backoff_cap": 0.05, **options}
    hook = ZohoCrmHook(conn_id, **settings)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    hook.sleep = sleep
    hook.waits = waits  # type: ignore[attr-defined]
    return hook


def contact(n: int, **extra: Any) -> dict[str, Any]:
    return {"Last_Name": f"Person{n}", "Email": f"person{n}@example.com", **extra}


def upsert_all(hook: ZohoCrmHook, module: str, records: list[dict]) -> list[RecordOutcome]:
    """What the loader does: 100 records per upsert call."""
    return [o for start in range(0, len(records), 100) for o in hook.upsert(module, records[start : start + 100])]


def calls(sandbox: ZohoSandbox, operation: str) -> list[dict]:
    return [c for c in sandbox.calls() if c["operation"] == operation]


def comparable(records: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in records), key=lambda r: r["Email"])


@pytest.fixture
def sandbox(zoho_sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch) -> ZohoSandbox:
    """The conftest sandbox, with CONN_ID connected to it."""
    monkeypatch.setenv(*conn_env(zoho_sandbox))
    return zoho_sandbox


@pytest.fixture
def hook(sandbox: ZohoSandbox) -> ZohoCrmHook:
    return make_hook()


@pytest.fixture
def sandbox_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ZohoSandbox]]:
    """Sandboxes with non-default settings, connected as CONN_ID (the last one started wins)."""
    started: list[ZohoSandbox] = []

    def _start(**options: Any) -> ZohoSandbox:
        sandbox = ZohoSandbox(**options).start()
        started.append(sandbox)
        monkeypatch.setenv(*conn_env(sandbox))
        return sandbox

    yield _start
    for sandbox in started:
        sandbox.stop()


# ----------------------------------------------------------------------------------- frugal on credits


@pytest.mark.parametrize("n", [1, 100, 101, 250])
def test_n_changed_records_cost_ceil_n_over_100_upsert_calls_and_one_credit_per_10_records(
    sandbox: ZohoSandbox, hook: ZohoCrmHook, n: int
) -> None:
    outcomes = upsert_all(hook, "Contacts", [contact(i) for i in range(n)])
    assert all(o.ok and o.action == "insert" for o in outcomes) and len(outcomes) == n
    assert len(calls(sandbox, "upsert")) == math.ceil(n / 100) == hook.stats.by_operation["upsert"]
    assert hook.stats.api_calls == hook.stats.write_calls == math.ceil(n / 100)
    assert hook.stats.credits == sandbox.credits_used() == math.ceil(n / 10) == estimate_write_credits(n, "upsert")
    assert hook.stats.token_calls == 1


def test_records_given_as_json_text_are_stored_as_the_same_records_given_as_dicts(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    as_text = [RecordJSON(json.dumps(contact(i, First_Name="Zoë"), ensure_ascii=False)) for i in range(3)]
    outcomes = hook.upsert("Contacts", [*as_text, contact(3, First_Name="Zoë")])
    assert [o.action for o in outcomes] == ["insert"] * 4
    stored = sorted((r["Email"], r["First_Name"], r["Last_Name"]) for r in sandbox.records("Contacts"))
    assert stored == [(f"person{i}@example.com", "Zoë", f"Person{i}") for i in range(4)]


def test_more_than_100_records_in_one_upsert_are_refused_before_any_call(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        hook.upsert("Contacts", [contact(i) for i in range(101)])
    assert sandbox.calls() == []


def test_credits_remaining_header_is_read_once_zoho_sends_it(sandbox_factory: Callable[..., ZohoSandbox]) -> None:
    sandbox = sandbox_factory(daily_credits=40)
    hook = make_hook()
    hook.upsert("Contacts", [contact(i) for i in range(100)])  # 10 credits: header not sent below 50%
    assert hook.stats.credits_remaining is None
    hook.upsert("Contacts", [contact(i) for i in range(100, 200)])  # 20 of 40 used
    assert hook.stats.credits_remaining == 20 == 40 - sandbox.credits_used()


def test_choose_write_path_switches_to_bulk_exactly_where_bulk_becomes_cheaper() -> None:
    break_even = next(n for n in range(1, 30_000) if choose_write_path(n) == "bulk")
    assert estimate_write_credits(break_even, "bulk") < estimate_write_credits(break_even, "upsert")
    assert estimate_write_credits(break_even - 1, "bulk") >= estimate_write_credits(break_even - 1, "upsert")
    assert 5_000 <= break_even <= 5_500  # the doc's "bulk wins above roughly 5,000 records"
    assert all(choose_write_path(n) == "upsert" for n in (0, 1, 100, 1_000, break_even - 1))
    assert all(choose_write_path(n) == "bulk" for n in (break_even, 25_000, 25_001, 1_000_000))
    # 25,001 records need two bulk jobs (1,000 credits) and are still far cheaper than 2,501 by upsert.
    assert estimate_write_credits(25_001, "bulk") == 2 * (500 + 3 + BULK_POLLS_ESTIMATE)  # each job its org lookup
    assert estimate_write_credits(25_001, "upsert") == 2_501
    with pytest.raises(ValueError):
        estimate_write_credits(10, "carrier-pigeon")


def test_bulk_credit_estimate_matches_what_a_bulk_upsert_spends(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.bulk_step_seconds = 0.02
    hook.bulk_upsert("Contacts", [contact(i) for i in range(30)], poll_interval=0.01)
    polls = hook.stats.by_operation["bulk_status"]
    assert (
        hook.stats.credits == sandbox.credits_used() == estimate_write_credits(30, "bulk") - BULK_POLLS_ESTIMATE + polls
    )
    assert {op: hook.stats.by_operation[op] for op in ("org", "upload", "bulk_write", "bulk_download")} == {
        "org": 1,
        "upload": 1,
        "bulk_write": 1,
        "bulk_download": 1,
    }


# --------------------------------------------------------------------------------- per-record outcomes


def test_207_mixed_results_give_one_positional_outcome_per_record_with_zoho_details(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    existing = hook.upsert("Contacts", [contact(0)])[0].zoho_id
    records = [
        contact(0, Phone="555"),
        contact(1, First_Name="x" * 41),
        contact(2, Order_Count="many"),
        {"Email": "nolastname@example.com"},
        contact(3, Favourite_Colour="blue"),
        contact(4),
    ]
    outcomes = hook.upsert("Contacts", records)
    assert calls(sandbox, "upsert")[-1]["status"] == 207
    assert [(o.ok, o.code, o.action) for o in outcomes] == [
        (True, "SUCCESS", "update"),
        (False, "INVALID_DATA", None),
        (False, "INVALID_DATA", None),
        (False, "MANDATORY_NOT_FOUND", None),
        (False, "INVALID_DATA", None),
        (True, "SUCCESS", "insert"),
    ]
    assert outcomes[0].zoho_id == existing and outcomes[5].zoho_id
    assert outcomes[1].details["maximum_length"] == 40 and outcomes[1].details["api_name"] == "First_Name"
    assert outcomes[2].details["expected_data_type"] == "integer"
    assert outcomes[3].details["api_name"] == "Last_Name"
    assert outcomes[4].details["api_name"] == "Favourite_Colour"
    assert not any(o.retryable for o in outcomes)  # data errors: retrying cannot help until the data changes
    assert "maximum_length" in outcomes[1].describe()


def test_upsert_where_every_record_fails_answers_400_and_each_record_keeps_its_own_error(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    outcomes = hook.upsert("Contacts", [{"Email": "a@example.com"}, contact(1, Email="not an email")])
    assert calls(sandbox, "upsert")[-1]["status"] == 400
    assert [o.code for o in outcomes] == ["MANDATORY_NOT_FOUND", "INVALID_DATA"]


def test_a_request_level_error_applies_to_every_record_of_the_call(hook: ZohoCrmHook) -> None:
    outcomes = hook.upsert("Potatoes", [contact(1), contact(2)])
    assert [(o.ok, o.code) for o in outcomes] == [(False, "INVALID_MODULE")] * 2


def test_upsert_matches_existing_records_on_email_ignoring_case(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    first = hook.upsert("Contacts", [contact(1)])[0]
    again = hook.upsert("Contacts", [contact(1, Email="PERSON1@Example.com", Phone="1")])[0]
    assert (again.action, again.zoho_id) == ("update", first.zoho_id)
    assert len(sandbox.records("Contacts")) == 1


# ---------------------------------------------------------------------------------- faults and load


@pytest.mark.parametrize("kind", ["429", "500", "drop", "expire_token", "apply_then_500"])
def test_each_fault_kind_is_survived_without_losing_or_duplicating_a_record(
    sandbox: ZohoSandbox, hook: ZohoCrmHook, kind: str
) -> None:
    hook.upsert("Contacts", [contact(0)])
    sandbox.inject_fault(kind, operation="upsert")
    outcomes = hook.upsert("Contacts", [contact(0, Phone="1"), contact(1), contact(2)])
    assert all(o.ok for o in outcomes)
    assert sorted(r["Email"] for r in sandbox.records("Contacts")) == [
        "person0@example.com",
        "person1@example.com",
        "person2@example.com",
    ]
    assert len(calls(sandbox, "upsert")) == 3  # the first call, the faulty one and its one retry
    assert hook.stats.credits == sandbox.credits_used()  # failed attempts are not billed, by either side


def test_apply_then_500_retry_updates_instead_of_creating_a_duplicate(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.inject_fault("apply_then_500", operation="upsert")
    outcomes = hook.upsert("Contacts", [contact(i) for i in range(5)])
    # Zoho applied the first attempt; the retry matches each record on Email and updates it.
    assert [o.action for o in outcomes] == ["update"] * 5
    assert len(sandbox.records("Contacts")) == 5
    assert [c["status"] for c in calls(sandbox, "upsert")] == [500, 200]
    assert hook.stats.retries == 1


def test_429_is_retried_with_exponential_backoff_and_jitter(sandbox: ZohoSandbox) -> None:
    hook = make_hook(backoff_base=0.004, backoff_cap=0.02)
    sandbox.inject_fault("429", times=4, operation="upsert")
    assert hook.upsert("Contacts", [contact(1)])[0].ok
    ceilings = [min(0.02, 0.004 * 2**attempt) for attempt in range(4)]
    assert len(hook.waits) == 4 and hook.stats.retries == 4
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(hook.waits, ceilings))


def test_retry_after_header_is_honoured(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.inject_fault("429", operation="upsert", retry_after=0.03)
    sandbox.inject_fault("500", operation="upsert", retry_after=0.01)
    assert hook.upsert("Contacts", [contact(1)])[0].ok
    assert hook.waits == [0.03, 0.01]


def test_retry_after_is_capped_by_the_backoff_cap(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.inject_fault("429", operation="upsert", retry_after=3600)
    assert hook.upsert("Contacts", [contact(1)])[0].ok
    assert hook.waits == [hook.backoff_cap]


@pytest.mark.parametrize("kind", ["429", "500", "drop"])
def test_persistent_load_failures_give_up_after_max_retries_with_a_retryable_error(
    sandbox: ZohoSandbox, kind: str
) -> None:
    hook = make_hook(max_retries=2)
    sandbox.inject_fault(kind, times=10, operation="upsert")
    with pytest.raises(ZohoUnavailable) as raised:
        hook.upsert("Contacts", [contact(1)])
    assert raised.value.retryable
    assert len(calls(sandbox, "upsert")) == 3  # one call and max_retries retries, no more


def test_many_threads_sharing_a_hook_never_exceed_its_concurrency_cap(
    sandbox_factory: Callable[..., ZohoSandbox],
) -> None:
    sandbox = sandbox_factory(concurrency_limit=3, latency=0.03)
    hook = make_hook(max_concurrency=3)
    results: list[list[RecordOutcome]] = []

    def work(n: int) -> None:
        results.append(hook.upsert("Contacts", [contact(n * 10 + i) for i in range(10)]))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12 and all(o.ok for batch in results for o in batch)
    assert 1 < sandbox.peak_concurrency <= 3  # the threads really overlap, and never beyond the cap
    assert not [c for c in sandbox.calls() if c["status"] == 429]
    assert hook.stats.retries == 0


def test_an_org_concurrency_limit_below_the_cap_is_survived_by_backing_off(
    sandbox_factory: Callable[..., ZohoSandbox],
) -> None:
    sandbox = sandbox_factory(concurrency_limit=2, latency=0.02)
    hook = make_hook(max_concurrency=8, max_retries=30, backoff_base=0.005, backoff_cap=0.05)
    results: list[RecordOutcome] = []
    threads = [
        threading.Thread(target=lambda n=n: results.extend(hook.upsert("Contacts", [contact(n)]))) for n in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(o.ok for o in results)
    assert len(sandbox.records("Contacts")) == 8
    throttled = [c for c in sandbox.calls() if c["status"] == 429]
    assert hook.stats.retries == len(throttled)


# ---------------------------------------------------------------------------------- auth and scopes


def test_expired_token_is_refreshed_once_and_the_call_retried_once(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    hook.upsert("Contacts", [contact(1)])
    sandbox.inject_fault("expire_token", operation="upsert")
    assert hook.upsert("Contacts", [contact(2)])[0].ok
    assert sandbox.token_calls() == 2 and hook.stats.token_calls == 2
    assert [c["status"] for c in calls(sandbox, "upsert")] == [200, 401, 200]


def test_authentication_failure_is_treated_like_an_invalid_token(
    sandbox: ZohoSandbox, hook: ZohoCrmHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandboxes.zoho_crm as sandbox_module

    # Zoho sometimes answers AUTHENTICATION_FAILURE for an expired token (zoho-crm-api.md §10.4).
    monkeypatch.setattr(sandbox_module, "_INVALID_TOKEN", sandbox_module._AUTH_FAILURE)
    sandbox.inject_fault("expire_token", operation="upsert")
    assert hook.upsert("Contacts", [contact(1)])[0].ok
    assert sandbox.token_calls() == 2


def test_a_token_refused_after_its_refresh_fails_without_a_third_attempt(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    sandbox.inject_fault("expire_token", times=2, operation="upsert")
    with pytest.raises(ZohoAuthError, match="INVALID_TOKEN"):
        hook.upsert("Contacts", [contact(1)])
    assert len(calls(sandbox, "upsert")) == 2 and sandbox.token_calls() == 2


def test_access_token_is_refreshed_before_it_expires_so_no_call_is_refused(
    sandbox_factory: Callable[..., ZohoSandbox],
) -> None:
    sandbox = sandbox_factory(access_token_ttl=2)
    hook = make_hook(token_refresh_margin=1.5)
    # a 1.5 s margin on a 2 s token (75% of its life: the proportional default would be 10%, 0.2 s)
    hook.client.oauth.policy = dataclasses.replace(hook.client.oauth.policy, refresh_share=0.75)
    hook.upsert("Contacts", [contact(1)])
    first = hook.get_access_token().value
    time.sleep(0.6)  # the token now has less than the margin left, but has not expired
    hook.upsert("Contacts", [contact(2)])
    assert hook.get_access_token().value != first and sandbox.token_calls() >= 2
    assert all(c["status"] == 200 for c in calls(sandbox, "upsert"))  # never refused: no 401 and no retry


def test_scope_mismatch_fails_fast_naming_the_missing_scope(
    sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_only = sandbox.add_refresh_token(sandbox.client_id, ("ZohoCRM.modules.READ",))
    monkeypatch.setenv(*conn_env(sandbox, refresh_token=read_only))
    hook = make_hook()
    with pytest.raises(ZohoScopeError) as raised:
        hook.upsert("Contacts", [contact(1)])
    assert "ZohoCRM.modules.contacts.WRITE" in str(raised.value) and "OAUTH_SCOPE_MISMATCH" in str(raised.value)
    assert raised.value.scope.startswith("ZohoCRM.modules.contacts.WRITE") and not raised.value.retryable
    with pytest.raises(ZohoScopeError, match="ZohoCRM.settings.fields.READ"):
        hook.get_fields("Contacts")
    assert len(calls(sandbox, "upsert")) == 1 and sandbox.token_calls(read_only) == 1  # no retry, no refresh


def test_missing_permission_fails_fast_naming_the_permission(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.deny_permissions("Leads", ["Crm_Implied_View_Leads"])
    with pytest.raises(ZohoScopeError, match="Crm_Implied_View_Leads") as raised:
        hook.upsert("Leads", [contact(1, Company="Acme")])
    assert raised.value.permissions == ["Crm_Implied_View_Leads"]
    assert len(calls(sandbox, "upsert")) == 1
    assert hook.upsert("Contacts", [contact(1)])[0].ok  # other modules are unaffected


# ------------------------------------------------------------------------------------ shared tokens


def test_concurrent_tasks_in_one_process_share_one_access_token_refresh(
    sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_env(sandbox))
    cache = MemoryTokenCache()  # what DatabaseTokenCache is across processes
    hooks = [make_hook(token_cache=cache) for _ in range(16)]
    barrier = threading.Barrier(len(hooks))
    errors: list[BaseException] = []

    def task(n: int) -> None:
        barrier.wait()
        try:
            assert hooks[n].upsert("Contacts", [contact(n)])[0].ok
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(n,)) for n in range(len(hooks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sandbox.token_calls() == 1
    assert len({h.get_access_token().value for h in hooks}) == 1


def _task_in_another_process(n: int, env: dict[str, str], state_url: str, barrier: Any, results: Any) -> None:
    """One Airflow task: its own process and hook, the state database's token cache."""
    import os

    from zoho_store_sync.state import DatabaseTokenCache, make_engine

    os.environ.update(env)  # forkserver children do not see the parent's later environment
    engine = make_engine(state_url)
    try:
        hook = ZohoCrmHook(CONN_ID, token_cache=DatabaseTokenCache(engine))
        barrier.wait(timeout=60)
        outcome = hook.upsert("Contacts", [contact(n)])[0]
        results.put((n, outcome.ok, hook.stats.token_calls))
    except BaseException as exc:  # noqa: BLE001 - the parent asserts on what it receives
        results.put((n, False, repr(exc)))
    finally:
        engine.dispose()


def test_concurrent_tasks_in_separate_processes_share_one_access_token_refresh(
    sandbox: ZohoSandbox, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import sys

    from zoho_store_sync.state_migrations import migrate

    migrate(state_url)
    # forkserver: Airflow is imported once in the server, then each task process is a cheap fork of it.
    # Python 3.11's forkserver ignores the parent's sys.path, so the preload needs PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in sys.path if p))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["zoho_store_sync.state", "zoho_store_sync.hooks.zoho_crm", __name__])
    n = 8
    barrier, results = context.Barrier(n), context.Queue()
    env = dict([conn_env(sandbox)])
    processes = [
        context.Process(target=_task_in_another_process, args=(i, env, state_url, barrier, results)) for i in range(n)
    ]
    for process in processes:
        process.start()
    received = [results.get(timeout=90) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert sorted(r[:2] for r in received) == [(i, True) for i in range(n)], received
    assert sandbox.token_calls() == 1  # one refresh for all the processes
    assert sum(r[2] for r in received) == 1
    assert len(sandbox.records("Contacts")) == n


def test_never_more_than_ten_access_tokens_per_ten_minutes(sandbox: ZohoSandbox) -> None:
    hook = make_hook(max_token_wait=0)
    for _ in range(10):
        hook.get_access_token(force_refresh=True)
    with pytest.raises(ZohoTokenThrottled) as raised:
        hook.get_access_token(force_refresh=True)
    assert sandbox.token_calls() == 10  # the 11th was never sent: it would lengthen Zoho's lockout
    assert raised.value.retryable and raised.value.retry_after > 500
    assert "wait a few minutes" in str(raised.value)


def test_own_token_budget_waits_for_the_window_instead_of_failing(sandbox: ZohoSandbox) -> None:
    sandbox.token_throttle_window = 1.5  # Zoho's and our window, shortened from 10 minutes
    hook = make_hook(tokens_per_window=1, token_window_s=1.5, max_token_wait=5)
    hook.get_access_token(force_refresh=True)
    hook.get_access_token(force_refresh=True)  # over budget: waits for the first token to leave the window
    assert sandbox.token_calls() == 2
    assert len(hook.waits) == 1 and 0 < hook.waits[0] <= 1.5
    assert all(c["status"] == 200 for c in calls(sandbox, "token"))  # Zoho never had to throttle us


def test_zoho_token_throttle_answer_means_wait_then_retry(sandbox: ZohoSandbox) -> None:
    sandbox.token_throttle_window = 2.0
    form = {
        "grant_type": "refresh_token",
        "client_id": sandbox.client_id,
        "client_secret": sandbox.client_secret,
        "refresh_token": sandbox.refresh_token,
    }
    for _ in range(10):  # something else used up the refresh token's budget
        requests.post(f"{sandbox.url}/oauth/v2/token", data=form, timeout=10).raise_for_status()
    hook = make_hook(token_throttle_pause=0.25, max_token_wait=10)
    assert hook.upsert("Contacts", [contact(1)])[0].ok
    throttled = [c for c in calls(sandbox, "token") if c["status"] == 400]
    assert throttled and hook.waits == [0.25] * len(throttled)  # a pause after each "Access Denied"


def test_zoho_token_throttle_fails_retryably_once_the_wait_budget_is_spent(sandbox: ZohoSandbox) -> None:
    for _ in range(10):  # something else used up the refresh token's budget
        requests.post(
            f"{sandbox.url}/oauth/v2/token",
            timeout=10,
            data={
                "grant_type": "refresh_token",
                "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret,
                "refresh_token": sandbox.refresh_token,
            },
        )
    hook = make_hook(token_throttle_pause=60, max_token_wait=1)
    with pytest.raises(ZohoTokenThrottled, match="Access Denied.*too many requests.*What to do") as raised:
        hook.get_access_token()
    assert raised.value.retryable and hook.waits == []


# ---------------------------------------------------------------------------------------------- OAuth


@pytest.mark.parametrize(
    ("change", "code", "advice"),
    [
        ({"login": "1000.UNKNOWN"}, "invalid_client", "data_centre"),
        ({"password": "wrong-secret"}, "invalid_client_secret", "copy it again"),
        ({"refresh_token": "1000.revoked-or-wrong"}, "invalid_code", "generate a new grant code"),
    ],
)
def test_oauth_errors_in_http_200_bodies_become_messages_saying_what_to_do(
    sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch, change: dict, code: str, advice: str
) -> None:
    monkeypatch.setenv(*conn_env(sandbox, **change))
    with pytest.raises(ZohoOAuthError) as raised:
        make_hook().get_access_token()
    assert raised.value.code == code and advice in str(raised.value) and not raised.value.retryable
    assert calls(sandbox, "token")[0]["status"] == 200


def test_grant_code_becomes_a_refresh_token_and_a_reused_code_is_invalid_code(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    code = sandbox.issue_grant_code(sandbox.client_id, ("ZohoCRM.modules.ALL",))
    body = hook.exchange_grant_code(code)
    assert body["refresh_token"].startswith("1000.") and body["api_domain"] == sandbox.url
    with pytest.raises(ZohoOAuthError, match="generate a new grant code") as raised:
        hook.exchange_grant_code(code)
    assert raised.value.code == "invalid_code"


def test_grant_code_with_another_redirect_uri_is_invalid_redirect_uri(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.add_client(sandbox.client_id, sandbox.client_secret, "https://ops.example/callback")
    code = sandbox.issue_grant_code(sandbox.client_id, ("ZohoCRM.modules.ALL",))
    with pytest.raises(ZohoOAuthError, match="registered") as raised:
        hook.exchange_grant_code(code, redirect_uri="https://elsewhere.example/cb")
    assert raised.value.code == "invalid_redirect_uri"
    assert hook.exchange_grant_code(code, redirect_uri="https://ops.example/callback")["refresh_token"]


# -------------------------------------------------------------------------------------- data centres


@pytest.mark.parametrize(
    ("dc", "accounts", "api", "upload", "download"),
    [
        ("us", "accounts.zoho.com", "www.zohoapis.com", "content.zohoapis.com", "download-accl.zoho.com"),
        ("eu", "accounts.zoho.eu", "www.zohoapis.eu", "content.zohoapis.eu", "download-accl.zoho.eu"),
        ("in", "accounts.zoho.in", "www.zohoapis.in", "content.zohoapis.in", "download-accl.zoho.in"),
        ("au", "accounts.zoho.com.au", "www.zohoapis.com.au", "content.zohoapis.com.au", "download-accl.zoho.com.au"),
        ("jp", "accounts.zoho.jp", "www.zohoapis.jp", "content.zohoapis.jp", "download-accl.zoho.jp"),
        ("ca", "accounts.zohocloud.ca", "www.zohoapis.ca", "upload.zohocloud.ca", "download-accl.zohocloud.ca"),
        ("sa", "accounts.zoho.sa", "www.zohoapis.sa", "files.zoho.sa", "download-accl.zoho.sa"),
        ("cn", "accounts.zoho.com.cn", "www.zohoapis.com.cn", "content.zohoapis.com.cn", "download-accl.zoho.com.cn"),
        ("uk", "accounts.zoho.uk", "www.zohoapis.uk", "content.zohoapis.uk", "download-accl.zoho.uk"),
    ],
)
def test_each_data_centre_uses_its_own_accounts_api_and_file_hosts(
    monkeypatch: pytest.MonkeyPatch, dc: str, accounts: str, api: str, upload: str, download: str
) -> None:
    monkeypatch.setenv(*dc_env("zoho_dc", data_centre=dc.upper() if dc == "eu" else dc))  # any letter case
    endpoints = ZohoCrmHook("zoho_dc").endpoints()
    assert endpoints["token_url"] == f"https://{accounts}/oauth/v2/token"
    assert endpoints["api_domain"] == f"https://{api}"
    assert endpoints["file_upload_url"] == f"https://{upload}/crm/v8/upload"
    assert endpoints["bulk_download_url"] == f"https://{download}"
    suffix = api.removeprefix("www.")
    assert set(endpoints["allowed_hosts"]) == {
        f"www.{suffix}",
        f"sandbox.{suffix}",
        f"developer.{suffix}",
        upload,
        download,
        f"download.zohocrm.{suffix.removeprefix('zohoapis.')}",  # the OAS sample's host
    }


@pytest.mark.parametrize("environment", ["sandbox", "developer"])
def test_sandbox_and_developer_orgs_use_their_own_api_host_even_when_the_token_names_www(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv(*dc_env("zoho_dc", data_centre="eu", environment=environment))
    hook = ZohoCrmHook("zoho_dc")
    assert hook.endpoints()["api_domain"] == f"https://{environment}.zohoapis.eu"
    token = hook.client.oauth.to_access_token(
        {"access_token": "1000.x", "api_domain": "https://www.zohoapis.eu", "expires_in": 3600}
    )
    assert token.api_domain == f"https://{environment}.zohoapis.eu"


def test_a_token_is_never_sent_to_a_host_outside_the_data_centre(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*dc_env("zoho_dc", data_centre="eu"))
    hook = ZohoCrmHook("zoho_dc", token_cache=MemoryTokenCache())
    sent: list[str] = []
    monkeypatch.setattr(requests.Session, "request", lambda self, method, url, **kw: sent.append(url))
    # A token response naming another data centre (a US token for an EU org) is refused.
    with pytest.raises(ZohoConfigError, match="www.zohoapis.com"):
        hook.client.oauth.to_access_token({"access_token": "1000.x", "api_domain": "https://www.zohoapis.com"})
    hook.client.oauth.token = AccessToken("1000.secret-token", "https://www.zohoapis.eu", time.time() + 3600)
    for url in (
        "https://evil.example",
        "https://www.zohoapis.eu.evil.example",
        "http://www.zohoapis.eu",
        "https://www.zohoapis.com",
    ):
        with pytest.raises(ZohoConfigError, match="refusing to send a Zoho token"):
            hook.request("GET", "/crm/v8/org", operation="org", base_url=url)
    with pytest.raises(ZohoConfigError):
        hook.client.bulk.download("https://download.zohocrm.com/v2/bulk/write/1/result")  # the US download host
    assert sent == []


def test_custom_hosts_are_only_allowed_when_the_connection_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*dc_env("zoho_dc", accounts_url="http://127.0.0.1:1", api_domain="http://127.0.0.1:1"))
    with pytest.raises(ZohoConfigError, match="data_centre"):
        ZohoCrmHook("zoho_dc").endpoints()
    monkeypatch.setenv(*dc_env("zoho_dc", data_centre="mars"))
    with pytest.raises(ZohoConfigError, match="must be one of"):
        ZohoCrmHook("zoho_dc").endpoints()


def test_a_sandbox_connection_refuses_every_host_but_its_own(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    with ZohoSandbox() as other:
        with pytest.raises(ZohoConfigError):
            hook.request("GET", "/crm/v8/org", operation="org", base_url=other.url)
        assert other.calls() == []


# ------------------------------------------------------------------------------------------- secrets


def test_nothing_from_the_connection_extras_becomes_an_http_header(
    sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*conn_env(sandbox, **{"X-Leak": "extra-value", "client_secret": "copied-secret", "timeout": 5}))
    hook = make_hook()
    seen: list[requests.PreparedRequest] = []
    hook.client.transport.session.hooks["response"].append(lambda response, *a, **k: seen.append(response.request))
    sandbox.bulk_step_seconds = 0.01
    hook.upsert("Contacts", [contact(1)])
    hook.bulk_upsert("Contacts", [contact(2)], poll_interval=0.01)
    extras = {"refresh_token", "accounts_url", "api_domain", "allow_custom_hosts", "x-leak", "client_secret", "timeout"}
    values = {sandbox.refresh_token, sandbox.client_secret, "extra-value", "copied-secret"}
    assert len(seen) >= 7
    for request in seen:
        assert not extras & {name.lower() for name in request.headers}
        assert not any(value in str(header) for value in values for header in request.headers.values())
        assert request.headers.get("Authorization", "").startswith("Zoho-oauthtoken ") or "/oauth/" in request.url


def test_no_token_or_secret_appears_in_any_log_line_or_exception_message(
    sandbox: ZohoSandbox, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued: list[str] = []
    original = ZohoOAuth.to_access_token

    def recording(self: ZohoOAuth, body: dict) -> AccessToken:
        issued.append(body["access_token"])
        issued.extend([body["refresh_token"]] if "refresh_token" in body else [])
        return original(self, body)

    monkeypatch.setattr(ZohoOAuth, "to_access_token", recording)
    monkeypatch.setenv(*conn_env(sandbox))
    messages: list[str] = []
    hook = make_hook(max_retries=1)
    for kind in ("expire_token", "429", "500", "drop"):
        sandbox.inject_fault(kind, operation="upsert")
        hook.upsert("Contacts", [contact(1)])
    sandbox.inject_fault("expire_token", times=2, operation="upsert")
    sandbox.inject_fault("429", times=5, operation="get")
    grant = sandbox.issue_grant_code(sandbox.client_id, ("ZohoCRM.modules.READ",))
    for action in (
        lambda: hook.upsert("Contacts", [contact(2)]),
        lambda: hook.get_records("Contacts", ["1"], ["Email"]),
        lambda: hook.exchange_grant_code(grant),
        lambda: hook.exchange_grant_code(grant),
    ):
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every message is scanned below
            messages.append(f"{exc!s} {exc!r}")
    monkeypatch.setenv(*conn_env(sandbox, password="a-wrong-but-secret-value"))
    try:
        make_hook().get_access_token()
    except ZohoOAuthError as exc:
        messages.append(f"{exc!s} {exc!r}")
    assert len(messages) == 4 and len(issued) >= 5  # auth failure, load failure, invalid_code, bad secret
    secrets = [sandbox.client_secret, sandbox.refresh_token, "a-wrong-but-secret-value", grant, *issued]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "retry 1 of 1" in logged and '"POST /oauth/v2/token' in logged  # retries and DEBUG HTTP lines ...
    for secret in secrets:  # ... and no secret with them
        assert secret not in logged
        assert not any(secret in message for message in messages)
    assert "1000." not in repr(hook.get_access_token())


# -------------------------------------------------------------------------------- other operations


def test_update_records_puts_by_id_100_a_call_and_reports_unknown_ids(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    ids = [o.zoho_id for o in upsert_all(hook, "Contacts", [contact(i) for i in range(150)])]
    outcomes = hook.update_records("Contacts", [{"id": i, "Phone": "42"} for i in ids] + [{"id": "1", "Phone": "1"}])
    assert [c["method"] for c in calls(sandbox, "update")] == ["PUT", "PUT"]
    assert all(o.ok and o.action == "update" for o in outcomes[:150])
    assert (outcomes[150].ok, outcomes[150].code) == (False, "INVALID_DATA")
    assert {r["Phone"] for r in sandbox.records("Contacts")} == {"42"}
    assert hook.stats.by_operation["update"] == 2 and hook.stats.credits == sandbox.credits_used()
    with pytest.raises(ValueError, match="no 'id'"):
        hook.update_records("Contacts", [{"Phone": "1"}])


def test_delete_records_sends_100_ids_a_call_and_reports_unknown_ids(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    ids = [o.zoho_id for o in upsert_all(hook, "Contacts", [contact(i) for i in range(150)])]
    outcomes = hook.delete_records("Contacts", ids + ["42"], wf_trigger=False)
    assert [c["query"]["wf_trigger"] for c in calls(sandbox, "delete")] == ["false", "false"]
    assert [o.zoho_id for o in outcomes[:150]] == ids and all(o.ok for o in outcomes[:150])
    assert (outcomes[150].ok, outcomes[150].code, outcomes[150].message) == (
        False,
        "INVALID_DATA",
        "record not deleted",
    )
    assert sandbox.records("Contacts") == []


def test_deleted_records_pages_until_more_records_is_false(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    assert hook.deleted_records("Contacts") == []  # 204: nothing deleted
    ids = [o.zoho_id for o in upsert_all(hook, "Contacts", [contact(i) for i in range(450)])]
    for record_id in ids:
        sandbox.delete_record_in_ui("Contacts", record_id, permanent=record_id == ids[0])
    sandbox.reset_calls()
    deleted = hook.deleted_records("Contacts")
    assert sorted(d["id"] for d in deleted) == sorted(ids)
    assert [c["query"]["page"] for c in calls(sandbox, "deleted")] == ["1", "2", "3"]
    assert [d["id"] for d in hook.deleted_records("Contacts", type="permanent")] == [ids[0]]
    assert sum(c["credits"] for c in calls(sandbox, "deleted")) == 2 * 4  # two credits a page


def test_deleted_records_since_sends_if_modified_since_and_returns_only_later_deletions(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    seen: list[requests.PreparedRequest] = []
    hook.client.transport.session.hooks["response"].append(lambda response, *a, **k: seen.append(response.request))
    record_id = hook.upsert("Contacts", [contact(1)])[0].zoho_id
    sandbox.delete_record_in_ui("Contacts", record_id)
    assert [d["id"] for d in hook.deleted_records("Contacts", since=datetime.now(UTC) - timedelta(minutes=5))] == [
        record_id
    ]
    assert hook.deleted_records("Contacts", since=datetime.now(UTC) + timedelta(minutes=5)) == []
    headers = [r.headers.get("If-Modified-Since") for r in seen if r.path_url.startswith("/crm/v8/Contacts/deleted")]
    assert len(headers) == 2 and all(h and datetime.fromisoformat(h).tzinfo for h in headers)


def test_convert_lead_returns_the_contact_id_and_a_second_convert_keeps_id_already_converted(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    lead_id = hook.upsert("Leads", [contact(1, Company="Acme")])[0].zoho_id
    converted = hook.convert_lead(lead_id)
    [new_contact] = sandbox.records("Contacts")
    assert (converted.ok, converted.action, converted.zoho_id) == (True, "convert", new_contact["id"])
    assert converted.details["Accounts"]["name"] == "Acme"
    again = hook.convert_lead(lead_id)
    assert (again.ok, again.code, again.retryable) == (False, "ID_ALREADY_CONVERTED", False)
    assert [c["credits"] for c in calls(sandbox, "convert")] == [5, 5]
    assert hook.stats.credits == sandbox.credits_used()


def test_convert_lead_links_the_given_contact_and_overwrites_it_when_asked(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    contact_id = hook.upsert("Contacts", [contact(9, Phone="old")])[0].zoho_id
    lead_id = hook.upsert("Leads", [contact(1, Company="Acme", Phone="new")])[0].zoho_id
    converted = hook.convert_lead(lead_id, contact_id=contact_id, overwrite=True)
    assert converted.zoho_id == contact_id
    [linked] = sandbox.records("Contacts")
    assert linked["Phone"] == "new"


def test_get_org_fields_and_records(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    org = hook.get_org()
    assert org["id"] and org["zgid"]
    fields = {f["api_name"]: f for f in hook.get_fields("Leads")}
    assert fields["Last_Name"]["system_mandatory"] and fields["Last_Name"]["length"] == 80
    ids = [o.zoho_id for o in hook.upsert("Contacts", [contact(1), contact(2)])]
    records = hook.get_records("Contacts", ids + ["1"], ["Email", "Last_Name"])
    assert sorted(r["Email"] for r in records) == ["person1@example.com", "person2@example.com"]


# ---------------------------------------------------------------------------------------- bulk write


def _changes() -> list[dict[str, Any]]:
    """A reset's worth of edge cases; every record has the same keys, None clears a field."""
    base = {
        "First_Name": None,
        "Phone": None,
        "Mailing_City": None,
        "Order_Count": None,
        "Total_Order_Value": None,
        "Newsletter_Subscriber": None,
        "Description": None,
    }

    def rec(n: int, **values: Any) -> dict[str, Any]:
        return {**base, **contact(n), **values}

    return [
        rec(0, Phone="+44 1", Order_Count=7, Total_Order_Value=1234.5, Mailing_City=None),  # update, clears city
        rec(1, Email="PERSON1@EXAMPLE.COM", First_Name="Zoë", Newsletter_Subscriber=False),  # matched ignoring case
        rec(5, Description='Line one\nline "two", with a comma', Total_Order_Value=0.1, Newsletter_Subscriber=True),
        rec(6, Last_Name=None),  # new and without Last_Name: MANDATORY_NOT_FOUND
        rec(7, Email="not-an-email"),  # INVALID_DATA
        rec(8, First_Name="Ünïcødé", Order_Count=0),
    ]


def test_bulk_upsert_gives_the_same_zoho_state_and_outcomes_as_upsert(monkeypatch: pytest.MonkeyPatch) -> None:
    initial = [contact(i, Mailing_City="Leeds", Phone="1", Order_Count=1) for i in range(3)]
    with ZohoSandbox() as by_upsert, ZohoSandbox() as by_bulk:
        by_bulk.bulk_step_seconds = 0.02
        monkeypatch.setenv(*conn_env(by_upsert))
        upsert_hook = make_hook()
        upsert_hook.upsert("Contacts", initial)
        upserted = upsert_hook.upsert("Contacts", _changes())
        monkeypatch.setenv(*conn_env(by_bulk))
        bulk_hook = make_hook()
        bulk_hook.upsert("Contacts", initial)
        bulked = bulk_hook.bulk_upsert("Contacts", _changes(), poll_interval=0.01)
        assert [(o.ok, o.action, o.code) for o in bulked] == [(o.ok, o.action, o.code) for o in upserted]
        assert [o.code for o in bulked] == ["SUCCESS"] * 3 + ["MANDATORY_NOT_FOUND", "INVALID_DATA", "SUCCESS"]
        assert bulked[3].details["api_name"] == "Last_Name" and bulked[4].details["api_name"] == "Email"
        assert comparable(by_bulk.records("Contacts")) == comparable(by_upsert.records("Contacts"))
        assert len(by_bulk.records("Contacts")) == 5
        assert [bulked[i].zoho_id for i in (0, 1)] == [upserted[i].zoho_id for i in (0, 1)]


def test_bulk_upsert_leaves_fields_missing_from_a_record_untouched_like_upsert(monkeypatch: pytest.MonkeyPatch) -> None:
    initial = [contact(i, Phone="1", Mailing_City="Leeds") for i in range(3)]
    changes = [contact(0, Phone="2"), contact(1, Mailing_City="York"), contact(2, Phone=None, Order_Count=3)]
    with ZohoSandbox() as by_upsert, ZohoSandbox() as by_bulk:
        by_bulk.bulk_step_seconds = 0.02
        monkeypatch.setenv(*conn_env(by_upsert))
        upsert_hook = make_hook()
        upsert_hook.upsert("Contacts", initial)
        upsert_hook.upsert("Contacts", changes)
        monkeypatch.setenv(*conn_env(by_bulk))
        bulk_hook = make_hook()
        bulk_hook.upsert("Contacts", initial)
        assert all(o.ok for o in bulk_hook.bulk_upsert("Contacts", changes, poll_interval=0.01))
        assert comparable(by_bulk.records("Contacts")) == comparable(by_upsert.records("Contacts"))
        # Records that both omit and clear fields cannot share one CSV: one job per shape of record.
        assert bulk_hook.stats.by_operation["bulk_write"] == 3


def test_bulk_upsert_uploads_a_zipped_csv_with_the_bulk_headers_and_maps_columns_by_index(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    sandbox.bulk_step_seconds = 0.01
    seen: list[requests.PreparedRequest] = []
    hook.client.transport.session.hooks["response"].append(lambda response, *a, **k: seen.append(response.request))
    hook.bulk_upsert("Leads", [contact(1, Company="Acme"), contact(2, Company="Beta")], poll_interval=0.01)
    upload = next(r for r in seen if r.path_url == "/crm/v8/upload")
    assert upload.headers["feature"] == "bulk-write" and upload.headers["X-CRM-ORG"] == hook.get_org()["zgid"]
    job = json.loads(next(r for r in seen if r.path_url == "/crm/bulk/v8/write").body)
    [resource] = job["resource"]
    assert job["operation"] == "upsert" and resource["find_by"] == "Email"
    assert resource["field_mappings"] == [
        {"api_name": "Last_Name", "index": 0},
        {"api_name": "Email", "index": 1},
        {"api_name": "Company", "index": 2},
    ]
    assert {r["Company"] for r in sandbox.records("Leads")} == {"Acme", "Beta"}


def test_bulk_upsert_splits_inputs_larger_than_a_job_into_several_jobs(
    sandbox: ZohoSandbox, hook: ZohoCrmHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zoho_bulk, "BULK_MAX_RECORDS", 3)  # stands for Zoho's 25,000 records per file
    sandbox.bulk_step_seconds = 0.01
    outcomes = hook.bulk_upsert("Contacts", [contact(i) for i in range(7)], poll_interval=0.01)
    assert [o.action for o in outcomes] == ["insert"] * 7
    assert hook.stats.by_operation["bulk_write"] == 3 and hook.stats.by_operation["org"] == 1
    assert sorted(r["Email"] for r in sandbox.records("Contacts")) == sorted(
        c["Email"] for c in (contact(i) for i in range(7))
    )


def test_bulk_row_errors_give_the_first_code_and_a_message_listing_every_error(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    sandbox.bulk_step_seconds = 0.01
    [outcome] = hook.bulk_upsert(
        "Contacts", [{"Email": "x@example.com", "Last_Name": "", "Order_Count": "x"}], poll_interval=0.01
    )
    assert (outcome.ok, outcome.code) == (False, "INVALID_DATA")
    assert outcome.message == "INVALID_DATA (Order_Count); MANDATORY_NOT_FOUND (Last_Name)"
    assert outcome.details["api_name"] == "Order_Count" and not outcome.retryable


def test_bulk_upsert_follows_a_relative_download_url_on_the_allowed_host(
    sandbox: ZohoSandbox, hook: ZohoCrmHook
) -> None:
    sandbox.bulk_step_seconds = 0.01
    sandbox.bulk_relative_download_url = True
    assert [o.ok for o in hook.bulk_upsert("Contacts", [contact(1)], poll_interval=0.01)] == [True]
    assert calls(sandbox, "bulk_download")[0]["status"] == 200


def test_bulk_upsert_survives_faults_on_every_step(sandbox: ZohoSandbox, hook: ZohoCrmHook) -> None:
    sandbox.bulk_step_seconds = 0.01
    for operation, kind in (("upload", "drop"), ("bulk_status", "500"), ("bulk_download", "429"), ("org", "500")):
        sandbox.inject_fault(kind, operation=operation)
    assert [o.ok for o in hook.bulk_upsert("Contacts", [contact(1), contact(2)], poll_interval=0.01)] == [True, True]
    assert len(sandbox.records("Contacts")) == 2 and hook.stats.retries == 4


def test_bulk_result_rows_are_matched_by_find_by_when_not_in_input_order() -> None:
    records = [contact(1), contact(2), contact(3)]
    text = (
        "Email,Last_Name,STATUS,RECORD_ID,ERRORS\n"
        "person2@example.com,Person2,updated,22,\n"
        "PERSON1@example.com,Person1,added,11,\n"
        "person3@example.com,,skipped,,MANDATORY_NOT_FOUND-Last_Name\n"
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Contacts.csv", text)
    outcomes = parse_bulk_result(buffer.getvalue(), records, "Email")
    assert [(o.action, o.zoho_id) for o in outcomes[:2]] == [("insert", "11"), ("update", "22")]
    assert outcomes[2].code == "MANDATORY_NOT_FOUND"
    short = parse_bulk_result(buffer.getvalue(), records + [contact(4)], "Email")
    assert (short[3].ok, short[3].code, short[3].retryable) == (False, "UNPROCESSED", True)
