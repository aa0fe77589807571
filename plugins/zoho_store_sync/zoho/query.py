"""COQL (POST /crm/v8/coql): find the org's records by email, 100 emails a query, and what that costs.

Zoho's limits (COQL overview and limitations pages, v7/v8; Kaizen #183 raised ``in`` to 100 values in v7):
at most 100 values per ``in``, LIMIT at most 2,000 rows (credits 1 / 2 / 3 for LIMIT up to 200 / 1,000 / 2,000),
LIMIT + OFFSET at most 100,000, no rows → 204. Scope ``ZohoCRM.coql.READ``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from zoho_store_sync.settings import ZOHO_API_VERSION
from zoho_store_sync.zoho.records import Caller, raise_for_request_error

COQL_MAX_IN_VALUES = 100
COQL_MAX_LIMIT = 2000
COQL_MAX_REACH = 100_000
# One query of 100 emails finds ~100 records (a few more where the org has twins): LIMIT 200 is 1 credit.
COQL_PAGE_LIMIT = 200
# Bulk Read (zoho-crm-api.md §8.1, secondary): 50 credits per job; a job exports up to 200,000 records of a module.
BULK_READ_JOB_CREDITS = 50
BULK_READ_MAX_RECORDS = 200_000


def coql_credits(limit: int) -> int:
    """Credits of one COQL call by its LIMIT."""
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


def quote(value: str) -> str:
    """A COQL string literal: single quotes, a quote inside doubled (Kaizen #171)."""
    return "'" + str(value).replace("'", "''") + "'"


def email_chunks(emails: Iterable[str], size: int = COQL_MAX_IN_VALUES) -> list[list[str]]:
    """The distinct, trimmed, lower-cased values (emails, names) in ``in`` lists Zoho accepts (100 values each)."""
    distinct = list(dict.fromkeys(e.strip().lower() for e in emails if isinstance(e, str) and e.strip()))
    return [distinct[i : i + size] for i in range(0, len(distinct), size)]


def select_in(
    module: str, field: str, values: Sequence[str], fields: Sequence[str], limit: int, offset: int = 0
) -> str:
    """``select id, <field>, ... from Module where <field> in (...) limit N offset M``."""
    if not 1 <= len(values) <= COQL_MAX_IN_VALUES:
        raise ValueError(f"a COQL in list takes 1 to {COQL_MAX_IN_VALUES} values, got {len(values)}")
    names = ", ".join(dict.fromkeys(["id", field, *fields]))
    listed = ", ".join(quote(v) for v in values)
    return f"select {names} from {module} where {field} in ({listed}) limit {limit} offset {offset}"


def select_by_email(module: str, emails: Sequence[str], fields: Sequence[str], limit: int, offset: int = 0) -> str:
    """``select id, Email, ... from Module where Email in (...) limit N offset M``."""
    return select_in(module, "Email", emails, fields, limit, offset)


@dataclass(frozen=True)
class LookupCost:
    """What finding ``emails`` records of ``modules`` costs by COQL, and by a Bulk Read of each module instead."""

    emails: int
    modules: int
    coql_calls: int
    coql_credits: int
    bulk_read_credits: int | None  # None: the modules' sizes are unknown

    @property
    def path(self) -> str:
        if self.bulk_read_credits is not None and self.bulk_read_credits < self.coql_credits:
            return "bulk_read"
        return "coql"


def lookup_cost(n_emails: int, modules: int, module_sizes: Sequence[int] | None = None) -> LookupCost:
    """COQL: one 1-credit call per 100 emails and module. Bulk Read: 50 credits per module per 200,000 records
    (plus its download, not billed). Bulk Read wins only when the customers far outnumber 100 × 50 = 5,000 emails
    per module and the module is small enough for few jobs."""
    calls = math.ceil(n_emails / COQL_MAX_IN_VALUES) * modules
    bulk = None
    if module_sizes is not None:
        bulk = sum(BULK_READ_JOB_CREDITS * max(1, math.ceil(size / BULK_READ_MAX_RECORDS)) for size in module_sizes)
    return LookupCost(n_emails, modules, calls, calls * coql_credits(COQL_PAGE_LIMIT), bulk)


class ZohoQuery:
    """COQL calls through ``caller.request`` (token, retries, credits)."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def select(self, query: str, *, module: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """One COQL call: (rows, more_records). Credits follow the query's LIMIT."""
        limit = COQL_PAGE_LIMIT
        if " limit " in query.lower():
            limit = int(query.lower().rsplit(" limit ", 1)[1].split()[0])
        response = self._caller.request(
            "POST",
            f"/crm/{ZOHO_API_VERSION}/coql",
            operation="coql",
            credits=coql_credits(limit),
            json={"select_query": query},
            module=module,
        )
        if response.status_code == 204:
            return [], False
        raise_for_request_error(response, "coql")
        body = response.json() or {}
        return list(body.get("data") or []), bool((body.get("info") or {}).get("more_records"))

    def find_by(
        self, module: str, field: str, values: Iterable[str], fields: Sequence[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """Every record of ``module`` whose ``field`` is one of ``values``, per trimmed lower-cased value (oldest id
        first; several when the org has twins). 100 values a query, 200 rows a page."""
        found: dict[str, list[dict[str, Any]]] = {}
        for chunk in email_chunks(values):  # distinct, trimmed, lower-cased (Zoho compares case-insensitively)
            offset = 0
            while True:
                rows, more = self.select(
                    select_in(module, field, chunk, fields, COQL_PAGE_LIMIT, offset), module=module
                )
                for row in rows:
                    if isinstance(row.get(field), str) and row.get("id"):
                        found.setdefault(row[field].strip().lower(), []).append(row)
                offset += COQL_PAGE_LIMIT
                if not more or offset + COQL_PAGE_LIMIT > COQL_MAX_REACH:
                    break
        for rows in found.values():
            rows.sort(key=lambda row: int(row["id"]) if str(row["id"]).isdigit() else 0)
        return found

    def find_by_email(
        self, module: str, emails: Iterable[str], fields: Sequence[str] = ()
    ) -> dict[str, list[dict[str, Any]]]:
        """Every record of ``module`` per lower-cased email (oldest id first; several when the org has twins)."""
        return self.find_by(module, "Email", emails, fields)
