"""Which failures deserve an Airflow retry: configuration and permission errors fail fast."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

SYNC_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        # Throttled token requests clear after minutes: wait, don't burn the retries at once.
        RetryRule(exception="zoho_store_sync.errors.ZohoTokenThrottled", action=RetryAction.RETRY,
                  retry_delay=timedelta(minutes=5), reason="Zoho token throttle"),
        RetryRule(exception="zoho_store_sync.errors.ZohoUnavailable", action=RetryAction.RETRY,
                  retry_delay=timedelta(minutes=3), reason="Zoho unavailable after in-task backoff"),
        # A human must act (config, scope, permission, mapping, bad grant): retrying cannot help.
        RetryRule(exception=["zoho_store_sync.errors.ZohoConfigError",
                             "zoho_store_sync.errors.ZohoScopeError",
                             "zoho_store_sync.errors.ZohoOAuthError",
                             "zoho_store_sync.errors.MappingError",
                             "zoho_store_sync.errors.MagentoAuthError",
                             "zoho_store_sync.errors.DecoNetworkAuthError",
                             "zoho_store_sync.errors.DecoNetworkNotEnabledError",
                             "zoho_store_sync.errors.DecoNetworkHtmlError",
                             "zoho_store_sync.errors.DecoNetworkExportError",
                             "zoho_store_sync.errors.ScopeError",
                             "zoho_store_sync.errors.SyncThresholdExceeded",
                             LookupError],
                  action=RetryAction.FAIL, reason="needs an operator"),
    ],
)
