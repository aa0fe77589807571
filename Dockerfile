# Airflow image for zoho-store-sync, built by docker-compose.yaml (`build: .`).
# The base image already ships Airflow with its official constraints plus the Celery and
# Postgres providers; on top of it we install our pinned requirements with our lock file
# (constraints.txt, resolved from PyPI for Python 3.11). Pinning apache-airflow in the same
# command stops pip from upgrading or downgrading Airflow.
FROM apache/airflow:3.3.2-python3.11

COPY requirements.txt constraints.txt /tmp/
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /tmp/requirements.txt -c /tmp/constraints.txt

# Mount point of the `staging` named volume: a new volume copies this folder's owner
# (airflow:0), so tasks can write to it even before airflow-init has run.
RUN mkdir -p /opt/airflow/staging
