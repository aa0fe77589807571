"""The sync page's data: plain functions over the state database returning JSON-ready dicts (times as ISO strings).

Nothing here reads ``zoho_sync_state`` for the overview: the runs write what it shows (``summary["state"]``, the
reset row's progress; ``state/health.py``). ``overview`` issues the same few queries for 1 tenant or 500 (a
tenant list is one bound parameter: an array on PostgreSQL, a JSON list on SQLite), each a short index range scan
per tenant, named beside it. The one-tenant functions read one tenant's rows through the same indexes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from zoho_store_sync.config import TenantConfig
from zoho_store_sync.state.tables import (
    DELETED_IN_ZOHO,
    credit_ledger,
    cursors,
    customers_state,
    record_errors,
    resets,
    runs,
)
from zoho_store_sync.state.writes import _aware

RUN_KINDS = ("sync", "dry_run", "reset", "dry_run_reset")  # a tenant's runs (a verify is not one)
STATE_KINDS = ("sync", "reset")  # the runs that count the tenant's state rows (a dry run changes none)
RESET_KINDS = ("reset", "dry_run_reset")
DAY = timedelta(hours=24)  # the overview's "last 24 h", and Zoho's rolling credit window (credits.CREDIT_WINDOW)
SOURCE_CURSOR = "source"  # pipeline.SOURCE_CURSOR (pipeline imports pandas: the api-server need not)
CSV_COLUMNS = ("at", "kind", "run_id", "customer_key", "email", "module", "code", "message", "retryable")
# A spreadsheet runs a cell starting with one of these as a formula (emails and messages come from stores and Zoho)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# --- helpers -------------------------------------------------------------------------------------------------
def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _aware(moment).isoformat()


def _listed(engine: sa.Engine, values: Sequence[str]) -> sa.TableValuedAlias:
    """``values`` as a one-column table (column ``key``), in one bound parameter whatever their number."""
    if engine.dialect.name == "postgresql":
        array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(sa.Text))
        return sa.func.unnest(array).table_valued("key").render_derived()
    return sa.func.json_each(json.dumps(list(values))).table_valued("value")


def _key(listed: sa.TableValuedAlias) -> sa.ColumnElement[str]:
    return listed.c.key if "key" in listed.c else listed.c.value


def _one_of(engine: sa.Engine, column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """``column IN values`` as one bound parameter (an index scan per value on both databases)."""
    if engine.dialect.name == "postgresql":
        kind = postgresql.ARRAY(sa.Integer if isinstance(column.type, sa.Integer) else sa.Text)
        return column == sa.any_(sa.bindparam(None, list(values), type_=kind))
    listed = sa.func.json_each(json.dumps(list(values))).table_valued("value")
    return column.in_(sa.select(listed.c.value))


def _latest_run_id(tenant: sa.ColumnElement[str], kinds: Sequence[str]) -> sa.ScalarSelect[Any]:
    """The id of the tenant's latest run of ``kinds``: a backward scan of ix_zoho_sync_runs_tenant_finished that
    stops at the first run of those kinds (nearly always the first row read)."""
    # ``kind`` through an expression no index has: a plain ``kind IN (...)`` lets PostgreSQL, guessing a kind rare,
    # pick uq_zoho_sync_runs_run (tenant_id, run_id, kind) and sort every run of the tenant (1,440 a month), 100x.
    return (
        sa.select(runs.c.id)
        .where(runs.c.tenant_id == tenant, sa.func.lower(runs.c.kind).in_(kinds))
        .order_by(runs.c.finished_at.desc())  # the index's order alone: a tie-break by id would sort every run
        .limit(1)
        .scalar_subquery()
    )


def _summary(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _sent(row: Any, summary: dict[str, Any]) -> int:
    """Records the run sent; a run recorded before migration 0011 has no ``sent``: its writes' outcomes then."""
    if row.sent is not None:
        return int(row.sent)
    return sum(int(summary.get(k) or 0) for k in ("inserted", "updated", "failed"))


