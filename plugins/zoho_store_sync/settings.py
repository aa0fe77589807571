"""Constants of the outside systems: Zoho data centres, API limits and credit costs, project names."""

from __future__ import annotations

import os
from pathlib import Path

# --- Airflow names -------------------------------------------------------------------------------
TENANTS_VARIABLE = "zoho_sync_tenants"
STATE_DB_CONN_ID = "zoho_sync_state_db"
DAG_ID_PREFIX = "zoho_sync__"
DEFAULT_SCHEDULE = "*/30 * * * *"
DEFAULT_ZOHO_POOL = "zoho_api"

# --- Files ---------------------------------------------------------------------------------------
_REPO_INCLUDE = Path(__file__).resolve().parents[2] / "include"


def include_dir() -> Path:
    """The include/ folder: env override for images that mount it elsewhere, else the repo's."""
    return Path(os.environ.get("ZOHO_SYNC_INCLUDE_DIR") or _REPO_INCLUDE)


def mappings_dir() -> Path:
    return include_dir() / "mappings"


# --- Zoho data centres (zoho-crm-api.md §1) ------------------------------------------------------
# dc -> (accounts server, API domain suffix). Sandbox/developer orgs use sandbox./developer. hosts.
ZOHO_DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "zohoapis.sa"),
    "cn": ("https://accounts.zoho.com.cn", "zohoapis.com.cn"),
    "uk": ("https://accounts.zoho.uk", "zohoapis.uk"),
}
ZOHO_API_HOST_PREFIXES = ("www", "sandbox", "developer")
ZOHO_API_VERSION = "v8"

# --- Zoho limits and credits (zoho-crm-api.md §4, §8) --------------------------------------------
ZOHO_MAX_RECORDS_PER_WRITE = 100
ZOHO_MAX_PER_PAGE = 200
ZOHO_DEFAULT_CONCURRENCY = 10  # sub-concurrency of upserts with more than 10 records, every edition
ZOHO_TOKEN_REFRESH_MARGIN_S = 300  # refresh a few minutes before expiry
ZOHO_TOKENS_PER_WINDOW = 10  # access tokens per refresh token ...
ZOHO_TOKEN_WINDOW_S = 600  # ... per 10 minutes
ZOHO_CREDITS = {"write_per_10_records": 1, "convert": 5, "deleted": 2, "bulk_write_job": 500, "default": 1}
