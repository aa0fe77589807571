"""Local stand-in for a DecoNetwork site, by area (server, orders, store, data, faults, control)."""

from .._facade import install
from .data import (EXPORT_COLUMNS, EXPORT_TOTAL_COLUMNS, ORDER_STATUSES, DecoStoreData,
                   generate_deconetwork_store)
from .faults import DecoApiError
from .orders import FIND_PATH, LOGIN_PATH
from .server import DecoNetworkSandbox, main

__all__ = ["DecoNetworkSandbox", "DecoStoreData", "generate_deconetwork_store", "EXPORT_COLUMNS", "ORDER_STATUSES"]

# Every name of the package's modules stays importable from here, as from the single module it once was.
install(__name__, __name__, ("server", "faults", "data", "orders", "store"))