def _run(row: Any) -> dict[str, Any]:
    summary = _summary(row.summary)
    return {
        "run_id": row.run_id,
        "kind": row.kind,
        "started_at": _iso(row.started_at),
        "finished_at": _iso(row.finished_at),
        # a run recorded before ``ok`` was: red only when its deletions were refused (a threshold is not known)
        "ok": bool(summary.get("ok", not summary.get("deletions_refused"))),
        "extracted": row.extracted,
        "sent": _sent(row, summary),
        "inserted": row.inserted,
        "updated": row.updated,
        "failed": row.failed,
        "invalid": summary.get("invalid"),
        "credits": row.credits,
        "duration_s": summary.get("duration_s"),
    }


RUN_COLUMNS = (
    runs.c.id,
    runs.c.tenant_id,
    runs.c.run_id,
    runs.c.kind,
    runs.c.started_at,
    runs.c.finished_at,
    runs.c.extracted,
    runs.c.sent,
    runs.c.inserted,
    runs.c.updated,
    runs.c.failed,
    runs.c.credits,
    runs.c.summary,
)


# --- all tenants at a glance ---------------------------------------------------------------------------------
def overview(engine: sa.Engine, tenants: Sequence[TenantConfig], now: datetime) -> list[dict[str, Any]]:
    """One dict per tenant, in the order given: its last run, records in Zoho (counted by that run), the last
    24 h, the org's credits, the next full pass and a running reset. Eight queries whatever the tenant count."""
    ids = [t.tenant_id for t in tenants]
    if not ids:
        return []
    day_ago = now - DAY
    listed = _listed(engine, ids)
    latest = sa.select(
        _key(listed).label("tenant_id"),
        _latest_run_id(_key(listed), RUN_KINDS).label("last_id"),
        _latest_run_id(_key(listed), STATE_KINDS).label("state_id"),
    )
    with engine.connect() as conn:
        pointers = {r.tenant_id: (r.last_id, r.state_id) for r in conn.execute(latest)}
        wanted = sorted({i for pair in pointers.values() for i in pair if i is not None})
        # by primary key
        rows = {r.id: r for r in conn.execute(sa.select(*RUN_COLUMNS).where(_one_of(engine, runs.c.id, wanted)))}
        # ix_zoho_sync_runs_tenant_finished: each tenant's last 24 h of runs (48 at half-hourly runs)
        day_runs = {
            r.tenant_id: r
            for r in conn.execute(
                sa.select(
                    runs.c.tenant_id,
                    sa.func.count().label("runs"),
                    sa.func.sum(
                        sa.func.coalesce(
                            runs.c.sent,
                            sa.func.coalesce(runs.c.inserted, 0)
                            + sa.func.coalesce(runs.c.updated, 0)
                            + sa.func.coalesce(runs.c.failed, 0),
                        )
                    ).label("sent"),
                    sa.func.sum(runs.c.failed).label("rejected"),
                    sa.func.sum(runs.c.credits).label("credits"),
                )
                .where(_one_of(engine, runs.c.tenant_id, ids), runs.c.finished_at > day_ago, runs.c.kind.in_(RUN_KINDS))
                .group_by(runs.c.tenant_id)
            )
        }
        # ix_zoho_sync_errors_tenant_at: each tenant's errors of the last 24 h
        invalid_24h: dict[str, int] = dict(
            conn.execute(
                sa.select(record_errors.c.tenant_id, sa.func.count())
                .where(
                    _one_of(engine, record_errors.c.tenant_id, ids),
                    record_errors.c.at > day_ago,
                    record_errors.c.kind == "invalid",
                )
                .group_by(record_errors.c.tenant_id)
            ).all()
        )
        # primary keys (tenant_id, stream) and (tenant_id)
        source_cursors = dict(
            conn.execute(
                sa.select(cursors.c.tenant_id, cursors.c.value).where(
                    _one_of(engine, cursors.c.tenant_id, ids), cursors.c.stream == SOURCE_CURSOR
                )
            ).all()
        )
        running = {
            r.tenant_id: r
            for r in conn.execute(
                sa.select(resets).where(_one_of(engine, resets.c.tenant_id, ids), resets.c.status == "in_progress")
            )
        }
    summaries = {i: _summary(row.summary) for i, row in rows.items()}
    org_of: dict[str, str] = {}
    for tenant_id, pair in pointers.items():
        for run_id in pair:
            key = summaries.get(run_id, {}).get("org_key") if run_id is not None else None
            if key and tenant_id not in org_of:
                org_of[tenant_id] = key
    budgets = credit_budgets(engine, sorted(set(org_of.values())), now)
    out = []
    for tenant in tenants:
        last_id, state_id = pointers.get(tenant.tenant_id, (None, None))
        state = summaries.get(state_id, {}).get("state") if state_id is not None else None
        day = day_runs.get(tenant.tenant_id)
        org = org_of.get(tenant.tenant_id)
        budget = budgets.get(org) if org else None
        reset_row = running.get(tenant.tenant_id)
        out.append(
            {
                "tenant_id": tenant.tenant_id,
                "dag_id": tenant.dag_id,
                "source": tenant.source,
                "modules": list(tenant.modules),
                "last_run": _run(rows[last_id]) if last_id in rows else None,
                "in_zoho": dict((state or {}).get("in_zoho", {})),
                "deleted_in_zoho": (state or {}).get("deleted_in_zoho"),
                "failed_records": (state or {}).get("failed"),
                "last_24h": {
                    "runs": int(day.runs) if day else 0,
                    "sent": int(day.sent or 0) if day else 0,
                    "rejected": int(day.rejected or 0) if day else 0,
                    "invalid": int(invalid_24h.get(tenant.tenant_id, 0)),
                    "credits": int(day.credits or 0) if day else 0,
                },
                "credits_budget": {**budget, "reserve": tenant.zoho_credit_reserve} if budget else None,
                "next_full_pass": next_full_pass(tenant, source_cursors.get(tenant.tenant_id)),
                "reset": _progress(reset_row, now) if reset_row is not None else None,
            }
        )
    return out


