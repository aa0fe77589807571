"""DecoNetwork source: buyers from the Order Management API, everyone else from the customer export, merged.

DecoNetwork publishes an order API but no customer API (store-apis.md A.0), so a tenant's customers come
from two inputs, either or both (``DecoNetworkOptions``):

**(a) Orders** (``use_order_api``): ``/api/json/manage_orders/find`` gives every *buying* customer. An order
*counts* when it was ordered (``date_ordered`` set: a quote is not a purchase) and is not cancelled
(``order_status_name`` Cancelled/Canceled/Void/Voided; DecoNetwork's status numbers are undocumented, so
numbers alone never exclude an order). ``order_count`` is the number of counted orders and
``total_order_value`` the sum of their ``billable_amount`` (what the customer was invoiced: items, shipping,
tax and fees, less discounts, coupons and gift certificates; store credit used still counts as spend).
A buyer's profile (name, company, phone, address) comes from the billing details of their most recently
placed order. The customer is ``customer_id`` (else ``billing_details.user_id``); an order without an id (a
guest checkout) belongs to the export row with its email, else to a guest keyed ``email:<address>``.

**(b) The customer export** (``customers_export_url``): a CSV read through ``ObjectStoragePath`` (``file://``,
``s3://conn_id@bucket/key``, ``gs://...``), UTF-8 with or without BOM, one row per customer, header row
with these columns (a contract of this project, based on DecoNetwork's customer CSV, store-apis.md A.7;
names are case-insensitive, unknown columns are ignored, empty cells are unknown values):

* ``customer_id``: DecoNetwork's customer id, the join key with orders; empty: matched by email.
* ``login``: the account login; **empty means a newsletter-only subscriber** (not registered). Without a
  login column every row counts as registered.
* ``email`` (required), ``salutation``, ``firstname``, ``lastname``, ``company``, ``phone_number``,
  ``address``, ``city``, ``state``, ``zip``, and ``country`` as DecoNetwork shows it (→ ``country_name``).
* ``date_added``: registration time; ``date_modified`` (optional): the row's last change.
* ``store``, ``store_url``: the store the customer belongs to; ``store_id``: its id (what affiliate
  tenants list in ``store_ids``); ``store_owner``: ``me`` or ``affiliate`` ("The new store belongs to me /
  to someone else"); anything but ``affiliate`` counts as the site owner's store.
* ``newsletter``: 1/0 (also yes/no, true/false, y/n, x); ``deleted``: 1/0, the customer is on DecoNetwork's
  "Deleted" tab; ``balance``: available store credit.
* ``order_count``, ``total_order_value``: optional, used only when the tenant does not read the order API.

A file that cannot be the complete customer list is refused with DecoNetworkExportError (naming the file and
what to do; the run fails at once, nothing is sent or deleted): not UTF-8, not comma-separated, a header
name twice, any data row with more or fewer cells than the header (a trailing delimiter on every row, a
last row cut short), or a quoted cell still open at the end of the file. Read any other way, such a file is a
table one column off, without a column or without its last rows, and its missing customers look deleted.
A header without rows is read as no rows, but that pass is not provably complete (``incomplete_reason``): it
gives no ``all_customer_keys``, so no deletion is detected on it, and it does not count as a full pass.
A file cut exactly at a line end cannot be told from a shorter export: write it whole (to a temporary name,
then rename).

**Which field comes from where** when both inputs are read: ``order_count`` and ``total_order_value`` from
the orders; ``store``, ``store_url``, ``store_id``, store ownership, ``newsletter``, ``deleted``, ``balance``
and registration from the export; name, salutation, company and phone from the export, a blank export
cell filled from the latest order; the address as one block (street, city, state, zip, country), from the
export when the row has any part of an address, else from the latest order, so parts are never mixed.
A buyer the export does not list (a guest, or a customer added after the export was made) has the site
URL as ``store_url``, no store id, and counts as the site owner's.

**Only one input**: orders only gives the customers who placed orders: buyers (Contacts), and accounts
whose orders are all quotes or cancelled (registered without a purchase: Leads); no newsletter-only
subscribers, no registered customers who never ordered, no deleted flag, balance or store (affiliate
tenants need the export to know their stores). Export only gives order figures only from the
export's optional ``order_count``/``total_order_value`` columns; without them every customer has 0 orders
and nobody is a Contact.

**Incremental passes.** A full pass reads all orders (Date Modified >= 2000-01-01) and hands on every
customer; it runs on the first run, when the inputs changed, when ``full_every_hours`` passed since the
last one, or when the copy of the order table is gone. In between, orders are read with
``field=date_modified_field, condition=6 (>=), date1=<latest date_modified seen> - overlap_minutes`` (the
site's own clock, so no time zone or clock skew is involved), merged into a copy of the order table kept
as Parquet under ``state_url`` (so the complete order count and profile of each changed customer are known
without re-reading all orders), and the customers of those orders are handed on. The export is read on every
pass (it is one file); when its SHA-256 changed since the last pass, all its rows are handed on and the
pipeline's diff-hash finds the few that really changed. Without ``state_url`` every pass is full.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd
import pyarrow as pa
from pyarrow import csv as pa_csv

from zoho_store_sync.config import DecoNetworkOptions
from zoho_store_sync.customers import conform, empty_customers, normalise_email
from zoho_store_sync.errors import DecoNetworkExportError  # noqa: F401 - re-exported
from zoho_store_sync.sources.deconetwork.hook import GREATER_OR_EQUAL, DecoNetworkHook
from zoho_store_sync.sources import SourceExtract

if TYPE_CHECKING:
    from zoho_store_sync.config import TenantConfig

log = logging.getLogger(__name__)

CURSOR_VERSION = 1
SITE_TS = "%Y-%m-%dT%H:%M:%S"  # the doc's example format
ALL_ORDERS_SINCE = "2000-01-01T00:00:00"  # a full pass: Date Modified >= this (a condition is mandatory)
CANCELLED_STATUS_NAMES = frozenset({"cancelled", "canceled", "void", "voided"})
ADDRESS_FIELDS = ("address", "city", "state", "zip", "country_name")
PROFILE_FIELDS = ("firstname", "lastname", "company", "phone_number", *ADDRESS_FIELDS)
EXPORT_COLUMNS = (  # the contract, in the order the sandbox writes them; the last two are optional
    "customer_id", "login", "email", "salutation", "firstname", "lastname", "company", "phone_number", "address",
    "city", "state", "zip", "country", "date_added", "date_modified", "store", "store_url", "store_id",
    "store_owner", "newsletter", "deleted", "balance", "order_count", "total_order_value")
ORDER_COLUMNS = ("order_id", "customer_id", "email", *PROFILE_FIELDS, "date_ordered", "date_modified", "counted",
                 "value")
_TRUE = frozenset({"1", "yes", "y", "true", "t", "x"})


# ---- (b) the customer export ---------------------------------------------------------------------------

def _path(url: str):  # type: ignore[no-untyped-def]
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


_EXPORT_AGAIN = ("export the customers again from DecoNetwork (Business Hub > Customers) as a comma-separated "
                 "UTF-8 CSV and replace the file whole")
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "vertical bar"}
NO_DATA_ROWS = "the customer export has no data rows"


def _reject(url: str, problem: str, fix: str = "") -> DecoNetworkExportError:
    """The error for an export that cannot be read as the complete customer list: the file, what, what to do."""
    return DecoNetworkExportError(f"customer export {url}: {problem}. Nothing was synced or deleted. What to do: "
                                  f"{fix + ', or ' if fix else ''}{_EXPORT_AGAIN}")


def _decode(url: str, data: bytes) -> str:
    if not data.strip():
        raise _reject(url, "the file is empty (not even a header row)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _reject(url, "the file is UTF-16 text, not UTF-8", "save it as 'CSV UTF-8 (comma delimited)'")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _reject(url, f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                      "save it as 'CSV UTF-8 (comma delimited)'") from None
    if "\x00" in text:
        raise _reject(url, "the file contains NUL bytes: it is not a text CSV (a spreadsheet file renamed .csv?)")
    return text


def _check_header(url: str, names: list[str]) -> None:
    for field_name in names:
        for delimiter, name in _OTHER_DELIMITERS.items():
            parts = {n.strip().lower() for n in field_name.split(delimiter)}
            # Known names joined by another delimiter, or the whole header one cell split by one.
            if len(parts & set(EXPORT_COLUMNS)) >= 2 or (len(names) == 1 and len(parts) > 1):
                raise _reject(url, f"the file is separated by {name}s ({delimiter!r}), not commas: its header "
                                   f"reads {field_name[:80]!r}", "save it as comma-separated CSV")
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        if name:  # unnamed columns are ignored like any unknown column
            positions.setdefault(name, []).append(number)
    repeated = [f"{name!r} (columns {' and '.join(map(str, where))})" for name, where in positions.items()
                if len(where) > 1]
    if repeated:
        raise _reject(url, f"the header names {', '.join(repeated)} more than once (names are case-insensitive), "
                           "so it is unknown which column holds the data", "rename or remove the extra columns")
    if "email" not in positions:
        raise _reject(url, f"no 'email' column (found: {', '.join(names)})", "name the email column 'email'")


def _width_problem(names: list[str], wrong: list[tuple[int, int, bool]], rows: int, last_line: int) -> str:
    """What is wrong when ``wrong`` (line, fields, last cell blank) of ``rows`` data rows do not have the
    header's width."""
    width = len(names)
    widths = {fields for _, fields, _ in wrong}
    if len(wrong) == rows and widths == {width + 1}:
        if all(blank for _, _, blank in wrong):
            return (f"every data row has {width + 1} fields but the header has {width}: the rows end with a "
                    "trailing delimiter (a comma after the last cell), so every column would be read one place off")
        return (f"every data row has {width + 1} fields but the header has {width}: a column has no name in the "
                "header, so every column after it would be read one place off")
    if len(wrong) == rows and widths == {width - 1} and names[-1] == "":
        return (f"every data row has {width - 1} fields but the header has {width}: the header ends with a "
                "trailing delimiter (a comma after the last name) that the rows do not have")
    line, fields, _ = wrong[0]
    if len(wrong) == 1 and line == last_line and fields < width:
        return (f"the last data row (line {line}) has {fields} fields but the header has {width}: the file looks "
                "cut short (truncated while copied or written)")
    return (f"{len(wrong)} of {rows} data rows do not have the header's {width} fields (line {line} has {fields}); "
            "a cell that holds a comma must be quoted")


