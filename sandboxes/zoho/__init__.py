"""Local stand-in for the Zoho CRM v8 API, by area; ``sandboxes.zoho_crm`` is its historical path."""

from sandboxes.zoho.routes import all_scopes, any_scope, module_scope
from sandboxes.zoho.server import ZohoSandbox, main

__all__ = ["ZohoSandbox", "main", "all_scopes", "any_scope", "module_scope"]
