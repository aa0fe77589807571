"""Parallel keyset reads: a full pass's searches cut into id ranges, each paged by keyset, read at once.

A store that answers a 300-row page in 300 ms needs most of an hour for a million customers read one page at a
time; the same pages read by ``parallelism`` threads take that time divided by ``parallelism``.

How a search is cut (``plan_ranges``): the count probe's ``total`` gives the offsets of ``count - 1`` cut points
at equal row counts; one call each (a page of one row, by page number: ``MagentoHook.id_at``) names the id found
there, and the ranges are ``(None, id1], (id1, id2], ..., (id_last, None)``. Each range is a keyset read of its
own (``MagentoHook.search`` from ``start_after`` = its floor, with an ``id <= ceiling`` filter), with every check
of a sequential read: partial pages retried then failed, the last page confirmed, ranges whose total_count fell
re-listed (``PagingReport``).

What a parallel pass guarantees while rows change (the same as one keyset read, range by range):

* **No repeat**: the ranges cut the id line without overlap, so a row is in exactly one range's filter and only
  that range returns it (and a keyset read drops any row it already returned).
* **No loss of a row present throughout**: each range reads every row in it by keyset. The last range has no
  ceiling: rows inserted above the highest id seen when the pass was planned are read there, up to an empty page.
  Rows inserted inside a lower range after that range's keyset passed their id are not read by this pass, as in a
  sequential read (Magento's ids grow, so new rows land at the top); the next incremental run reads them by
  ``updated_at``.
* **Updated rows** are read once, in whichever version the store had when their page was read; the cursor's
  high-water mark is taken before paging, so the next incremental run reads them again in their newest version.
* **Deleted rows** are read if their page came before the deletion, else not; either way never twice.
* **Nothing partial is taken as complete**: every range but the last holds at least its ceiling row when planned,
  so an empty first page there is a partial answer (retried, then ``SourceIncompleteError``), not an empty range;
  a range that fails fails the whole pass, and the other ranges stop at their next page. A range whose every row
  was deleted while the pass ran fails the pass the same way (the next run passes): a wrong "empty" costs a run,
  a wrong "complete" would delete Zoho records.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from math import ceil
from typing import Any

from zoho_store_sync.sources.magento.hook import MagentoHook, PagingReport

log = logging.getLogger(__name__)

DEFAULT_PARALLELISM = 8  # requests in flight at once to one store: a shop's PHP-FPM pool serves this many easily
RANGES_PER_WORKER = 2  # more ranges than threads: a range slower than the rest does not hold up the pass alone
MIN_PAGES_PER_RANGE = 4  # below this a range's extra calls (its cut point, its confirming page) cost too much
MIN_PAGES_TO_CUT = 32  # a smaller search takes seconds one page at a time: read it as one keyset read

FilterGroups = Sequence[Sequence[tuple[str, Any, str]]]
Rows = list[dict[str, Any]]


@dataclass(frozen=True)
class KeysetRead:
    """One search of a full pass, and what its count probe said before paging."""

    resource: str
    filter_groups: FilterGroups
    fields: str
    page_size: int
    id_field: str
    total: int  # rows the store reported before paging


@dataclass(frozen=True)
class IdRange:
    """Ids ``after < id <= upto`` of one search; ``expected``: the rows the store had in it when it was planned."""

    after: Any  # None: from the first row
    upto: Any  # None: no ceiling (rows inserted above the highest id while paging are read here)
    expected: int


def range_count(total: int, page_size: int, parallelism: int) -> int:
    """How many ranges to cut a search of ``total`` rows into: 1 (a sequential read) for small searches."""
    pages = ceil(total / max(1, page_size))
    if parallelism <= 1 or pages < MIN_PAGES_TO_CUT:
        return 1
    return max(1, min(parallelism * RANGES_PER_WORKER, pages // MIN_PAGES_PER_RANGE))


def ranges_from_cuts(cuts: Sequence[tuple[int, Any]], total: int) -> list[IdRange]:
    """Ranges from cut points ``(offset, id found there)``; a cut the store no longer had (None) or out of order
    (rows deleted or added between the calls) is dropped, merging its two ranges: any cut of the id line is safe."""
    kept: list[tuple[int, Any]] = []
    for offset, row_id in sorted(((o, i) for o, i in cuts if i is not None), key=lambda cut: cut[1]):
        if kept and (row_id == kept[-1][1] or offset <= kept[-1][0]):
            continue
        kept.append((offset, row_id))
    ranges: list[IdRange] = []
    after, first = None, 0
    for offset, row_id in kept:
        ranges.append(IdRange(after, row_id, max(1, offset + 1 - first)))  # it holds at least its ceiling row
        after, first = row_id, offset + 1
    ranges.append(IdRange(after, None, max(0, total - first)))
    return ranges


def plan_ranges(
    hook: MagentoHook, read: KeysetRead, count: int, run: Callable[[Callable[[int], Any], list[int]], list[Any]]
) -> list[IdRange]:
    """``read`` cut into about ``count`` ranges of equal row counts; ``run`` maps the cut-point calls (in a pool)."""
    if count <= 1 or read.total <= 1:
        return [IdRange(None, None, read.total)]
    offsets = sorted({max(0, round(k * read.total / count) - 1) for k in range(1, count)})
    ids = run(
        lambda offset: hook.id_at(read.resource, offset, filter_groups=read.filter_groups, id_field=read.id_field),
        offsets,
    )
    return ranges_from_cuts(list(zip(offsets, ids, strict=True)), read.total)


class _Stopped(Exception):
    """Another range failed: this one stops at its next page (its rows are thrown away with the pass)."""


def read_range(
    hook: MagentoHook, read: KeysetRead, id_range: IdRange, stop: threading.Event
) -> tuple[Rows, PagingReport]:
    """One range, paged by keyset with the checks of ``MagentoHook.search`` given a report."""
    ceiling = [[(read.id_field, id_range.upto, "lteq")]] if id_range.upto is not None else []
    report = PagingReport(expected=id_range.expected)
    rows: Rows = []
    for page in hook.search(
        read.resource,
        filter_groups=[*read.filter_groups, *ceiling],
        fields=read.fields,
        page_size=read.page_size,
        id_field=read.id_field,
        report=report,
        start_after=id_range.after,
    ):
        if stop.is_set():
            raise _Stopped
        rows.extend(page)
    return rows, report


def combined_report(read: KeysetRead, reports: Sequence[PagingReport]) -> PagingReport:
    """The reports of a search's ranges as one: complete only if every range is."""
    reasons = [r.incomplete_reason for r in reports if r.incomplete_reason]
    return PagingReport(
        expected=read.total,
        first_total=read.total,
        read=sum(r.read for r in reports),
        pages=sum(r.pages for r in reports),
        retries=sum(r.retries for r in reports),
        verified_ranges=sum(r.verified_ranges for r in reports),
        done=all(r.done for r in reports),
        incomplete_reason="; ".join(reasons) if reasons else None,
    )


