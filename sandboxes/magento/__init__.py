"""Local stand-in for the Adobe Commerce / Magento 2.4 REST API, by area (server, rest, search, auth, faults)."""

from .._facade import install
from .._php import parse_php_query
from .criteria import parse_fields, parse_search_criteria
from .faults import MagentoError
from .server import MagentoSandbox, main
from .tables import _CUSTOMERS, _ORDERS

__all__ = ["MagentoSandbox", "MagentoError", "parse_search_criteria", "parse_fields"]

# Every name of the package's modules stays importable from here, as from the single module it once was.
install(__name__, __name__, ("server", "faults", "criteria", "indexes", "tables", "auth", "search", "rest"))
