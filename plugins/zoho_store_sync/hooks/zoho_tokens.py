"""Re-exports of the Zoho token cache, which lives in ``zoho_store_sync.zoho.oauth`` (state/tokens.py imports it
here)."""

from zoho_store_sync.zoho.oauth import (  # noqa: F401 - re-exported
    HISTORY_S,
    AccessToken,
    MemoryTokenCache,
    TokenCache,
    cache_key,
    cipher_for,
    seal,
    unseal,
)
