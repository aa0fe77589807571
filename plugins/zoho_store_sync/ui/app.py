"""The "Zoho sync" page's web app: the page and its JSON API, each request checked through Airflow's auth manager.

Airflow mounts a plugin's FastAPI app on the api-server but does not authenticate it. Every route here (the page,
its script and style, the JSON API, the CSV download) resolves the user as Airflow's own API does (``get_user``:
a ``Authorization: Bearer`` JWT, else the ``_token`` cookie the Airflow UI sets) and lets through only a user the
auth manager allows both to read the ``zoho_sync_tenants`` Variable (``is_authorized_variable``, GET, its key) and
to see the custom view "Zoho sync" (``is_authorized_custom_view``, GET): no user 401, any other user 403. With
Airflow's SimpleAuthManager that admits the ``op`` and ``admin`` roles and refuses ``viewer`` and ``user`` (they
may not read Variables); with another auth manager, grant those two permissions.

The data comes from ``PageSources``: in the api-server the Variable, the state Connections and the metadata DB
(``server_sources``), in tests whatever the test gives. No request ever migrates a state database: one behind this
code's schema is shown as such, with the command that migrates it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import VariableDetails
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from zoho_store_sync.config import TenantConfig, TenantsParseResult, parse_tenants
from zoho_store_sync.settings import TENANTS_VARIABLE
from zoho_store_sync.ui import queries

log = logging.getLogger(__name__)

PAGE_RESOURCE = "Zoho sync"  # the custom view's name in the auth manager
STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
# Same-origin only: the page draws its plots itself and calls no other host (users' Airflows may be offline).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_ERROR_TENANT = re.compile(r"^tenant '([^']+)'")


@dataclass(frozen=True)
class PageSources:
    """Where the page's figures come from: the api-server's (``server_sources``) or a test's."""

    load_tenants: Callable[[], TenantsParseResult]
    engine_for: Callable[[str], sa.Engine]  # state Connection id -> engine (never migrated here)
    schema_problem: Callable[[sa.Engine], str | None]  # None: the schema is at this code's revision
    last_dag_runs: Callable[[Sequence[str]], dict[str, dict[str, Any]]]  # dag_id -> its latest Airflow run
    auth_manager: Callable[[], BaseAuthManager[Any]]
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


# --- the api-server's sources ---------------------------------------------------------------------------------


def server_tenants() -> TenantsParseResult:
    """The tenants Variable as the api-server reads it.

    ``airflow.models.Variable.get`` (environment variables, secrets backends, then the metadata DB). Not
    ``airflow.sdk.Variable.get``: outside a task it picks its backends by ``_AIRFLOW_PROCESS_CONTEXT``, which the
    api-server does not set, and then skips the metadata DB, so a Variable set in the UI would read as missing.
    """
    from airflow.models import Variable

    return parse_tenants(Variable.get(TENANTS_VARIABLE, default_var="[]"))


def server_engine(conn_id: str) -> sa.Engine:
    """The state database of a Connection, resolved the server way (``airflow.models.Connection``, same reason)."""
    from airflow.models import Connection

    from zoho_store_sync.state.engine import engine_url_from_connection

    return _engine_for_url(engine_url_from_connection(Connection.get_connection_from_secrets(conn_id)))


@functools.lru_cache(maxsize=32)
def _engine_for_url(url: str) -> sa.Engine:
    """One pool per state database in the api-server process."""
    from zoho_store_sync.state.engine import make_engine

    return make_engine(url)


def schema_problem(engine: sa.Engine) -> str | None:
    """Why the page cannot read this database (its revision is not this code's), without changing it."""
    from zoho_store_sync.state_migrations import check

    status = check(engine)
    return None if status.state == "current" else status.message()


def server_last_dag_runs(dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The latest Airflow run of each DAG, one query on the metadata DB (the api-server may read it)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    if not dag_ids:
        return {}
    latest = (
        sa.select(DagRun.dag_id, sa.func.max(DagRun.id).label("id"))
        .where(DagRun.dag_id.in_(list(dag_ids)))
        .group_by(DagRun.dag_id)
        .subquery()
    )
    query = sa.select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.start_date, DagRun.end_date).join(
        latest, DagRun.id == latest.c.id
    )
    with create_session() as session:
        return {
            row.dag_id: {
                "run_id": row.run_id,
                "state": str(getattr(row.state, "value", row.state)),
                "start_date": _iso(row.start_date),
                "end_date": _iso(row.end_date),
            }
            for row in session.execute(query)
        }


def server_auth_manager() -> BaseAuthManager[Any]:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def server_sources() -> PageSources:
    return PageSources(
        load_tenants=server_tenants,
        engine_for=server_engine,
        schema_problem=schema_problem,
        last_dag_runs=server_last_dag_runs,
        auth_manager=server_auth_manager,
    )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- reading the tenants, one state database at a time ---------------------------------------------------------


