"""Reference versions of what the product computes a faster way: the tests check the product against them.

They are written the plain way (a module's payload frame hashed column by column with pandas, a Series of
record types), are used by the tests and the benchmarks only, and define what the fast code must give.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zoho_store_sync.mapping import HASH_VERSION, _mix, _seed


def classify(frame: pd.DataFrame) -> pd.Series:
    """Contacts bought at least once; Leads registered without buying or only subscribed; "" otherwise.

    ``customers.record_types`` gives the same as a numpy text array, which the diff compares a million times."""
    bought = frame["order_count"] > 0
    lead = ~bought & (frame["registered"].astype(bool) | frame["newsletter"].astype(bool))
    out = pd.Series("", index=frame.index, dtype="string")
    out[bought] = "Contacts"
    out[lead] = "Leads"
    return out


def payload_hashes(payloads: pd.DataFrame, module: str) -> np.ndarray:
    """A 64-bit hash per row of exactly what is sent (``build_payloads``' frame of one module), signed.

    The hash is a sum over the row's non-null (field, value) pairs, each value hashed by pandas'
    ``hash_pandas_object``. A field added to the mapping therefore changes the hash only of rows where it has
    a value, and a removed field only of rows where it had one: changing a mapping re-sends just the records
    whose payload changed. ``mapping.payload_hashes_by_module`` computes the same numbers for every module at once.
    """
    if payloads.empty:
        return np.zeros(0, dtype="int64")
    total = np.zeros(len(payloads), dtype="uint64")
    with np.errstate(over="ignore"):
        for name in payloads.columns:
            column = payloads[name]
            values = pd.util.hash_pandas_object(column, index=False).to_numpy(dtype="uint64")
            pair = _mix(values ^ _seed(f"{HASH_VERSION}|{module}|{name}"))
            total += np.where(column.isna().to_numpy(), np.uint64(0), pair)
        return _mix(total ^ _seed(f"{HASH_VERSION}|{module}")).view("int64")
