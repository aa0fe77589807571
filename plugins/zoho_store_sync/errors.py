"""Every error the retry policy names, in one light module: the DAG processor imports it at parse time."""

from __future__ import annotations

from typing import Any, Sequence

# Airflow's RetryRule imports each exception it names when the DAG file is parsed. Defined here, next to
# nothing heavy, the parse never loads pandas, pyarrow or the HTTP hooks; the modules that raise these
# errors re-export them under their old names.


# ---- Zoho CRM (hooks/zoho_crm.py) -------------------------------------------------------------------
_OAUTH_ERROR_ADVICE = {
    "invalid_code": "the grant code or refresh token is expired, already used or revoked: generate a new grant "
    "code in the Zoho API console (it lives only minutes) and connect the tenant again",
    "invalid_client": "Zoho does not know this client id in this data centre: check the client id and the "
    "connection's data_centre (an EU org must use 'eu', a Canadian one 'ca', ...)",
    "invalid_client_secret": "the client secret is wrong: copy it again from the Zoho API console",
    "invalid_redirect_uri": "the redirect URI differs from the one registered for the client in the Zoho API "
    "console: use exactly the registered value",
    "Access Denied": "Zoho throttled token requests (more than 10 access tokens in 10 minutes for this refresh "
    "token): wait a few minutes; tokens are shared between tasks, so this means something else uses the same "
    "refresh token",
}


class ZohoError(Exception):
    """Base of the hook's errors. Messages never contain a token or secret."""

    retryable = False


class ZohoConfigError(ZohoError):
    """The connection is incomplete or names a host outside the configured data centre."""


class ZohoOAuthError(ZohoError):
    """Zoho's accounts server refused a token request (reported in an HTTP 200 body)."""

    def __init__(self, code: str, description: str = "") -> None:
        self.code = code
        advice = _OAUTH_ERROR_ADVICE.get(code, "see Zoho's OAuth documentation")
        super().__init__(f"Zoho OAuth error {code!r}{': ' + description if description else ''}. What to do: {advice}")


class ZohoTokenThrottled(ZohoOAuthError):
    """Zoho's 10-tokens-per-10-minutes limit (its answer, or our own budget): wait, don't fail."""

    retryable = True

    def __init__(self, description: str = "", *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__("Access Denied", description)


class ZohoAuthError(ZohoError):
    """The API refused the token even after one refresh."""


class ZohoScopeError(ZohoError):
    """OAUTH_SCOPE_MISMATCH or NO_PERMISSION: fail fast, retries cannot help."""

    def __init__(self, message: str, *, scope: str | None = None, permissions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.scope = scope
        self.permissions = list(permissions)


class ZohoUnavailable(ZohoError):
    """429, 5xx or dropped connections persisted through every retry."""

    retryable = True


class ZohoRequestError(ZohoError):
    """Zoho refused a whole request (not one record of it): its code and HTTP status are kept."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# ---- Magento (hooks/magento.py) -----------------------------------------------------------------------
class MagentoError(Exception):
    """Magento refused a call; the message is Magento's own, placeholders filled in.

    ``status`` is the HTTP status (None when no response came), ``body`` the decoded error body.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class MagentoAuthError(MagentoError):
    """The credentials were refused, or the integration lacks an ACL resource."""


# ---- DecoNetwork (hooks/deconetwork.py, sources/deconetwork.py) ------------------------------------------
class DecoNetworkError(Exception):
    """DecoNetwork refused a call; the message says what to check. Never contains the password."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class DecoNetworkAuthError(DecoNetworkError):
    """Authentication failed: wrong username/password, or a site that answers with its login page."""


class DecoNetworkNotEnabledError(DecoNetworkError):
    """The Order Management API app is not enabled on the site."""


class DecoNetworkRequestError(DecoNetworkError):
    """The site rejected the request's parameters (50002-50005): a bug or a wrong option on our side."""


class DecoNetworkHtmlError(DecoNetworkError):
    """An HTML page came back instead of JSON: wrong host, or a login the site did not accept."""


class DecoNetworkExportError(ValueError):
    """The customer export is missing or does not follow the contract; the message says what to fix."""


# ---- the pipeline -----------------------------------------------------------------------------------
class MappingError(ValueError):
    """A mapping that cannot work: names the tenant, the module, the field and the reason."""


class ScopeError(ValueError):
    """The tenants' affiliate settings contradict each other; the message names the tenant and the field."""


class SyncThresholdExceeded(RuntimeError):
    """More records failed than the tenant's failure_threshold allows."""


class TenantBusy(RuntimeError):
    """The tenant's lock is held by the other kind of run (sync vs reset)."""


# ---- data safety: answers that may not be the whole truth ------------------------------------------------
class SourceIncompleteError(RuntimeError):
    """The store's answer looks partial (an empty page before the reported total, a short read) even after
    retrying the page: nothing is planned or deleted on it. Try again later; fix the store if it persists."""


class StagingFileMissing(RuntimeError):
    """A staging file written by an earlier task of the run is gone (staging not shared between workers)."""


class StateSchemaError(RuntimeError):
    """The state database's schema is behind or ahead of this code: an operator must run the migration."""


class MassDeletionRefused(RuntimeError):
    """A run would delete or flag more Zoho records than the tenant's limit: nothing was deleted."""
