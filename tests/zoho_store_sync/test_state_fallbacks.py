"""The state database's fast paths against their fallbacks, and the refresh tokens ``zoho_connect`` stores.

PostgreSQL takes large writes through COPY, fed a CSV that Arrow writes; columns Arrow cannot type (mixed Python
objects) go through pandas' ``to_csv`` instead: both must leave the same rows. The refresh token store is read by
the Zoho hook when a Connection holds no refresh token: only the Connection's client secret opens it.
"""

from __future__ import annotations

import pandas as pd
import pytest

from zoho_store_sync.state import RefreshTokenStore, StateStore, make_engine
from zoho_store_sync.state.writes import COPY_ABOVE_ROWS
from zoho_store_sync.state_migrations import migrate


def _outcomes(n: int, *, codes: list[object], edited: bool = False) -> pd.DataFrame:
    failed = [i % 5 == 0 for i in range(n)]
    return pd.DataFrame(
        {
            "customer_key": [str(i) for i in range(n)],
            "email": [f"c{i}@example.com" for i in range(n)],
            "module": ["Contacts" if i % 2 else "Leads" for i in range(n)],
            "zoho_id": [None if bad else f"90{i}" for i, bad in enumerate(failed)],
            "payload_hash": [i * 7919 - (3 if edited else 0) for i in range(n)],
            "status": ["failed" if bad else "synced" for bad in failed],
            "error_code": [codes[i % len(codes)] if bad else None for i, bad in enumerate(failed)],
            "error_message": ['a "quoted", comma\nand line' if bad else None for bad in failed],
            "retryable": [bool(i % 2) if bad else None for i, bad in enumerate(failed)],
            "attempts": [1 if bad else 0 for bad in failed],
        }
    )


@pytest.mark.parametrize("edited", [False, True], ids=["first_write", "rows_exist"])
def test_a_copy_of_columns_arrow_cannot_type_leaves_the_rows_a_typed_copy_leaves(postgres_state_url, edited):
    engine = make_engine(postgres_state_url)
    migrate(engine)
    n = COPY_ABOVE_ROWS + 500
    typed, mixed = StateStore(engine, "typed_tenant"), StateStore(engine, "mixed_tenant")
    for store in (typed, mixed):
        store.forget()
    if edited:  # the second path: rows of the tenant exist, the COPY goes through a temporary table
        typed.save_outcomes(_outcomes(n, codes=["INVALID_DATA"]))
        mixed.save_outcomes(_outcomes(n, codes=["INVALID_DATA"]))
    typed.save_outcomes(_outcomes(n, codes=["INVALID_DATA", "413"], edited=edited))
    mixed.save_outcomes(_outcomes(n, codes=["INVALID_DATA", 413], edited=edited))  # int and str: no Arrow type
    # Row order is not part of load()'s answer: after an UPDATE PostgreSQL returns rows in whatever order they sit.
    read_typed, read_mixed = (store.load().sort_values("customer_key", ignore_index=True) for store in (typed, mixed))
    assert len(read_typed) == n and read_typed["error_code"].isin(["413"]).any()
    pd.testing.assert_frame_equal(read_typed, read_mixed)
    engine.dispose()


@pytest.fixture
def token_store(state_url):
    engine = make_engine(state_url)
    migrate(engine)
    yield RefreshTokenStore(engine)
    engine.dispose()


def test_a_stored_refresh_token_is_read_back_only_with_the_client_secret_it_was_stored_with(token_store):
    token_store.save("zoho_acme", "secret-1", "1000.refresh", scope="ZohoCRM.modules.ALL", api_domain="eu")
    assert token_store.load("zoho_acme", "secret-1") == "1000.refresh"
    assert token_store.load("zoho_acme", "secret-2") is None  # the secret changed since connect: connect again
    assert token_store.load("zoho_other", "secret-1") is None
    token_store.save("zoho_acme", "secret-2", "1000.newer")  # connect again: the token is replaced
    assert token_store.load("zoho_acme", "secret-2") == "1000.newer"


def test_no_refresh_token_is_read_from_a_database_without_the_schema(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert RefreshTokenStore(engine).load("zoho_acme", "secret") is None
    engine.dispose()
