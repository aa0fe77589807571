"""Local stand-ins for the external services (Magento, DecoNetwork, Zoho CRM) used by tests and demos."""
