"""The stores the sync can read, by the ``source`` of a tenant: one plug-in per store, and its contract.

A store is one package, ``zoho_store_sync/sources/<name>/`` (its hook, its extraction, and in ``__init__.py``
a ``SOURCE = Source(...)`` declaring it), plus one line in ``BUILT_IN`` below; CONTRIBUTING.md walks through it.
``register()`` adds a store from elsewhere (a test's toy store, a deployment's own plug-in imported before the
Variable is parsed). ``TenantConfig.source`` accepts exactly ``names()``: an unknown store is a broken tenant
entry when the Variable is parsed, never a surprise in a task.

This module is imported when the DAG files are parsed (500 tenants, every 30 s): it imports nothing heavy, and
a ``Source`` names its extraction, hook and options model by import path (``"package.module:name"``), imported
only when a task runs it.

The contract: what every store's ``extract(tenant, cursor, *, state_url, full_every_hours)`` keeps
----------------------------------------------------------------------------------------------------
It returns a ``SourceExtract`` (``zoho_store_sync.sources``):

* **The canonical frame.** ``customers`` has exactly the columns and dtypes of ``customers.CUSTOMER_COLUMNS``
  (build it with ``customers.conform``; ``customers.empty_customers()`` when nobody is read), one row per
  customer. ``customer_key`` is the store's own stable id as a string, unique in the tenant and the same
  from run to run (rows without an account get a prefixed key, as Magento's ``guest:<email>``): the state
  table and the Zoho records hang on it. ``order_count`` and ``total_order_value`` count only real purchases,
  and always cover *all* the customer's orders, on an incremental pass too. ``registered``, ``newsletter``
  and ``order_count`` make the Contact/Lead split (customers.py); ``store_id`` and ``store_is_mine`` the scope
  (scope.py); ``deleted`` flags a customer the store keeps as deleted. Emails are passed as the store has
  them: validation, de-duplication and last names are the pipeline's (customers.prepare), not the store's.
* **Full and incremental passes.** ``cursor`` is None (first run, reset, a full pass the pipeline forces: it
  may at any run) or what this store returned last time. Without a cursor, or when ``full_every_hours`` have
  passed since the last full pass, it reads every customer (``full=True``); otherwise only those changed
  since the cursor (``full=False``). Changes the store's change marks miss (newsletter flags, hard
  deletes) are caught by the next full pass.
* **The cursor** is a JSON-able dict, saved by the pipeline only after the run's changes were sent and
  recorded; a failed run gets the old one again, so an extraction must be repeatable. Marks come from the
  store's own clock, never beyond what the store had before reading began (a row changed while reading is
  read again next run). Data kept between runs goes under ``state_url`` (a folder private to the tenant and
  the store, ``<staging root>/<tenant>/<source>``), in new files the cursor names, so a run that fails
  never leaves a half-written copy for the next one.
* **Completeness.** ``all_customer_keys`` (every key the store still has: absence deletes or flags the Zoho
  record, by the tenant's ``source_deletions``) is given on a full pass only when the read is provably the
  whole store; otherwise it is None and ``incomplete_reason`` says why (nothing is deleted, and the cursor
  must not record the pass as the full one, so the next run tries again). ``customer_list_empty`` says the
  store answered with no customer at all; the pipeline refuses that while the tenant has records in Zoho.
  A partial answer that would make what is *sent* wrong (missing orders lower order counts) is not
  returned at all: it raises ``errors.SourceIncompleteError``.
* **Errors by kind** (``zoho_store_sync.errors``): every error a store raises is a ``NeedsOperator`` (a person
  must act: refused credentials, a missing permission, an export file that breaks its contract; the task
  fails at once) or a ``TryLater`` (the store busy, down or answering partially after the hook's own
  retries; Airflow retries the task). New classes are defined in errors.py with exactly one kind, named
  after the store; messages say what to check and never hold a secret. ``calls`` counts the store's answers.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoho_store_sync.errors import TenantConfigError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from zoho_store_sync.config import TenantConfig
    from zoho_store_sync.sources import SourceExtract

# The stores shipped with the product: the ``source`` name -> the package whose ``SOURCE`` declares it.
BUILT_IN: dict[str, str] = {
    "magento": "zoho_store_sync.sources.magento",
    "deconetwork": "zoho_store_sync.sources.deconetwork",
}
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # also a folder, a DAG tag and "<name>.yaml"

Extractor = Callable[..., "SourceExtract"]  # (tenant, cursor, *, state_url, full_every_hours) -> SourceExtract


def _resolve(target: Any) -> Any:
    """``"package.module:name"`` imported, or the object itself."""
    if not isinstance(target, str):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Source:
    """One store the sync can read. Import paths (``"package.module:name"``) are imported on first use.

    :param name: the tenants' ``source`` value.
    :param extractor: the function keeping the contract above:
        ``(tenant, cursor, *, state_url, full_every_hours) -> SourceExtract``, or its import path.
    :param default_mapping: the tenant's mapping file when it names none, in include/mappings/.
    :param conn_type: the connection type of the store's hook (``store_conn_id`` names such a Connection).
    :param hook: the hook class, or its import path (None: the store needs no Connection of its own).
    :param options_field: the ``TenantConfig`` field holding the store's options (None: it has none).
    :param options_model: that field's pydantic model, or its import path.
    """

    name: str
    extractor: str | Extractor
    default_mapping: str
    conn_type: str | None = None
    hook: str | type | None = None
    options_field: str | None = None
    options_model: str | type[BaseModel] | None = None

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(f"source name {self.name!r}: lower-case letters, digits and '_', starting with a letter")
        if (self.options_field is None) != (self.options_model is None):
            raise ValueError(f"source {self.name!r}: options_field and options_model go together")

    def extract(
        self, tenant: TenantConfig, cursor: dict[str, Any] | None, *, state_url: str, full_every_hours: float
    ) -> SourceExtract:
        """The tenant's customers from this store, by the contract in the module docstring."""
        extractor: Extractor = _resolve(self.extractor)
        return extractor(tenant, cursor, state_url=state_url, full_every_hours=full_every_hours)

    def hook_class(self) -> type | None:
        return _resolve(self.hook)

    def options_class(self) -> type[BaseModel] | None:
        return _resolve(self.options_model)

    def options(self, tenant: TenantConfig) -> BaseModel | None:
        """The tenant's options for this store (its ``options_field``), or None."""
        return getattr(tenant, self.options_field) if self.options_field else None


