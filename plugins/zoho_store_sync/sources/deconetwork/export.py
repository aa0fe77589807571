"""DecoNetwork's customer export, read and checked: the canonical columns of every customer it lists.

The customer export (``customers_export_url``, input (b) of ``extraction.py``) is a CSV read through
``ObjectStoragePath`` (``file://``, ``s3://conn_id@bucket/key``, ``gs://...``), UTF-8 with or without BOM, one row
per customer, header row with these columns (a contract of this project, based on DecoNetwork's customer CSV,
store-apis.md A.7; names are case-insensitive, unknown columns are ignored, empty cells are unknown values):

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
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
from pyarrow import csv as pa_csv

from zoho_store_sync.errors import DecoNetworkExportError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (  # the contract, in the order the sandbox writes them; the last two are optional
    "customer_id",
    "login",
    "email",
    "salutation",
    "firstname",
    "lastname",
    "company",
    "phone_number",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "date_added",
    "date_modified",
    "store",
    "store_url",
    "store_id",
    "store_owner",
    "newsletter",
    "deleted",
    "balance",
    "order_count",
    "total_order_value",
)
_TRUE = frozenset({"1", "yes", "y", "true", "t", "x"})


# ---- reading the file --------------------------------------------------------------------------------


def _path(url: str) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


_EXPORT_AGAIN = (
    "export the customers again from DecoNetwork (Business Hub > Customers) as a comma-separated "
    "UTF-8 CSV and replace the file whole"
)
_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "vertical bar"}
NO_DATA_ROWS = "the customer export has no data rows"


def _reject(url: str, problem: str, fix: str = "") -> DecoNetworkExportError:
    """The error for an export that cannot be read as the complete customer list: the file, what, what to do."""
    return DecoNetworkExportError(
        f"customer export {url}: {problem}. Nothing was synced or deleted. What to do: "
        f"{fix + ', or ' if fix else ''}{_EXPORT_AGAIN}"
    )


def _decode(url: str, data: bytes) -> str:
    if not data.strip():
        raise _reject(url, "the file is empty (not even a header row)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _reject(url, "the file is UTF-16 text, not UTF-8", "save it as 'CSV UTF-8 (comma delimited)'")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _reject(
            url,
            f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "save it as 'CSV UTF-8 (comma delimited)'",
        ) from None
    if "\x00" in text:
        raise _reject(url, "the file contains NUL bytes: it is not a text CSV (a spreadsheet file renamed .csv?)")
    return text


def _check_header(url: str, names: list[str]) -> None:
    for field_name in names:
        for delimiter, name in _OTHER_DELIMITERS.items():
            parts = {n.strip().lower() for n in field_name.split(delimiter)}
            # Known names joined by another delimiter, or the whole header one cell split by one.
            if len(parts & set(EXPORT_COLUMNS)) >= 2 or (len(names) == 1 and len(parts) > 1):
                raise _reject(
                    url,
                    f"the file is separated by {name}s ({delimiter!r}), not commas: its header "
                    f"reads {field_name[:80]!r}",
                    "save it as comma-separated CSV",
                )
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        if name:  # unnamed columns are ignored like any unknown column
            positions.setdefault(name, []).append(number)
    repeated = [
        f"{name!r} (columns {' and '.join(map(str, where))})" for name, where in positions.items() if len(where) > 1
    ]
    if repeated:
        raise _reject(
            url,
            f"the header names {', '.join(repeated)} more than once (names are case-insensitive), "
            "so it is unknown which column holds the data",
            "rename or remove the extra columns",
        )
    if "email" not in positions:
        raise _reject(url, f"no 'email' column (found: {', '.join(names)})", "name the email column 'email'")


def _width_problem(names: list[str], wrong: list[tuple[int, int, bool]], rows: int, last_line: int) -> str:
    """What is wrong when ``wrong`` (line, fields, last cell blank) of ``rows`` data rows do not have the
    header's width."""
    width = len(names)
    widths = {fields for _, fields, _ in wrong}
    if len(wrong) == rows and widths == {width + 1}:
        if all(blank for _, _, blank in wrong):
            return (
                f"every data row has {width + 1} fields but the header has {width}: the rows end with a "
                "trailing delimiter (a comma after the last cell), so every column would be read one place off"
            )
        return (
            f"every data row has {width + 1} fields but the header has {width}: a column has no name in the "
            "header, so every column after it would be read one place off"
        )
    if len(wrong) == rows and widths == {width - 1} and names[-1] == "":
        return (
            f"every data row has {width - 1} fields but the header has {width}: the header ends with a "
            "trailing delimiter (a comma after the last name) that the rows do not have"
        )
    line, fields, _ = wrong[0]
    if len(wrong) == 1 and line == last_line and fields < width:
        return (
            f"the last data row (line {line}) has {fields} fields but the header has {width}: the file looks "
            "cut short (truncated while copied or written)"
        )
    return (
        f"{len(wrong)} of {rows} data rows do not have the header's {width} fields (line {line} has {fields}); "
        "a cell that holds a comma must be quoted"
    )


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
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    if body.count(b'"') % 2:
        return None
    names = [f"c{i}" for i in range(len(header))]  # positional: header names may be empty
    try:
        table = pa_csv.read_csv(
            io.BytesIO(body),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            # Every cell as text, and "NA"/"null" stay names, not missing values.
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
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
            raise _reject(
                url,
                f"the file ends inside a quoted cell opened at line {start}: it looks cut short "
                "(truncated while copied or written), or that cell's opening quote is never "
                "closed",
            ) from None
        raise _reject(
            url,
            f"not valid CSV at line {start}: {exc} (a quote inside a quoted cell must be doubled)",
            "fix the quoting",
        ) from None
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
        raise DecoNetworkExportError(
            f"customer export not found at {url}: export the customers from "
            "DecoNetwork (Business Hub > Customers) to that location"
        ) from None
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
    for column in (
        "salutation",
        "firstname",
        "lastname",
        "company",
        "phone_number",
        "address",
        "city",
        "state",
        "zip",
        "store",
        "store_url",
        "store_id",
    ):
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
        log.warning(
            "customer export: %d rows repeat a customer_id; the first row of each id is used", before - len(out)
        )
    return out.reset_index(drop=True)
