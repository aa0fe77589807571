"""The reset DAG's send lanes: one send task per Airflow (pool, slots) of the tenants; light, read at parse time."""

from __future__ import annotations

import re


def send_lane(pool: str, slots: int) -> str:
    """The reset DAG's send task for tenants in Airflow pool ``pool`` with ``slots`` slots (its task id's tail).

    Airflow takes a task's pool from the DAG file, not from the run's form: so the DAG has one send task per
    (pool, slots) of the configured tenants, and a reset's chunks go to its tenant's one (``reset.route_chunks``).
    """
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{pool}__{slots}")
