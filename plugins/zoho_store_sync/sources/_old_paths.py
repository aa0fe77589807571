"""Old module paths kept working after the stores moved into their plug-in packages (issue 16).

Two tricks, both for code and tests written against the old layout:

* ``zoho_store_sync.hooks.magento``, ``hooks.magento_oauth1`` and ``hooks.deconetwork`` replace themselves in
  ``sys.modules`` by the module that now holds the code (``sources/<store>/hook.py``...): the old path *is* the new
  module, so a monkeypatched name (``hooks.deconetwork._sleep``) is the one the code reads.
* ``zoho_store_sync.sources.magento`` and ``sources.deconetwork`` were the extraction modules and are now the
  stores' packages, whose ``__init__`` stays light (the DAG processor imports it to read the store's
  declaration). ``answer_for`` makes such a package answer for the old module: a name the package lacks is
  read from the extraction module (imported on first use), and setting a name that module holds (tests
  monkeypatch ``ID_CHUNK``) sets it there, where the code reads it as a global; deleting it undoes that.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class _AnswersFor(ModuleType):
    """A package that also answers for the old module ``_old_path_of`` (see the module docstring).

    A name set here that the old module holds is set there (its first value kept); deleting it here puts that
    first value back, which is how pytest's monkeypatch undoes the setting (the name is not in this package's own
    ``__dict__``, so monkeypatch removes it rather than restoring it).
    """

    def _holder(self, name: str) -> ModuleType | None:
        if name.startswith("__") or name in self.__dict__:
            return None
        target = importlib.import_module(self.__dict__["_old_path_of"])
        return target if name in vars(target) else None

    def __getattr__(self, name: str) -> Any:  # called only for names the package itself lacks
        holder = self._holder(name)
        if holder is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        return getattr(holder, name)

    def __setattr__(self, name: str, value: Any) -> None:
        holder = None if isinstance(value, ModuleType) else self._holder(name)  # submodules stay the package's
        if holder is None:
            super().__setattr__(name, value)
            return
        self.__dict__["_old_path_first_values"].setdefault(name, vars(holder)[name])
        setattr(holder, name, value)

    def __delattr__(self, name: str) -> None:
        first_values = self.__dict__["_old_path_first_values"]
        holder = self._holder(name)
        if holder is not None and name in first_values:
            setattr(holder, name, first_values.pop(name))
        elif holder is None:
            super().__delattr__(name)
        # else: a name of the old module never set here: nothing to undo (its code still needs it)

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(vars(importlib.import_module(self.__dict__["_old_path_of"]))))


def answer_for(package: str, module: str) -> None:
    """Make the (already imported) ``package`` answer for the old module whose code is now ``module``."""
    facade = sys.modules[package]
    facade.__dict__["_old_path_of"] = module
    facade.__dict__["_old_path_first_values"] = {}
    facade.__class__ = _AnswersFor
