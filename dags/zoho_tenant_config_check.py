"""Surfaces broken entries of the ``zoho_sync_tenants`` Variable as an Airflow DAG import error.

The sync DAGs of valid tenants load from ``zoho_sync.py`` regardless; this file defines no DAG and
fails to import only when an entry is invalid, so the UI's import-errors banner names the tenant and
the field to fix: a field of the wrong type, a schedule Airflow refuses, a mapping file outside
include/mappings, missing, not YAML or naming unknown fields (plugins/zoho_store_sync/config.py).
"""

from __future__ import annotations

from zoho_store_sync.config import load_tenants
from zoho_store_sync.errors import TenantConfigError

_errors = load_tenants().errors
if _errors:
    raise TenantConfigError(
        "zoho_sync_tenants has invalid entries (their DAGs are not built; other tenants are unaffected):\n  "
        + "\n  ".join(_errors)
    )