def read_all(hook: MagentoHook, reads: Sequence[KeysetRead], parallelism: int) -> list[tuple[Rows, PagingReport]]:
    """Every search of ``reads`` in full, in id order, each with its combined ``PagingReport``.

    A store small enough for one range per search is read as before, one search after the other. Otherwise every
    search is cut into ranges (``plan_ranges``) and all ranges are read by up to ``parallelism`` threads sharing
    ``hook`` (its transport keeps one session per thread); the first range that fails fails the call.
    """
    counts = [range_count(read.total, read.page_size, parallelism) for read in reads]
    if max(counts, default=1) <= 1:
        results = []
        for read in reads:
            rows, report = read_range(hook, read, IdRange(None, None, read.total), threading.Event())
            results.append((rows, report))
        return results
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="magento-range") as pool:

        def run(call: Callable[[int], Any], items: list[int]) -> list[Any]:
            return list(pool.map(call, items))

        plans = [plan_ranges(hook, read, count, run) for read, count in zip(reads, counts, strict=True)]
        jobs = [(r, i, id_range) for r, plan in enumerate(plans) for i, id_range in enumerate(plan)]
        jobs.sort(key=lambda job: -job[2].expected)  # the largest first: the last to finish are the small ones
        futures: dict[Future[tuple[Rows, PagingReport]], tuple[int, int]] = {
            pool.submit(read_range, hook, reads[r], id_range, stop): (r, i) for r, i, id_range in jobs
        }
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        error = next((f.exception() for f in done if f.exception() is not None), None)
        if error is not None:
            stop.set()
            for future in futures:
                future.cancel()
            raise error
    log.info(
        "magento full pass: %s read in %d id ranges by %d threads",
        ", ".join(f"{read.resource} ({read.total:,} rows)" for read in reads),
        len(futures),
        parallelism,
    )
    parts: list[list[tuple[Rows, PagingReport]]] = [[([], PagingReport())] * len(plan) for plan in plans]
    for future, (r, i) in futures.items():
        parts[r][i] = future.result()
    return [
        ([row for rows, _ in ranges for row in rows], combined_report(read, [report for _, report in ranges]))
        for read, ranges in zip(reads, parts, strict=True)
    ]
