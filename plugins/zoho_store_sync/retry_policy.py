"""Which failures deserve an Airflow retry: configuration and permission errors fail fast."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

SYNC_RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        # Throttled token requests clear after minutes: wait, don't burn the retries at once.
        RetryRule(exception="zoho_store_sync.hooks.zoho_crm.ZohoTokenThrottled", action=RetryAction.RETRY,
                  retry_delay=timedelta(minutes=5), reason="Zoho token throttle"),
        RetryRule(exception="zoho_store_sync.hooks.zoho_crm.ZohoUnavailable", action=RetryAction.RETRY,
                  retry_delay=timedelta(minutes=3), reason="Zoho unavailable after in-task backoff"),
        # A human must act (config, scope, permission, mapping, bad grant): retrying cannot help.
        RetryRule(exception=["zoho_store_sync.hooks.zoho_crm.ZohoConfigError",
                             "zoho_store_sync.hooks.zoho_crm.ZohoScopeError",
                             "zoho_store_sync.hooks.zoho_crm.ZohoOAuthError",
                             "zoho_store_sync.mapping.MappingError",
                             "zoho_store_sync.hooks.magento.MagentoAuthError",
                             "zoho_store_sync.hooks.deconetwork.DecoNetworkAuthError",
                             "zoho_store_sync.hooks.deconetwork.DecoNetworkNotEnabledError",
                             "zoho_store_sync.hooks.deconetwork.DecoNetworkHtmlError",
                             "zoho_store_sync.sources.deconetwork.DecoNetworkExportError",
                             "zoho_store_sync.scope.ScopeError",
                             "zoho_store_sync.pipeline.SyncThresholdExceeded",
                             LookupError],
                  action=RetryAction.FAIL, reason="needs an operator"),
    ],
)
