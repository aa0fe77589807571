"""Command line for headless setups: connect, verify and reset a tenant, migrate the state database.

    python -m zoho_store_sync.cli connect <tenant> --grant-code CODE [--redirect-uri URI]
    python -m zoho_store_sync.cli verify <tenant>
    python -m zoho_store_sync.cli reset <tenant> --confirm <tenant> [--record-types Contacts Leads] [--dry-run]
    python -m zoho_store_sync.cli db migrate [--conn-id ID | --url URL]
    python -m zoho_store_sync.cli db check [--conn-id ID | --url URL]
    python -m zoho_store_sync.cli pools check | ensure

``db migrate`` upgrades the state database to this code's schema revision (idempotent, under a lock, safe to run
from many places at once); ``db check`` prints the current and head revisions and exits 0 when they match, 2 when
the database is behind, 3 when it is ahead (1: any error). ``pools check`` says whether every tenant's
``zoho_pool`` exists with at least its ``zoho_max_concurrency`` slots (exit 2 when not: Airflow would leave the
tenant's upsert_to_zoho task scheduled forever); ``pools ensure`` creates the missing pools and grows the small
ones (it never shrinks a pool).

``connect`` prompts for the grant code without echoing it; ``--grant-code`` puts it in the shell history and the
process list, so keep it for scripts that read it from a vault.

It reads the same Variable and Connections as the DAGs, wherever the Airflow installation it runs in keeps
them: AIRFLOW_VAR_/AIRFLOW_CONN_ env vars, a configured secrets backend, then the metadata database (as
``airflow connections get`` does; run it where ``airflow`` commands work, with the same configuration). Run it
where the package is installed (``pip install .``), or with PYTHONPATH=plugins. With a running scheduler,
`airflow dags trigger zoho_reset -c '{...}'` does the same as ``reset``.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator

_PROCESS_CONTEXT = "_AIRFLOW_PROCESS_CONTEXT"  # read by airflow.sdk's secrets lookup (supervisor.py)


@contextlib.contextmanager
def secrets_read_like_airflow_commands() -> Iterator[None]:
    """Look Variables and Connections up as Airflow's own CLI does: env vars, secrets backends, metadata DB.

    Outside a task, Airflow 3's Task SDK (``airflow.sdk.Variable``/``Connection``, which the pipeline uses)
    only asks the env vars and external secrets backends, unless the process declares itself a server-side
    one; ``airflow connections get`` does exactly this. Then a tenant whose Variable and Connections were made
    with ``airflow variables set`` / ``airflow connections add`` or in the UI is found. Undone on exit, for
    callers of ``main`` in a longer-lived process.
    """
    before = os.environ.get(_PROCESS_CONTEXT)
    os.environ.setdefault(_PROCESS_CONTEXT, "server")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_PROCESS_CONTEXT, None)


def _reset(args: argparse.Namespace) -> dict:
    from zoho_store_sync import pipeline, reset

    tenant, run_id = args.tenant, f"cli_reset__{uuid.uuid4().hex[:12]}"
    modules = reset.check_request(tenant, args.record_types, args.confirm)
    reset.wait_for_lock(tenant, run_id, minutes=args.wait_minutes)
    try:
        started = reset.begin(tenant, run_id, modules, args.dry_run)
        extracted = pipeline.extract(tenant, run_id, full=True)
        planned = pipeline.plan(tenant, run_id, extracted, dry_run=args.dry_run, modules=modules, forget=args.dry_run)
        chunks = reset.split(tenant, run_id, planned)
        sent = [reset.send_chunk(tenant, run_id, chunk, args.dry_run) for chunk in chunks]
        return reset.finish(tenant, run_id, extracted, planned, chunks, sent, started["dry_run"])
    finally:
        pipeline.release_tenant_lock(tenant, run_id, "reset")


DB_EXIT_CODES = {"current": 0, "behind": 2, "ahead": 3}


def _db_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    from zoho_store_sync.state import url_for_conn_id

    return url_for_conn_id(args.conn_id)


def _db(args: argparse.Namespace) -> int:
    """``db migrate`` / ``db check``: no pipeline import (pandas, hooks), only SQLAlchemy and Alembic."""
    import sqlalchemy as sa

    from zoho_store_sync import state_migrations

    url = _db_url(args)
    shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    if args.db_command == "check":
        status = state_migrations.check(url)
        print(
            f"state database {shown}\ncurrent: {status.current or '(none)'}\nhead: {status.head}\n"
            f"status: {status.state}: {status.message(_target(args))}"
        )
        return DB_EXIT_CODES[status.state]
    result = state_migrations.migrate(url, wait_seconds=args.wait_minutes * 60)
    if result.stamped:
        print(f"recognised tables of a release before versioned migrations: stamped {state_migrations.BASELINE}")
    for revision, seconds in result.steps:
        print(f"applied {revision} in {seconds:.2f} s")
    if result.steps:
        before = result.before or "(empty)"
        print(f"state database {shown}: {before} -> {result.after} (head) in {result.seconds:.1f} s")
    else:
        print(f"state database {shown}: already at {result.after} (head)")
    return 0


POOL_DESCRIPTION = "Zoho CRM API calls per org"


def _pools(args: argparse.Namespace) -> int:
    """``pools check`` / ``pools ensure``: each tenant's pool exists with at least zoho_max_concurrency slots.

    The sync's upload task takes ``zoho_max_concurrency`` slots of the tenant's ``zoho_pool``; Airflow's scheduler
    leaves a task whose pool is missing, or smaller than the slots it takes, in ``scheduled`` for ever (a warning
    in the scheduler's log is all it says). Tasks cannot read pools, so the setup checks them.
    """
    from airflow.models.pool import Pool

    from zoho_store_sync.config import load_tenants

    parsed = load_tenants()
    for error in parsed.errors:
        print(f"warning: {error}", file=sys.stderr)
    needed: dict[str, tuple[int, list[str]]] = {}
    for tenant in parsed.tenants:
        slots, tenants = needed.get(tenant.zoho_pool, (0, []))
        needed[tenant.zoho_pool] = (max(slots, tenant.zoho_max_concurrency), [*tenants, tenant.tenant_id])
    if not needed:
        print("no tenant configured in the Variable: no pool needed")
    failed = 0
    for name, (slots, tenants) in sorted(needed.items()):
        who = f"tenant{'s' if len(tenants) > 1 else ''} {', '.join(tenants)} take{'' if len(tenants) > 1 else 's'}"
        pool = Pool.get_pool(name)
        have = None if pool is None else pool.slots
        if have is not None and (have < 0 or have >= slots):  # -1: unlimited
            print(f"[ok] pool {name}: {have} slots; {who} up to {slots} (zoho_max_concurrency)")
            continue
        state = "is missing" if have is None else f"has {have} slots"
        if args.pools_command == "ensure":
            Pool.create_or_update_pool(
                name,
                slots,
                pool.description if pool and pool.description else POOL_DESCRIPTION,
                pool.include_deferred if pool else False,
            )
            print(
                f"[fixed] pool {name} {state}: {'created' if have is None else 'grown'} with {slots} slots; "
                f"{who} up to {slots} (zoho_max_concurrency)"
            )
            continue
        failed += 1
        print(
            f"[FAILED] pool {name} {state}; {who} up to {slots} (zoho_max_concurrency): their upsert_to_zoho "
            f"task would stay scheduled for ever. Run `python -m zoho_store_sync.cli pools ensure` or "
            f'`airflow pools set {name} {slots} "{POOL_DESCRIPTION}"` (one pool per Zoho org, sized to its '
            "concurrency limit), or lower the tenants' zoho_max_concurrency."
        )
    return 2 if failed else 0


def _target(args: argparse.Namespace) -> str:
    return "--url <the same URL>" if args.url else f"--conn-id {args.conn_id}"


def build_parser() -> argparse.ArgumentParser:
    from zoho_store_sync.settings import STATE_DB_CONN_ID

    parser = argparse.ArgumentParser(prog="python -m zoho_store_sync.cli", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    connect_cmd = commands.add_parser("connect", help="exchange a grant code for a refresh token, then verify")
    connect_cmd.add_argument("tenant")
    connect_cmd.add_argument("--grant-code", help="prompted for (hidden) when omitted")
    connect_cmd.add_argument("--redirect-uri")
    verify_cmd = commands.add_parser("verify", help="check token, data centre, scopes and mapped fields")
    verify_cmd.add_argument("tenant")
    reset_cmd = commands.add_parser("reset", help="forget the sync state and resend every customer")
    reset_cmd.add_argument("tenant")
    reset_cmd.add_argument("--confirm", required=True, help="type the tenant id again")
    reset_cmd.add_argument("--record-types", nargs="+", default=["Contacts", "Leads"], choices=["Contacts", "Leads"])
    reset_cmd.add_argument("--dry-run", action="store_true")
    reset_cmd.add_argument("--wait-minutes", type=float, default=30.0)
    db_cmd = commands.add_parser("db", help="the state database's schema: migrate it, or check its revision")
    db_commands = db_cmd.add_subparsers(dest="db_command", required=True)
    for name, help_text in (
        ("migrate", "upgrade the state database to this code's revision (idempotent, locked)"),
        ("check", "print the current and head revisions; exit 2 when behind, 3 when ahead"),
    ):
        db_sub = db_commands.add_parser(name, help=help_text)
        where = db_sub.add_mutually_exclusive_group()
        where.add_argument(
            "--conn-id", default=STATE_DB_CONN_ID, help=f"Airflow Connection (default {STATE_DB_CONN_ID})"
        )
        where.add_argument("--url", help="SQLAlchemy URL instead of a Connection, e.g. sqlite:////data/state.db")
        if name == "migrate":
            db_sub.add_argument(
                "--wait-minutes", type=float, default=60.0, help="how long to wait for another migration's lock"
            )
    pools_cmd = commands.add_parser("pools", help="check or create the Airflow pools the tenants' uploads take")
    pools_commands = pools_cmd.add_subparsers(dest="pools_command", required=True)
    pools_commands.add_parser(
        "check", help="exit 2 when a tenant's pool is missing or smaller than its zoho_max_concurrency"
    )
    pools_commands.add_parser("ensure", help="create missing pools, grow small ones (never shrinks)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with secrets_read_like_airflow_commands():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.command == "db":
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin, every run
        try:
            return _db(args)
        except Exception as problem:  # noqa: BLE001 - the CLI reports every failure as one clear line
            print(f"error: {problem}", file=sys.stderr)
            return 1

    if args.command == "pools":
        try:
            return _pools(args)
        except Exception as problem:  # noqa: BLE001 - the CLI reports every failure as one clear line
            print(f"error: {problem}", file=sys.stderr)
            return 1

    from zoho_store_sync import connect

    try:
        if args.command == "connect":
            code = args.grant_code or getpass.getpass("Zoho grant code: ")
            print(json.dumps(connect.connect(args.tenant, code, args.redirect_uri)))
            args.command = "verify"
        if args.command == "verify":
            for check in connect.verify(args.tenant):
                print(check.line())
        elif args.command == "reset":
            print(json.dumps(_reset(args), ensure_ascii=False))
    except Exception as problem:  # noqa: BLE001 - the CLI reports every failure as one clear line
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
