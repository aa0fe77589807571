"""Runs one tenant sync's tasks in this process (no scheduler), so a test can SIGKILL it mid-load.

Usage: python tests/dags/crash_runner.py <tenant_id> <run_id>; configuration comes from the environment.

With ``CRASH_RUNNER_HOLD_AT`` set, the run stops itself (SIGSTOP: every thread at once) at a write point of the
load, after printing ``HOLDING <point> <module>``, for the test to SIGKILL it there. The value is
``<point>[:<module>][#<n>]``: the n-th time (default 1) that point is reached (for that module), or ``any#<n>``:
the n-th write point of any kind. Write points (each reached right after the step it names returned):

* ``write_ahead``: the ``unconfirmed`` rows of an upsert batch are written, the upsert not sent yet;
* ``converting``: the ``converting`` row of a Lead is written, the convert not sent yet;
* ``deletion_recorded``: the ids about to be deleted are in ``zoho_sync_deletions``, the delete not sent yet;
* ``upsert_answered``, ``update_answered``, ``convert_answered``, ``delete_answered``: Zoho answered the call,
  its outcome is not written yet (for a convert: the Contact is not upserted yet);
* ``outcome_written``: a group of answered outcomes is in the state table.

The helpers below (``start``, ``kill_when_held``, ``hold_zoho_after_applying``, ``expected_crm``...) are what
the crash tests share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

HOLD_ENV = "CRASH_RUNNER_HOLD_AT"
CLIENT_POINTS = (
    "write_ahead",
    "converting",
    "deletion_recorded",
    "upsert_answered",
    "update_answered",
    "convert_answered",
    "delete_answered",
    "outcome_written",
)
WRITE_AHEAD_STATUSES = ("unconfirmed", "converting")


# ---- in the runner process ---------------------------------------------------------------------------


def _parse_hold(spec: str) -> tuple[str, str | None, int]:
    point, _, nth = spec.partition("#")
    point, _, module = point.partition(":")
    if point != "any" and point not in CLIENT_POINTS:
        raise SystemExit(f"{HOLD_ENV}: unknown write point {point!r}; expected 'any' or one of {CLIENT_POINTS}")
    return point, module or None, int(nth or 1)


def _install_hold(spec: str) -> None:
    """Wrap the load's write steps so the process stops at the chosen one (see the module docstring)."""
    from zoho_store_sync.hooks.zoho_crm import ZohoCrmHook
    from zoho_store_sync.state import StateStore

    wanted_point, wanted_module, wanted_nth = _parse_hold(spec)
    seen = {"n": 0}
    lock = threading.Lock()

    def reached(point: str, modules: list[str]) -> None:
        if wanted_point not in ("any", point) or (wanted_module and wanted_module not in modules):
            return
        with lock:
            seen["n"] += 1
            if seen["n"] != wanted_nth:
                return
        print(f"HOLDING {point} {','.join(modules)}", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # every thread stops here, nothing more is written or sent

    def after(name: str, point: Callable[..., tuple[str, list[str]] | None]) -> None:
        cls = StateStore if name in ("write_ahead", "save_outcomes", "record_own_deletions") else ZohoCrmHook
        original = getattr(cls, name)

        def wrapped(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if name == "record_own_deletions":
                args = (list(args[0]),) + args[1:]  # a generator: read once, by the original
            result = original(self, *args, **kwargs)
            where = point(*args, **kwargs)
            if where is not None:
                reached(*where)
            return result

        setattr(cls, name, wrapped)

    def records_of(rows: Any) -> list[dict[str, Any]]:
        return rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)

    def modules_of(records: list[dict[str, Any]]) -> list[str]:
        return list(dict.fromkeys(str(r["module"]) for r in records))

    def write_ahead(rows: Any, *_: Any, **__: Any) -> tuple[str, list[str]] | None:
        records = records_of(rows)
        if not records:
            return None
        return ("converting" if records[0]["status"] == "converting" else "write_ahead"), modules_of(records)

    def outcomes(rows: Any, *_: Any, **__: Any) -> tuple[str, list[str]] | None:
        records = records_of(rows)
        if not records or any(r.get("status") in WRITE_AHEAD_STATUSES for r in records):
            return None  # a write-ahead (write_ahead writes through save_outcomes)
        return "outcome_written", modules_of(records)

    after("write_ahead", write_ahead)
    after("save_outcomes", outcomes)
    after(
        "record_own_deletions",
        lambda rows, *_, **__: ("deletion_recorded", list(dict.fromkeys(r[2] for r in rows))) if rows else None,
    )
    after("upsert", lambda module, *_, **__: ("upsert_answered", [module]))
    after("update_records", lambda module, *_, **__: ("update_answered", [module]))
    after("convert_lead", lambda *_, **__: ("convert_answered", ["Leads"]))
    after("delete_records", lambda module, *_, **__: ("delete_answered", [module]))


def main(tenant_id: str, run_id: str) -> None:
    from zoho_store_sync import pipeline

    if os.environ.get(HOLD_ENV):
        _install_hold(os.environ[HOLD_ENV])
    pipeline.check_schema(tenant_id)  # as the run's first task does; SQLite is migrated there
    extracted = pipeline.extract(tenant_id, run_id)
    planned = pipeline.plan(tenant_id, run_id, extracted)
    print("PLANNED", planned["to_send"], flush=True)
    loaded = pipeline.load(tenant_id, run_id, planned)
    pipeline.report(tenant_id, run_id, extracted, planned, loaded)
    print("DONE", flush=True)


# ---- in the test process -------------------------------------------------------------------------------


class Runner:
    """A crash_runner.py subprocess whose output is read as it comes (to see ``HOLDING`` the moment it is said)."""

    def __init__(self, tenant_id: str, run_id: str, env: dict[str, str], hold_at: str | None = None) -> None:
        env = dict(env)
        env.pop(HOLD_ENV, None)
        if hold_at:
            env[HOLD_ENV] = hold_at
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), tenant_id, run_id],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.held = threading.Event()
        self.ended = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("HOLDING "):
                self.held.set()
        self.ended.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL (a stopped process dies too), and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.ended.wait(10)

    def finish(self, timeout: float = 120) -> int:
        self.process.wait(timeout)
        self.ended.wait(10)
        return self.process.returncode


