"""Zoho credits as a budget: the org's ledger over the rolling 24 h, a run's estimate, deferral and the daily limit.

Zoho counts an org's API credits over a rolling 24 hours: each call's credits come back 24 h after it. The API
says how many remain only through ``X-API-CREDITS-REMAINING``, and only once half the day's credits are used. So
each task that called Zoho writes a ledger row (``zoho_sync_credits``, keyed by org: every tenant of the org
writes to it) with its credits and the last remaining count it saw; what remains now is that count, less what
the org's tenants spent since, plus what their calls of 24 h before gave back. Unknown (no count in 24 h): go
ahead, Zoho's own answer stops the run if the day's credits run out.

* ``check_budget``: a run (or a reset's send step) whose estimate exceeds what remains, less the tenant's
  ``zoho_credit_reserve``, is deferred before it sends anything (``CreditBudgetExceeded``).
* ``metered``: around a task's calls: writes its ledger row, and turns Zoho's daily-limit answer
  (``ZohoCreditsExhausted``, raised by the client at the first such answer) into a message with the credits
  used in the last 24 h and when to run again.
* ``unsent_changes``: a retried load sends only what an earlier attempt of the run did not get confirmed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd

from zoho_store_sync.errors import CreditBudgetExceeded, ZohoCreditsExhausted
from zoho_store_sync.settings import ZOHO_CREDITS, ZOHO_MAX_RECORDS_PER_WRITE
from zoho_store_sync.state import DELETED_IN_SOURCE, SYNCED, CreditLedger, StateStore
from zoho_store_sync.state.credits import CreditEntry
from zoho_store_sync.zoho.bulk import estimate_write_credits

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig
    from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook
    from zoho_store_sync.zoho.settings import ZohoSettings

log = logging.getLogger(__name__)

CREDIT_WINDOW = timedelta(hours=24)  # Zoho frees each call's credits this long after it
# The load's marker (a cursor): the run whose load last started. The same run starting it again is a retry.
LOAD_ATTEMPT_CURSOR = "zoho.load_attempt"
UPSERT_ACTIONS = ("new", "changed", "retry", "convert")


def clock() -> datetime:
    """Now, for the ledger and the budget (a test moves it a day forward with the sandbox's credit window)."""
    return datetime.now(UTC)


def ledger(store: StateStore) -> CreditLedger:
    return CreditLedger(store.engine, clock=lambda: clock())


def org_key(settings: ZohoSettings) -> str:
    """The org a connection writes to, as the ledger names it: the client id and the data centre (or API host).

    Tenants of one org share its Zoho connection (or one client), so they share its ledger. Known without a call.
    """
    where = settings.data_centre or urlparse(settings.api_domain).netloc or settings.api_domain
    return f"{settings.client_id}@{where}"


def org_key_for(tenant: TenantConfig) -> str:
    """The tenant's org key, read from its Zoho Connection (no API call)."""
    from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook

    return org_key(ZohoCrmHook(tenant.zoho_conn_id).settings)


# ---- what remains -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Availability:
    """The org's credits as the ledger sees them at ``now``.

    ``remaining``: credits left now (None: Zoho reported no count in the last 24 h); ``reported`` and
    ``reported_at``: Zoho's last count and when; ``used_since``: credits the org's tenants spent after it;
    ``used_24h`` / ``tenant_used_24h``: credits this product (all tenants / this one) spent in the last 24 h.
    """

    now: datetime
    remaining: int | None
    reported: int | None
    reported_at: datetime | None
    used_since: int
    used_24h: int
    tenant_used_24h: int
    entries: tuple[CreditEntry, ...]

    def free_at(self, needed: int) -> datetime:
        """When at least ``needed`` credits should be free: the ledger's calls give theirs back 24 h after them;
        by 24 h from now every call made so far has (the latest answer when others used the credits)."""
        have = self.remaining or 0
        if have >= needed:
            return self.now
        counted_from = (self.reported_at or self.now) - CREDIT_WINDOW  # older calls were already free in the count
        for entry in self.entries:
            back = entry.used_at + CREDIT_WINDOW
            if entry.used_at <= counted_from or back <= self.now:
                continue
            have += entry.credits
            if have >= needed:
                return back
        return self.now + CREDIT_WINDOW

    def describe(self) -> str:
        if self.remaining is None:
            return "Zoho reported no remaining count in the last 24 h"
        assert self.reported_at is not None
        return (
            f"about {self.remaining} remain: Zoho's X-API-CREDITS-REMAINING was {self.reported} at "
            f"{_hhmm(self.reported_at)}, {self.used_since} used since by this product"
        )


def availability(store: StateStore, org: str, tenant_id: str) -> Availability:
    """What remains of the org's credits now, from the ledger (``remaining`` None when not known)."""
    book = ledger(store)
    now = book.clock()
    entries = tuple(book.entries(org, since=2 * CREDIT_WINDOW))
    day = [e for e in entries if e.used_at > now - CREDIT_WINDOW]
    used_24h = sum(e.credits for e in day)
    tenant_used = sum(e.credits for e in day if e.tenant_id == tenant_id)
    reported = [i for i, e in enumerate(entries) if e.remaining is not None and e.used_at > now - CREDIT_WINDOW]
    if not reported:
        return Availability(now, None, None, None, 0, used_24h, tenant_used, entries)
    last = entries[reported[-1]]
    used_since = sum(e.credits for e in entries[reported[-1] + 1 :])
    # calls counted as used in Zoho's report whose credits came back since
    freed = sum(e.credits for e in entries if last.used_at - CREDIT_WINDOW < e.used_at <= now - CREDIT_WINDOW)
    assert last.remaining is not None
    remaining = max(0, last.remaining - used_since + freed)
    return Availability(now, remaining, last.remaining, last.used_at, used_since, used_24h, tenant_used, entries)


def _hhmm(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


# ---- a run's estimate ---------------------------------------------------------------------------------------
def estimate_changes(changes: pd.DataFrame, write_paths: dict[str, str] | None = None) -> int:
    """Credits the load of ``changes`` (a plan, diff.PLAN_COLUMNS) should cost: 5 per conversion, then each
    upsert module by its write path (``write_paths``: module → "upsert" or "bulk"; default upsert), updates by
    id in calls of 100 (1 credit per 10 records), deletions 1 credit per call of 100."""
    if changes.empty:
        return 0
    action, module = changes["action"].astype(str), changes["module"].astype(str)
    total = int((action == "convert").sum()) * ZOHO_CREDITS["convert"]
    for name, count in module[action.isin(UPSERT_ACTIONS)].value_counts().items():
        total += estimate_write_credits(int(count), (write_paths or {}).get(str(name), "upsert"))
    for _, count in module[action.isin(("email_changed", "flag_deleted"))].value_counts().items():
        total += estimate_write_credits(int(count), "upsert")
    for _, count in module[action == "delete"].value_counts().items():
        total += -(-int(count) // ZOHO_MAX_RECORDS_PER_WRITE) * ZOHO_CREDITS["default"]
    return total


# ---- deferral ------------------------------------------------------------------------------------------------
def check_budget(
    tenant: TenantConfig, store: StateStore, estimate: int, *, hook: ZohoCrmHook | None = None, what: str = "run"
) -> Availability:
    """Raise ``CreditBudgetExceeded`` when ``estimate`` credits exceed what remains of the org's day less the
    tenant's ``zoho_credit_reserve``; else return what the ledger knows. Unknown remaining credits: go ahead."""
    org = org_key(hook.settings) if hook is not None else org_key_for(tenant)
    seen = availability(store, org, tenant.tenant_id)
    reserve = tenant.zoho_credit_reserve
    if estimate <= 0 or seen.remaining is None:
        log.info("credits: this %s needs about %d; %s", what, estimate, seen.describe())
        return seen
    usable = seen.remaining - reserve
    if estimate <= usable:
        log.info("credits: this %s needs about %d; %s", what, estimate, seen.describe())
        return seen
    when = seen.free_at(estimate + reserve)
    raise CreditBudgetExceeded(
        f"tenant {tenant.tenant_id!r}: {what} deferred, nothing sent: it needs about {estimate} Zoho API credits but "
        f"only {max(0, usable)} of the org's daily credits are left for it ({seen.describe()}"
        + (f"; less zoho_credit_reserve {reserve} left for other integrations" if reserve else "")
        + f"). This product used {seen.used_24h} credits on this org in the last 24 h ({seen.tenant_used_24h} by "
        f"this tenant). Zoho frees each call's credits 24 h after it: enough should be free by {_hhmm(when)}; the "
        "first scheduled run after that goes on by itself (or trigger one then). To send sooner, buy add-on credits "
        "in Zoho or stop other integrations using the org's credits"
        + (", or lower zoho_credit_reserve" if reserve else "")
        + "."
    )


# ---- the task's credits, and the daily limit -------------------------------------------------------------------
def record_usage(
    tenant: TenantConfig, store: StateStore, hook: ZohoCrmHook, run_id: str, *, credits: int, api_calls: int
) -> None:
    """One ledger row for a task's calls (none when it made none), with Zoho's last remaining count; after the
    daily-limit answer without a count, 0 remain."""
    if api_calls <= 0:
        return
    remaining = hook.stats.credits_remaining
    if remaining is None and hook.client.credits_exhausted is not None:
        remaining = 0
    try:
        ledger(store).record(org_key(hook.settings), tenant.tenant_id, run_id, credits, remaining)
    except Exception:  # noqa: BLE001 - the ledger informs the budget; losing a row must not fail the task
        log.warning("could not record the task's Zoho credits in the ledger", exc_info=True)


@contextlib.contextmanager
def metered(
    tenant: TenantConfig,
    store: StateStore,
    hook: ZohoCrmHook,
    run_id: str,
    *,
    unsent: Callable[[], int] | None = None,
    what: str = "run",
) -> Iterator[None]:
    """Around a task's Zoho calls: record their credits in the ledger, whatever the outcome; Zoho's daily-limit
    answer becomes a ``ZohoCreditsExhausted`` naming the credits used and when to run again. ``unsent``: the
    credits the work not done needs (for that time), when known."""
    stats = hook.stats
    calls_before, credits_before = stats.api_calls, stats.credits

    def record() -> int:
        spent = stats.credits - credits_before
        record_usage(tenant, store, hook, run_id, credits=spent, api_calls=stats.api_calls - calls_before)
        return spent

    try:
        yield
    except ZohoCreditsExhausted as exhausted:
        raise explain_exhaustion(tenant, store, hook, exhausted, record(), unsent, what) from None
    except BaseException:
        record()
        raise
    record()


def explain_exhaustion(
    tenant: TenantConfig,
    store: StateStore,
    hook: ZohoCrmHook,
    exhausted: ZohoCreditsExhausted,
    task_credits: int,
    unsent: Callable[[], int] | None = None,
    what: str = "run",
) -> ZohoCreditsExhausted:
    """The daily-limit error with the ledger's figures: credits used in 24 h, and when enough is free again."""
    answer = (hook.client.credits_exhausted or exhausted).answer
    try:
        seen = availability(store, org_key(hook.settings), tenant.tenant_id)
        needed = max(1, unsent() if unsent is not None else 1) + tenant.zoho_credit_reserve
        when = seen.free_at(needed)
        figures = (
            f" This product used {seen.used_24h} credits on this org in the last 24 h ({seen.tenant_used_24h} by "
            f"this tenant, {task_credits} in this task). Zoho frees each call's credits 24 h after it: run again "
            f"after {_hhmm(when)}"
            + (f" (the rest of this {what} needs about {needed} credits)" if unsent is not None else "")
            + "; scheduled runs before then are deferred without sending anything."
        )
        free_at: str | None = when.isoformat()
    except Exception:  # noqa: BLE001 - the message must come out even when the ledger cannot be read
        log.warning("could not read the credit ledger", exc_info=True)
        figures = " Zoho frees each call's credits 24 h after it: run again tomorrow."
        free_at = None
    return ZohoCreditsExhausted(
        f"tenant {tenant.tenant_id!r}: the org's daily Zoho API credits are used up ({answer}); this {what} stopped "
        "at once, without retrying. What Zoho confirmed is saved; nothing else is marked synced, and the next run "
        f"sends the rest.{figures} To send sooner, buy add-on credits in Zoho or stop other integrations using the "
        "org's credits.",
        answer=answer,
        remaining=exhausted.remaining,
        free_at=free_at,
    )


# ---- a retried load ------------------------------------------------------------------------------------------
def confirmed_mask(changes: pd.DataFrame, state: pd.DataFrame) -> pd.Series:
    """Plan rows the state shows done: synced in the planned module with the planned payload and a Zoho id
    (upserts, conversions, updates by id), or deleted_in_source (deletions, flags with their payload, releases)."""
    if changes.empty or state.empty:
        return pd.Series(False, index=changes.index)
    current = state.drop_duplicates("customer_key").set_index("customer_key")
    keys = changes["customer_key"].astype(str)
    status = keys.map(current["status"].astype(str))
    module = keys.map(current["module"].astype(str))
    digest = keys.map(current["payload_hash"])
    zoho_id = keys.map(current["zoho_id"])
    action = changes["action"].astype(str)
    same_payload = (digest.astype("Int64") == changes["payload_hash"].astype("Int64")).fillna(False).astype(bool)
    sent = (
        action.isin((*UPSERT_ACTIONS, "email_changed"))
        & (status == SYNCED)
        & (module == changes["module"].astype(str))
        & same_payload
        & zoho_id.notna()
    )
    gone = (status == DELETED_IN_SOURCE) & (
        action.isin(("delete", "release")) | ((action == "flag_deleted") & same_payload)
    )
    return (sent | gone).fillna(False).astype(bool)


def unsent_changes(store: StateStore, run_id: str, changes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The plan less what an earlier attempt of this run's load already got confirmed, and how many that was.

    Only a retry reads the state for it (the load marks the run whose load last started): a first attempt
    sends the plan as it is.
    """
    marker = store.get_cursor(LOAD_ATTEMPT_CURSOR) or {}
    store.set_cursor(LOAD_ATTEMPT_CURSOR, {"run_id": run_id, "started_at": clock().isoformat()})
    if marker.get("run_id") != run_id or changes.empty:
        return changes, 0
    done = confirmed_mask(changes, store.load(customer_keys=changes["customer_key"].astype(str).tolist()))
    if done.any():
        log.info("retried load: %d of %d planned changes were confirmed by an earlier attempt", done.sum(), len(done))
    return changes.loc[~done].reset_index(drop=True), int(done.sum())


def unconfirmed_credits(store: StateStore, changes: pd.DataFrame, write_paths: dict[str, str] | None = None) -> int:
    """Credits the part of ``changes`` the state does not show done yet should cost."""
    if changes.empty:
        return 0
    state = store.load(customer_keys=changes["customer_key"].astype(str).tolist())
    return estimate_changes(changes.loc[~confirmed_mask(changes, state)], write_paths)


def summary_fields(loaded: dict[str, Any]) -> dict[str, Any]:
    """The credit figures a load reports, for the run summary."""
    return {k: loaded[k] for k in ("credits_estimate", "credits_remaining", "already_confirmed") if k in loaded}
