"""Figure state_write_1m: writing 1,000,000 outcomes to the state table, PostgreSQL and SQLite."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import common

TARGET_SECONDS = 10.0


def outcomes(n: int) -> pd.DataFrame:
    keys = np.arange(1, n + 1).astype(str)
    return pd.DataFrame({
        "customer_key": keys, "email": np.char.add(keys, "@example.com"),
        "module": np.where(np.arange(n) % 2 == 0, "Contacts", "Leads"),
        "zoho_id": np.char.add("5700000", keys), "payload_hash": np.arange(n, dtype="int64") * 7919,
        "status": "synced", "error_code": None, "error_message": None, "retryable": None, "attempts": 0,
    })


def _product(url: str, frame: pd.DataFrame) -> float:
    from zoho_store_sync.state import StateStore, make_engine

    store = StateStore(make_engine(url), "bench")
    store.create_schema()
    store.forget()
    started = time.perf_counter()
    store.save_outcomes(frame)
    elapsed = time.perf_counter() - started
    assert len(store.load()) == len(frame)
    store.engine.dispose()
    return elapsed


def _baseline(url: str, frame: pd.DataFrame) -> float:
    """Plain executemany INSERT ... ON CONFLICT DO UPDATE, the obvious way."""
    import sqlalchemy as sa

    from zoho_store_sync.state import STATE_COLUMNS, StateStore, _dialect_insert, customers_state, make_engine, now_utc

    engine = make_engine(url)
    StateStore(engine, "bench").forget()
    rows = [{**dict(zip(STATE_COLUMNS, row)), "tenant_id": "bench", "updated_at": now_utc()}
            for row in frame[STATE_COLUMNS].itertuples(index=False, name=None)]
    for row in rows:
        row["payload_hash"] = int(row["payload_hash"])
        row["attempts"] = int(row["attempts"])
    insert = _dialect_insert(engine)(customers_state)
    statement = insert.on_conflict_do_update(index_elements=["tenant_id", "customer_key"],
                                             set_={c: insert.excluded[c] for c in STATE_COLUMNS[1:]})
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(statement, rows)
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM zoho_sync_state WHERE tenant_id = 'bench'")).scalar() == len(frame)
    engine.dispose()
    return elapsed


def run(quick: bool = False) -> list[common.Figure]:
    n = 20_000 if quick else 1_000_000
    repeats = 1 if quick else 3
    frame = outcomes(n)
    figures = []
    targets = []
    if common.postgres_available():
        with common.scratch_postgres() as url:
            targets.append(("postgresql", url))
            product = [_product(url, frame) for _ in range(repeats)]
            baseline = [_baseline(url, frame) for _ in range(1)]
            value = common.median(product)
            figures.append(common.Figure(
                name="state_write_1m", value=round(value, 2), unit="s",
                baseline="executemany INSERT ... ON CONFLICT (PostgreSQL)", baseline_value=round(common.median(baseline), 2),
                ratio=round(common.median(baseline) / value, 1), target=f"< {TARGET_SECONDS:g} s on PostgreSQL",
                met=value < TARGET_SECONDS if n >= 1_000_000 else True,
                details={"rows": n, "database": "postgresql", "runs_s": [round(t, 2) for t in product]}))
    sqlite_url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-state-')) / 'state.db'}"
    product = [_product(sqlite_url, frame) for _ in range(repeats)]
    value = common.median(product)
    figures.append(common.Figure(
        name="state_write_1m_sqlite", value=round(value, 2), unit="s", baseline="(informational: the embedded default)",
        baseline_value=None, ratio=None, target="reported, no target", met=True,
        details={"rows": n, "database": "sqlite", "runs_s": [round(t, 2) for t in product]}))
    return figures