@dataclass
class TenantsView:
    """The configured tenants, each readable one with its engine, and the broken ones with why."""

    tenants: dict[str, TenantConfig] = field(default_factory=dict)
    engines: dict[str, sa.Engine] = field(default_factory=dict)  # state_conn_id -> engine
    broken: list[dict[str, Any]] = field(default_factory=list)  # {tenant_id (or None), error}

    def engine_of(self, tenant: TenantConfig) -> sa.Engine | None:
        return self.engines.get(tenant.state_conn_id)

    def problem_of(self, tenant_id: str) -> str | None:
        return next((b["error"] for b in self.broken if b["tenant_id"] == tenant_id), None)


def read_tenants(sources: PageSources) -> TenantsView:
    """Parse the Variable and open each state database; a broken tenant or database never hides the others."""
    view = TenantsView()
    try:
        parsed = sources.load_tenants()
    except Exception as exc:  # noqa: BLE001 - whatever the secrets backend raises: the page says it
        view.broken.append({"tenant_id": None, "error": f"the Variable {TENANTS_VARIABLE!r} cannot be read: {exc}"})
        return view
    for error in parsed.errors:
        found = _ERROR_TENANT.match(error)
        view.broken.append({"tenant_id": found.group(1) if found else None, "error": error})
    for tenant in parsed.tenants:
        view.tenants[tenant.tenant_id] = tenant
    for conn_id in sorted({t.state_conn_id for t in parsed.tenants}):
        problem = None
        try:
            engine = sources.engine_for(conn_id)
            problem = sources.schema_problem(engine)
        except Exception as exc:  # noqa: BLE001 - a missing Connection, a database that does not answer...
            problem = f"state database {conn_id!r} cannot be read: {type(exc).__name__}: {_first_line(exc)}"
        if problem is None:
            view.engines[conn_id] = engine
            continue
        for tenant in parsed.tenants:
            if tenant.state_conn_id == conn_id:
                view.broken.append({"tenant_id": tenant.tenant_id, "error": problem})
    return view


def _first_line(exc: BaseException) -> str:
    """An error's first line: SQLAlchemy appends the statement and its parameters, never shown."""
    return (str(exc).splitlines() or [""])[0][:300]


# --- the app --------------------------------------------------------------------------------------------------


def _sources(request: Request) -> PageSources:
    sources: PageSources = request.app.state.sources
    return sources


Sources = Annotated[PageSources, Depends(_sources)]


def allowed_user(user: Annotated[BaseUser, Depends(get_user)], sources: Sources) -> BaseUser:
    """Airflow's user (``get_user``: 401 when there is none), then both permissions the page needs (else 403)."""
    manager = sources.auth_manager()
    may_read_tenants = manager.is_authorized_variable(
        method="GET", user=user, details=VariableDetails(key=TENANTS_VARIABLE)
    )
    if not (
        may_read_tenants and manager.is_authorized_custom_view(method="GET", resource_name=PAGE_RESOURCE, user=user)
    ):
        raise HTTPException(
            status_code=403,
            detail=f"the {PAGE_RESOURCE} page needs permission to read the Variable {TENANTS_VARIABLE!r} "
            f"and to see the view {PAGE_RESOURCE!r}",
        )
    return user


def tenant_and_engine(tenant_id: str, sources: Sources) -> tuple[TenantConfig, sa.Engine]:
    """The tenant a URL names and its state database: 404 when it is not configured, 503 when it is unreadable."""
    view = read_tenants(sources)
    tenant = view.tenants.get(tenant_id)
    if tenant is None:
        problem = view.problem_of(tenant_id)
        raise HTTPException(404, problem or f"tenant {tenant_id!r} is not configured in {TENANTS_VARIABLE!r}")
    engine = view.engine_of(tenant)
    if engine is None:
        raise HTTPException(503, view.problem_of(tenant_id) or "the state database cannot be read")
    return tenant, engine


TenantEngine = Annotated[tuple[TenantConfig, sa.Engine], Depends(tenant_and_engine)]


