"""Airflow hooks: the one door to each outside system (Zoho CRM, the stores)."""
