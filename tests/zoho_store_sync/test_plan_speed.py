"""The plan's faster hashing and JSON give what the plain recipes give (issue 17: diff_full_1m, plan_task_1m)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bench import data
from tests.reference import payload_hashes
from zoho_store_sync import mapping as mapping_module
from zoho_store_sync.config import TenantConfig
from zoho_store_sync.customers import prepare, record_types
from zoho_store_sync.mapping import (
    _mix,
    _mix_in_place,
    build_payloads,
    load_mapping,
    payload_hashes_by_module,
    payload_json,
)

TENANT = TenantConfig(tenant_id="t1", source="magento", store_conn_id="m", zoho_conn_id="z")


def _splitmix_finaliser(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser written out, one new array per step."""
    with np.errstate(over="ignore"):
        values = values ^ (values >> np.uint64(30))
        values = values * np.uint64(0xBF58476D1CE4E5B9)
        values = values ^ (values >> np.uint64(27))
        values = values * np.uint64(0x94D049BB133111EB)
        return values ^ (values >> np.uint64(31))


def test_mixing_in_place_gives_the_finaliser_s_values_and_mix_leaves_its_input_alone():
    values = np.random.default_rng(5).integers(0, 2**64 - 1, 10_000, dtype="uint64", endpoint=True)
    kept = values.copy()
    assert (_mix(values) == _splitmix_finaliser(kept)).all()
    assert (values == kept).all()
    assert (_mix_in_place(values.copy(), np.empty_like(values)) == _splitmix_finaliser(kept)).all()


@pytest.mark.parametrize("slice_rows", [1, 997, 32_768])
def test_hashes_combined_slice_by_slice_are_the_reference_hashes(monkeypatch, slice_rows):
    monkeypatch.setattr(mapping_module, "_COMBINE_ROWS", slice_rows)
    frame = data.customers(4_000 if slice_rows > 1 else 300, seed=9)
    frame.loc[frame.index[::5], "phone_number"] = None
    frame.loc[frame.index[::3], "city"] = "  "
    prepared = prepare(frame)
    mapping = load_mapping(TENANT)
    module = record_types(prepared.valid)
    hashes = payload_hashes_by_module(prepared.valid, mapping, module, prepared.email_hashes)
    for name in ("Contacts", "Leads"):
        rows = module == name
        assert rows.any()
        assert (hashes[rows] == payload_hashes(build_payloads(prepared.valid[rows], mapping, name), name)).all()


def test_payload_json_is_json_dumps_sorted_without_ascii_escapes_for_any_value():
    texts = ['say "hi"', "back\\slash", "line\nbreak\t\x01", "Zoë – 東京", None]
    counts, money, flags = [1, None, 3, 4, 5], [1.5, math.nan, 1e16, -0.0, 12.25], [True, False, None, True, False]
    payloads = pd.DataFrame(
        {
            "Zeta": pd.array(texts, dtype="string"),
            "Alpha": pd.array(counts, dtype="Int64"),
            "Money": money,
            "Flag": pd.array(flags, dtype="boolean"),
        }
    )
    records = [
        {"Zeta": t, "Alpha": c, "Money": None if math.isnan(m) else m, "Flag": f}
        for t, c, m, f in zip(texts, counts, money, flags)
    ]
    assert payload_json(payloads) == [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    assert payload_json(payloads)[3] == '{"Alpha": 4, "Flag": true, "Money": -0.0, "Zeta": "Zoë – 東京"}'
