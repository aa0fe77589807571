"""Command line for headless setups: connect, verify and reset a tenant without the Airflow UI.

    python -m zoho_store_sync.cli connect <tenant> --grant-code CODE [--redirect-uri URI]
    python -m zoho_store_sync.cli verify <tenant>
    python -m zoho_store_sync.cli reset <tenant> --confirm <tenant> [--record-types Contacts Leads] [--dry-run]

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


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

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
