"""Manual DAG ``zoho_connect``: connect a tenant's Zoho org (grant code → refresh token) or verify it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from zoho_store_sync.config import tenant_param
from zoho_store_sync.errors import ZohoError

DOC_MD = """
### Connect or verify a tenant's Zoho org

**Connect** (once per tenant, or after the refresh token was revoked):

1. In the Zoho API console (Self Client, or your server-based client), generate a grant code with the
   scopes `ZohoCRM.modules.ALL,ZohoCRM.settings.fields.READ,ZohoCRM.org.READ,ZohoCRM.bulk.ALL,ZohoFiles.files.ALL`.
   It lives only a few minutes.
2. *Trigger DAG w/ config*: pick the **tenant**, mode **connect**, paste the **grant code** (masked), and
   the **redirect URI** if your client has one.
3. The refresh token is stored encrypted in the state database, where the tenant's sync reads it; it is
   never shown. The run then verifies the tenant.

**Verify** (mode `verify`, any time): a token can be obtained, its API domain belongs to the connection's
data centre, the scopes cover the record types the tenant syncs, and every mapped field exists in the org
and is writable. Each failed check says what to do.
"""

log = logging.getLogger(__name__)
@dag(
    dag_id="zoho_connect",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["zoho_sync", "manual"],
    doc_md=DOC_MD,
    default_args={"owner": "data-engineering", "retries": 0, "execution_timeout": timedelta(minutes=10)},
    params={
        "tenant": tenant_param("The tenant whose Zoho org to connect or verify."),
        "mode": Param("verify", type="string", enum=["connect", "verify"], title="Mode"),
        "grant_code": Param("", type="string", format="password", title="Grant code",
                            description="Only for mode 'connect'. One-time code from the Zoho API console."),
        "redirect_uri": Param("", type="string", title="Redirect URI",
                              description="Only if your Zoho client has a registered redirect URI."),
    },
)
def zoho_connect():
    @task
    def exchange_grant_code(params=None) -> dict:  # type: ignore[no-untyped-def]
        from zoho_store_sync import connect  # the pipeline's modules load when a task runs, not at parse time

        if params["mode"] != "connect":
            raise AirflowSkipException("mode 'verify': nothing to exchange")
        try:
            return connect.connect(params["tenant"], params["grant_code"], params["redirect_uri"] or None)
        except (ZohoError, LookupError) as problem:
            log.error("connect failed: %s", problem)
            raise AirflowFailException(str(problem)) from None

    @task(trigger_rule="none_failed")
    def verify_tenant(params=None) -> list[str]:  # type: ignore[no-untyped-def]
        from zoho_store_sync import connect

        try:
            return [check.line() for check in connect.verify(params["tenant"])]
        except (connect.VerificationFailed, ZohoError, LookupError) as problem:
            raise AirflowFailException(str(problem)) from None

    exchange_grant_code() >> verify_tenant()


zoho_connect()
