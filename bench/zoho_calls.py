"""Figure 3, zoho_calls: Zoho API calls and credits of a sync run, vs the Magento -> Zoho template's per-customer way.

The product runs through its pipeline functions (extract → plan → load → report, as the DAG's tasks do) with
Connections and the tenants Variable as environment variables; the template (shared/seeds, store-apis.md
C.1) is a small client doing what it does: every customer, search by email, then update or insert, one call
each. Both against their own Zoho sandbox, on the same Magento store.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from bench import common

CUSTOMERS, CHANGED = 1_000, 250
QUICK_CUSTOMERS, QUICK_CHANGED = 40, 10
SEARCH_SCOPES = ("ZohoCRM.modules.ALL", "ZohoSearch.securesearch.READ")


class TemplateClient:
    """The template's loop: GET {module}/search?email=, then PUT {module}/{id} or POST {module}, per customer."""

    def __init__(self, zoho_url: str, client_id: str, client_secret: str, refresh_token: str) -> None:
        self.url, self.session = zoho_url, requests.Session()
        token = self.session.post(
            f"{zoho_url}/oauth/v2/token",
            params={
                "refresh_token": refresh_token,
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "refresh_token",
            },
        ).json()
        self.session.headers["Authorization"] = f"Zoho-oauthtoken {token['access_token']}"
        self.inserted = self.updated = self.errors = 0

    def sync(self, magento_url: str, magento_token: str) -> None:
        customers = requests.get(
            f"{magento_url}/rest/V1/customers/search",
            params={"searchCriteria": ""},
            headers={"Authorization": f"Bearer {magento_token}"},
        ).json()["items"]
        for customer in customers:  # v8 here: the sandbox speaks the current API; the template calls /crm/v2
            found = self.session.get(f"{self.url}/crm/v8/Contacts/search", params={"email": customer["email"]})
            record = {"data": [self.payload(customer)]}
            if found.status_code == 200:
                answer = self.session.put(f"{self.url}/crm/v8/Contacts/{found.json()['data'][0]['id']}", json=record)
                self.updated += answer.status_code == 200
            else:
                answer = self.session.post(f"{self.url}/crm/v8/Contacts", json=record)
                self.inserted += answer.status_code == 201
            self.errors += answer.status_code not in (200, 201)

    @staticmethod
    def payload(customer: dict[str, Any]) -> dict[str, Any]:
        address = (customer.get("addresses") or [{}])[0]
        return {
            "Email": customer.get("email"),
            "First_Name": customer.get("firstname"),
            "Last_Name": customer.get("lastname"),
            "Mailing_City": address.get("city", ""),
            "Mailing_Country": address.get("country_id", ""),
            "Mailing_Street": (address.get("street") or [""])[0],
            "Mailing_Zip": address.get("postcode", ""),
            "Phone": address.get("telephone", ""),
        }


def _calls(sandbox: Any) -> dict[str, Any]:
    """The sandbox's own log since its last reset_calls: API calls and records by operation and module, credits."""
    calls = [c for c in sandbox.calls() if c["operation"] not in ("token", "revoke")]
    by = Counter(f"{c['operation']}:{c['module']}" if c.get("module") else c["operation"] for c in calls)
    records = Counter()
    for c in calls:
        if c["operation"] in ("upsert", "insert", "update") and c.get("module"):
            records[c["module"]] += c.get("records") or 0
    writes = [
        c
        for c in calls
        if c["operation"] in ("insert", "update", "upsert", "delete", "convert", "upload", "bulk_write")
    ]
    sandbox.reset_calls()
    return {
        "api_calls": len(calls),
        "write_calls": len(writes),
        "credits": sum(c.get("credits") or 0 for c in calls),
        "by_operation": dict(sorted(by.items())),
        "records_written_by_module": dict(records),
    }


def _sync(tenant_id: str, run_id: str) -> dict[str, Any]:
    """One scheduled run, task by task, as tests/dags/crash_runner.py runs it."""
    from zoho_store_sync import pipeline

    pipeline.check_schema(tenant_id)  # the run's first task: the revision checked (measure() migrated it)
    extracted = pipeline.extract(tenant_id, run_id)
    planned = pipeline.plan(tenant_id, run_id, extracted)
    loaded = pipeline.load(tenant_id, run_id, planned)
    return pipeline.report(tenant_id, run_id, extracted, planned, loaded)


