"""The tenant's phone book: each phone number of its store parsed once, the answers kept between runs in Parquet.

One file per tenant, ``<staging root>/<tenant>/phone_book/phones.parquet`` (a folder ``staging.kept_dirs`` keeps):
two text columns, ``key`` (what is parsed: the region and the number as the store wrote it, see ``field_values``)
and ``value`` (its E.164 form; null: not a valid number, an answer kept too). It is a cache and nothing else:
deleting it costs one run's parsing. A file written under another version (of the parsing rules or of
``phonenumbers``) is not read; one that cannot be read is ignored with a warning; either way the run rebuilds it.
Looked up with Arrow (``index_in``), never a Python object per number; saved under a temporary name, then renamed
over the old file, so a crash mid-write leaves the previous book.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zoho_store_sync import staging

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

FOLDER = "phone_book"
FILE_NAME = "phones.parquet"
_VERSION_KEY = b"zoho_store_sync.phone_book.version"
_COLUMNS = pa.schema([("key", pa.large_string()), ("value", pa.large_string())])  # as pandas holds text


def _path(url: str) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def url_of(tenant_id: str) -> str:
    """Where the tenant's phone book lives."""
    return f"{staging.staging_root()}/{tenant_id}/{FOLDER}/{FILE_NAME}"


class PhoneBook:
    """Answers by key, read from ``url`` on first use and written back by ``save`` (``url`` None: this run only).

    ``version`` names what produced the answers; a file of another version is not read. ``full_pass``: the run looks
    up every number the store holds, so ``save`` drops the entries it did not look up (the book follows the store's
    current numbers, not their history); any other run only adds.
    """

    def __init__(self, url: str | None, version: str, *, full_pass: bool) -> None:
        self.url = url
        self.version = version
        self.full_pass = full_pass
        self.hits = 0
        self.misses = 0
        self._keys: pa.Array | None = None  # None: not read yet
        self._values = pa.array([], pa.large_string())
        self._seen = np.zeros(0, dtype=bool)  # per entry: looked up by this run
        self._read_count = 0

    def resolve(self, keys: pa.Array, parse: Callable[[str], str | None]) -> pa.Array:
        """The answer for each of ``keys`` (distinct, none null): the book's, else ``parse``'s, then kept."""
        keys = keys.cast(pa.large_string())
        known_keys = self._entries()
        positions = pc.fill_null(pc.index_in(keys, value_set=known_keys), -1).to_numpy().astype(np.int64)
        found = positions >= 0
        self._seen[positions[found]] = True
        missing = keys.filter(pa.array(~found))
        self.hits += int(found.sum())
        self.misses += len(missing)
        if len(missing):
            parsed = pa.array([parse(key) for key in missing.to_pylist()], pa.large_string())
            positions[~found] = len(known_keys) + np.arange(len(missing))
            self._keys = pa.concat_arrays([known_keys, missing])
            self._values = pa.concat_arrays([self._values, parsed])
            self._seen = np.concatenate([self._seen, np.ones(len(missing), dtype=bool)])
        return self._values.take(pa.array(positions))

    def save(self) -> None:
        """Write the book back when this run changed it: what it added, less (on a full pass) what it did not see.

        A failure is a warning, never the run's: the next run parses those numbers again."""
        if self.url is None or self._keys is None:
            return
        keep = self._seen if self.full_pass else np.ones(len(self._keys), dtype=bool)
        added = len(self._keys) - self._read_count
        dropped = int((~keep).sum())
        if not added and not dropped:
            return
        mask = pa.array(keep)
        table = pa.Table.from_arrays(
            [self._keys.filter(mask), self._values.filter(mask)],
            schema=_COLUMNS.with_metadata({_VERSION_KEY: self.version.encode()}),
        )
        path = _path(self.url)
        temporary = path.parent / f"{path.name}.{uuid.uuid4().hex}.tmp"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as handle:
                pq.write_table(table, handle)
            temporary.rename(path)
        except Exception as error:  # a cache: losing it costs parsing, never the run
            log.warning("phone book %s not saved (%s): the next run parses these numbers again", self.url, error)
            with contextlib.suppress(Exception):
                temporary.unlink()
            return
        log.info("phone book: %d numbers (%d added, %d dropped)", table.num_rows, added, dropped)

    def _entries(self) -> pa.Array:
        if self._keys is None:
            table = self._read()
            self._keys = table.column("key").combine_chunks()
            self._values = table.column("value").combine_chunks()
            self._seen = np.zeros(len(self._keys), dtype=bool)
            self._read_count = len(self._keys)
        return self._keys

    def _read(self) -> pa.Table:
        empty = _COLUMNS.empty_table()
        if self.url is None:
            return empty
        path = _path(self.url)
        try:
            if not path.exists():
                return empty
            with path.open("rb") as handle:
                table = pq.read_table(handle)
        except Exception as error:  # a cache: unreadable means rebuilt, never a failed run
            log.warning("phone book %s cannot be read (%s): ignored, rebuilt by this run", self.url, error)
            return empty
        written_under = (table.schema.metadata or {}).get(_VERSION_KEY, b"").decode(errors="replace")
        if written_under != self.version:
            log.info("phone book %s is from %r, not %r: rebuilt by this run", self.url, written_under, self.version)
            return empty
        if table.schema.remove_metadata() != _COLUMNS:
            log.warning("phone book %s has columns %s: ignored, rebuilt by this run", self.url, table.schema.names)
            return empty
        return table.filter(pc.is_valid(table.column("key")))