def parse_export(url: str, data: bytes) -> pd.DataFrame:
    """The export's bytes as a frame of text cells, one column per header name (stripped, lower case).

    Only a file that can be the complete customer list is read: UTF-8, comma-separated, unique header names,
    every data row exactly as wide as the header, no quoted cell left open at the end. Anything else raises
    DecoNetworkExportError naming the file and the fix, because a table read one column off, with a column
    dropped or with rows missing makes customers look deleted (issue 12). Blank lines are skipped.
    """
    text = _decode(url, data)
    header, header_lines = _header(url, text)
    _check_header(url, header)
    frame = _read_fast(data, header) if header_lines == 1 else None
    # Anything the fast reader does not take as plainly regular is read again, strictly, to say what is wrong.
    return frame if frame is not None else _read_strict(url, text)


def _header(url: str, text: str) -> tuple[list[str], int]:
    """The first non-blank record's names (stripped, lower case) and the physical lines read up to its end."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        for row in reader:
            if len(row) > 1 or "".join(row).strip():
                return [name.strip().lower() for name in row], reader.line_num
    except csv.Error as exc:
        raise _reject(url, f"the header is not valid CSV: {exc}", "fix the header row") from None
    raise _reject(url, "the file has no header row")


def _read_fast(data: bytes, header: list[str]) -> pd.DataFrame | None:
    """The data rows by Arrow's CSV reader (several times faster than the csv module), or None when the file
    is not plainly regular: a row of another width, or an odd number of quotes (a quoted cell left open at the
    end, which Arrow would take as complete, or a stray quote)."""
    body = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    if body.count(b'"') % 2:
        return None
    names = [f"c{i}" for i in range(len(header))]  # positional: header names may be empty
    try:
        table = pa_csv.read_csv(
            io.BytesIO(body), read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            # Every cell as text, and "NA"/"null" stay names, not missing values.
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowException:
        return None
    frame = table.to_pandas()
    frame.columns = header
    return frame


def _read_strict(url: str, text: str) -> pd.DataFrame:
    """The csv module, strict quoting, every row's width checked: the frame, or the error saying what is wrong."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    wrong: list[tuple[int, int, bool]] = []  # (line, fields, last cell blank) of rows of another width
    start = last_row = 1  # the line the current row starts on; the line the last data row started on
    try:
        for row in reader:
            if len(row) <= 1 and not "".join(row).strip():
                start = reader.line_num + 1
                continue  # a blank line
            if header is None:
                header = [name.strip().lower() for name in row]
            else:
                if len(row) != len(header):
                    wrong.append((start, len(row), not row[-1].strip()))
                rows.append(row)
                last_row = start
            start = reader.line_num + 1
    except csv.Error as exc:
        if "end of data" in str(exc):  # strict mode says so only at the end of the file, inside quotes
            raise _reject(url, f"the file ends inside a quoted cell opened at line {start}: it looks cut short "
                               "(truncated while copied or written), or that cell's opening quote is never "
                               "closed") from None
        raise _reject(url, f"not valid CSV at line {start}: {exc} (a quote inside a quoted cell must be doubled)",
                      "fix the quoting") from None
    assert header is not None  # _header found it
    if wrong:
        raise _reject(url, _width_problem(header, wrong, len(rows), last_row))
    return pd.DataFrame(rows, columns=header, dtype=str) if rows else pd.DataFrame(columns=header, dtype=str)


