"""Every error the product raises, in one light module: the DAG processor imports it at parse time.

Each error is one of two kinds, which is all the retry policy (retry_policy.py) looks at:

* ``NeedsOperator``: a person must act (configuration, scope, permission, mapping, a bad grant, a refused export
  file, a refused mass deletion, a missing staging file, a schema behind the code, a threshold exceeded, the
  org's daily Zoho credits used up...): retrying cannot help (today), the task fails at once;
* ``TryLater``: the same step may well succeed later (Zoho unavailable, tokens throttled, a partial answer from
  the store, the tenant locked by another run...): Airflow retries the task.

Anything else (a bug: a KeyError, an IndexError) gets Airflow's standard retries. A new error derives from
exactly one kind, beside its usual base (``ValueError``, ``ZohoError``...); tests/zoho_store_sync/
test_error_kinds.py checks every error class of the package.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

# Defined here, next to nothing heavy, the parse never loads pandas, pyarrow or the HTTP hooks; the modules
# that raise these errors re-export them under their old names.

_E = TypeVar("_E", bound=type)


# ---- the two kinds ----------------------------------------------------------------------------------------
class NeedsOperator(Exception):
    """A person must act before this can work: the task fails at once, without Airflow retries."""


class TryLater(Exception):
    """The same step may well succeed later: Airflow retries the task."""


# family -> the member that raising the family directly raises (``_default_of``)
FAMILIES: dict[type[BaseException], type[BaseException]] = {}


class _Family(Exception):
    """The errors of one system or answer, with members of both kinds (every Magento error, say).

    ``except MagentoError`` catches them all, but the family itself is no kind: raised directly, it raises its
    default member (``FAMILIES``), as ``OSError(errno.ENOENT, ...)`` is a ``FileNotFoundError``. So every error
    raised is exactly one kind, with the family's message and attributes.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__new__(FAMILIES.get(cls, cls), *args, **kwargs)


def _default_of(family: type[_Family]) -> Callable[[_E], _E]:
    """Class decorator: the member ``family(...)`` raises when the family is raised directly."""

    def register(member: _E) -> _E:
        assert issubclass(member, family) and member is not family and family not in FAMILIES
        FAMILIES[family] = member
        return member

    return register


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


class ZohoError(_Family):
    """Base of the hook's errors. Messages never contain a token or secret."""

    retryable = False


class ZohoConfigError(NeedsOperator, ZohoError):
    """The connection is incomplete or names a host outside the configured data centre."""


class ZohoOAuthError(ZohoError):
    """Zoho's accounts server refused a token request (reported in an HTTP 200 body). A family: raised directly,
    it is a ``ZohoOAuthRefused``; the throttle is a ``ZohoTokenThrottled``."""

    def __init__(self, code: str, description: str = "") -> None:
        self.code = code
        advice = _OAUTH_ERROR_ADVICE.get(code, "see Zoho's OAuth documentation")
        super().__init__(f"Zoho OAuth error {code!r}{': ' + description if description else ''}. What to do: {advice}")


@_default_of(ZohoOAuthError)
class ZohoOAuthRefused(NeedsOperator, ZohoOAuthError):
    """A refused grant code, refresh token, client id or secret, or redirect URI: connect the tenant again."""


