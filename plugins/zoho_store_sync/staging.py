"""Staging files between tasks: Parquet under ``ZOHO_SYNC_STAGING_URL`` (local path, S3, GCS, ...).

Tasks hand each other a path through XCom, never a DataFrame. The default is a folder in the Airflow
home; with several workers, point ``ZOHO_SYNC_STAGING_URL`` at storage they all reach. A run's files hold
customers' names, emails and addresses: they are removed when the run ends, success or failure, or kept
``ZOHO_SYNC_STAGING_RETENTION_HOURS`` for debugging and removed by a later run of the tenant.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from zoho_store_sync.errors import StagingFileMissing

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


def kept_dirs() -> set[str]:
    """Per-tenant folders kept between runs, never swept: each source's own (``<tenant>/<source>``, e.g. the
    DecoNetwork order table) and the phone book."""
    from zoho_store_sync import phone_book
    from zoho_store_sync.sources import registry

    return set(registry.names()) | {phone_book.FOLDER}


def retention_hours() -> float:
    """``ZOHO_SYNC_STAGING_RETENTION_HOURS``: how long a run's files outlive it (default 0: removed at its end)."""
    raw = os.environ.get("ZOHO_SYNC_STAGING_RETENTION_HOURS", "0")
    try:
        return max(0.0, float(raw))
    except ValueError:
        log.warning("ZOHO_SYNC_STAGING_RETENTION_HOURS=%r is not a number: files are removed at the run's end", raw)
        return 0.0


def staging_root() -> str:
    url = os.environ.get("ZOHO_SYNC_STAGING_URL")
    if url:
        return url.rstrip("/")
    home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
    return f"file://{home}/zoho_sync_staging"


def _path(url: str) -> ObjectStoragePath:
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
    path = _path(url)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise StagingFileMissing(
            f"the staging file {url} written by an earlier task of this run is gone. Usually the task ran on "
            "another worker that cannot see the first worker's disk: set ZOHO_SYNC_STAGING_URL to storage every "
            "worker reaches (s3://, gs://, a shared volume), then clear the whole run (not this task alone)."
        ) from None
    with handle:
        return pd.read_parquet(handle)


def remove_dir(url: str) -> None:
    """Remove a folder and everything in it (nothing when it does not exist)."""
    path = _path(url)
    if not path.exists():
        return
    for child in path.iterdir():
        if child.is_dir():
            remove_dir(str(child))
        else:
            child.unlink()
    path.rmdir()


def clean_up_run(tenant_id: str, run_id: str, *, now: float | None = None) -> None:
    """At a run's end: remove its files (or leave them for the retention time), and remove the tenant's
    older runs' files whose retention has passed."""
    hours = retention_hours()
    if hours <= 0:
        remove_dir(run_dir(tenant_id, run_id))
    tenant_dir = _path(f"{staging_root()}/{tenant_id}")
    if not tenant_dir.exists():
        return
    cutoff = (now or time.time()) - hours * 3600
    kept = kept_dirs()
    for child in tenant_dir.iterdir():
        if child.is_dir() and child.name not in kept:
            modified = _newest_modification(child)
            if modified is not None and modified <= cutoff:
                remove_dir(str(child))


def _newest_modification(folder: Any) -> float | None:
    """The latest modification time of a run folder's files, as a POSIX timestamp (None: not known)."""
    newest, seen = None, False
    for child in folder.iterdir():
        seen = True
        info = child.stat() if hasattr(child, "stat") else {}
        value: Any = info.get("mtime") if isinstance(info, dict) else getattr(info, "st_mtime", None)
        if value is None and isinstance(info, dict):
            value = info.get("LastModified") or info.get("updated") or info.get("created")
        if hasattr(value, "timestamp"):
            value = value.timestamp()
        if isinstance(value, (int, float)):
            newest = value if newest is None else max(newest, float(value))
    return newest if seen else 0.0  # an empty folder is as old as can be