def read_export(url: str) -> tuple[pd.DataFrame, str]:
    """The export's rows in canonical names (see the module docstring) and the file's SHA-256."""
    try:
        data = _path(url).read_bytes()
    except FileNotFoundError:
        # Never read a missing file as "no customers": that would look like every customer was deleted.
        raise DecoNetworkExportError(f"customer export not found at {url}: export the customers from "
                                     "DecoNetwork (Business Hub > Customers) to that location") from None
    checksum = hashlib.sha256(data).hexdigest()
    return export_rows(parse_export(url, data)), checksum


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    values = frame[column].astype("string").str.strip()
    return values.mask(values == "")


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    return _text(frame, column).str.lower().isin(_TRUE).fillna(False).astype(bool)


def export_rows(raw: pd.DataFrame) -> pd.DataFrame:
    """Text cells of the export → typed columns named like the canonical frame (plus ``customer_id``)."""
    out = pd.DataFrame(index=raw.index)
    out["customer_id"] = _text(raw, "customer_id")
    out["email"] = _text(raw, "email")
    for column in ("salutation", "firstname", "lastname", "company", "phone_number", "address", "city", "state",
                   "zip", "store", "store_url", "store_id"):
        out[column] = _text(raw, column)
    out["country_name"] = _text(raw, "country")
    out["store_is_mine"] = _text(raw, "store_owner").str.lower().ne("affiliate").fillna(True).astype(bool)
    out["newsletter"] = _flag(raw, "newsletter")
    out["deleted"] = _flag(raw, "deleted")
    out["balance"] = pd.to_numeric(_text(raw, "balance"), errors="coerce")
    out["registered"] = _text(raw, "login").notna() if "login" in raw.columns else True
    out["export_order_count"] = pd.to_numeric(_text(raw, "order_count"), errors="coerce")
    out["export_total_order_value"] = pd.to_numeric(_text(raw, "total_order_value"), errors="coerce")
    out["export_updated_at"] = _text(raw, "date_modified").fillna(_text(raw, "date_added"))
    before = len(out)
    with_id = out["customer_id"].notna()
    out = pd.concat([out[with_id].drop_duplicates("customer_id", keep="first"), out[~with_id]]).sort_index()
    if len(out) < before:
        log.warning("customer export: %d rows repeat a customer_id; the first row of each id is used",
                    before - len(out))
    return out.reset_index(drop=True)


