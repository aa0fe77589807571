"""The connection types the package registers with Airflow (``zoho_crm``, ``magento``, ``deconetwork``), their forms.

Airflow reads connection types only from an installed provider (``provider_info.get_provider_info``, the
``apache_airflow_provider`` entry point of pyproject.toml); a ``conn_type`` attribute on a hook in plugins/ is
never seen. Airflow 3.3's UI draws a connection form from data, without importing the hook:

* ``ui-field-behaviour``: which standard fields (host, schema, login, password, port) are hidden, relabelled or
  given a placeholder;
* ``conn-fields``: one extra field each, a JSON-Schema (``enum`` → a drop-down, ``format: password`` → masked,
  ``section`` → its own fold), stored in the Connection's ``extra`` under the field's name.

The field names below are exactly the extra keys the hooks read (``ZohoSettings.from_connection``,
``MagentoHook._auth_mode``/``_oauth1_credentials``, ``DecoNetworkHook._connection``), so a connection written
by hand, by ``airflow connections add`` or as ``AIRFLOW_CONN_*`` before these forms existed reads the same, and
a form-made one works in the hooks unchanged. A field left empty is stored as ``null`` or left out; the hooks
treat both as absent.

Hook methods ``get_connection_form_widgets`` (WTForms, which Airflow 3.3 does not install) and
``get_ui_field_behaviour`` are deprecated since Airflow 3.2 and only consulted when the provider data has no
form; the classes below keep ``get_ui_field_behaviour`` (the same data, in the old method's shape) for tools
that still call it, and nothing else. They are the ``hook-class-name`` of each type: small subclasses of the
project's hooks, defined when first asked for (the hooks import pandas and requests; provider discovery runs in
every Airflow command and must stay cheap).
"""

from __future__ import annotations

from typing import Any

from zoho_store_sync.settings import ZOHO_DATA_CENTRES

_DATA_CENTRE_HOSTS = {dc: accounts.removeprefix("https://") for dc, (accounts, _) in ZOHO_DATA_CENTRES.items()}
_ADVANCED = "Advanced: local sandbox only"


def _text(label: str, description: str, *, secret: bool = False, section: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    if section:
        schema["section"] = section
    return {"label": label, "description": description, "schema": schema}


# --- zoho_crm: ZohoSettings.from_connection ------------------------------------------------------------------
ZOHO_CRM: dict[str, Any] = {
    "connection-type": "zoho_crm",
    "hook-class-name": "zoho_store_sync.connection_types.ZohoCrmConnectionHook",
    "hook-name": "Zoho CRM",
    "ui-field-behaviour": {
        "hidden-fields": ["host", "schema", "port"],
        "relabeling": {"login": "Client ID", "password": "Client secret"},
        "placeholders": {
            "login": "1000.XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
            "password": "from the Zoho API console (Self Client or server-based client)",
        },
    },
    "conn-fields": {
        "data_centre": {
            "label": "Data centre",
            "description": "Where the Zoho org lives (the domain you log in to): "
            + ", ".join(f"{dc} = {host}" for dc, host in _DATA_CENTRE_HOSTS.items())
            + ". Only that data centre's hosts are ever called.",
            "schema": {"type": ["string", "null"], "enum": list(ZOHO_DATA_CENTRES)},
        },
        "environment": {
            "label": "Environment",
            "description": "production (default), or a Zoho sandbox or developer org of that data centre.",
            "schema": {"type": "string", "enum": ["production", "sandbox", "developer"], "default": "production"},
        },
        "refresh_token": _text(
            "Refresh token",
            "Leave empty: `python -m zoho_store_sync.cli connect <tenant>` stores it, encrypted, in the state "
            "database (README: Connecting a Zoho org). Only set it to use a token obtained elsewhere.",
            secret=True,
        ),
        "allow_custom_hosts": {
            "label": "Allow custom hosts",
            "description": "Only for a local Zoho sandbox (tests, demo): call the two URLs below instead of a "
            "data centre. Never for a real org.",
            "schema": {"type": ["boolean", "null"], "default": False, "section": _ADVANCED},
        },
        "accounts_url": _text(
            "Accounts URL", "OAuth server of the sandbox, e.g. http://127.0.0.1:8765", section=_ADVANCED
        ),
        "api_domain": _text("API domain", "API host of the sandbox, e.g. http://127.0.0.1:8765", section=_ADVANCED),
    },
}

# --- magento: MagentoHook (auth modes, oauth1 credentials) ----------------------------------------------------
MAGENTO: dict[str, Any] = {
    "connection-type": "magento",
    "hook-class-name": "zoho_store_sync.connection_types.MagentoConnectionHook",
    "hook-name": "Magento 2",
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {
            "host": "Store URL",
            "login": "Admin username (auth admin)",
            "password": "Secret (see Authentication)",
        },
        "placeholders": {
            "host": "https://shop.example.com",
            "login": "only for auth 'admin'",
            "password": 'oauth1: {"consumer_secret": "...", "access_token_secret": "..."} or the two fields below; '
            "integration_token: the access token; admin: the admin password",
        },
    },
    "conn-fields": {
        "auth": {
            "label": "Authentication",
            "description": "oauth1 (recommended, every 2.4 store): the integration's four credentials, requests "
            "signed with OAuth 1.0a. integration_token: the access token as a bearer token (2.4.4+ "
            "only if the store allows standalone bearer tokens). admin: an admin user's login and "
            "password (refused while two-factor authentication is on).",
            "schema": {
                "type": "string",
                "enum": ["oauth1", "integration_token", "admin"],
                "default": "integration_token",
            },
        },
        "consumer_key": _text(
            "Consumer key", "auth oauth1: from the integration's details.", section="OAuth 1.0a (auth oauth1)"
        ),
        "consumer_secret": _text(
            "Consumer secret",
            "auth oauth1, or give both secrets as JSON in Secret.",
            secret=True,
            section="OAuth 1.0a (auth oauth1)",
        ),
        "access_token": _text(
            "Access token", "auth oauth1: from the integration's details.", section="OAuth 1.0a (auth oauth1)"
        ),
        "access_token_secret": _text(
            "Access token secret",
            "auth oauth1, or give both secrets as JSON in Secret.",
            secret=True,
            section="OAuth 1.0a (auth oauth1)",
        ),
    },
}

