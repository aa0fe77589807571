"""The Airflow plugin "zoho_sync": the Zoho sync page mounted on the api-server and listed in the UI's Browse menu.

Airflow imports this file in every component that loads plugins (it scans the whole plugins folder), so it stays
light: the FastAPI app (``app.py``, which imports the api-server's security code and the state queries) is built
on the first request the api-server passes to it, never at import. ``app.py`` is in this folder's
``.airflowignore`` so the folder scan does not import it either.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

PLUGIN_NAME = "zoho_sync"
URL_PREFIX = "/zoho-sync"  # the app's path on the api-server, under [api] base_url
PAGE_ROUTE = "zoho-sync"  # the UI shows the page at <base_url>/plugin/zoho-sync, inside Airflow's frame
PACKAGE_MODULE = "zoho_store_sync.ui.plugin"

Scope = dict[str, Any]


class LazyPageApp:
    """An ASGI app that builds the page's FastAPI app on its first request (in the api-server only)."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _built(self) -> Any:
        with self._lock:
            if self._app is None:
                from zoho_store_sync.ui.app import create_app

                self._app = create_app()
            return self._app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self._built()(scope, receive, send)


def page_href() -> str:
    """The page's URL path under the api-server's ``[api] base_url`` (a trailing slash: the app's root)."""
    from airflow.configuration import conf

    root = urlsplit(conf.get("api", "base_url", fallback="") or "/").path.rstrip("/")
    return f"{root}{URL_PREFIX}/"


class ZohoSyncPlugin(AirflowPlugin):
    """The Zoho sync page: tenants' run health, errors, deletions and resets (read-only; triggers go through
    Airflow's own REST API with the user's session)."""

    name = PLUGIN_NAME
    fastapi_apps = [{"app": LazyPageApp(), "url_prefix": URL_PREFIX, "name": "Zoho sync"}]
    external_views = [
        {
            "name": "Zoho sync",
            "href": page_href(),
            "url_route": PAGE_ROUTE,
            "destination": "nav",
            "category": "browse",
        }
    ]


def _installed_with_entry_point() -> bool:
    """Whether an installed distribution registers this plugin through the ``airflow.plugins`` entry point."""
    from importlib.metadata import entry_points

    return any(ep.value.split(":")[0] == PACKAGE_MODULE for ep in entry_points(group="airflow.plugins"))


if __name__ != PACKAGE_MODULE and _installed_with_entry_point():
    # The plugins-folder scan imports this file under another name ("plugin"). When the package is also installed
    # with its entry point (the Docker image installs plugins/ editable), Airflow would register "zoho_sync" twice
    # and report the second as a plugin import error: the entry point's registration is the one kept.
    del ZohoSyncPlugin
