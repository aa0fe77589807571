"""DecoNetwork customer exports that cannot be complete, end to end (issue 12): dag.test() against the DecoNetwork
and Zoho sandboxes, state on SQLite and PostgreSQL, a tenant with ``source_deletions: delete``.

Run 1 syncs a 40-customer export. Then the export is replaced by a file that once read "successfully" as a
wrong table (rows ending with a trailing delimiter, a duplicated header name, semicolons, a file cut short,
a header without rows), and with ``delete`` a wrong table deleted the Zoho records. Now the run must leave
every Zoho record as it was: none deleted, none changed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, connection_env, postgres_conn_fields, sqlite_conn_fields

MODULES = ("Contacts", "Leads")
WRITES = ("insert", "update", "upsert", "delete", "convert", "upload", "bulk_write")


def _split(text: str) -> tuple[str, list[str]]:
    header, *rows = text.split("\r\n")
    return header, [r for r in rows if r]


def _join(header: str, rows: list[str]) -> str:
    return "\r\n".join([header, *rows]) + "\r\n"


def _schema_ready(store) -> None:  # type: ignore[no-untyped-def]
    """The state tables at this code's revision (versioned migrations where the code has them)."""
    try:
        from zoho_store_sync.state_migrations import migrate
    except ImportError:
        store.create_schema()
    else:
        migrate(store.engine)


def trailing_delimiter(text: str) -> str:
    header, rows = _split(text)
    return _join(header, [r + "," for r in rows])


def duplicated_header(text: str) -> str:
    header, rows = _split(text)
    return _join(header.replace(",company,", ",email,"), rows)


