"""``python -m sandboxes.zoho`` (same as ``python -m sandboxes.zoho_crm``)."""

from sandboxes.zoho.server import main

main()
