"""Staging files between tasks: Parquet under ``ZOHO_SYNC_STAGING_URL`` (local path, S3, GCS, ...).

Tasks hand each other a path through XCom, never a DataFrame. The default is a folder in the Airflow
home; with several workers, point ``ZOHO_SYNC_STAGING_URL`` at storage they all reach.
"""

from __future__ import annotations

import os
import re

import pandas as pd


def staging_root() -> str:
    url = os.environ.get("ZOHO_SYNC_STAGING_URL")
    if url:
        return url.rstrip("/")
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return f"file://{home}/zoho_sync_staging"


def _path(url: str):  # type: ignore[no-untyped-def]
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def run_dir(tenant_id: str, run_id: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return f"{staging_root()}/{tenant_id}/{safe_run}"


def write_frame(url: str, frame: pd.DataFrame) -> str:
    path = _path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        frame.to_parquet(handle, index=False)
    return url


def read_frame(url: str) -> pd.DataFrame:
    with _path(url).open("rb") as handle:
        return pd.read_parquet(handle)


def remove_dir(url: str) -> None:
    path = _path(url)
    if path.exists():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
