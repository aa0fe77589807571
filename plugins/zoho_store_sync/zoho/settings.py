"""A Zoho connection's settings: client, refresh token, data centre, and the only hosts a token may go to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from zoho_store_sync.errors import ZohoConfigError
from zoho_store_sync.settings import ZOHO_API_HOST_PREFIXES, ZOHO_API_VERSION, ZOHO_DATA_CENTRES

# File-upload host per data centre ([SDK]); sandbox and developer orgs upload to the same host.
_FILE_UPLOAD_HOSTS = {"ca": "upload.zohocloud.ca", "sa": "files.zoho.sa"}
_ENVIRONMENT_PREFIXES = {"production": "www", "sandbox": "sandbox", "developer": "developer"}


def file_upload_host(dc: str, suffix: str) -> str:
    return _FILE_UPLOAD_HOSTS.get(dc, f"content.{suffix}")


def download_host(accounts_url: str) -> str:
    """The host Zoho serves Bulk Write results from: ``download-accl.`` + the data centre's accounts domain.

    Zoho's "Download Bulk Write Result" page and its official SDK samples name
    ``https://download-accl.zoho.com/v2/crm/{org}/bulk-write/{job}/{job}.zip``; Zoho's other services answer on
    ``download-accl.zoho.eu`` and ``download-accl.zoho.in``; the other data centres follow the same pattern
    (``zoho.com.au``, ``zoho.jp``, ``zohocloud.ca``, ``zoho.sa``, ``zoho.com.cn``, ``zoho.uk``).
    """
    return "download-accl." + urlparse(accounts_url).netloc.split(".", 1)[1]


def download_hosts(accounts_url: str, suffix: str) -> tuple[str, ...]:
    """Every host a Bulk Write ``download_url`` may name: the real one, and the OAS sample's
    ``download.zohocrm.<tld>`` (bulk_write.json)."""
    return (download_host(accounts_url), "download.zohocrm." + suffix.split(".", 1)[1])


def _no_mask(secret: str) -> None:
    pass


@dataclass(frozen=True)
class ZohoSettings:
    """Where one org's calls go and with which client. ``environment`` "custom" is a local sandbox.

    Read like a mapping too (``settings["client_secret"]``), as callers of the hook's ``settings`` always have.
    """

    conn_id: str
    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    redirect_uri: str | None
    data_centre: str | None
    environment: str
    accounts_url: str
    api_domain: str
    file_upload_url: str
    download_url: str
    allowed_api_hosts: frozenset[str]

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    @property
    def token_url(self) -> str:
        return f"{self.accounts_url}/oauth/v2/token"

    def endpoints(self) -> dict[str, Any]:
        """Where this connection's calls go (no secrets): for checks and the connect/verify DAG."""
        return {
            "data_centre": self.data_centre,
            "environment": self.environment,
            "token_url": self.token_url,
            "api_domain": self.api_domain,
            "file_upload_url": f"{self.file_upload_url}/crm/{ZOHO_API_VERSION}/upload",
            "bulk_download_url": self.download_url,
            "allowed_hosts": sorted(self.allowed_api_hosts),
        }

    def host_allowed(self, url: str) -> bool:
        parts = urlparse(url)
        if self.environment != "custom" and parts.scheme != "https":
            return False  # a token never travels in clear text to a real Zoho host
        return parts.netloc in self.allowed_api_hosts

    def check_host(self, url: str) -> None:
        if not self.host_allowed(url):
            raise ZohoConfigError(
                f"refusing to send a Zoho token to {urlparse(url).netloc!r}: not a host of the connection's data centre"
            )

    @classmethod
    def from_connection(
        cls,
        conn_id: str,
        login: str | None,
        password: str | None,
        extra: Mapping[str, Any],
        *,
        stored_refresh_token: Callable[[], str | None] | None = None,
        mask: Callable[[str], None] = _no_mask,
    ) -> ZohoSettings:
        """Settings from a connection's fields (see the hook's docstring); secrets are handed to ``mask``.

        ``stored_refresh_token`` is asked when the extras hold no ``refresh_token`` (what zoho_connect stored).
        """
        missing = [
            name for name, value in (("login (client id)", login), ("password (client secret)", password)) if not value
        ]
        if missing:
            raise ZohoConfigError(f"Zoho connection {conn_id!r} lacks {', '.join(missing)}")
        assert login is not None and password is not None
        mask(password)
        if extra.get("allow_custom_hosts") in (True, "true", "True"):
            accounts_url = str(extra.get("accounts_url") or "").rstrip("/")
            api_domain = str(extra.get("api_domain") or "").rstrip("/")
            if not accounts_url or not api_domain:
                raise ZohoConfigError(
                    f"Zoho connection {conn_id!r}: allow_custom_hosts needs accounts_url and api_domain"
                )
            # A local sandbox serves uploads and bulk results on its API host.
            environment, dc = "custom", None
            file_upload_url = download_url = api_domain
            allowed = frozenset({urlparse(api_domain).netloc})
        else:
            dc = str(extra.get("data_centre") or "").lower()
            if dc not in ZOHO_DATA_CENTRES:
                raise ZohoConfigError(
                    f"Zoho connection {conn_id!r}: extra 'data_centre' must be one of "
                    f"{sorted(ZOHO_DATA_CENTRES)}, got {dc!r}"
                )
            environment = str(extra.get("environment") or "production").lower()
            prefix = _ENVIRONMENT_PREFIXES.get(environment)
            if prefix is None:
                raise ZohoConfigError(f"Zoho connection {conn_id!r}: unknown environment {environment!r}")
            accounts_url, suffix = ZOHO_DATA_CENTRES[dc]
            api_domain = f"https://{prefix}.{suffix}"
            file_upload_url = f"https://{file_upload_host(dc, suffix)}"
            download_url = f"https://{download_host(accounts_url)}"  # a relative download_url goes here
            allowed = frozenset(
                {f"{p}.{suffix}" for p in ZOHO_API_HOST_PREFIXES}
                | {file_upload_host(dc, suffix), *download_hosts(accounts_url, suffix)}
            )
        refresh_token = extra.get("refresh_token") or (stored_refresh_token() if stored_refresh_token else None)
        if refresh_token:
            mask(refresh_token)
        return cls(
            conn_id=conn_id,
            client_id=login,
            client_secret=password,
            refresh_token=refresh_token,
            redirect_uri=extra.get("redirect_uri"),
            data_centre=dc,
            environment=environment,
            accounts_url=accounts_url,
            api_domain=api_domain,
            file_upload_url=file_upload_url,
            download_url=download_url,
            allowed_api_hosts=allowed,
        )
