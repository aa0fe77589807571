"""Local stand-in for the Zoho CRM v8 API: the historical path of the ``sandboxes.zoho`` package."""

from sandboxes import _facade
from sandboxes.zoho import ZohoSandbox, main  # noqa: F401 - re-exported

# Every name of the package's modules stays importable from here (the servers' first).
_facade.install(__name__, "sandboxes.zoho", ("server", "faults", "routes", "oauth", "store", "metadata"))

if __name__ == "__main__":
    main()