# ---- (a) orders ----------------------------------------------------------------------------------------

def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _customer_id(order: dict[str, Any]) -> str | None:
    billing = order.get("billing_details") or {}
    for value in (order.get("customer_id"), billing.get("user_id") if isinstance(billing, dict) else None):
        text = _str_or_none(value)
        if text and text != "0":  # 0: no account
            return text
    return None


def _amount(value: Any) -> float:
    try:
        return float(str(value).replace(",", "")) if value not in (None, "") else 0.0
    except ValueError:
        return 0.0


def order_rows(orders: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per order with what the customers need: id, customer, billing profile, dates, counted, value."""
    rows = []
    for o in orders:
        billing = o.get("billing_details") if isinstance(o.get("billing_details"), dict) else {}
        status_name = str(o.get("order_status_name") or "").strip().lower()
        ordered = _str_or_none(o.get("date_ordered"))
        rows.append((
            str(o.get("order_id")), _customer_id(o), _str_or_none(billing.get("email")),
            _str_or_none(billing.get("firstname")), _str_or_none(billing.get("lastname")),
            _str_or_none(billing.get("company")), _str_or_none(billing.get("ph_number")),
            _str_or_none(billing.get("street")), _str_or_none(billing.get("city")),
            _str_or_none(billing.get("state")), _str_or_none(billing.get("postcode")),
            _str_or_none(billing.get("country_code")), ordered, _str_or_none(o.get("date_modified")),
            ordered is not None and status_name not in CANCELLED_STATUS_NAMES, _amount(o.get("billable_amount")),
        ))
    frame = pd.DataFrame(rows, columns=list(ORDER_COLUMNS))
    for column in ORDER_COLUMNS[:-2]:
        frame[column] = frame[column].astype("string")
    frame["counted"] = frame["counted"].astype(bool)
    frame["value"] = frame["value"].astype("float64")
    return frame


def _parse_site_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=None)  # the site's wall clock, as the API compares it


def _max_modified(orders: pd.DataFrame) -> str | None:
    stamps = [t for t in (_parse_site_ts(v) for v in orders["date_modified"].dropna()) if t is not None]
    return max(stamps).strftime(SITE_TS) if stamps else None


# ---- merging -------------------------------------------------------------------------------------------

def _email_key(emails: pd.Series) -> pd.Series:
    return ("email:" + normalise_email(emails)).astype("string")


def _keys(export: pd.DataFrame | None, orders: pd.DataFrame) -> tuple[pd.Series | None, pd.Series]:
    """customer_key of every export row and of every order (the rules in the module docstring)."""
    order_email = normalise_email(orders["email"])
    export_keys = None
    by_email: dict[str, str] = {}
    if export is not None:
        email = normalise_email(export["email"])
        # An export row without an id takes the id its buyer has in the orders, if any.
        ids_by_email = (pd.DataFrame({"email": order_email, "id": orders["customer_id"]}).dropna()
                        .drop_duplicates("email").set_index("email")["id"])
        known_ids = set(export["customer_id"].dropna())
        adopted = email.map(ids_by_email).astype("string")
        adopted = adopted.mask(adopted.isin(known_ids))
        export_keys = export["customer_id"].fillna(adopted).fillna(_email_key(export["email"]))
        export_keys = export_keys.fillna(pd.Series([f"export-row:{i}" for i in export.index], index=export.index,
                                                   dtype="string"))
        for e, k in sorted(zip(email.dropna(), export_keys[email.notna()])):
            by_email.setdefault(e, k)  # an email in several stores: the guest order goes to the first
    fallback = order_email.map(by_email).astype("string").fillna(_email_key(orders["email"]))
    fallback = fallback.fillna(("order:" + orders["order_id"]).astype("string"))
    return export_keys, orders["customer_id"].fillna(fallback).astype("string")


def _order_customers(orders: pd.DataFrame, keys: pd.Series) -> pd.DataFrame:
    """Per customer_key: order_count, total_order_value, the latest order's profile, last modification."""
    frame = orders.assign(customer_key=keys, _id=pd.to_numeric(orders["order_id"], errors="coerce"),
                          _ordered=orders["date_ordered"].fillna(""))
    counted = frame[frame["counted"]]
    totals = counted.groupby("customer_key")["value"].agg(["count", "sum"]).rename(
        columns={"count": "order_count", "sum": "total_order_value"})
    latest = (frame.sort_values(["customer_key", "_ordered", "_id", "order_id"], kind="mergesort")
              .drop_duplicates("customer_key", keep="last").set_index("customer_key"))
    out = latest[["email", *PROFILE_FIELDS]].copy()
    out["orders_updated_at"] = frame.groupby("customer_key")["date_modified"].max()
    out = out.join(totals)
    out["order_count"] = out["order_count"].fillna(0).astype("int64")
    out["total_order_value"] = out["total_order_value"].fillna(0.0).round(2)
    return out


def merge_customers(export: pd.DataFrame | None, orders: pd.DataFrame | None, site_url: str | None) -> pd.DataFrame:
    """The canonical frame of every customer from the export rows and/or the order rows."""
    orders = orders if orders is not None else order_rows([])
    export_keys, order_keys = _keys(export, orders)
    buyers = _order_customers(orders, order_keys) if len(orders) else None
    if export is not None:
        frame = export.assign(customer_key=export_keys).drop_duplicates("customer_key").set_index("customer_key")
    else:
        frame = pd.DataFrame(index=pd.Index([], dtype="string", name="customer_key"))
    if buyers is not None:
        frame = frame.join(buyers.add_prefix("o_"), how="outer")
        only_orders = frame["o_email"].notna() & ~frame.index.isin(export_keys if export_keys is not None else [])
        for column in ("email", "firstname", "lastname", "company", "phone_number"):
            frame[column] = _col(frame, column).fillna(frame[f"o_{column}"])
        # The address is one block: the export's when it has any part of one, else the latest order's.
        has_address = pd.concat([_col(frame, c).notna() for c in ADDRESS_FIELDS], axis=1).any(axis=1)
        for column in ADDRESS_FIELDS:
            frame[column] = _col(frame, column).where(has_address, frame[f"o_{column}"])
        frame["order_count"] = frame["o_order_count"].fillna(0).astype("int64")
        frame["total_order_value"] = frame["o_total_order_value"].fillna(0.0)
        frame["store_url"] = _col(frame, "store_url").mask(only_orders, site_url)
        frame["store_is_mine"] = _col(frame, "store_is_mine").mask(only_orders, True)
        # A buyer with an account id is registered even when the export does not (yet) list them.
        registered = ~frame.index.to_series().str.contains(":", regex=False)
        frame["registered"] = _col(frame, "registered").mask(only_orders, registered)
        frame["source_updated_at"] = _later(_col(frame, "export_updated_at"), frame["o_orders_updated_at"])
    else:
        frame["order_count"] = _col(frame, "export_order_count").fillna(0)
        frame["total_order_value"] = _col(frame, "export_total_order_value").fillna(0.0)
        frame["source_updated_at"] = _col(frame, "export_updated_at")
    frame["full_name"] = _full_name(_col(frame, "firstname"), _col(frame, "lastname"))
    frame = frame.reset_index().rename(columns={"index": "customer_key"})
    if "customer_key" not in frame.columns:
        frame["customer_key"] = pd.Series(dtype="string")
    return conform(frame.sort_values("customer_key", kind="mergesort"))


def _col(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column] if column in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="object")


