"""`make demo`: sync a generated Magento store to the Zoho sandbox three times and print each run's summary.

Embedded default: SQLite for Airflow and for the state table, both sandboxes as real HTTP servers on
127.0.0.1, everything under the git-ignored ``.demo/`` folder. Run 1 inserts every valid customer, run 2
finds nothing changed (no write call), run 3 sends only the customers changed in the store in between.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / ".demo"
TENANT_ID = "demo_magento"
CUSTOMERS = int(os.environ.get("DEMO_CUSTOMERS", "3000"))
CHANGED = 7


def _environment() -> None:
    """Airflow reads its configuration at import: set it before anything imports airflow."""
    os.environ.update(
        {
            "AIRFLOW_HOME": str(DEMO / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("DEMO_LOG_LEVEL", "ERROR"),
            "PYTHONWARNINGS": "ignore",
            "ZOHO_SYNC_STAGING_URL": f"file://{DEMO}/staging",
            "ZOHO_SYNC_INCLUDE_DIR": str(REPO / "include"),
        }
    )
    sys.path[:0] = [str(REPO / "plugins"), str(REPO)]


def _configure_deconetwork(zoho_main, zoho_affiliate, deco) -> None:  # type: ignore[no-untyped-def]
    """A DecoNetwork business that lets one affiliate store (Northside, store 2) run its own Zoho integration."""
    for conn_id, zoho in (("ZOHO_DECO_DEMO", zoho_main), ("ZOHO_NORTHSIDE_DEMO", zoho_affiliate)):
        os.environ[f"AIRFLOW_CONN_{conn_id}"] = json.dumps(
            {
                "conn_type": "http",
                "login": zoho.client_id,
                "password": zoho.client_secret,
                "extra": {
                    "refresh_token": zoho.refresh_token,
                    "accounts_url": zoho.url,
                    "api_domain": zoho.url,
                    "allow_custom_hosts": True,
                },
            }
        )
    os.environ["AIRFLOW_CONN_DECO_DEMO"] = json.dumps(
        {"conn_type": "http", "host": deco.url, "login": deco.username, "password": deco.password}
    )
    export = f"file://{deco.write_export(DEMO / 'deconetwork-customers.csv')}"
    tenants = json.loads(os.environ["AIRFLOW_VAR_ZOHO_SYNC_TENANTS"])
    tenants += [
        {
            "tenant_id": "demo_deco",
            "source": "deconetwork",
            "store_conn_id": "deco_demo",
            "zoho_conn_id": "zoho_deco_demo",
            "deconetwork": {"customers_export_url": export, "allow_affiliate_integrations": True},
        },
        {
            "tenant_id": "demo_deco_northside",
            "source": "deconetwork",
            "store_conn_id": "deco_demo",
            "zoho_conn_id": "zoho_northside_demo",
            "deconetwork": {"customers_export_url": export, "affiliate_of": "demo_deco", "store_ids": ["2"]},
        },
    ]
    os.environ["AIRFLOW_VAR_ZOHO_SYNC_TENANTS"] = json.dumps(tenants)


def _configure(zoho, magento) -> None:  # type: ignore[no-untyped-def]
    """Connections and the tenants Variable as environment variables (a real deployment uses the UI or a secrets
    backend)."""
    os.environ["AIRFLOW_CONN_ZOHO_DEMO"] = json.dumps(
        {
            "conn_type": "http",
            "login": zoho.client_id,
            "password": zoho.client_secret,
            "extra": {
                "refresh_token": zoho.refresh_token,
                "accounts_url": zoho.url,
                "api_domain": zoho.url,
                "allow_custom_hosts": True,
            },
        }
    )
    # A Magento 2.4.4+ integration: requests signed with OAuth 1.0a (HMAC-SHA256), secrets in the password.
    os.environ["AIRFLOW_CONN_MAGENTO_DEMO"] = json.dumps(
        {
            "conn_type": "http",
            "host": magento.url,
            "password": json.dumps(
                {"consumer_secret": magento.consumer_secret, "access_token_secret": magento.access_token_secret}
            ),
            "extra": {
                "auth": "oauth1",
                "consumer_key": magento.consumer_key,
                "access_token": magento.integration_token,
            },
        }
    )
    os.environ["AIRFLOW_CONN_ZOHO_SYNC_STATE_DB"] = json.dumps({"conn_type": "sqlite", "host": str(DEMO / "state.db")})
    os.environ["AIRFLOW_VAR_ZOHO_SYNC_TENANTS"] = json.dumps(
        [
            {
                "tenant_id": TENANT_ID,
                "source": "magento",
                "store_conn_id": "magento_demo",
                "zoho_conn_id": "zoho_demo",
            }
        ]
    )


def _run_dag(dag, label: str, tenant_id: str = TENANT_ID) -> dict:  # type: ignore[no-untyped-def]
    from zoho_store_sync.config import get_tenant
    from zoho_store_sync.pipeline import state_store

    dag_run = dag.test()
    if str(dag_run.state) != "success" and getattr(dag_run.state, "value", None) != "success":
        raise SystemExit(f"{label}: DAG run ended {dag_run.state}; rerun with DEMO_LOG_LEVEL=INFO for the task logs")
    summary = state_store(get_tenant(tenant_id)).run_summaries("sync")[-1]
    print(json.dumps(summary, ensure_ascii=False), flush=True)
    return summary


def main() -> int:
    _environment()
    warnings.simplefilter("ignore")
    for stale in ("state.db", "state.db-wal", "state.db-shm", "staging"):
        path = DEMO / stale
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    (DEMO / "airflow").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    # The state database's documented upgrade step, as a deployment runs it before the first sync.
    migrated = subprocess.run(
        [sys.executable, "-m", "zoho_store_sync.cli", "db", "migrate", "--url", f"sqlite:///{DEMO / 'state.db'}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins")},
    )
    if migrated.returncode:
        raise SystemExit(f"state database migration failed:\n{migrated.stderr[-3000:]}")
    print(migrated.stdout.strip().splitlines()[-1], file=sys.stderr)

    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store
    from sandboxes.zoho_crm import ZohoSandbox

    logging.getLogger("airflow").setLevel(logging.ERROR)
    with (
        ZohoSandbox() as zoho,
        MagentoSandbox(generate_store(CUSTOMERS, seed=7), allow_integration_bearer=False) as magento,
    ):
        _configure(zoho, magento)
        from airflow.models import DagBag

        bag = DagBag(dag_folder=str(REPO / "dags"))
        if bag.import_errors:
            raise SystemExit(f"DAG import errors: {bag.import_errors}")
        dag = bag.dags[f"zoho_sync__{TENANT_ID}"]

        first = _run_dag(dag, "run 1")
        second = _run_dag(dag, "run 2")
        from zoho_store_sync.config import get_tenant
        from zoho_store_sync.pipeline import state_store

        synced = state_store(get_tenant(TENANT_ID)).load().query("status == 'synced'")["customer_key"]
        changed_ids = sorted(int(k) for k in synced)[10 : 10 + CHANGED]
        for number, customer_id in enumerate(changed_ids):
            magento.update_customer(customer_id, lastname=f"Changed{number}")
        third = _run_dag(dag, "run 3")

        held = {m: len(zoho.records(m)) for m in ("Contacts", "Leads")}

        from sandboxes.deconetwork import DecoNetworkSandbox, generate_deconetwork_store

        with (
            ZohoSandbox(seed=1) as zoho_deco,
            ZohoSandbox(seed=2) as zoho_northside,
            DecoNetworkSandbox(generate_deconetwork_store(600, seed=3)) as deco,
        ):
            _configure_deconetwork(zoho_deco, zoho_northside, deco)
            bag = DagBag(dag_folder=str(REPO / "dags"))
            if bag.import_errors:
                raise SystemExit(f"DAG import errors: {bag.import_errors}")
            deco_main = _run_dag(bag.dags["zoho_sync__demo_deco"], "DecoNetwork", "demo_deco")
            northside = _run_dag(bag.dags["zoho_sync__demo_deco_northside"], "affiliate", "demo_deco_northside")
            northside_name = next(s["name"] for s in deco.stores() if s["store_id"] == "2")
            northside_stores = {r.get("Store_Name") for m in ("Contacts", "Leads") for r in zoho_northside.records(m)}
            main_stores = {r.get("Store_Name") for m in ("Contacts", "Leads") for r in zoho_deco.records(m)}
            checks_deco = {
                "DecoNetwork tenant synced": deco_main["inserted"] > 0 and deco_main["failed"] == 0,
                "affiliate synced only its own store, to its own Zoho": northside["inserted"] > 0
                and northside_stores == {northside_name},
                "parent left the affiliate's store out": northside_name not in main_stores,
            }
        expected_records = first["contacts"] + first["leads"]
        checks = {
            "run 1 inserted every valid customer": first["inserted"] == expected_records and first["failed"] == 0,
            "run 2 wrote nothing": second["write_calls"] == 0 and second["inserted"] + second["updated"] == 0,
            f"run 3 updated only the {CHANGED} changed customers": third["updated"] == CHANGED
            and third["inserted"] == 0
            and third["failed"] == 0
            and third["write_calls"] <= 2,
            "Zoho holds one record per valid email": sum(held.values()) == expected_records,
            **checks_deco,
        }
    for name, ok in checks.items():
        print(f"{'ok ' if ok else 'FAIL'} {name}", file=sys.stderr)
    print(f"Zoho sandbox holds {held['Contacts']} Contacts and {held['Leads']} Leads", file=sys.stderr)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
