"""Field mappings: canonical customer fields → Zoho fields per module, typed payloads and their hashes."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zoho_store_sync.config import TenantConfig
from zoho_store_sync.customers import CUSTOMER_COLUMNS, ZOHO_EMAIL_MAX_LENGTH, arrow_hashes, is_arrow_string
from zoho_store_sync.errors import MappingError  # noqa: F401 - re-exported
from zoho_store_sync.mapping_files import mapping_fields

HASH_VERSION = "1"  # bump when the hash recipe changes: every record is then re-sent once
# Zoho's standard lengths (zoho-crm-api.md §7); the org's field metadata overrides them when read.
STANDARD_FIELD_LENGTHS = {
    "First_Name": 40,
    "Last_Name": 80,
    "Email": 100,
    "Company": 200,
    "Designation": 100,
    "Title": 100,
    "Website": 255,
    "Store_URL": 255,
    "Description": 32000,
    "Source_Customer_ID": 50,
}
DEFAULT_TEXT_LENGTH = 255  # single line
# Phones are never cut (a cut number is a wrong number): field_values sends them in E.164 or leaves them out.
NO_CUT = 2**31 - 1


def source_kind(source: str) -> str:
    """The dtype kind of a mapped column: a canonical field's, or text for field_values' derived columns."""
    return CUSTOMER_COLUMNS.get(source, "string")


@dataclass(frozen=True)
class Mapping:
    """Per module, Zoho field API name → canonical customer field. Lengths cap text values."""

    fields: dict[str, dict[str, str]]
    lengths: dict[str, dict[str, int]] = field(default_factory=dict)

    def max_length(self, module: str, zoho_field: str) -> int:
        known = self.lengths.get(module, {})
        return known.get(zoho_field) or STANDARD_FIELD_LENGTHS.get(zoho_field) or DEFAULT_TEXT_LENGTH


def load_mapping(tenant: TenantConfig) -> Mapping:
    """The tenant's mapping file with its overrides applied, checked against the canonical fields.

    The checks are mapping_files.mapping_fields': the same ones the tenants Variable's parse runs, so a mapping that
    passed the parse only fails here if its file changed since; raises MappingError naming the tenant."""
    return Mapping(fields=mapping_fields(tenant))


def build_payloads(customers: pd.DataFrame, mapping: Mapping, module: str) -> pd.DataFrame:
    """One typed column per mapped Zoho field; text cut to the Zoho field's length."""
    columns: dict[str, pd.Series] = {}
    for zoho_field, source_field in mapping.fields[module].items():
        columns[zoho_field] = payload_values(
            customers[source_field], source_kind(source_field), mapping.max_length(module, zoho_field)
        )
    return pd.DataFrame(columns, index=customers.index)


def payload_values(values: pd.Series, kind: str, max_length: int) -> pd.Series:
    """What is sent for one field: text trimmed, empty text as null, cut to ``max_length``; money to the cent."""
    if kind == "string":
        if is_arrow_string(values):
            return _arrow_text(values, max_length)
        values = values.astype("string").str.strip()
        return values.mask(values == "").str.slice(0, max_length)
    if kind == "float64":
        return values.astype("float64").round(2)
    return values


def _arrow_text(values: pd.Series, max_length: int) -> pd.Series:
    return pd.Series(
        pd.arrays.ArrowStringArray(_clean_text(values.array._pa_array, max_length)),
        index=values.index,
        name=values.name,
    )


def _clean_text(text: pa.ChunkedArray, max_length: int) -> pa.ChunkedArray:
    """The string branch of ``payload_values`` in Arrow compute: the same kernels pandas' ``.str`` calls,
    without a nullable-boolean mask in between, and no slicing when nothing is too long."""
    text = pc.utf8_trim_whitespace(text)
    size = pc.min_max(pc.binary_length(text)).as_py()  # bytes, read off the offsets: no pass over the text
    if size["min"] == 0:
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
    if size["max"] is not None and size["max"] > max_length and pc.max(pc.utf8_length(text)).as_py() > max_length:
        text = pc.utf8_slice_codeunits(text, start=0, stop=max_length)  # characters (never more than bytes)
    return text


def _seed(text: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little"))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads every input bit over the whole 64-bit output."""
    return _mix_in_place(values.copy())


def _mix_in_place(values: np.ndarray, scratch: np.ndarray | None = None) -> np.ndarray:
    """``_mix`` overwriting ``values`` (uint64), with ``scratch`` (same length) for the shifted copies."""
    scratch = np.empty_like(values) if scratch is None else scratch
    with np.errstate(over="ignore"):
        for shift, factor in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, 0)):
            np.right_shift(values, np.uint64(shift), out=scratch)
            values ^= scratch
            if factor:
                values *= np.uint64(factor)
        return values


def value_hashes(column: pd.Series) -> np.ndarray:
    """``pd.util.hash_pandas_object(column, index=False)`` as uint64 (values of missing rows: arbitrary).

    Arrow text never comes here: ``_hashed_payload_values`` hashes it from its bytes (``arrow_hashes``)."""
    return pd.util.hash_pandas_object(column, index=False).to_numpy(dtype="uint64")


