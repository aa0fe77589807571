"""Store sources: each turns a store's API into the canonical customer frame (see customers.py).

One package per store (``magento/``, ``deconetwork/``: its hook, its extraction, its declaration), found through
``registry.py``, which also documents the contract every store keeps. This module and the registry are imported
when the DAG files are parsed (``TenantConfig.source`` is checked against the registry): they import nothing
heavy; pandas is only named here, for type checkers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class SourceExtract:
    """What one extraction returns, whatever the store.

    ``customers`` is the canonical frame: on a full pass every customer of the tenant, on an incremental
    pass only those changed since the cursor (with their complete order aggregates). ``cursor`` is saved
    by the pipeline once the run succeeded, and handed back next run. ``all_customer_keys`` is set on a
    full pass only: every customer id the store still has, for detecting deletions. ``incomplete_reason`` says
    why a read may not be the whole store (then ``all_customer_keys`` is None and nothing is deleted).
    ``customer_list_empty``: the store's customer list answered with no row at all (a header-only export), which
    the pipeline refuses while the tenant has records in Zoho.
    """

    customers: pd.DataFrame
    full: bool
    cursor: dict[str, Any] = field(default_factory=dict)
    all_customer_keys: list[str] | None = None
    calls: int = 0
    incomplete_reason: str | None = None
    customer_list_empty: bool = False
