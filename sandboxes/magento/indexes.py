"""Indexes and ordered matches: how the store finds and sorts rows as MySQL would, without full scans."""

from __future__ import annotations

import contextlib
import gc
import heapq
import operator
from bisect import bisect_left, bisect_right
from itertools import repeat
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from .criteria import VERBATIM_COLUMNS, Filter, _number

if TYPE_CHECKING:
    from .tables import _Entity


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Full scans allocate a tuple per row; with millions of live rows the cyclic GC would rescan them all, often."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _sort_key(column: str) -> Callable[[dict], tuple]:
    """NULLs first (ascending), strings compared case-insensitively like MySQL's default collation."""
    fold = column not in VERBATIM_COLUMNS

    def key(row: dict) -> tuple:
        v = row.get(column)
        if v is None:
            return (False, 0)
        return (True, v.casefold() if fold and isinstance(v, str) else v)
    return key


_RANGES = frozenset({"gt", "gteq", "moreq", "from", "lt", "lteq", "to"})
_AT_LEAST = frozenset({"gteq", "moreq", "from"})
_LOWER_BOUNDS = _AT_LEAST | {"gt"}


def _indexable(f: Filter, column: str) -> bool:
    """Whether an index can list a superset of the rows `f` matches; other filters need the table scan."""
    if not isinstance(f.value, str):
        return False
    if f.condition_type == "in":
        return column not in VERBATIM_COLUMNS  # `in` folds case even where `eq` compares verbatim
    return f.condition_type == "eq" or f.condition_type in _RANGES


def _span(keys: list, condition: str, value: Any) -> tuple[int, int]:
    """The slice of the sorted `keys` that satisfy `key <condition> value`."""
    if condition == "eq":
        return bisect_left(keys, value), bisect_right(keys, value)
    if condition == "gt":
        return bisect_right(keys, value), len(keys)
    if condition in _AT_LEAST:
        return bisect_left(keys, value), len(keys)
    if condition == "lt":
        return 0, bisect_left(keys, value)
    return 0, bisect_right(keys, value)  # lteq, to


def _sorted_pairs(keys: list, pks: list[int]) -> tuple[list, list[int]]:
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return [keys[i] for i in order], [pks[i] for i in order]


class _ColumnIndex:
    """One column's values in sorted arrays, as a B-tree holds them: `eq`, `in` and ranges by bisection.

    Strings and numbers are kept apart because compile_filter compares them apart; strings are case-folded
    unless the column compares verbatim. Rows holding any other type are candidates for every lookup.
    """

    def __init__(self, rows: Iterable[tuple[int, dict]], column: str) -> None:
        self.fold = column not in VERBATIM_COLUMNS
        text_keys: list[str] = []
        text_pks: list[int] = []
        number_keys: list[float] = []
        number_pks: list[int] = []
        self.others: list[int] = []
        for pk, row in rows:
            v = row.get(column)
            if isinstance(v, str):
                text_keys.append(v.casefold() if self.fold else v)
                text_pks.append(pk)
            elif isinstance(v, (int, float)):
                if v == v:  # NaN matches no filter
                    number_keys.append(v)
                    number_pks.append(pk)
            elif v is not None:
                self.others.append(pk)
        self.texts = _sorted_pairs(text_keys, text_pks)
        self.numbers = _sorted_pairs(number_keys, number_pks)

    def lookup(self, f: Filter) -> list[int]:
        """Primary keys (unordered, maybe repeated) of a superset of the rows an _indexable filter matches."""
        raw, condition = f.value, f.condition_type
        if condition == "in":
            items = raw.split(",") if raw else []
            probes = [(self.texts, "eq", item.casefold()) for item in items]
            probes += [(self.numbers, "eq", n) for n in map(_number, items) if n is not None]
        else:
            probes = [(self.texts, condition, raw.casefold() if self.fold else raw)]
            num = _number(raw)
            if num is not None:
                probes.append((self.numbers, condition, num))
        found = list(self.others)
        for (keys, pks), probe_condition, value in probes:
            lo, hi = _span(keys, probe_condition, value)
            found += pks[lo:hi]
        return found


