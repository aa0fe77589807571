"""Searches (GET /V1/customers/search, /V1/orders) and single reads, found as MySQL would find them."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Callable

from .criteria import Filter, SearchCriteria, _number, combine_groups, compile_filter
from .faults import ENTITY_MISSING, INTERNAL, MAX_PAGE, NO_SUCH_ENTITY, MagentoError
from .indexes import _cache_key, _gc_paused, _Index, _indexable, _LOWER_BOUNDS, _Matches
from .tables import _CUSTOMERS, _ORDERS, _Entity


class Search:
    """MagentoSandbox's reads: answers cached per criteria until the next change, indexes built on first use."""

    def search(self, entity: _Entity, criteria: SearchCriteria) -> dict:
        page_size = criteria.page_size
        if self.input_limit_enabled:
            if page_size is not None and page_size > self.max_page_size:
                raise MagentoError(400, MAX_PAGE, {"max": self.max_page_size})
            if page_size is None:
                page_size = criteria.page_size = self.default_page_size  # DefaultPageSizeSetter
        with self._lock:
            matches = self._matching(entity, criteria)
            fault = self._take_page_fault(entity.name) if self._page_faults else None
            if fault is not None and fault["kind"] == "skip_rows":
                page_rows = self._page_skipping(matches, page_size, criteria.current_page, fault["rows"] or 1)
            else:
                page_rows = self._page(matches, page_size, criteria.current_page)
            if entity is _CUSTOMERS:
                items = [self._public_customer(r) for r in page_rows]
            else:
                items = list(page_rows)
            if fault is not None:
                self._applied_faults.append({"kind": fault["kind"], "path": entity.name, "total_count": matches.total})
                if fault["kind"] == "empty_page":
                    return {"items": [], "total_count": 0}  # exactly as seen: no search_criteria either
                if fault["kind"] == "short_page":
                    items = items[:len(items) // 2 if fault["rows"] is None else fault["rows"]]
                if fault["kind"] == "total_drift":
                    return {"items": items, "search_criteria": criteria.echo(),
                            "total_count": max(0, matches.total + fault["drift"])}
        return {"items": items, "search_criteria": criteria.echo(), "total_count": matches.total}

    def _page_skipping(self, matches: _Matches, page_size: int | None, current_page: int | None,
                       skip: int) -> list[dict]:
        """A page as `_page` reads it, but `skip` rows from its middle left out and the following rows moved up."""
        if not page_size:
            rows = matches.window(0, None)
            middle = max(0, (len(rows) - skip) // 2)
            return rows[:middle] + rows[middle + skip:]
        offset = (max(1, current_page or 1) - 1) * max(1, page_size)
        rows = matches.window(offset, max(1, page_size) + skip)
        middle = max(0, (min(len(rows), page_size) - skip) // 2)
        return rows[:middle] + rows[middle + skip:]

    def _page(self, matches: _Matches, page_size: int | None, current_page: int | None) -> list[dict]:
        if not page_size:  # unset or 0: the collection applies no LIMIT
            return matches.window(0, None)
        page_size = max(1, page_size)  # Zend's limitPage() turns a negative count into 1
        page = max(1, current_page or 1)
        if self.legacy_last_page_repeat and matches.total:
            page = min(page, math.ceil(matches.total / page_size))  # <=2.3 clamped getCurPage()
        return matches.window((page - 1) * page_size, page_size)

    def _column(self, entity: _Entity, name: str) -> str:
        column = entity.aliases.get(name, name)
        if column in entity.fields:
            return column
        if entity.unknown_field_status == 400:
            raise MagentoError(400, "Invalid attribute name: %1", [name])
        raise MagentoError(500, INTERNAL, [f"webapi-{self._rng.getrandbits(52):013x}"])

    def _compiled(self, entity: _Entity, f: Filter) -> tuple[str, Callable[[dict], bool]]:
        column = self._column(entity, f.field)
        return column, compile_filter(f, column)

    def _matching(self, entity: _Entity, criteria: SearchCriteria) -> _Matches:
        """What the search matches, found as MySQL would: keyset pages by bisection, selective filters by index.

        Answers, their order and errors are those of a scan of the whole table: the fast paths only skip rows
        that cannot match. Cached per criteria until the next change, so pages by number reuse one search.
        """
        groups = criteria.filter_groups
        key = _cache_key(entity, groups, criteria.sort_orders)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        # Resolved and compiled in the scan's order, so a bad search fails the way it always did.
        compiled = [[self._compiled(entity, f) for f in g] for g in groups]
        sorts = [(self._column(entity, f), d) for f, d in criteria.sort_orders]
        keyset = self._keyset_bound(entity, groups, compiled, sorts)
        if keyset is not None:
            condition, bound = keyset
            rest, rest_compiled = groups[:-1], compiled[:-1]
            ceiling = self._pk_ceiling(entity, rest, rest_compiled)
            if ceiling is not None:  # an id range's `pk <= ceiling`: a B-tree range scan, no filter pass
                rest, rest_compiled = rest[:-1], rest_compiled[:-1]
            base = self._base(entity, rest, rest_compiled)
            pks = base.pks(entity.primary_key)
            cut = (bisect_right if condition == "gt" else bisect_left)(pks, bound)
            stop = None
            if ceiling is not None:
                stop = (bisect_left if ceiling[0] == "lt" else bisect_right)(pks, ceiling[1])
            return _Matches(base.rows, start=cut, stop=stop)
        base = self._base(entity, groups, compiled)
        if not sorts or self._fast_paths and sorts == [(entity.primary_key, "ASC")]:
            return base  # already in primary-key order
        matches = _Matches(base.rows, sorts, top_k=self._fast_paths)
        self._remember(key, matches)
        return matches

    def _keyset_bound(self, entity: _Entity, groups: list[list[Filter]], compiled: list[list[tuple]],
                      sorts: list[tuple[str, str | None]]) -> tuple[str, float] | None:
        """(condition, bound) when the last group is a keyset page's lone `pk > bound` (or >=) in pk order.

        Primary keys are ints (auto-increment ids), so bisecting them with the bound is the filter's comparison.
        """
        if not self._fast_paths or not groups or len(groups[-1]) != 1:
            return None
        f, (column, _) = groups[-1][0], compiled[-1][0]
        pk = entity.primary_key
        if column != pk or f.condition_type not in _LOWER_BOUNDS or sorts not in ([], [(pk, "ASC")]):
            return None
        bound = _number(f.value)
        if bound is None or bound != bound:  # no number, or NaN: leave the odd cases to the scan
            return None
        return f.condition_type, bound

    def _pk_ceiling(self, entity: _Entity, groups: list[list[Filter]],
                    compiled: list[list[tuple]]) -> tuple[str, float] | None:
        """(condition, bound) when the last group is a lone numeric `pk < bound` or `pk <= bound`."""
        if not groups or len(groups[-1]) != 1:
            return None
        f, (column, _) = groups[-1][0], compiled[-1][0]
        if column != entity.primary_key or f.condition_type not in ("lt", "lteq", "to"):
            return None
        bound = _number(f.value)
        if bound is None or bound != bound:
            return None
        return f.condition_type, bound

    def _base(self, entity: _Entity, groups: list[list[Filter]], compiled: list[list[tuple]]) -> _Matches:
        """The rows matching `groups` in primary-key order (a table scan's order), cached until the next change."""
        key = _cache_key(entity, groups, ())
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        table = self._table(entity)
        predicate = combine_groups([[p for _, p in g] for g in compiled])
        candidates = self._candidates(entity, groups, compiled, len(table)) if self._fast_paths else None
        with _gc_paused():
            source = table.values() if candidates is None else map(table.__getitem__, candidates)
            rows = list(source) if predicate is None else [r for r in source if predicate(r)]
        matches = _Matches(rows)
        self._remember(key, matches)
        return matches

    def _candidates(self, entity: _Entity, groups: list[list[Filter]], compiled: list[list[tuple]],
                    table_size: int) -> list[int] | None:
        """Ascending primary keys of a superset of the rows `groups` match, from the most selective index.

        A group can use indexes when each of its filters can; None when no group can, or when the best keeps
        so much of the table that scanning it is as fast. The table's dict order is primary-key order.
        """
        best: list[int] | None = None
        for group, pairs in zip(groups, compiled):
            columns = [column for column, _ in pairs]
            if not all(c in entity.indexed and _indexable(f, c) for f, c in zip(group, columns)):
                continue
            found: list[int] = []
            for f, column in zip(group, columns):
                found += self._index(entity, column).lookup(f)
            if best is None or len(found) < len(best):
                best = found
        if best is None or len(best) * 4 > table_size:
            return None
        return sorted(set(best))

    def build_indexes(self) -> None:
        """Build every index now, as a database has its keys before the first query (else: on first use)."""
        with self._lock:
            for entity in (_CUSTOMERS, _ORDERS):
                for column in sorted(entity.indexed):
                    self._index(entity, column)

    def _index(self, entity: _Entity, column: str) -> _Index:
        index = self._indexes.get((entity.name, column))
        if index is None:
            with _gc_paused():
                index = self._indexes[(entity.name, column)] = _Index(self._table(entity), column)
        return index

    def _remember(self, key: tuple, matches: _Matches) -> None:
        self._cache[key] = matches
        if len(self._cache) > 16:
            self._cache.popitem(last=False)

    def get_customer(self, customer_id: int) -> dict:
        with self._lock:
            row = self._customers.get(customer_id)
            if row is None:
                raise MagentoError(404, NO_SUCH_ENTITY, {"fieldName": "customerId", "fieldValue": customer_id})
            return self._public_customer(row)

    def get_order(self, entity_id: int) -> dict:
        with self._lock:
            order = self._orders.get(entity_id)
            if order is None:
                raise MagentoError(404, ENTITY_MISSING)
            return order