def measure(customers: int, changed: int) -> dict[str, Any]:
    from sandboxes.magento import MagentoSandbox
    from sandboxes.seed import generate_store
    from sandboxes.zoho_crm import ZohoSandbox
    from zoho_store_sync.state_migrations import migrate

    home = Path(tempfile.mkdtemp(prefix="bench-zoho-calls-"))
    with (
        MagentoSandbox(generate_store(customers, seed=17)) as magento,
        ZohoSandbox(seed=1) as zoho,
        ZohoSandbox(seed=2) as zoho_template,
    ):
        os.environ.update(
            dict(
                [
                    common.zoho_connection(
                        "zoho_bench",
                        {
                            "url": zoho.url,
                            "client_id": zoho.client_id,
                            "client_secret": zoho.client_secret,
                            "refresh_token": zoho.refresh_token,
                        },
                    ),
                    common.magento_connection("magento_bench", magento.url, magento.integration_token),
                    common.state_connection(f"sqlite:///{home / 'state.db'}"),
                ]
            )
        )
        os.environ["AIRFLOW_VAR_ZOHO_SYNC_TENANTS"] = json.dumps(
            [
                {
                    "tenant_id": "bench",
                    "source": "magento",
                    "store_conn_id": "magento_bench",
                    "zoho_conn_id": "zoho_bench",
                }
            ]
        )
        migrate(f"sqlite:///{home / 'state.db'}")  # what `python -m zoho_store_sync.cli db migrate` does
        token = zoho_template.add_refresh_token(zoho_template.client_id, SEARCH_SCOPES)
        template = TemplateClient(zoho_template.url, zoho_template.client_id, zoho_template.client_secret, token)
        product: dict[str, Any] = {}
        baseline: dict[str, Any] = {}
        zoho.reset_calls()
        zoho_template.reset_calls()
        for phase in ("first_sync", "unchanged", "changed"):
            if phase == "changed":  # N customers edited in the store (a profile field: no Lead→Contact moves)
                every = max(1, customers // changed)
                for customer_id in sorted(c["id"] for c in magento.customers())[::every][:changed]:
                    magento.update_customer(customer_id, firstname=f"Changed{customer_id}")
            summary = _sync("bench", f"run-{phase}")
            product[phase] = {
                **_calls(zoho),
                "summary": {
                    k: summary.get(k)
                    for k in ("extracted", "inserted", "updated", "unchanged", "failed", "api_calls", "credits")
                },
            }
            template.sync(magento.url, magento.integration_token)
            baseline[phase] = _calls(zoho_template)
        baseline["results"] = {"inserted": template.inserted, "updated": template.updated, "errors": template.errors}
    return {"customers": customers, "changed_customers": changed, "product": product, "template": baseline}


def run(quick: bool = False) -> list[common.Figure]:
    customers, changed = (QUICK_CUSTOMERS, QUICK_CHANGED) if quick else (CUSTOMERS, CHANGED)
    out = common.run_worker("bench.zoho_calls", {"customers": customers, "changed": changed}, timeout=1800)
    product, template = out["product"], out["template"]
    unchanged, changed_run = product["unchanged"], product["changed"]
    reads_per_module = Counter(op.split(":")[1] for op in unchanged["by_operation"] if ":" in op)
    upserts = {m: changed_run["by_operation"].get(f"upsert:{m}", 0) for m in ("Contacts", "Leads")}
    expected = {m: math.ceil(changed_run["records_written_by_module"].get(m, 0) / 100) for m in ("Contacts", "Leads")}
    unchanged_ok = unchanged["write_calls"] == 0 and all(
        unchanged["by_operation"].get(op, 0) <= 1 for op in unchanged["by_operation"]
    )
    changed_ok = upserts == expected
    template_calls = template["changed"]["api_calls"] + template["unchanged"]["api_calls"]
    product_calls = changed_run["api_calls"] + unchanged["api_calls"]
    return [
        common.Figure(
            name="zoho_calls",
            value=product_calls,
            unit="API calls (unchanged run + run with N changed)",
            baseline="Magento -> Zoho template: per customer search by email, then update or insert",
            baseline_value=template_calls,
            ratio=round(template_calls / max(product_calls, 1), 1),
            target="unchanged run: 0 writes, <= 1 cheap read per module; N changed: ceil(N/100) upserts per module",
            met=unchanged_ok and changed_ok,
            details={
                "customers": out["customers"],
                "changed_customers": out["changed_customers"],
                "unchanged_run": unchanged,
                "changed_run": changed_run,
                "first_sync": product["first_sync"],
                "upserts_per_module": upserts,
                "expected_upserts_per_module": expected,
                "reads_per_module_unchanged": dict(reads_per_module),
                "credits": {
                    "product_unchanged": unchanged["credits"],
                    "product_changed": changed_run["credits"],
                    "template_unchanged": template["unchanged"]["credits"],
                    "template_changed": template["changed"]["credits"],
                },
                "credit_ratio": round(
                    (template["unchanged"]["credits"] + template["changed"]["credits"])
                    / max(unchanged["credits"] + changed_run["credits"], 1),
                    1,
                ),
                "template": template,
                "note": "the template syncs Contacts only and re-sends every customer on every run; told only "
                f"the {out['changed_customers']} changed customers it would still make 2 calls each",
            },
        )
    ]


if __name__ == "__main__":
    args = common.worker_args()
    common.emit(measure(**args))