def _later(a: pd.Series, b: pd.Series) -> pd.Series:
    """The later of two ISO timestamp columns (strings of one format compare in time order)."""
    a, b = a.astype("string").fillna(""), b.astype("string").fillna("")
    later = a.where(a >= b, b)
    return later.mask(later == "")


def _full_name(first: pd.Series, last: pd.Series) -> pd.Series:
    joined = (first.astype("string").fillna("") + " " + last.astype("string").fillna("")).str.strip()
    return joined.mask(joined == "")


# ---- the order copy between incremental passes ---------------------------------------------------------

def _read_copy(url: str | None) -> pd.DataFrame | None:
    if not url:
        return None
    path = _path(url)
    if not path.exists():
        return None
    with path.open("rb") as handle:
        frame = pd.read_parquet(handle)
    if list(frame.columns) != list(ORDER_COLUMNS):
        return None  # written by another version: rebuild with a full pass
    return frame


def _write_copy(state_url: str, orders: pd.DataFrame, now: datetime, keep: str | None) -> str:
    """A new file per pass: the cursor names the one it covers, so a failed run never leaves a bad copy."""
    folder = _path(state_url)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"{state_url.rstrip('/')}/orders-{now.strftime('%Y%m%dT%H%M%S%f')}.parquet"
    with _path(url).open("wb") as handle:
        orders.to_parquet(handle, index=False)
    keep_names = {url.rsplit("/", 1)[-1], (keep or "").rsplit("/", 1)[-1]}
    for child in folder.iterdir():
        if re.fullmatch(r"orders-\d{8}T\d{12}\.parquet", child.name) and child.name not in keep_names:
            child.unlink()  # copies of older passes (or of a run whose cursor was never saved)
    return url


