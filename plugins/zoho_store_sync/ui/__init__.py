"""The "Zoho sync" page in the Airflow UI: its data (queries.py), app and plugin."""
