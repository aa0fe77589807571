"""Old module paths kept working: a facade re-exports a package's names and forwards writes to where they are used."""

from __future__ import annotations

import sys
from types import ModuleType


class _Facade(ModuleType):
    """Setting a name here (tests monkeypatch ``_INVALID_TOKEN``, ``combine_groups``) sets it in every
    module of the package that holds it, so the code that reads it as a global sees the new value."""

    def __setattr__(self, name: str, value: object) -> None:
        if not isinstance(value, ModuleType):
            for module in _sources(self.__dict__["_facade_of"], self):
                if name in module.__dict__:
                    setattr(module, name, value)
        super().__setattr__(name, value)


def _sources(package: str, facade: ModuleType) -> list[ModuleType]:
    prefix = package + "."
    return [m for n, m in list(sys.modules.items())
            if (n == package or n.startswith(prefix)) and m is not facade and m is not None]


def install(name: str, package: str, order: tuple[str, ...] = ()) -> None:
    """Make module ``name`` a facade of ``package``'s modules (``order`` first: the first holder of a name wins)."""
    facade = sys.modules[name]
    first = [sys.modules[f"{package}.{sub}"] for sub in order]
    for module in first + [m for m in _sources(package, facade) if m not in first]:
        for key, value in list(module.__dict__.items()):
            if not key.startswith("__") and not isinstance(value, ModuleType) and key not in facade.__dict__:
                facade.__dict__[key] = value
    facade.__dict__["_facade_of"] = package
    facade.__class__ = _Facade