def create_app(sources: PageSources | None = None) -> FastAPI:
    """The page's app; the api-server mounts it (``plugin.py``) with its own sources, tests give theirs."""
    app = FastAPI(
        title="Zoho sync",
        description="The Zoho sync page and its JSON API (read-only).",
        dependencies=[Depends(allowed_user)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sources = sources or server_sources()

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> Response:
        """The page itself answers a refusal in words and a link to log in; the API answers JSON."""
        if request.url.path.rstrip("/") == request.scope.get("root_path", "").rstrip("/") and exc.status_code in (
            401,
            403,
        ):
            return HTMLResponse(_refusal_page(exc.status_code, str(exc.detail)), exc.status_code, SECURITY_HEADERS)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, "no such file")
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers=SECURITY_HEADERS)

    @app.get("/api/tenants")
    def tenants(sources: Sources) -> dict[str, Any]:
        view = read_tenants(sources)
        now = sources.now()
        rows: list[dict[str, Any]] = []
        for conn_id, engine in view.engines.items():
            group = [t for t in view.tenants.values() if t.state_conn_id == conn_id]
            try:
                rows += queries.overview(engine, group, now)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("Zoho sync page: state database %s: %s", conn_id, _first_line(exc))
                view.broken += [
                    {"tenant_id": t.tenant_id, "error": f"state database {conn_id!r}: {_first_line(exc)}"}
                    for t in group
                ]
        dag_runs = _last_dag_runs(sources, [row["dag_id"] for row in rows])
        for row in rows:
            row["dag_run"] = dag_runs.get(row["dag_id"])
        rows.sort(key=lambda row: row["tenant_id"])
        return {"generated_at": now.isoformat(), "tenants": rows, "broken": view.broken}

    @app.get("/api/tenants/{tenant_id}")
    def tenant(found: TenantEngine, sources: Sources) -> dict[str, Any]:
        config, engine = found
        now = sources.now()
        (row,) = queries.overview(engine, [config], now)
        row["dag_run"] = _last_dag_runs(sources, [config.dag_id]).get(config.dag_id)
        return {
            "generated_at": now.isoformat(),
            "tenant": row,
            "mapping": queries.mapping_in_force(config),
            "last_verify": queries.last_verify(engine, config.tenant_id),
            "reset": queries.reset_progress(engine, config.tenant_id, now),
            "last_resets": queries.last_resets(engine, config.tenant_id, 10),
        }

    @app.get("/api/tenants/{tenant_id}/runs")
    def runs(found: TenantEngine, limit: Annotated[int, Query(ge=1, le=2000)] = 200) -> list[dict[str, Any]]:
        config, engine = found
        return queries.tenant_runs(engine, config.tenant_id, limit=limit)

    @app.get("/api/tenants/{tenant_id}/errors")
    def errors(
        found: TenantEngine,
        kind: Annotated[str | None, Query(pattern="^(rejected|invalid)$")] = None,
        email: Annotated[str | None, Query(max_length=320)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        config, engine = found
        return queries.tenant_errors(
            engine, config.tenant_id, kind=kind, email_contains=email or None, limit=limit, offset=offset
        )

    @app.get("/api/tenants/{tenant_id}/errors.csv")
    def errors_csv(
        found: TenantEngine,
        kind: Annotated[str | None, Query(pattern="^(rejected|invalid)$")] = None,
        email: Annotated[str | None, Query(max_length=320)] = None,
    ) -> StreamingResponse:
        config, engine = found
        lines: Iterator[str] = queries.errors_csv(engine, config.tenant_id, kind=kind, email_contains=email or None)
        name = f"{config.tenant_id}-{kind or 'rejected-and-invalid'}.csv"
        return StreamingResponse(
            lines,
            media_type="text/csv; charset=utf-8",
            headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/api/tenants/{tenant_id}/deleted")
    def deleted(found: TenantEngine, limit: Annotated[int, Query(ge=1, le=2000)] = 200) -> list[dict[str, Any]]:
        config, engine = found
        return queries.deleted_in_zoho(engine, config.tenant_id, limit)

    @app.get("/api/tenants/{tenant_id}/reset")
    def reset(found: TenantEngine, sources: Sources) -> dict[str, Any]:
        config, engine = found
        return {
            "progress": queries.reset_progress(engine, config.tenant_id, sources.now()),
            "last_resets": queries.last_resets(engine, config.tenant_id, 10),
        }

    return app


def _last_dag_runs(sources: PageSources, dag_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Airflow's view of the runs is a bonus: the page still shows the state database's if it fails."""
    try:
        return sources.last_dag_runs(dag_ids)
    except Exception as exc:  # noqa: BLE001 - the metadata DB's trouble is the api-server's, not this page's
        log.warning("Zoho sync page: the DAG runs could not be read from the metadata DB: %s", _first_line(exc))
        return {}


def _refusal_page(status: int, detail: str) -> str:
    """A refused page in words (the detail is ours, never user input, but escaped all the same)."""
    from html import escape

    what = "Log in to Airflow first" if status == 401 else "Your Airflow user may not see this page"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Zoho sync</title></head><body>"
        f"<h1>{escape(what)}</h1><p>{escape(detail)}</p><p><a href='../' target='_top'>Airflow</a></p></body></html>"
    )
