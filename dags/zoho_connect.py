"""Manual DAG ``zoho_connect``: verify a tenant's Zoho org. Connecting it (grant code → refresh token) is the CLI's job.

A grant code typed into a trigger form would stay readable: Airflow 3.3 stores a run's conf as given and shows it
in the run's details and the REST API (a ``format: password`` Param only hides the input box), and a task cannot
change its run's conf afterwards. So this DAG takes no code at all; ``python -m zoho_store_sync.cli connect
<tenant>`` prompts for it (hidden), exchanges it at once and keeps only the encrypted refresh token. A run whose
conf carries a ``grant_code`` anyway fails before using it and says how to remove it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException

from zoho_store_sync.config import tenant_param
from zoho_store_sync.errors import ZohoError

DOC_MD = """
### Verify a tenant's Zoho org

*Trigger DAG w/ config*, pick the **tenant**, trigger: nothing else to type. The run checks that a token can be
obtained, that its API domain belongs to the connection's data centre, that the scopes cover the record types the
tenant syncs, and that every mapped field exists in the org and is writable. Each failed check says what to do.

### Connect (once per tenant, or after the refresh token was revoked)

Not from this form: a grant code typed here would stay readable in the run's configuration. In the Zoho API console
(Self Client, or your server-based client), generate a grant code with the scopes
`ZohoCRM.modules.ALL,ZohoCRM.settings.fields.READ,ZohoCRM.settings.layouts.READ,ZohoCRM.org.READ,ZohoCRM.bulk.ALL,ZohoCRM.coql.READ,ZohoFiles.files.ALL`
(it lives a few minutes), then, where `airflow` commands work (e.g. `docker compose run airflow-cli bash`):

    python -m zoho_store_sync.cli connect <tenant>     # prompts for the grant code (hidden), then verifies

The refresh token is stored encrypted in the state database, where the tenant's sync reads it; it is never shown.
"""

log = logging.getLogger(__name__)

CONNECT_WITH_THE_CLI = (
    "zoho_connect no longer takes a grant code (a run's conf stays readable in the UI and the REST API): run "
    "`python -m zoho_store_sync.cli connect {tenant}` where airflow commands work; it prompts for the code without "
    "showing it. The code given here was not used; delete this run (Browse > Dag Runs, or DELETE "
    "/api/v2/dags/zoho_connect/dagRuns/<run id>) so it does not stay in its conf, and generate a new one."
)


@dag(
    dag_id="zoho_connect",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["zoho_sync", "manual"],
    doc_md=DOC_MD,
    default_args={"owner": "data-engineering", "retries": 0, "execution_timeout": timedelta(minutes=10)},
    params={"tenant": tenant_param("The tenant whose Zoho org to verify.")},
)
def zoho_connect():
    @task
    def verify_tenant(params=None) -> list[str]:
        from zoho_store_sync import connect  # the pipeline's modules load when a task runs, not at parse time

        if params.get("grant_code") or params.get("mode") == "connect":
            if params.get("grant_code"):
                from airflow.sdk.log import mask_secret

                mask_secret(str(params["grant_code"]))  # never in this run's log lines either
            raise AirflowFailException(CONNECT_WITH_THE_CLI.format(tenant=params["tenant"]))
        try:
            return [check.line() for check in connect.verify(params["tenant"])]
        except (connect.VerificationFailed, ZohoError, LookupError) as problem:
            raise AirflowFailException(str(problem)) from None

    verify_tenant()


zoho_connect()
