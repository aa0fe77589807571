# Airflow image for zoho-store-sync, built by docker-compose.yaml (`build: .`).
#
# Base: the *slim* Airflow 3.3.2 image (Airflow core only, no bundled providers). The regular image ships ~70
# providers installed with Airflow's own constraints; ours would move some of their dependencies and `pip check`
# could not pass. On the slim image every package is one of our lock's (constraints.txt, resolved from PyPI for
# Python 3.11): requirements.txt brings the Postgres provider and asyncpg (metadata DB), the Celery provider,
# celery and redis (CeleryExecutor). Pinning apache-airflow in the same command stops pip from moving Airflow.
FROM apache/airflow:slim-3.3.2-python3.11

COPY requirements.txt constraints.txt /tmp/
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /tmp/requirements.txt -c /tmp/constraints.txt

# The distribution (pyproject.toml): package zoho_store_sync and its Airflow provider entry point (the zoho_crm,
# magento and deconetwork connection types and their forms). Installed editable from the image's plugins/
# folder, so the image runs on its own and a plugins/ mounted over it (docker-compose.yaml) is the code that
# runs. No dependency is resolved here (--no-deps); `pip check` fails the build if the lock does not satisfy
# every installed distribution's requirements, this one's included.
COPY --chown=airflow:0 pyproject.toml README.md /opt/airflow/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
 && pip check

# Mount point of the `staging` named volume: a new volume copies this folder's owner
# (airflow:0), so tasks can write to it even before airflow-init has run.
RUN mkdir -p /opt/airflow/staging
