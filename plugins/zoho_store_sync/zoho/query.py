"""COQL (POST /crm/v8/coql) and Record Count: find the org's records by email, and what each way costs.

Zoho's limits (COQL overview and limitations pages, v7/v8; Kaizen #183 raised ``in`` to 100 values in v7):
at most 100 values per ``in``, LIMIT at most 2,000 rows (credits 1 / 2 / 3 for LIMIT up to 200 / 1,000 / 2,000),
LIMIT + OFFSET at most 100,000, no rows → 204. Scope ``ZohoCRM.coql.READ``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from zoho_store_sync.settings import ZOHO_API_VERSION
from zoho_store_sync.zoho.records import Caller, raise_for_request_error

COQL_MAX_IN_VALUES = 100
COQL_MAX_LIMIT = 2000
COQL_MAX_REACH = 100_000
# One query of 100 emails finds ~100 records (a few more where the org has twins): LIMIT 200 is 1 credit.
COQL_PAGE_LIMIT = 200


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


def scan_credits(module_size: int) -> int:
    """COQL credits to read every record of a module with an email: pages of 2,000 rows, 3 credits each."""
    return math.ceil(module_size / COQL_MAX_LIMIT) * coql_credits(COQL_MAX_LIMIT)


def lookup_credits(n_emails: int) -> int:
    """COQL credits to look ``n_emails`` up in one module: one 1-credit query per 100 emails."""
    return math.ceil(n_emails / COQL_MAX_IN_VALUES) * coql_credits(COQL_PAGE_LIMIT)


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

    def count(self, module: str) -> int:
        """The module's record count (GET /crm/v8/{module}/actions/count, 1 credit; Zoho sends it as a number
        or a string)."""
        response = self._caller.request(
            "GET", f"/crm/{ZOHO_API_VERSION}/{module}/actions/count", operation="count", credits=1, module=module
        )
        raise_for_request_error(response, "count")
        count = str((response.json() or {}).get("count"))
        if not count.isdigit():  # None, True, "12a": never taken for a count
            raise ValueError(f"zoho record count of {module}: not a count: {count!r}")
        return int(count)

    def all_with(self, module: str, field: str, fields: Sequence[str] = ()) -> dict[str, list[dict[str, Any]]] | None:
        """Every record of ``module`` with a ``field``, per trimmed lower-cased value (oldest id first), read in
        pages of 2,000; None when the module holds more than COQL reaches (100,000): the caller looks up instead."""
        found: dict[str, list[dict[str, Any]]] = {}
        names = ", ".join(dict.fromkeys(["id", field, *fields]))
        offset = 0
        while True:
            query = f"select {names} from {module} where {field} is not null limit {COQL_MAX_LIMIT} offset {offset}"
            rows, more = self.select(query, module=module)
            for row in rows:
                if isinstance(row.get(field), str) and row.get("id"):
                    found.setdefault(row[field].strip().lower(), []).append(row)
            offset += COQL_MAX_LIMIT
            if not more:
                break
            if offset + COQL_MAX_LIMIT > COQL_MAX_REACH:
                return None
        for rows in found.values():
            rows.sort(key=lambda row: int(row["id"]) if str(row["id"]).isdigit() else 0)
        return found

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
