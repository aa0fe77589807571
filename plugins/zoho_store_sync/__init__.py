"""Store customers (Magento 2, DecoNetwork) kept in Zoho CRM as Contacts and Leads, on Airflow 3."""
