"""The loader's dispatch: next calls before the state write, answered outcomes written together, the same counts."""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import pytest

from zoho_store_sync.hooks.zoho_crm import RecordOutcome, ZohoError
from zoho_store_sync.loader import apply_plan
from zoho_store_sync.state import StateStore, make_engine
from zoho_store_sync.state_migrations import migrate


def _changes(n: int) -> pd.DataFrame:
    keys = [str(i) for i in range(1, n + 1)]
    return pd.DataFrame(
        {
            "customer_key": keys,
            "email": [f"{k}@example.com" for k in keys],
            "module": "Contacts",
            "action": "new",
            "payload": [json.dumps({"Email": f"{k}@example.com"}) for k in keys],
            "zoho_id": None,
            "payload_hash": [int(k) * 31 for k in keys],
            "attempts": 0,
        }
    )


class _Zoho:
    """Answers upserts; ``hold`` keeps the calls of some batches (by first key) waiting for an event."""

    def __init__(self, answer=None, hold: dict[str, threading.Event] | None = None) -> None:
        self.answer = answer or (
            lambda record: RecordOutcome(ok=True, code="SUCCESS", action="insert", zoho_id="z" + record["Email"])
        )
        self.hold = hold or {}
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.answered: set[str] = set()

    def upsert(self, module, records, duplicate_check_fields=(), trigger=None):  # type: ignore[no-untyped-def]
        records = [json.loads(r) if isinstance(r, str) else r for r in records]  # RecordJSON: the plan's JSON
        first = records[0]["Email"].split("@")[0]
        with self.lock:
            self.started.append(first)
        if first in self.hold:
            assert self.hold[first].wait(10)
        outcomes = [self.answer(record) for record in records]
        with self.lock:
            self.answered.update(r["Email"].split("@")[0] for r in records)
        return outcomes


class _RecordingStore:
    """What the loader writes; ``on_write(n)`` runs during the n-th write."""

    def __init__(self, zoho: _Zoho, on_write=None) -> None:
        self.zoho, self.on_write, self.writes, self.written_ahead = zoho, on_write, [], []

    def write_ahead(self, rows):  # type: ignore[no-untyped-def]
        keys = [row["customer_key"] for row in rows]
        with self.zoho.lock:
            assert not set(keys) & self.zoho.answered, "a write-ahead row written after Zoho answered"
            assert {row["status"] for row in rows} <= {"unconfirmed", "converting"}
            self.written_ahead.extend(keys)
        return len(rows)

    def save_outcomes(self, rows):  # type: ignore[no-untyped-def]
        keys = [row["customer_key"] for row in rows]
        with self.zoho.lock:
            assert set(keys) <= self.zoho.answered, "an outcome written before Zoho answered"
            self.writes.append(keys)
        if self.on_write:
            self.on_write(len(self.writes))
        return len(rows)