def start(tenant_id: str, run_id: str, env: dict[str, str], hold_at: str | None = None) -> Runner:
    return Runner(tenant_id, run_id, env, hold_at)


def kill_when_held(runner: Runner, *events: threading.Event, timeout: float = 90) -> bool:
    """SIGKILL the runner once it holds (or once one of ``events`` is set: the Zoho sandbox holds its call);
    False when the run ended first (it never reached the point)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runner.held.is_set() or any(e.is_set() for e in events):
            runner.kill()
            return True
        if runner.process.poll() is not None:
            runner.ended.wait(10)
            return False
        time.sleep(0.005)
    runner.kill()
    raise AssertionError(f"the runner neither held nor ended in {timeout} s:\n{runner.output}")


class ZohoHold:
    """The Zoho sandbox applies the n-th matching write call, then does not answer until released: Zoho has
    the change, the client never hears of it (it is killed meanwhile)."""

    def __init__(self, zoho: Any, operation: str, module: str | None = None, nth: int = 1) -> None:
        self.zoho, self.operation, self.module, self.nth = zoho, operation, module, nth
        self.applied = threading.Event()
        self.release = threading.Event()
        self.request: dict[str, Any] = {}
        self._seen = 0
        self._lock = threading.Lock()
        original = type(zoho)._authorised_call.__get__(zoho)

        def apply_then_hold(req, route, info):  # type: ignore[no-untyped-def]
            response = original(req, route, info)
            if route.operation == self.operation and (self.module is None or route.module == self.module):
                with self._lock:
                    self._seen += 1
                    mine = self._seen == self.nth
                if mine:
                    self.request = {"path": req.path, "body": req.json() if req.body else None}
                    self.applied.set()
                    self.release.wait(60)
            return response

        zoho._authorised_call = apply_then_hold

    def remove(self) -> None:
        self.zoho._authorised_call = type(self.zoho)._authorised_call.__get__(self.zoho)
        self.release.set()


def store_frame(magento: Any):  # type: ignore[no-untyped-def]
    """The Magento sandbox's customers as the source reads them (order aggregates by the source's rules)."""
    import pandas as pd

    from zoho_store_sync.sources.magento import customer_rows, order_aggregates

    frame = pd.DataFrame(customer_rows(magento.customers(), magento.url))
    return frame.merge(order_aggregates(magento.orders()), on="customer_key", how="left")


def expected_crm(magento: Any):  # type: ignore[no-untyped-def]
    """One row per valid email of the store (the duplicate rules' winner), indexed by email, with its module
    by the classification rules (``module``), as ``customers.prepare`` and ``tests.reference.classify`` define them."""
    from tests.reference import classify
    from zoho_store_sync.customers import prepare

    valid = prepare(store_frame(magento)).valid
    valid["module"] = classify(valid)
    return valid.set_index("email")


def live_records(zoho: Any) -> dict[str, list[dict]]:
    """Per module, the records Zoho holds that are live (a converted Lead is not: it lives as its Contact)."""
    return {m: [r for r in zoho.records(m) if not r.get("Converted__s")] for m in ("Contacts", "Leads")}


def crm_problems(
    zoho: Any, magento: Any, *, contacts_for_good: set[str] = frozenset(), may_be_contacts: set[str] = frozenset()
) -> tuple[list[str], int]:
    """Everything in Zoho that breaks "exactly one live record per valid email, in its module, holding the
    store's latest values", and the number of records checked.

    A non-buyer is a Lead, except an email in ``contacts_for_good`` (once a live Contact: a Contact never
    becomes a Lead again), which must be a Contact, and an email in ``may_be_contacts`` (it bought once), which
    may be either.
    """
    expected = expected_crm(magento)
    live = live_records(zoho)
    problems: list[str] = []
    held: dict[str, list[str]] = {}
    for module, records in live.items():
        for record in records:
            held.setdefault(str(record.get("Email")), []).append(module)
    for email, modules in sorted(held.items()):
        if len(modules) > 1:
            problems.append(f"{email}: {len(modules)} live records ({', '.join(modules)})")
    problems += [f"{email}: in the store, not live in Zoho" for email in sorted(set(expected.index) - set(held))]
    problems += [
        f"{email}: live in Zoho ({held[email]}), not a valid customer of the store"
        for email in sorted(set(held) - set(expected.index))
    ]
    checked = 0
    for module, records in live.items():
        for record in records:
            email = str(record.get("Email"))
            if email not in expected.index:
                continue
            checked += 1
            row = expected.loc[email]
            if row["module"] == "Contacts" or email in contacts_for_good:
                wanted = {"Contacts"}
            elif email in may_be_contacts:
                wanted = {"Contacts", "Leads"}
            else:
                wanted = {"Leads"}
            if module not in wanted:
                problems.append(f"{email}: a live {module[:-1]}, expected a {' or '.join(sorted(wanted))[:-1]}")
            first = row["firstname"]
            first = None if first is None or first != first else (str(first).strip()[:40] or None)
            if record.get("First_Name") != first:
                problems.append(f"{email}: First_Name {record.get('First_Name')!r}, the store has {first!r}")
            if str(record.get("Source_Customer_ID")) != str(row["customer_key"]):
                problems.append(
                    f"{email}: Source_Customer_ID {record.get('Source_Customer_ID')!r}, the store's "
                    f"customer is {row['customer_key']}"
                )
            if (
                module == "Contacts"
                and row["module"] == "Contacts"
                and int(record.get("Order_Count") or 0) != int(row["order_count"])
            ):
                problems.append(f"{email}: Order_Count {record.get('Order_Count')}, the store has {row['order_count']}")
    return problems, checked


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
