"""Airflow provider metadata of the ``zoho-store-sync`` distribution (entry point ``apache_airflow_provider``).

Every Airflow component calls ``get_provider_info`` when it discovers providers: it imports nothing but the
connection types' data (no hook, no pandas). ``airflow providers list`` shows the provider, ``airflow providers
hooks`` and the UI's connection form (``/ui/connections/hook_meta``) the three connection types.
"""

from __future__ import annotations

import copy
from typing import Any

PACKAGE_NAME = "zoho-store-sync"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE_NAME)
    except PackageNotFoundError:  # imported from plugins/ without the distribution installed
        return "0.0.0"


def get_provider_info() -> dict[str, Any]:
    from zoho_store_sync.connection_types import CONNECTION_TYPES

    return {
        "package-name": PACKAGE_NAME,
        "name": "Zoho Store Sync",
        "description": "Store customers (Magento 2, DecoNetwork) kept in Zoho CRM: the Zoho CRM, Magento 2 and "
        "DecoNetwork connection types and their forms.",
        "versions": [_version()],
        "connection-types": copy.deepcopy(list(CONNECTION_TYPES)),
    }