_registered: dict[str, Source] = {}  # register(): added at run time, beside BUILT_IN
_loaded: dict[str, Source] = {}  # BUILT_IN's declarations, once imported
_names: tuple[str, ...] | None = None


def names() -> tuple[str, ...]:
    """Every known ``source``, sorted: the values ``TenantConfig.source`` accepts. Imports no store."""
    global _names
    if _names is None:
        _names = tuple(sorted({*BUILT_IN, *_registered}))
    return _names


def get(name: str) -> Source:
    """The store called ``name``; ``TenantConfigError`` naming the known ones when there is none."""
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    if name not in BUILT_IN:
        raise TenantConfigError(unknown_source_message(name))
    source = importlib.import_module(BUILT_IN[name]).SOURCE
    if not isinstance(source, Source) or source.name != name:
        raise TypeError(f"{BUILT_IN[name]}.SOURCE must be a Source named {name!r}, got {source!r}")
    _loaded[name] = source
    return source


def unknown_source_message(name: object) -> str:
    return f"unknown source {name!r}: the known sources are {', '.join(map(repr, names()))}"


def register(source: Source, *, replace: bool = False) -> Source:
    """Add a store (or, with ``replace``, stand in for one: a test's fake): tenants may name it from now on."""
    global _names
    if not replace and (source.name in BUILT_IN or source.name in _registered):
        raise ValueError(f"source {source.name!r} is already registered")
    _registered[source.name] = source
    _names = None
    return source


def unregister(name: str) -> None:
    """Remove a store added by ``register`` (a built-in one stays, or comes back if replaced)."""
    global _names
    _registered.pop(name, None)
    _names = None


@contextmanager
def registered(source: Source, *, replace: bool = False) -> Iterator[Source]:
    """``register`` for the duration of a ``with`` block (tests)."""
    register(source, replace=replace)
    try:
        yield source
    finally:
        unregister(source.name)
