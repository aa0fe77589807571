"""A Zoho CRM client without Airflow: ``ZohoClient`` composes settings, OAuth, records and Bulk Write.

Modules: ``settings`` (connection settings, data centres, host allow-list), ``oauth`` (token requests, refresh,
the shared token cache), ``records`` (upsert, update, delete, get, deleted, convert, fields, org), ``bulk``
(Bulk Write) and ``client``. Names load on first use, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ZohoClient": "client",
    "CallStats": "client",
    "RECOMMENDED_SCOPES": "client",
    "ZohoSettings": "settings",
    "AccessToken": "oauth",
    "TokenCache": "oauth",
    "MemoryTokenCache": "oauth",
    "TokenPolicy": "oauth",
    "ZohoOAuth": "oauth",
    "RecordOutcome": "records",
    "RecordJSON": "records",
    "ZohoRecords": "records",
    "PERMANENT_CODES": "records",
    "ZohoBulkWrite": "bulk",
    "choose_write_path": "bulk",
    "estimate_write_credits": "bulk",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