class _Index:
    """A _ColumnIndex kept current without a rebuild: rows changed since it was built sit in a small delta."""

    def __init__(self, table: dict[int, dict], column: str) -> None:
        self.table, self.column = table, column
        self.built = _ColumnIndex(table.items(), column)
        self.stale: set[int] = set()  # added, replaced or deleted since `built`
        self.delta: _ColumnIndex | None = None  # the current rows of `stale`, indexed when first needed

    def changed(self, pks: Iterable[int]) -> None:
        self.stale.update(pks)
        self.delta = None

    def lookup(self, f: Filter) -> list[int]:
        found = self.built.lookup(f)
        if not self.stale:
            return found
        if self.delta is None:
            self.delta = _ColumnIndex(((pk, self.table[pk]) for pk in self.stale if pk in self.table), self.column)
        return [pk for pk in found if pk not in self.stale] + self.delta.lookup(f)


def _sorted_rows(rows: list[dict], sorts: list[tuple[str, str | None]]) -> list[dict]:
    """Stable sorts from the last key to the first over id order: ties always break by id ascending.

    Direction defaults to DESC (Magento's SortingProcessor); NULLs come first ascending, last descending.
    """
    rows = list(rows)
    with _gc_paused():
        for column, direction in reversed(sorts):
            rows.sort(key=_sort_key(column), reverse=(direction or "DESC") == "DESC")
    return rows


def _top(rows: list[dict], column: str, direction: str | None, count: int) -> list[dict] | None:
    """The first `count` rows of _sorted_rows(rows, [(column, direction)]) without sorting them all.

    Only where the sort key is the bare value: every row has one, and all are ints or all strings compared
    verbatim. None otherwise: the full sort does the work (and fails, as ever, on values that do not compare).
    """
    values = list(map(dict.get, rows, repeat(column)))
    kinds = set(map(type, values))
    if not (kinds == {int} or kinds == {str} and column in VERBATIM_COLUMNS):
        return None
    # Both are documented as sorted(...)[:count], which is stable: ties keep their id order, as in the full sort.
    pick = heapq.nsmallest if direction == "ASC" else heapq.nlargest
    return [rows[i] for i in pick(count, range(len(values)), key=values.__getitem__)]


class _Matches:
    """The rows a search matches, in its order, sorted only when (and as far as) a page needs it.

    The matches are `rows[start:stop]` (a keyset page starts past the last id, an id range ends at its ceiling);
    without sorts they are in primary-key order, the order of a table scan.
    """

    def __init__(self, rows: list[dict], sorts: Sequence[tuple[str, str | None]] = (), *, start: int = 0,
                 stop: int | None = None, top_k: bool = False) -> None:
        self.rows, self.sorts, self.start = rows, list(sorts), start
        self.stop = len(rows) if stop is None else max(start, stop)
        self.total = self.stop - start
        self._top_k = top_k
        self._sorted: list[dict] | None = None if sorts else rows
        self._head: list[dict] = []  # the first rows in order, from a top-k selection
        self._pks: list[int] | None = None

    def pks(self, primary_key: str) -> list[int]:
        if self._pks is None:
            self._pks = list(map(operator.itemgetter(primary_key), self.rows))
        return self._pks

    def window(self, offset: int, count: int | None) -> list[dict]:
        """`count` matches from `offset` on (count None: all the rest)."""
        if self._sorted is None:
            first_page = offset == 0 and count is not None
            if first_page and count <= len(self._head):
                return self._head[:count]
            # One small first page (newest(): pageSize 1) is a top-k; paging on through a sort sorts once.
            if first_page and self._top_k and len(self.sorts) == 1 and count * 8 <= self.total:
                head = _top(self.rows, *self.sorts[0], count)
                if head is not None:
                    self._head = head
                    return head
            self._sorted = _sorted_rows(self.rows, self.sorts)
        begin = self.start + offset
        return self._sorted[begin:self.stop if count is None else min(self.stop, begin + count)]


def _cache_key(entity: _Entity, groups: list[list[Filter]], sort_orders: Iterable[tuple]) -> tuple:
    return (entity.name, tuple(tuple((f.field, f.value, f.condition_type) for f in g) for g in groups),
            tuple(sort_orders))