# ---- the extraction ------------------------------------------------------------------------------------

def _full_reason(cursor: dict[str, Any] | None, inputs: dict[str, Any], now: datetime, full_every_hours: float,
                 state_url: str | None) -> str | None:
    if not cursor:
        return "no cursor: first run, reset or forced"
    if cursor.get("version") != CURSOR_VERSION:
        return "cursor of another version"
    if cursor.get("inputs") != inputs:
        return "inputs changed"
    last_full = cursor.get("last_full_at")
    try:
        elapsed = now - datetime.fromisoformat(last_full) if last_full else None
    except ValueError:
        elapsed = None
    if elapsed is None or elapsed >= timedelta(hours=full_every_hours):
        return f"last full pass over {full_every_hours:g} h ago"
    if inputs["orders"] and not state_url:
        return "no state_url to keep the order copy"
    return None


def extract(hook: DecoNetworkHook | None, options: DecoNetworkOptions, cursor: dict[str, Any] | None, *,
            full_every_hours: float = 24.0, now: datetime | None = None,
            state_url: str | None = None) -> SourceExtract:
    """The tenant's customers: all of them on a full pass, those changed since ``cursor`` otherwise.

    :param state_url: an ObjectStoragePath folder, private to the tenant, where the copy of the order table
        is kept between passes (``<staging root>/<tenant>/deconetwork``); without it every pass is full.
    """
    use_orders = options.use_order_api
    if use_orders and hook is None:
        raise ValueError("DecoNetwork options say use_order_api but no hook was given")
    if not use_orders and not options.customers_export_url:
        raise ValueError("DecoNetwork tenant reads nothing: set use_order_api or customers_export_url")
    now = now or datetime.now(timezone.utc)
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    inputs = {"orders": use_orders, "export": options.customers_export_url,
              "date_modified_field": options.date_modified_field}
    reason = _full_reason(cursor, inputs, now, full_every_hours, state_url)
    previous: pd.DataFrame | None = None
    if reason is None and use_orders:
        previous = _read_copy((cursor or {}).get("orders_copy"))
        if previous is None:
            reason = "order copy missing"
    full = reason is not None
    calls_before = hook.calls if hook is not None else 0

    export, checksum = read_export(options.customers_export_url) if options.customers_export_url else (None, None)
    # A header without rows is a well-formed file, but no store loses every customer at once: far more likely
    # an export made while the list was loading, or a filter left on. Its customers are unknown, not gone.
    incomplete = NO_DATA_ROWS if export is not None and export.empty else None
    orders: pd.DataFrame | None = None
    fetched = order_rows([])
    # A full pass that could not detect deletions does not count as one: the next run is full again.
    new_cursor: dict[str, Any] = {"version": CURSOR_VERSION, "inputs": inputs, "export_sha256": checksum,
                                  "last_full_at": now.isoformat() if full and not incomplete
                                  else (cursor or {}).get("last_full_at")}
    if use_orders:
        assert hook is not None
        since = ALL_ORDERS_SINCE
        high_water = None if full else (cursor or {}).get("orders_modified_max")
        if high_water and (mark := _parse_site_ts(high_water)) is not None:
            since = max(mark - timedelta(minutes=options.overlap_minutes),
                        datetime.fromisoformat(ALL_ORDERS_SINCE)).strftime(SITE_TS)
        pages = hook.find_orders([(options.date_modified_field, GREATER_OR_EQUAL, since, None, None)])
        fetched = order_rows(order for page in pages for order in page)
        if full or previous is None:
            orders = fetched
        else:
            orders = pd.concat([previous[~previous["order_id"].isin(fetched["order_id"])], fetched],
                               ignore_index=True)
        orders = orders.drop_duplicates("order_id", keep="last").sort_values("order_id", kind="mergesort")
        orders = orders.reset_index(drop=True)
        new_cursor["orders_modified_max"] = _max_modified(orders) or (cursor or {}).get("orders_modified_max")
        new_cursor["orders_copy"] = (_write_copy(state_url, orders, now, (cursor or {}).get("orders_copy"))
                                     if state_url else None)

    customers = merge_customers(export, orders, hook.site_url if hook is not None else None)
    if not full:
        changed = _changed_keys(export, orders, previous, fetched,
                                export_changed=checksum != (cursor or {}).get("export_sha256"))
        customers = customers[customers["customer_key"].isin(changed)].reset_index(drop=True)
    calls = (hook.calls - calls_before) if hook is not None else 0
    log.info("deconetwork %s pass%s: %d orders read in %d calls, export %s, %d customers handed on",
             "full" if full else "incremental", f" ({reason})" if reason else "", len(fetched), calls,
             f"{len(export)} rows" if export is not None else "not used", len(customers))
    if incomplete:
        log.warning("customer export %s: %s; its customers are unknown, not deleted: no deletion is detected",
                    options.customers_export_url, incomplete)
    return SourceExtract(
        customers=customers if len(customers) else empty_customers(),
        full=full,
        cursor=new_cursor,
        # Absence from this list deletes (or flags) in Zoho: only a read that is provably the whole store gives it.
        all_customer_keys=customers["customer_key"].astype(str).tolist() if full and not incomplete else None,
        calls=calls,
        incomplete_reason=incomplete,
        customer_list_empty=export is not None and not len(export),
    )