class ZohoTokenThrottled(TryLater, ZohoOAuthError):
    """Zoho's 10-tokens-per-10-minutes limit (its answer, or our own budget): wait, don't fail."""

    retryable = True

    def __init__(self, description: str = "", *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__("Access Denied", description)


class ZohoAuthError(TryLater, ZohoError):
    """The API refused the token even after one refresh."""


class ZohoScopeError(NeedsOperator, ZohoError):
    """OAUTH_SCOPE_MISMATCH or NO_PERMISSION: fail fast, retries cannot help."""

    def __init__(self, message: str, *, scope: str | None = None, permissions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.scope = scope
        self.permissions = list(permissions)


class ZohoUnavailable(TryLater, ZohoError):
    """429, 5xx or dropped connections persisted through every retry."""

    retryable = True


class ZohoCreditsExhausted(NeedsOperator, ZohoError):
    """Zoho's daily API credits of the org are used up (HTTP 429 for the rolling 24 hours, not a concurrency
    throttle): nothing more can be sent until credits free up, 24 h after each call. Not retried, neither in the
    task nor by Airflow (a retry today cannot succeed); the message names the credits used and when to run
    again. What Zoho confirmed is kept; the rest is sent by the next run.

    ``answer``: what Zoho said (status, message, remaining count); ``remaining``: Zoho's last
    X-API-CREDITS-REMAINING (None when it sent none); ``free_at``: when enough credits are free again (an ISO time,
    None until the ledger was read)."""

    def __init__(
        self, message: str, *, answer: str = "", remaining: int | None = None, free_at: str | None = None
    ) -> None:
        super().__init__(message)
        self.answer = answer or message
        self.remaining = remaining
        self.free_at = free_at


@_default_of(ZohoError)
class ZohoRequestError(TryLater, ZohoError):
    """Zoho refused a whole request (not one record of it): its code and HTTP status are kept. ``ZohoError``
    raised directly is one."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


# ---- Magento (hooks/magento.py) -----------------------------------------------------------------------
class MagentoError(_Family):
    """Magento refused a call; the message is Magento's own, placeholders filled in. A family: raised directly,
    it is a ``MagentoCallFailed``.

    ``status`` is the HTTP status (None when no response came), ``body`` the decoded error body.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@_default_of(MagentoError)
class MagentoCallFailed(TryLater, MagentoError):
    """A Magento call that failed otherwise (an HTTP error after the in-task retries)."""


class MagentoAuthError(NeedsOperator, MagentoError):
    """The credentials were refused, or the integration lacks an ACL resource."""


# ---- DecoNetwork (hooks/deconetwork.py, sources/deconetwork.py) ------------------------------------------
class DecoNetworkError(_Family):
    """DecoNetwork refused a call; the message says what to check. Never contains the password. A family: raised
    directly, it is a ``DecoNetworkCallFailed``."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@_default_of(DecoNetworkError)
class DecoNetworkCallFailed(TryLater, DecoNetworkError):
    """A DecoNetwork call that failed otherwise (no answer, HTTP 5xx after the in-task retries, an unknown code)."""


class DecoNetworkAuthError(NeedsOperator, DecoNetworkError):
    """Authentication failed: wrong username/password, or a site that answers with its login page."""


class DecoNetworkNotEnabledError(NeedsOperator, DecoNetworkError):
    """The Order Management API app is not enabled on the site."""


class DecoNetworkConfigError(NeedsOperator, DecoNetworkError):
    """The DecoNetwork Connection is incomplete (no site URL): fix the Connection."""


class DecoNetworkRequestError(TryLater, DecoNetworkError):
    """The site rejected the request's parameters (50002-50005): a bug or a wrong option on our side."""


class DecoNetworkHtmlError(NeedsOperator, DecoNetworkError):
    """An HTML page came back instead of JSON: wrong host, or a login the site did not accept."""


class DecoNetworkExportError(NeedsOperator, ValueError):
    """The customer export is missing or does not follow the contract; the message says what to fix."""


# ---- configuration and manual DAGs (config.py, dags/, reset.py, connect.py) ----------------------------------
class TenantConfigError(NeedsOperator, ValueError):
    """Broken entries of the tenants Variable, one line each (dags/zoho_tenant_config_check.py's import error)."""


class TenantNotConfigured(NeedsOperator, LookupError):
    """A task's tenant has no valid entry in the Variable (removed, or its entry is broken: the message says how)."""


class ResetNotConfirmed(NeedsOperator, ValueError):
    """The reset's form is not confirmed or asks for record types the tenant does not sync: nothing changed."""


class VerificationFailed(NeedsOperator, RuntimeError):
    """zoho_connect's verify found problems; the message lists each failed check with what to do."""


# ---- the pipeline -----------------------------------------------------------------------------------
class MappingError(NeedsOperator, ValueError):
    """A mapping that cannot work: names the tenant, the module, the field and the reason. ``setting``: the
    tenant setting to fix (``mapping``: the file; ``mapping_overrides``), when known."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ScopeError(NeedsOperator, ValueError):
    """The tenants' affiliate settings contradict each other; the message names the tenant and the field."""


class SyncThresholdExceeded(NeedsOperator, RuntimeError):
    """More records failed than the tenant's failure_threshold allows."""


class TenantBusy(TryLater, RuntimeError):
    """The tenant's lock is held by the other kind of run (sync vs reset)."""


# ---- data safety: answers that may not be the whole truth ------------------------------------------------
class SourceIncompleteError(TryLater, RuntimeError):
    """The store's answer looks partial (an empty page before the reported total, a short read) even after
    retrying the page: nothing is planned or deleted on it. Try again later; fix the store if it persists."""


class StagingFileMissing(NeedsOperator, RuntimeError):
    """A staging file written by an earlier task of the run is gone (staging not shared between workers)."""


class StateSchemaError(NeedsOperator, RuntimeError):
    """The state database's schema is behind or ahead of this code: an operator must run the migration."""


class CreditBudgetExceeded(NeedsOperator, RuntimeError):
    """A run's credit estimate exceeds what remains of the org's daily Zoho credits (less the tenant's
    ``zoho_credit_reserve``): deferred before sending anything. The message names the estimate, what remains and
    when enough is free again; the next scheduled run after that time goes on by itself."""


class MassDeletionRefused(NeedsOperator, RuntimeError):
    """A run would delete or flag more Zoho records than the tenant's limit: nothing was deleted."""


class StateConnectionError(NeedsOperator, ValueError):
    """The state database's Connection has a type the sync cannot use (only sqlite and postgres)."""
