"""Figure 6, state_write_1m: StateStore.save_outcomes of 1M outcomes and of the loader's batches, vs executemany."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import common

SIZE, BATCHED_SIZE = 1_000_000, 100_000
QUICK_SIZE, QUICK_BATCHED_SIZE = 5_000, 3_000
BATCH = 100  # outcomes per Zoho write call: what the loader hands save_outcomes per answered call
TARGET_SECONDS = 10.0


def outcomes(n: int, seed: int = 3) -> pd.DataFrame:
    """What the loader hands save_outcomes after Zoho confirmed a batch: mostly synced, a few rejected."""
    from zoho_store_sync.state import STATE_COLUMNS

    rng = np.random.default_rng(seed)
    failed = rng.random(n) < 0.01
    frame = pd.DataFrame(
        {
            "customer_key": pd.Series(np.arange(1, n + 1)).astype(str).astype("string"),
            "email": [f"customer{i}@example.com" for i in range(n)],
            "module": np.where(rng.random(n) < 0.55, "Contacts", "Leads").astype(object),
            "zoho_id": [str(5_700_000_000_000_000_000 + i) for i in range(n)],
            "payload_hash": rng.integers(-(2**63), 2**63 - 1, n, dtype="int64"),
            "status": np.where(failed, "failed", "synced").astype(object),
            "error_code": np.where(failed, "INVALID_DATA", None).astype(object),
            "error_message": np.where(failed, "INVALID_DATA: invalid data {'api_name': 'Phone'}", None).astype(object),
            "retryable": np.where(failed, False, None).astype(object),
            "attempts": failed.astype("int64"),
        }
    )
    return frame[STATE_COLUMNS]


def changed(frame: pd.DataFrame) -> pd.DataFrame:
    """The same customers, every payload changed (a mapping change re-sent everything)."""
    return frame.assign(payload_hash=~frame["payload_hash"])


def loader_batches(frame: pd.DataFrame) -> list[list[dict[str, Any]]]:
    """The frame as the loader's per-call lists of dicts (Python values, None for missing)."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [records[start : start + BATCH] for start in range(0, len(records), BATCH)]


def baseline_write(engine: Any, tenant_id: str, rows: list[dict[str, Any]]) -> None:
    """Plain executemany of INSERT ... ON CONFLICT DO UPDATE: a list of dicts through SQLAlchemy Core."""
    from zoho_store_sync.state import STATE_COLUMNS, _dialect_insert, customers_state

    stamp = datetime.now(UTC)
    records = [{**row, "tenant_id": tenant_id, "updated_at": stamp} for row in rows]
    insert = _dialect_insert(engine)(customers_state)
    statement = insert.on_conflict_do_update(
        index_elements=["tenant_id", "customer_key"],
        set_={name: insert.excluded[name] for name in STATE_COLUMNS[1:] + ["updated_at"]},
    )
    with engine.begin() as conn:
        conn.execute(statement, records)


def _truncate(engine: Any) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM zoho_sync_state" if engine.dialect.name == "sqlite" else "TRUNCATE zoho_sync_state")
        )