def next_full_pass(tenant: TenantConfig, cursor_value: str | None) -> str | None:
    """When the first run after which is a full pass: the last full pass (``last_full_at``, kept in the source
    cursor by every store) plus the tenant's ``full_sync_every_hours``. None: the next run is one (no cursor)."""
    last_full = _summary(cursor_value).get("last_full_at")
    if not last_full:
        return None
    try:
        return _iso(datetime.fromisoformat(str(last_full)) + timedelta(hours=tenant.full_sync_every_hours))
    except ValueError:
        return None


def credit_budgets(engine: sa.Engine, org_keys: Sequence[str], now: datetime) -> dict[str, dict[str, Any]]:
    """Each org's credits as ``credits.availability`` reckons them, summed in the database (two queries over
    ix_zoho_sync_credits_org_used_at): ``remaining`` is Zoho's last X-API-CREDITS-REMAINING of the last 24 h, less
    what the org's tenants spent since, plus what calls of the 24 h before it gave back (None: no count in 24 h);
    ``limit`` = remaining + used_24h, the org's day as far as this product sees it (other integrations' use is
    not in the ledger)."""
    if not org_keys:
        return {}
    day_ago = now - DAY
    listed = _listed(engine, org_keys)
    org = _key(listed)
    c = credit_ledger.alias("c")
    last_report = (
        sa.select(c.c.id)
        .where(c.c.org_key == org, c.c.remaining.is_not(None), c.c.used_at > day_ago, c.c.used_at <= now)
        .order_by(c.c.used_at.desc(), c.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    used = (
        sa.select(sa.func.coalesce(sa.func.sum(c.c.credits), 0))
        .where(c.c.org_key == org, c.c.used_at > day_ago, c.c.used_at <= now)
        .scalar_subquery()
    )
    last = credit_ledger.alias("last")
    later = (
        sa.select(sa.func.coalesce(sa.func.sum(c.c.credits), 0))
        .where(
            c.c.org_key == last.c.org_key,
            c.c.used_at <= now,
            sa.or_(c.c.used_at > last.c.used_at, sa.and_(c.c.used_at == last.c.used_at, c.c.id > last.c.id)),
        )
        .scalar_subquery()
    )
    freed = (
        sa.select(sa.func.coalesce(sa.func.sum(c.c.credits), 0))
        .where(c.c.org_key == last.c.org_key, c.c.used_at > _day_before(engine, last.c.used_at), c.c.used_at <= day_ago)
        .scalar_subquery()
    )
    with engine.connect() as conn:
        heads = {
            r.org_key: r
            for r in conn.execute(sa.select(org.label("org_key"), last_report.label("last_id"), used.label("used")))
        }
        report_ids = [r.last_id for r in heads.values() if r.last_id is not None]
        reports = {
            r.org_key: r
            for r in conn.execute(
                sa.select(
                    last.c.org_key, last.c.remaining, last.c.used_at, later.label("since"), freed.label("freed")
                ).where(_one_of(engine, last.c.id, report_ids))
            )
        }
    budgets = {}
    for key in org_keys:
        head = heads.get(key)
        used_24h = int(head.used) if head is not None else 0
        report = reports.get(key)
        remaining = None if report is None else max(0, int(report.remaining) - int(report.since) + int(report.freed))
        limit = None if remaining is None else remaining + used_24h
        budgets[key] = {
            "org_key": key,
            "used_24h": used_24h,
            "remaining": remaining,
            "limit": limit,
            "share_used": round(used_24h / limit, 4) if limit else None,
            "reported_at": _iso(report.used_at) if report is not None else None,
        }
    return budgets


def _day_before(engine: sa.Engine, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """``column`` less 24 h in the database's own date arithmetic (SQLite keeps times as text, microseconds)."""
    if engine.dialect.name == "postgresql":
        return column - sa.text("interval '24 hours'")
    # SQLAlchemy stores "YYYY-MM-DD HH:MM:SS.ffffff": the day moved back, the microseconds kept as they are
    return sa.func.strftime("%Y-%m-%d %H:%M:%S", column, "-1 day").concat(sa.func.substr(column, 20))


# --- one tenant --------------------------------------------------------------------------------------------------
def tenant_runs(engine: sa.Engine, tenant_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The tenant's last ``limit`` runs, oldest first (the plots): a backward scan of
    ix_zoho_sync_runs_tenant_finished."""
    query = (
        sa.select(*RUN_COLUMNS)
        .where(runs.c.tenant_id == tenant_id, runs.c.kind.in_(RUN_KINDS))
        .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [_run(row) for row in reversed(rows)]


def _errors_filter(tenant_id: str, kind: str | None, email_contains: str | None) -> list[sa.ColumnElement[bool]]:
    where = [record_errors.c.tenant_id == tenant_id]
    if kind:
        where.append(record_errors.c.kind == kind)
    if email_contains:
        escaped = email_contains.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(sa.func.lower(record_errors.c.email).like(f"%{escaped}%", escape="\\"))
    return where


ERROR_COLUMNS = (
    record_errors.c.at,
    record_errors.c.kind,
    record_errors.c.run_id,
    record_errors.c.customer_key,
    record_errors.c.email,
    record_errors.c.module,
    record_errors.c.code,
    record_errors.c.message,
    record_errors.c.retryable,
)


def _error(row: Any) -> dict[str, Any]:
    return {**row._mapping, "at": _iso(row.at), "retryable": None if row.retryable is None else bool(row.retryable)}


def tenant_errors(
    engine: sa.Engine,
    tenant_id: str,
    *,
    kind: str | None = None,
    email_contains: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """The tenant's rejected (Zoho refused) and invalid (never sent) records, newest first, with their reasons;
    ``email_contains`` searches emails (case-insensitive). ix_zoho_sync_errors_tenant_at: the tenant's rows only."""
    where = _errors_filter(tenant_id, kind, email_contains)
    page = (
        sa.select(*ERROR_COLUMNS)
        .where(*where)
        .order_by(record_errors.c.at.desc(), record_errors.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(record_errors).where(*where)).scalar()
        rows = [_error(row) for row in conn.execute(page)]
    return {"total": int(total or 0), "rows": rows}


def _cell(value: Any) -> Any:
    """A spreadsheet-safe cell: text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def errors_csv(
    engine: sa.Engine, tenant_id: str, *, kind: str | None = None, email_contains: str | None = None
) -> Iterator[str]:
    """``tenant_errors``' rows as CSV lines (header first), all of them, streamed from the database in batches."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Sequence[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([_cell(c) for c in cells])
        return buffer.getvalue()

    yield line(CSV_COLUMNS)
    query = (
        sa.select(*ERROR_COLUMNS)
        .where(*_errors_filter(tenant_id, kind, email_contains))
        .order_by(record_errors.c.at.desc(), record_errors.c.id.desc())
    )
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=1000).execute(query):
            error = _error(row)
            yield line([error[c] for c in CSV_COLUMNS])


def deleted_in_zoho(engine: sa.Engine, tenant_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The tenant's records a person deleted in Zoho (not resent until a reset), latest first. Reads the tenant's
    state rows (its primary-key prefix): one tenant, on its own page, never the overview."""
    query = (
        sa.select(
            customers_state.c.customer_key,
            customers_state.c.email,
            customers_state.c.module,
            customers_state.c.zoho_id,
            customers_state.c.updated_at,
        )
        .where(customers_state.c.tenant_id == tenant_id, customers_state.c.status == DELETED_IN_ZOHO)
        .order_by(customers_state.c.updated_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [{**row._mapping, "updated_at": _iso(row.updated_at)} for row in conn.execute(query)]


def _progress(row: Any, now: datetime) -> dict[str, Any]:
    """A reset row as a progress bar: done/total as the last chunk counted them, the rate since the start, the
    time left from now."""
    started = _aware(row.started_at)
    counted = _aware(row.progress_at) if row.progress_at is not None else None
    done, total = row.records_done, row.records_total
    rate = None
    if done and counted is not None and counted > started:
        rate = done / (counted - started).total_seconds()
    eta = None
    if rate and total is not None and counted is not None:
        eta = max(0.0, (total - done) / rate - (now - counted).total_seconds())
    return {
        "status": row.status,
        "modules": row.modules.split(","),
        "run_id": row.run_id,
        "done": done,
        "total": total,
        "share": round(done / total, 4) if done is not None and total else None,
        "rate_per_s": round(rate, 2) if rate else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "started_at": _iso(started),
        "progress_at": _iso(counted),
        "finished_at": _iso(row.finished_at),
    }


def reset_progress(engine: sa.Engine, tenant_id: str, now: datetime) -> dict[str, Any] | None:
    """The tenant's reset (running or the last one: its row, by primary key) as a progress bar; None if none."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(resets).where(resets.c.tenant_id == tenant_id)).first()
    return _progress(row, now) if row is not None else None


def last_resets(engine: sa.Engine, tenant_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The tenant's last finished resets (and dry-run resets), latest first, with what each sent and cost."""
    query = (
        sa.select(*RUN_COLUMNS)
        .where(runs.c.tenant_id == tenant_id, runs.c.kind.in_(RESET_KINDS))
        .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        summary = _summary(row.summary)
        out.append({**_run(row), "modules": (summary.get("reset") or {}).get("write_path", {})})
    return out


def last_verify(engine: sa.Engine, tenant_id: str) -> dict[str, Any] | None:
    """The tenant's last ``verify`` (zoho_connect DAG or CLI): when, ok, and each check's line."""
    query = (
        sa.select(runs.c.run_id, runs.c.finished_at, runs.c.summary)
        .where(runs.c.tenant_id == tenant_id, runs.c.kind == "verify")
        .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    summary = _summary(row.summary)
    return {
        "run_id": row.run_id,
        "finished_at": _iso(row.finished_at),
        "ok": bool(summary.get("ok")),
        "checks": list(summary.get("checks", [])),
    }


def mapping_in_force(tenant: TenantConfig) -> dict[str, Any]:
    """The tenant's mapping file and, per synced module, Zoho field -> customer field with its overrides applied
    (or what is wrong with it)."""
    from zoho_store_sync.errors import MappingError
    from zoho_store_sync.mapping_files import mapping_fields

    try:
        fields = mapping_fields(tenant)
    except MappingError as exc:
        return {"file": tenant.mapping_file, "error": str(exc), "modules": {}}
    return {
        "file": tenant.mapping_file,
        "overrides": {m: dict(o) for m, o in tenant.mapping_overrides.items()},
        "modules": {m: fields[m] for m in tenant.modules},
    }