def semicolons(text: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(csv.reader(io.StringIO(text, newline="")))
    return out.getvalue()


def truncated(text: str) -> str:
    """Cut two thirds in, in the middle of a row (a copy or upload that stopped)."""
    cut = text.index(",", len(text) * 2 // 3) + 1
    assert text[cut - 2 : cut + 2].count("\n") == 0
    return text[:cut]


def header_only(text: str) -> str:
    header, _ = _split(text)
    return header + "\r\n"


@pytest.fixture
def world(airflow_db, monkeypatch, zoho_sandbox, state_url, tmp_path, capfd):
    """A 40-customer DecoNetwork site, its export file and a ``delete`` tenant of its own (the PostgreSQL state
    database is shared by the session, so every test has a new tenant id)."""
    from airflow.models import DagBag

    from sandboxes.deconetwork import DecoNetworkSandbox, generate_deconetwork_store
    from zoho_store_sync.state import StateStore, make_engine

    tenant_id = f"deco_safety_{uuid.uuid4().hex[:8]}"
    _schema_ready(StateStore(make_engine(state_url), tenant_id))
    db = sqlite_conn_fields(state_url) if state_url.startswith("sqlite") else postgres_conn_fields(state_url)
    monkeypatch.setenv(*connection_env("zoho_sync_state_db", **db))
    monkeypatch.setenv(
        *connection_env(
            "zoho_test",
            conn_type="http",
            login=zoho_sandbox.client_id,
            password=zoho_sandbox.client_secret,
            extra={
                "refresh_token": zoho_sandbox.refresh_token,
                "accounts_url": zoho_sandbox.url,
                "api_domain": zoho_sandbox.url,
                "allow_custom_hosts": True,
            },
        )
    )

    with DecoNetworkSandbox(generate_deconetwork_store(40, seed=4)) as deco:
        monkeypatch.setenv(
            *connection_env("deco_test", conn_type="http", host=deco.url, login=deco.username, password=deco.password)
        )
        export = Path(deco.write_export(tmp_path / "customers.csv"))

        class World:
            url = f"file://{export}"
            good_export = export.read_bytes().decode("utf-8")  # as written: CRLF line ends, a BOM
            zoho = zoho_sandbox

            def write_export(self, text: str) -> None:
                tmp = export.with_name(export.name + ".tmp")  # replaced whole, as an upload would
                tmp.write_text(text, encoding="utf-8", newline="")
                os.replace(tmp, export)

            def run(self, *, expect: str | None = "success", use_order_api: bool = False) -> Any:
                """Run the tenant's DAG (every run a full pass); the summary, or the run state when expect is None."""
                tenant = {
                    "tenant_id": tenant_id,
                    "source": "deconetwork",
                    "store_conn_id": "deco_test",
                    "zoho_conn_id": "zoho_test",
                    "retries": 0,
                    "zoho_max_retries": 1,
                    "source_deletions": "delete",
                    "full_sync_every_hours": 0.0001,
                    "deconetwork": {"customers_export_url": self.url, "use_order_api": use_order_api},
                }
                monkeypatch.setenv("AIRFLOW_VAR_ZOHO_SYNC_TENANTS", json.dumps([tenant]))
                dag_run = DagBag(dag_folder=str(REPO / "dags")).dags[f"zoho_sync__{tenant_id}"].test()
                state = str(getattr(dag_run.state, "value", dag_run.state))
                if expect is None:
                    return state
                assert state == expect
                if expect != "success":
                    return {}
                return StateStore(make_engine(state_url), tenant_id).run_summaries("sync")[-1]

            def output(self) -> str:
                """What the runs printed since the last call (the task logs, with the task's exception)."""
                out, err = capfd.readouterr()
                return out + err

            def records(self) -> dict[str, dict[str, dict]]:
                return {m: {r["id"]: r for r in zoho_sandbox.records(m)} for m in MODULES}

            def first_sync(self, *, use_order_api: bool = False) -> dict[str, dict[str, dict]]:
                summary = self.run(use_order_api=use_order_api)
                held = self.records()
                # Every customer with a valid, distinct email is in Zoho (the generator makes a few malformed,
                # one shared by two stores, and a customer flagged deleted is not sent to a "delete" tenant).
                assert summary["extracted"] >= 40 and summary["inserted"] == sum(map(len, held.values())) >= 30
                return held

            def assert_zoho_untouched(self, before: dict[str, dict[str, dict]]) -> None:
                """0 deleted, 0 changed: the same records with the same fields, and no write call at all."""
                self.assert_none_deleted(before)
                assert self.records() == before
                assert [c for c in zoho_sandbox.calls() if c["operation"] in WRITES] == []

            def assert_none_deleted(self, before: dict[str, dict[str, dict]]) -> None:
                assert all(zoho_sandbox.deleted_records(m) == [] for m in MODULES)
                assert [c for c in zoho_sandbox.calls() if c["operation"] == "delete"] == []
                assert all(set(before[m]) <= set(self.records()[m]) for m in MODULES)

        yield World()


@pytest.mark.parametrize(
    "damage, says",
    [
        (trailing_delimiter, "trailing delimiter"),
        (duplicated_header, "more than once"),
        (semicolons, "separated by semicolons"),
        (truncated, "cut short"),
    ],
    ids=["trailing_delimiter", "duplicated_header", "semicolons", "truncated"],
)
def test_an_export_that_cannot_be_complete_fails_the_run_and_leaves_every_zoho_record_as_it_was(
    world, damage: Callable[[str], str], says: str
) -> None:
    before = world.first_sync()
    world.write_export(damage(world.good_export))
    world.zoho.reset_calls()
    world.output()

    world.run(expect="failed")
    world.assert_zoho_untouched(before)
    # The task's error names the file, the problem and what to do.
    failure = next(line for line in world.output().splitlines() if "DecoNetworkExportError:" in line)
    assert world.url in failure and says in failure and "export the customers again" in failure

    # The next complete export syncs as though the bad one never came: nothing to send, nothing deleted.
    world.write_export(world.good_export)
    again = world.run()
    assert (again["write_calls"], again["deleted_in_source"]) == (0, 0)
    world.assert_zoho_untouched(before)


@pytest.mark.parametrize("use_order_api", [False, True], ids=["export_only", "export_and_orders"])
def test_a_header_only_export_deletes_no_zoho_record_and_fails_the_run(world, use_order_api: bool) -> None:
    before = world.first_sync(use_order_api=use_order_api)
    world.write_export(header_only(world.good_export))
    world.zoho.reset_calls()

    state = world.run(expect=None, use_order_api=use_order_api)
    world.assert_none_deleted(before)  # the source hands on no keys for deletion
    # A full pass that read no export rows while Zoho holds the tenant's records is refused (red, before
    # anything is sent), so an operator hears of it and no record changes.
    assert state == "failed"
    world.assert_zoho_untouched(before)
