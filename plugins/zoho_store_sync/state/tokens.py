"""Zoho tokens in the state database: the shared access-token cache and the refresh tokens ``zoho_connect`` stores."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import sqlalchemy as sa
from cryptography.fernet import Fernet

from zoho_store_sync.hooks.zoho_tokens import AccessToken, seal, unseal
from zoho_store_sync.state.tables import access_tokens, refresh_tokens
from zoho_store_sync.state.writes import _dialect_insert, now_utc


class DatabaseTokenCache:
    """Zoho access tokens in the state database, shared by every task and worker, encrypted.

    The refresh runs under a database lock (PostgreSQL: an advisory transaction lock; SQLite:
    ``BEGIN IMMEDIATE``), so many concurrent tasks cause one refresh, not a storm.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, key: str, cipher: Fernet) -> AccessToken | None:
        with self.engine.connect() as conn:
            blob = conn.execute(
                sa.select(access_tokens.c.sealed_token).where(access_tokens.c.cache_key == key)
            ).scalar()
        return unseal(blob, cipher) if blob else None

    def refresh_exclusively(
        self,
        key: str,
        cipher: Fernet,
        still_good: Callable[[AccessToken], bool],
        refresh: Callable[[list[float]], AccessToken],
    ) -> AccessToken:
        with self.engine.connect() as conn:
            conn.info["immediate"] = True
            with conn.begin():
                if self.engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
                row = conn.execute(
                    sa.select(access_tokens.c.sealed_token, access_tokens.c.refreshed_at).where(
                        access_tokens.c.cache_key == key
                    )
                ).first()
                current = unseal(row[0], cipher) if row and row[0] else None
                if current is not None and still_good(current):
                    return current
                history = json.loads(row[1]) if row else []
                history = [t for t in history if time.time() - t < 3600]
                token = refresh(history)
                history.append(time.time())
                values = {"sealed_token": seal(token, cipher), "refreshed_at": json.dumps(history)}
                if row:
                    conn.execute(sa.update(access_tokens).where(access_tokens.c.cache_key == key).values(**values))
                else:
                    conn.execute(sa.insert(access_tokens).values(cache_key=key, **values))
                return token


class RefreshTokenStore:
    """Refresh tokens obtained by ``zoho_connect``, encrypted with a key derived from the client secret.

    Airflow tasks cannot write Connections, so the connect DAG stores the token here and the tenant's
    hook reads it when its Connection has no ``refresh_token`` extra. Only a holder of the Connection's
    client secret can decrypt it.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @staticmethod
    def _cipher(client_secret: str) -> Fernet:
        import base64
        import hashlib

        digest = hashlib.sha256(f"zoho-refresh-token\0{client_secret}".encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))

    def save(
        self, zoho_conn_id: str, client_secret: str, refresh_token: str, *, scope: str = "", api_domain: str = ""
    ) -> None:
        values = {
            "zoho_conn_id": zoho_conn_id,
            "sealed_token": self._cipher(client_secret).encrypt(refresh_token.encode()),
            "scope": scope,
            "api_domain": api_domain,
            "connected_at": now_utc(),
        }
        insert = _dialect_insert(self.engine)(refresh_tokens)
        statement = insert.on_conflict_do_update(
            index_elements=["zoho_conn_id"], set_={k: insert.excluded[k] for k in values if k != "zoho_conn_id"}
        )
        with self.engine.begin() as conn:
            conn.execute(statement, values)

    def load(self, zoho_conn_id: str, client_secret: str) -> str | None:
        from cryptography.fernet import InvalidToken

        query = sa.select(refresh_tokens.c.sealed_token).where(refresh_tokens.c.zoho_conn_id == zoho_conn_id)
        try:
            with self.engine.connect() as conn:
                blob = conn.execute(query).scalar()
        except sa.exc.OperationalError:
            return None  # schema not created yet: nothing connected
        except sa.exc.ProgrammingError:
            return None
        if blob is None:
            return None
        try:
            return self._cipher(client_secret).decrypt(bytes(blob)).decode()
        except InvalidToken:
            return None  # the client secret changed since connect: connect again
