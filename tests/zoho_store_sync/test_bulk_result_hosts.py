"""Bulk Write results come from Zoho's real download hosts (download-accl.zoho.<tld>); other hosts stay refused."""

from __future__ import annotations

import pytest

from zoho_store_sync.errors import ZohoConfigError
from zoho_store_sync.settings import ZOHO_DATA_CENTRES
from zoho_store_sync.zoho.settings import ZohoSettings

# Zoho's "Download Bulk Write Result" page and SDK samples: https://download-accl.zoho.com/v2/crm/6735/bulk-write/...;
# Zoho's services answer on download-accl.zoho.eu and .in too; the rest follow each data centre's accounts domain.
RESULT_HOSTS = {
    "us": "download-accl.zoho.com",
    "eu": "download-accl.zoho.eu",
    "in": "download-accl.zoho.in",
    "au": "download-accl.zoho.com.au",
    "jp": "download-accl.zoho.jp",
    "ca": "download-accl.zohocloud.ca",
    "sa": "download-accl.zoho.sa",
    "cn": "download-accl.zoho.com.cn",
    "uk": "download-accl.zoho.uk",
}


def _production(dc: str, environment: str = "production") -> ZohoSettings:
    extra = {"data_centre": dc, "environment": environment, "refresh_token": "1000.r"}
    return ZohoSettings.from_connection("zoho_prod", "1000.client", "secret", extra)


def test_every_data_centre_has_a_result_host() -> None:
    assert set(RESULT_HOSTS) == set(ZOHO_DATA_CENTRES)


@pytest.mark.parametrize(("dc", "host"), sorted(RESULT_HOSTS.items()))
@pytest.mark.parametrize("environment", ["production", "sandbox", "developer"])
def test_a_production_connection_accepts_zohos_real_bulk_result_url(dc: str, host: str, environment: str) -> None:
    settings = _production(dc, environment)
    url = f"https://{host}/v2/crm/6735/bulk-write/347706122009/347706122009.zip"
    settings.check_host(url)  # raised ZohoConfigError before: only download.zohocrm.<tld> was allowed
    assert settings.download_url == f"https://{host}"  # where a relative download_url is fetched from


@pytest.mark.parametrize("dc", sorted(RESULT_HOSTS))
def test_strangers_and_other_data_centres_hosts_are_still_refused(dc: str) -> None:
    settings = _production(dc)
    other = next(host for other_dc, host in RESULT_HOSTS.items() if other_dc != dc)
    for url in (
        f"https://{other}/v2/crm/6735/bulk-write/1/1.zip",  # another data centre's result host
        "https://download-accl.zoho.com.evil.example/v2/crm/1/bulk-write/1/1.zip",
        "https://evil.example/v2/crm/6735/bulk-write/1/1.zip",
        f"http://{RESULT_HOSTS[dc]}/v2/crm/6735/bulk-write/1/1.zip",  # a token never travels in clear text
    ):
        with pytest.raises(ZohoConfigError, match="refusing to send a Zoho token"):
            settings.check_host(url)