def _check(engine: Any, frame: pd.DataFrame) -> None:
    """The table holds the frame's rows, with the frame's hashes (answers, not times)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        count, first = conn.execute(
            sa.text(
                "SELECT count(*), max(CASE WHEN customer_key = '1' THEN payload_hash END) FROM zoho_sync_state "
                "WHERE tenant_id = 'bench'"
            )
        ).one()
    assert (count, first) == (len(frame), int(frame["payload_hash"].iloc[0])), (count, first)


def measure(n: int, batched_n: int, repeats: int, baseline_repeats: int, postgres: bool) -> dict[str, Any]:
    from zoho_store_sync.state import StateStore, make_engine
    from zoho_store_sync.state_migrations import migrate

    frame = outcomes(n)
    again = changed(frame)
    batches = loader_batches(outcomes(batched_n))
    result: dict[str, Any] = {"n": n, "batched_n": batched_n, "batch": BATCH}

    def rounds(url: str, label: str) -> None:
        engine = make_engine(url)
        migrate(engine)
        store = StateStore(engine, "bench")
        fresh, existing, per_batch, baseline = [], [], [], []
        for _ in range(repeats):
            _truncate(engine)
            fresh.append(common.timed(lambda: store.save_outcomes(frame))[0])  # a tenant without rows: all new
            _check(engine, frame)
            existing.append(common.timed(lambda: store.save_outcomes(again))[0])  # every row exists and changed
            _check(engine, again)
        for _ in range(repeats):
            _truncate(engine)
            seconds = common.timed(lambda: [store.save_outcomes(batch) for batch in batches])[0]
            per_batch.append(seconds / len(batches))
        for _ in range(baseline_repeats):
            _truncate(engine)
            seconds = common.timed(lambda: [baseline_write(engine, "bench", batch) for batch in batches])[0]
            baseline.append(seconds / len(batches))
        result[label] = {
            "insert_s": fresh,
            "upsert_existing_s": existing,
            "per_batch_s": per_batch,
            "baseline_per_batch_s": baseline,
        }
        engine.dispose()

    if postgres:
        with common.scratch_postgres() as url:
            rounds(url, "postgresql")
    rounds(f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-state-')) / 'state.db'}", "sqlite")
    return result


def run(quick: bool = False) -> list[common.Figure]:
    postgres = common.postgres_available()
    args = {
        "n": QUICK_SIZE if quick else SIZE,
        "batched_n": QUICK_BATCHED_SIZE if quick else BATCHED_SIZE,
        "repeats": 1 if quick else 3,
        "baseline_repeats": 1 if quick else 2,
        "postgres": postgres,
    }
    out = common.run_worker("bench.state_write_1m", args, timeout=3600)
    med = {db: {k: common.median(v) for k, v in out[db].items()} for db in ("postgresql", "sqlite") if db in out}
    per_batch = {
        db: {
            "product_ms": round(m["per_batch_s"] * 1000, 2),
            "baseline_ms": round(m["baseline_per_batch_s"] * 1000, 2),
            "ratio": round(m["baseline_per_batch_s"] / m["per_batch_s"], 1),
        }
        for db, m in med.items()
    }
    details: dict[str, Any] = {
        "outcomes": out["n"],
        "runs": out,
        "medians_s": {db: {k: round(v, 4) for k, v in m.items()} for db, m in med.items()},
        "per_batch": per_batch,
        "per_batch_is": f"{out['batched_n']:,} outcomes in save_outcomes calls of {out['batch']} (lists of dicts, as "
        "the loader writes each answered Zoho call) into a tenant without rows; ms per call",
    }
    if not postgres:
        details["note"] = "PostgreSQL not reachable at " + common.POSTGRES_ADMIN_URL + ": SQLite only"
        sqlite = med["sqlite"]
        return [
            common.Figure(
                "state_write_1m",
                round(max(sqlite["insert_s"], sqlite["upsert_existing_s"]), 3),
                "s",
                "n/a (no PostgreSQL)",
                None,
                None,
                f"< {TARGET_SECONDS:g} s on PostgreSQL",
                False,
                details,
            )
        ]
    pg = med["postgresql"]
    value = max(pg["insert_s"], pg["upsert_existing_s"])
    baseline = pg["baseline_per_batch_s"] * out["n"] / out["batch"]
    details.update(
        {
            "value_is": f"PostgreSQL, {out['n']:,} outcomes in one save_outcomes call: the slower of a tenant without "
            "rows (first sync, full reset) and a tenant whose rows all exist and all changed",
            "postgresql_insert_s": round(pg["insert_s"], 3),
            "postgresql_upsert_existing_s": round(pg["upsert_existing_s"], 3),
            "sqlite_insert_s": round(med["sqlite"]["insert_s"], 3),
            "sqlite_upsert_existing_s": round(med["sqlite"]["upsert_existing_s"], 3),
            "baseline_is": f"ms per {out['batch']}-outcome executemany measured on {out['batched_n']:,} outcomes, "
            f"times {out['n'] // out['batch']:,} calls",
        }
    )
    return [
        common.Figure(
            name="state_write_1m",
            value=round(value, 3),
            unit="s",
            baseline="executemany INSERT ... ON CONFLICT DO UPDATE (SQLAlchemy Core, lists of dicts), extrapolated",
            baseline_value=round(baseline, 1),
            ratio=round(baseline / value, 1),
            target=f"< {TARGET_SECONDS:g} s on PostgreSQL, new and existing rows",
            met=pg["insert_s"] < TARGET_SECONDS and pg["upsert_existing_s"] < TARGET_SECONDS,
            details=details,
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(**args))
