"""Which failures deserve an Airflow retry, by kind (errors.py): an error that needs a person fails the task at
once; one that may pass later is retried (a throttle or an outage after a wait of its own); anything else, a bug
included, gets Airflow's standard retries."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.exceptions import AirflowNotFoundException

from zoho_store_sync.errors import NeedsOperator, TryLater, ZohoTokenThrottled, ZohoUnavailable

# Classes, not dotted strings: a misspelt name fails the import instead of silently never matching. No built-in
# error either: Airflow matches subclasses, and a KeyError anywhere in a task is a bug, not a configuration.
SYNC_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        # Throttled token requests clear after minutes: wait, don't burn the retries at once.
        RetryRule(
            exception=ZohoTokenThrottled,
            action=RetryAction.RETRY,
            retry_delay=timedelta(minutes=5),
            reason="Zoho token throttle",
        ),
        RetryRule(
            exception=ZohoUnavailable,
            action=RetryAction.RETRY,
            retry_delay=timedelta(minutes=3),
            reason="Zoho unavailable after in-task backoff",
        ),
        RetryRule(exception=TryLater, action=RetryAction.RETRY, reason="may pass if tried again later"),
        # A human must act (config, scope, permission, mapping, bad grant, ...): retrying cannot help. A
        # Connection that does not exist (Airflow's AirflowNotFoundException) is one too.
        RetryRule(
            exception=[NeedsOperator, AirflowNotFoundException], action=RetryAction.FAIL, reason="needs an operator"
        ),
    ],
)
