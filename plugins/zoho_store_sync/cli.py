"""Command line for headless setups: connect, verify and reset a tenant, migrate the state database.

    python -m zoho_store_sync.cli connect <tenant> --grant-code CODE [--redirect-uri URI]
    python -m zoho_store_sync.cli verify <tenant>
    python -m zoho_store_sync.cli reset <tenant> --confirm <tenant> [--record-types Contacts Leads] [--dry-run]
    python -m zoho_store_sync.cli db migrate [--conn-id ID | --url URL]
    python -m zoho_store_sync.cli db check [--conn-id ID | --url URL]

``db migrate`` upgrades the state database to this code's schema revision (idempotent, under a lock, safe to run
from many places at once); ``db check`` prints the current and head revisions and exits 0 when they match, 2 when
the database is behind, 3 when it is ahead (1: any error).

It reads the same Variable and Connections as the DAGs (e.g. AIRFLOW_VAR_/AIRFLOW_CONN_ env vars or the
metastore of the Airflow installation it runs in). Run it with PYTHONPATH=plugins, or where plugins/ is on
the path. With a running scheduler, `airflow dags trigger zoho_connect -c '{...}'` does the same.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import uuid


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
        print(f"state database {shown}\ncurrent: {status.current or '(none)'}\nhead: {status.head}\n"
              f"status: {status.state}: {status.message(_target(args))}")
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
    for name, help_text in (("migrate", "upgrade the state database to this code's revision (idempotent, locked)"),
                            ("check", "print the current and head revisions; exit 2 when behind, 3 when ahead")):
        db_sub = db_commands.add_parser(name, help=help_text)
        where = db_sub.add_mutually_exclusive_group()
        where.add_argument("--conn-id", default=STATE_DB_CONN_ID,
                           help=f"Airflow Connection (default {STATE_DB_CONN_ID})")
        where.add_argument("--url", help="SQLAlchemy URL instead of a Connection, e.g. sqlite:////data/state.db")
        if name == "migrate":
            db_sub.add_argument("--wait-minutes", type=float, default=60.0,
                                help="how long to wait for another migration's lock")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "db":
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin, every run
        try:
            return _db(args)
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