def _wait_for(condition, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def write_every_round(monkeypatch):
    """Write the answered outcomes at the end of every round of answers (no grouping across rounds)."""
    from zoho_store_sync import loader

    monkeypatch.setattr(loader, "WRITE_EVERY_ROWS", 1)


def test_the_next_call_goes_out_before_the_answered_batch_is_written(write_every_round):
    release = threading.Event()
    zoho = _Zoho(hold={"101": release})

    def on_write(count: int) -> None:
        if count == 1:
            # the third call can start during the first write only if it was sent before
            assert _wait_for(lambda: len(zoho.started) == 3), zoho.started
            release.set()

    store = _RecordingStore(zoho, on_write=on_write)
    result = apply_plan(zoho, store, _changes(300), concurrency=2)  # type: ignore[arg-type]
    assert {str(k) for k in range(1, 101)} <= set(store.writes[0])  # the first batch, in the first write
    assert sorted(int(k) for keys in store.writes for k in keys) == list(range(1, 301))
    assert sorted(map(int, store.written_ahead)) == list(range(1, 301))  # each insert announced before its call
    assert (result.inserted, result.sent) == (300, 300)


def test_batches_answered_in_the_same_round_are_written_in_one_call(write_every_round):
    second, third = threading.Event(), threading.Event()
    zoho = _Zoho(hold={"101": second, "201": third})

    def on_write(count: int) -> None:
        if count == 1:  # while the first batch is written, the two others are answered
            second.set()
            third.set()
            assert _wait_for(lambda: len(zoho.answered) == 300)
            time.sleep(0.2)  # their futures are marked done just after the calls return

    store = _RecordingStore(zoho, on_write=on_write)
    apply_plan(zoho, store, _changes(300), concurrency=3)  # type: ignore[arg-type]
    assert [len(keys) for keys in store.writes] == [100, 200]


def test_answered_outcomes_are_written_500_at_a_time_and_the_rest_when_the_calls_end():
    zoho = _Zoho()
    store = _RecordingStore(zoho)
    apply_plan(zoho, store, _changes(1_250), concurrency=4)  # type: ignore[arg-type]
    sizes = [len(keys) for keys in store.writes]
    assert sum(sizes) == 1_250 and len(sizes) <= 3  # not one transaction per call
    assert all(size >= 500 for size in sizes[:-1])


def test_a_systemic_failure_stops_new_calls_and_still_writes_what_zoho_confirmed():
    release = threading.Event()

    def answer(record):  # type: ignore[no-untyped-def]
        if record["Email"] == "101@example.com":
            release.set()  # the first batch is answered once the second one has failed
            raise ZohoError("Zoho is down")
        return RecordOutcome(ok=True, code="SUCCESS", action="insert")

    zoho = _Zoho(answer=answer, hold={"1": release})
    store = _RecordingStore(zoho)
    with pytest.raises(ZohoError, match="Zoho is down"):
        apply_plan(zoho, store, _changes(500), concurrency=2)  # type: ignore[arg-type]
    assert store.writes == [[str(k) for k in range(1, 101)]]
    assert sorted(zoho.started, key=int) == ["1", "101"]  # no call after the failure


def test_counts_and_state_rows_for_a_mix_of_answers(state_url):
    def answer(record):  # type: ignore[no-untyped-def]
        key = int(record["Email"].split("@")[0])
        if key % 10 == 0:
            return RecordOutcome(ok=False, code="INVALID_DATA", message="invalid data", details={"api_name": "Phone"})
        if key % 10 == 1:
            return RecordOutcome(ok=False, code="DUPLICATE_DATA", message="duplicate")
        if key % 20 == 19:  # deleted inside Zoho
            return RecordOutcome(
                ok=False, code="INVALID_DATA", message="the id given seems to be invalid", details={"api_name": "id"}
            )
        return RecordOutcome(ok=True, code="SUCCESS", action="insert" if key % 2 else "update", zoho_id=f"z{key}")

    engine = make_engine(state_url)
    migrate(engine)
    store = StateStore(engine, "loader_counts")
    store.forget()
    zoho = _Zoho(answer=answer)
    result = apply_plan(zoho, store, _changes(1000), concurrency=4)  # type: ignore[arg-type]
    assert (result.sent, result.failed, result.vanished_in_zoho, result.inserted, result.updated) == (
        1000,
        200,
        50,
        350,
        400,
    )
    assert result.failure_codes == {"INVALID_DATA": 100, "DUPLICATE_DATA": 100}
    assert result.failed_retryable == sum(e["retryable"] for e in result.errors) and len(result.errors) == 200
    state = store.load().set_index("customer_key")
    assert len(state) == 1000
    assert state["status"].value_counts().to_dict() == {"synced": 750, "failed": 200, "deleted_in_zoho": 50}
    assert state.loc["20", "error_code"] == "INVALID_DATA" and state.loc["20", "attempts"] == 1
    assert state.loc["22", "zoho_id"] == "z22"
    store.forget()
    engine.dispose()