def _mostly_distinct(text: pa.ChunkedArray) -> bool:
    """More than half of an even sample of 4,096 values differ: a dictionary would cost more than it saves."""
    if len(text) <= 4096:
        return False
    sample = text.take(pa.array(np.linspace(0, len(text) - 1, 4096).astype("int64")))
    return pc.count_distinct(sample).as_py() > 2048


def _hashes_per_distinct(
    text: pa.ChunkedArray, clean: Callable[[pa.ChunkedArray], pa.ChunkedArray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the hash of ``clean(value)`` and whether that is missing, cleaning and hashing each distinct
    value once (repetitive text: cities, countries, store names). Missing rows get an arbitrary hash."""
    encoded = pc.dictionary_encode(text).combine_chunks()
    cleaned = clean(pa.chunked_array([encoded.dictionary]))
    indices = encoded.indices.fill_null(-1).to_numpy()
    dropped = np.append(cleaned.is_null().to_numpy(zero_copy_only=False), True)  # index -1: a missing value
    if not len(cleaned):
        return np.zeros(len(indices), dtype="uint64"), dropped[indices]
    return arrow_hashes(cleaned).take(np.maximum(indices, 0)), dropped[indices]


def payload_hashes_by_module(
    customers: pd.DataFrame, mapping: Mapping, module_of_row: np.ndarray, email_hashes: np.ndarray | None = None
) -> np.ndarray:
    """Per row, a 64-bit hash of exactly what is sent (its module's payload), signed so databases can store
    it; 0 for rows of no mapped module.

    The hash is a sum over the payload's non-null (field, value) pairs. A field added to the mapping therefore
    changes the hash only of rows where it has a value, and a removed field only of rows where it had one:
    changing a mapping re-sends just the records whose payload changed. The plain recipe, hashing each module's
    ``build_payloads`` frame column by column, is ``tests/reference.py``'s ``payload_hashes``; this gives the
    same numbers computed a column at a time over the whole frame: a customer field that both modules send is
    cleaned and hashed once, and no per-module copy of the customers is made. Columns are hashed on two threads:
    Arrow's kernels and pandas' siphash loop run without the GIL. ``email_hashes``: the value hashes of the
    (prepared: trimmed, lower-case, valid) emails, when already known.
    """
    rows = {module: np.flatnonzero(module_of_row == module) for module in mapping.fields}
    fields = [
        (module, zoho_field, source, source_kind(source), mapping.max_length(module, zoho_field))
        for module, mapped in mapping.fields.items()
        if len(rows[module])
        for zoho_field, source in mapped.items()
    ]
    keys = list(dict.fromkeys((src, kind, length if kind == "string" else 0) for *_, src, kind, length in fields))
    hashed: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
    if email_hashes is not None:
        # Prepared emails are what is sent (nothing to trim, none empty) unless a field is too short for one.
        for key in keys:
            if key[0] == "email" and key[2] >= ZOHO_EMAIL_MAX_LENGTH:
                hashed[key] = (email_hashes, np.zeros(len(customers), dtype=bool))
    todo = _alternating([key for key in keys if key not in hashed], customers)
    out = np.zeros(len(customers), dtype="uint64")
    pairs = {
        module: [
            (_seed(f"{HASH_VERSION}|{module}|{zoho_field}"), (source, kind, length if kind == "string" else 0))
            for m, zoho_field, source, kind, length in fields
            if m == module
        ]
        for module in rows
    }

    def combine(module: str, at: np.ndarray) -> None:
        """The hashes of the rows ``at`` (a slice of one module's rows, small enough to stay in the CPU's cache)."""
        total = np.zeros(len(at), dtype="uint64")
        pair, scratch = np.empty_like(total), np.empty_like(total)
        with np.errstate(over="ignore"):
            for seed, key in pairs[module]:
                values, missing = hashed[key]
                np.take(values, at, out=pair)
                pair ^= seed
                _mix_in_place(pair, scratch)
                pair[missing.take(at)] = 0
                total += pair
            total ^= _seed(f"{HASH_VERSION}|{module}")
            out[at] = _mix_in_place(total, scratch)

    with ThreadPoolExecutor(max_workers=2) as pool:  # numpy's kernels release the GIL too
        hashed.update(zip(todo, pool.map(lambda key: _hashed_payload_values(customers[key[0]], *key[1:]), todo)))
        slices = [(m, r[i : i + _COMBINE_ROWS]) for m, r in rows.items() for i in range(0, len(r), _COMBINE_ROWS)]
        list(pool.map(lambda job: combine(*job), slices))
    return out.view("int64")


_COMBINE_ROWS = 32_768  # 256 KiB per uint64 array: a slice's few arrays stay in the CPU's cache


def _alternating(keys: list[tuple[str, str, int]], customers: pd.DataFrame) -> list[tuple[str, str, int]]:
    """Mostly distinct text first, alternating with the rest: its hashing holds the GIL (a Python ``bytes`` per
    value), the rest runs in Arrow without it, so two threads hashing one of each keep both cores busy."""
    heavy: list[tuple[str, str, int]] = []
    light: list[tuple[str, str, int]] = []
    for key in keys:
        values = customers[key[0]]
        distinct = key[1] == "string" and is_arrow_string(values) and _mostly_distinct(values.array._pa_array)
        (heavy if distinct else light).append(key)
    out: list[tuple[str, str, int]] = []
    while heavy or light:
        out += [heavy.pop(0)] if heavy else []
        out += [light.pop(0)] if light else []
    return out


def _hashed_payload_values(values: pd.Series, kind: str, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """``value_hashes`` and missing mask of ``payload_values(values, kind, max_length)``."""
    if kind == "string" and is_arrow_string(values):
        raw = values.array._pa_array
        if _mostly_distinct(raw):
            text = _clean_text(raw, max_length)  # no pandas Series in between
            return arrow_hashes(text), text.is_null().to_numpy(zero_copy_only=False)
        return _hashes_per_distinct(raw, lambda distinct: _clean_text(distinct, max_length))
    sent = payload_values(values, kind, max_length)
    return value_hashes(sent), sent.isna().to_numpy()


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def payload_records(payloads: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready dicts: nulls are sent as null so a value removed in the store is cleared in Zoho."""
    names = list(payloads.columns)
    columns = [_json_values(payloads.iloc[:, i]) for i in range(len(names))]
    return [dict(zip(names, row)) for row in zip(*columns)] if names else [{} for _ in range(len(payloads))]


def _json_values(column: pd.Series) -> list[Any]:
    """``[_json_value(v) for v in column]``, converted a column at a time for the usual dtypes."""
    if is_arrow_string(column):
        return column.array._pa_array.to_pylist()
    if isinstance(column.array, (pd.arrays.BooleanArray, pd.arrays.IntegerArray, pd.arrays.FloatingArray)):
        # Nullable dtypes, before the kinds: they may hold NA, and to_numpy() would turn Int64's values into floats
        values = column.to_numpy(dtype=object, na_value=None).tolist()
        return [None if value != value else value for value in values]  # a Float64 NaN: null too
    if column.dtype.kind in "iub":
        return column.to_numpy().tolist()
    if column.dtype.kind == "f":
        return [None if value != value else value for value in column.to_numpy().tolist()]  # NaN: null
    return [_json_value(value) for value in column]


# ``json.dumps(record, ensure_ascii=False, sort_keys=True)`` builds an encoder per call: one for every record.
_PAYLOAD_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, check_circular=False)


def payload_json(payloads: pd.DataFrame) -> list[str]:
    """Each payload as ``json.dumps(record, ensure_ascii=False, sort_keys=True)`` gives it."""
    return [_PAYLOAD_ENCODER.encode(record) for record in payload_records(payloads)]


# Zoho data types a canonical field may be written to.
_COMPATIBLE_TYPES = {
    "string": {"text", "textarea", "email", "phone", "website", "picklist", "autonumber"},
    "int64": {"integer", "bigint", "double", "currency", "decimal", "text", "textarea"},
    "float64": {"double", "currency", "decimal", "text", "textarea"},
    "boolean": {"boolean"},
}


def check_against_org(mapping: Mapping, module: str, org_fields: list[dict[str, Any]]) -> list[str]:
    """Problems of a module's mapping against the org's real field metadata (empty list: fine)."""
    by_name = {f.get("api_name"): f for f in org_fields}
    problems = []
    for zoho_field, source_field in mapping.fields.get(module, {}).items():
        meta = by_name.get(zoho_field)
        if meta is None:
            problems.append(f"{module}.{zoho_field}: no such field in the Zoho org (create it, or delete the mapping)")
            continue
        if meta.get("read_only") or meta.get("field_read_only"):
            problems.append(f"{module}.{zoho_field}: read-only in Zoho, it cannot be written")
            continue
        data_type = str(meta.get("data_type", ""))
        kind = source_kind(source_field)
        if data_type and data_type not in _COMPATIBLE_TYPES[kind]:
            problems.append(f"{module}.{zoho_field}: Zoho type {data_type!r} cannot hold {source_field!r} ({kind})")
    for meta in org_fields:
        if meta.get("system_mandatory") and meta.get("api_name") not in mapping.fields.get(module, {}):
            problems.append(f"{module}.{meta.get('api_name')}: mandatory in the Zoho org but not mapped")
    return problems


def with_org_lengths(mapping: Mapping, org_fields_by_module: dict[str, list[dict[str, Any]]]) -> Mapping:
    """The mapping with each text field's length taken from the org (Zoho rejects longer values); phones uncut."""
    lengths = {
        module: {
            f["api_name"]: NO_CUT if f.get("data_type") == "phone" else int(f["length"])
            for f in fields
            if f.get("length")
        }
        for module, fields in org_fields_by_module.items()
    }
    return Mapping(fields=mapping.fields, lengths=lengths)