# --- deconetwork: DecoNetworkHook ----------------------------------------------------------------------------
DECONETWORK: dict[str, Any] = {
    "connection-type": "deconetwork",
    "hook-class-name": "zoho_store_sync.connection_types.DecoNetworkConnectionHook",
    "hook-name": "DecoNetwork",
    "ui-field-behaviour": {
        "hidden-fields": ["schema", "port"],
        "relabeling": {"host": "Site URL", "login": "API username", "password": "API password"},
        "placeholders": {"host": "https://shop.secure-decoration.com"},
    },
    "conn-fields": {
        "timeout": {
            "label": "Timeout (seconds)",
            "description": "Per request; default 60.",
            "schema": {"type": ["number", "null"], "minimum": 1},
        },
    },
}

CONNECTION_TYPES: tuple[dict[str, Any], ...] = (ZOHO_CRM, MAGENTO, DECONETWORK)


def ui_field_behaviour(connection_type: dict[str, Any]) -> dict[str, Any]:
    """The form's standard-field behaviour in the shape of the old ``get_ui_field_behaviour`` method."""
    behaviour = connection_type["ui-field-behaviour"]
    return {
        "hidden_fields": list(behaviour["hidden-fields"]),
        "relabeling": dict(behaviour["relabeling"]),
        "placeholders": dict(behaviour.get("placeholders", {})),
    }


# --- the hook classes Airflow imports for a connection of each type ---------------------------------------------
_HOOKS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ZohoCrmConnectionHook": ("zoho_store_sync.hooks.zoho_crm", "ZohoCrmHook", ZOHO_CRM),
    "MagentoConnectionHook": ("zoho_store_sync.hooks.magento", "MagentoHook", MAGENTO),
    "DecoNetworkConnectionHook": ("zoho_store_sync.hooks.deconetwork", "DecoNetworkHook", DECONETWORK),
}


def _define(name: str) -> type:
    import importlib

    module_name, base_name, connection_type = _HOOKS[name]
    base = getattr(importlib.import_module(module_name), base_name)

    def get_ui_field_behaviour(cls: type) -> dict[str, Any]:
        return ui_field_behaviour(connection_type)

    hook = type(
        name,
        (base,),
        {
            "__module__": __name__,
            "__doc__": f"{base.__doc__}\n\nThe ``{connection_type['connection-type']}`` connection type's hook as "
            "Airflow registers it (see zoho_store_sync.connection_types).",
            "conn_type": connection_type["connection-type"],
            "hook_name": connection_type["hook-name"],
            "get_ui_field_behaviour": classmethod(get_ui_field_behaviour),
        },
    )
    globals()[name] = hook  # defined once: the same class on every later access
    return hook


def __getattr__(name: str) -> Any:
    if name in _HOOKS:
        return _define(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CONNECTION_TYPES", "ZOHO_CRM", "MAGENTO", "DECONETWORK", "ui_field_behaviour", *_HOOKS]
