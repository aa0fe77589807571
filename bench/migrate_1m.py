"""Figure 7, migrate_1m: `db migrate` on a 1,000,000-row first-release state table, and how long it blocked writes."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import common

SIZE, QUICK_SIZE = 1_000_000, 5_000
WRITE_ROWS = 10  # rows per upsert: a small answered batch
QUIET_S = 1.0  # writer alone before and after, for its ordinary latency
TARGET_STALL_S = 1.0
BY_HAND_SQL = [  # the README's instructions before versioned migrations (state.py's comments)
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_zoho_sync_state_zoho_id ON zoho_sync_state (tenant_id, zoho_id)",
    "DROP INDEX IF EXISTS ix_zoho_sync_state_email",
    "ALTER TABLE zoho_sync_state SET (fillfactor = 50)",
    "VACUUM FULL zoho_sync_state",
]


class Writer(threading.Thread):
    """A sync recording Zoho's answers: upserts WRITE_ROWS existing state rows per call (new hashes), back to back,
    until stopped; keeps each call's latency. Its longest wait while a change runs is how long writes were blocked."""

    def __init__(self, url: str, n: int) -> None:
        super().__init__(daemon=True)
        from zoho_store_sync.state import StateStore, make_engine

        self.engine = make_engine(url)
        self.store = StateStore(self.engine, "bench")
        self.n, self.stop, self.errors = n, threading.Event(), []
        self.latencies: list[tuple[float, float]] = []  # (start, seconds)

    def run(self) -> None:
        from bench.state_write_1m import outcomes

        template = outcomes(WRITE_ROWS).to_dict("records")
        step = 0
        while not self.stop.is_set():
            step += 1
            keys = [(step * 7919 + i * 104_729) % self.n + 1 for i in range(len(template))]  # spread, existing
            rows = [
                {**row, "customer_key": str(key), "payload_hash": step * 31 + i}
                for i, (row, key) in enumerate(zip(template, keys))
            ]
            started = time.perf_counter()
            try:
                self.store.save_outcomes(rows)
            except Exception as exc:  # noqa: BLE001 - reported, the measurement goes on
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
            self.latencies.append((started, time.perf_counter() - started))

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """Writes that started between ``start`` and ``end``: how many, the longest, the median."""
        during = sorted(seconds for began, seconds in self.latencies if start <= began <= end)
        return {
            "writes": len(during),
            "longest_s": round(during[-1], 4) if during else None,
            "median_ms": round(during[len(during) // 2] * 1000, 2) if during else None,
        }

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        self.engine.dispose()


def _first_release_table(url: str, n: int) -> None:
    """The first release's schema, unversioned (as that release left it), with n state rows."""
    import sqlalchemy as sa

    from bench.state_write_1m import outcomes
    from zoho_store_sync.state import StateStore, make_engine
    from zoho_store_sync.state_migrations import VERSION_TABLE, migrate

    migrate(url, "0001")  # revision 0001 is the first release's schema (the migration tests prove it equal)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
    StateStore(engine, "bench").save_outcomes(outcomes(n))
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE zoho_sync_state"))  # as autovacuum leaves a table in use
    engine.dispose()


def _under_writes(url: str, n: int, change: Callable[[], Any]) -> dict[str, Any]:
    writer = Writer(url, n)
    writer.start()
    time.sleep(QUIET_S)
    started = time.perf_counter()
    result = change()
    ended = time.perf_counter()
    time.sleep(QUIET_S)
    writer.finish()
    return {
        "seconds": ended - started,
        "result": result,
        "during": writer.summary(started, ended),
        "quiet": writer.summary(0, started),
        "writer_errors": writer.errors[:5],
    }


def _rows(url: str) -> int:
    import sqlalchemy as sa

    from zoho_store_sync.state import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM zoho_sync_state")).scalar()
    engine.dispose()
    return int(count or 0)


def measure(n: int, postgres: bool) -> dict[str, Any]:
    from zoho_store_sync import state_migrations

    @contextlib.contextmanager
    def database() -> Iterator[str]:
        if postgres:
            with common.scratch_postgres() as url:
                yield url
        else:
            yield f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-migrate-')) / 'state.db'}"

    out: dict[str, Any] = {"n": n, "database": "postgresql" if postgres else "sqlite"}
    with database() as url:
        _first_release_table(url, n)
        run = _under_writes(url, n, lambda: state_migrations.migrate(url))
        migration = run.pop("result")
        out["migration"] = {
            **run,
            "steps": [[rev, round(s, 3)] for rev, s in migration.steps],
            "stamped": migration.stamped,
            "after": migration.after,
            "rows_after": _rows(url),
            "at_head": state_migrations.check(url).state == "current",
        }
    if postgres:
        with database() as url:
            _first_release_table(url, n)

            def by_hand() -> None:
                import sqlalchemy as sa

                from zoho_store_sync.state import make_engine

                engine = make_engine(url)
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    for statement in BY_HAND_SQL:
                        conn.execute(sa.text(statement))
                engine.dispose()

            run = _under_writes(url, n, by_hand)
            run.pop("result")
            out["by_hand_sql"] = {**run, "statements": BY_HAND_SQL}
    return out


def run(quick: bool = False) -> list[common.Figure]:
    postgres = common.postgres_available()
    out = common.run_worker(
        "bench.migrate_1m", {"n": QUICK_SIZE if quick else SIZE, "postgres": postgres}, timeout=3600
    )
    migration = out["migration"]
    stall = migration["during"]["longest_s"] or 0.0
    kept = migration["rows_after"] == out["n"] and migration["at_head"] and not migration["writer_errors"]
    details: dict[str, Any] = {
        "rows": out["n"],
        "database": out["database"],
        "migration_s": round(migration["seconds"], 3),
        "steps_s": migration["steps"],
        "recognised_and_stamped": migration["stamped"],
        "writes_during_migration": migration["during"]["writes"],
        "write_median_ms": {"quiet": migration["quiet"]["median_ms"], "during": migration["during"]["median_ms"]},
        "rows_kept_and_at_head": kept,
        "runs": out,
        "value_is": f"longest wait of a {WRITE_ROWS}-row state upsert (a sync writing outcomes) that started while "
        f"`db migrate` upgraded a {out['n']:,}-row first-release table to head",
    }
    if "by_hand_sql" not in out:
        details["note"] = (
            "PostgreSQL not reachable at " + common.POSTGRES_ADMIN_URL + ": SQLite only (its migration "
            "holds the database's write lock throughout, by design)"
        )
        return [
            common.Figure(
                "migrate_1m",
                round(stall, 4),
                "s",
                "n/a (no PostgreSQL)",
                None,
                None,
                f"writes blocked < {TARGET_STALL_S:g} s on PostgreSQL",
                False,
                details,
            )
        ]
    by_hand = out["by_hand_sql"]
    baseline = by_hand["during"]["longest_s"] or 0.0
    details.update(
        {
            "by_hand_sql_s": round(by_hand["seconds"], 3),
            "baseline_is": "the same writer while the README's former by-hand SQL ran (VACUUM FULL locks "
            "the table for its whole rewrite)",
        }
    )
    return [
        common.Figure(
            name="migrate_1m",
            value=round(stall, 4),
            unit="s",
            baseline="by-hand SQL (CONCURRENTLY index, VACUUM FULL)",
            baseline_value=round(baseline, 4),
            ratio=round(baseline / stall, 1) if stall else None,
            target=f"writes blocked < {TARGET_STALL_S:g} s, every row kept",
            met=stall < TARGET_STALL_S and kept,
            details=details,
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(**args))