def extract_tenant(tenant: TenantConfig, cursor: dict[str, Any] | None, *, state_url: str,
                   full_every_hours: float) -> SourceExtract:
    """The registry's entry point (``zoho_store_sync.sources.registry``): the tenant's site through its Connection
    (only when it reads the order API) and its ``deconetwork`` options. ``state_url`` keeps the copy of the order
    table between runs (the order API cannot search by customer)."""
    options = tenant.deconetwork
    hook = DecoNetworkHook(tenant.store_conn_id) if options.use_order_api else None
    return extract(hook, options, cursor, full_every_hours=full_every_hours, state_url=state_url)


def _changed_keys(export: pd.DataFrame | None, orders: pd.DataFrame | None, previous: pd.DataFrame | None,
                  fetched: pd.DataFrame, *, export_changed: bool) -> set[str]:
    """Customers whose data may have changed: of every order read (its customer now and before), and every
    export row when the export file changed."""
    changed: set[str] = set()
    if orders is not None and len(fetched):
        both = pd.concat([fetched, previous[previous["order_id"].isin(fetched["order_id"])]]
                         if previous is not None else [fetched], ignore_index=True)
        # Resolve with the whole order table so an id-less export row adopts the same id as in the merge.
        export_keys, keys = _keys(export, pd.concat([orders, both], ignore_index=True))
        changed.update(keys.iloc[len(orders):].dropna().astype(str))
    if export is not None and export_changed:
        export_keys, _ = _keys(export, orders if orders is not None else order_rows([]))
        changed.update(export_keys.dropna().astype(str))
    return changed


__all__ = ["extract", "extract_tenant", "EXPORT_COLUMNS", "read_export", "parse_export", "export_rows", "order_rows",
           "merge_customers", "DecoNetworkExportError", "CANCELLED_STATUS_NAMES", "NO_DATA_ROWS"]
