"""The files of Zoho's Bulk Write API, without a server: the CSV the job uploads and the result it downloads."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, timedelta, timezone

import pytest

from zoho_store_sync.errors import ZohoRequestError
from zoho_store_sync.zoho.bulk import _bulk_outcome, _csv_cell, bulk_csv_zip, parse_bulk_result


@pytest.mark.parametrize(
    "value, cell",
    [
        (None, ""),
        (True, "true"),
        (False, "false"),
        (12.5, "12.5"),
        (1.5e16, "15000000000000000.000000"),  # never exponent notation: Zoho would read 1.5e+16 as text
        (float("nan"), ""),
        (float("inf"), ""),
        (7, "7"),
        (datetime(2025, 7, 1, 12, 0), "2025-07-01T12:00:00+00:00"),  # naive means UTC
        (datetime(2025, 7, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))), "2025-07-01T12:00:00+02:00"),
        (date(2025, 7, 1), "2025-07-01"),
        ({"id": "4150868000000123"}, "4150868000000123"),
        ({"name": "Acme"}, "Acme"),
        ({}, ""),
        (["Red", "Blue"], "Red;Blue"),
        ("Zoë", "Zoë"),
    ],
)
def test_a_value_is_written_to_the_bulk_csv_as_zoho_reads_it(value, cell):
    assert _csv_cell(value) == cell


def test_the_bulk_file_names_its_columns_and_matches_lookups_by_id_or_name():
    records = [
        {"Email": "a@x.io", "Account_Name": {"id": "41"}, "Owner": {"name": "Ann"}},
        {"Email": "b@x.io", "Account_Name": None, "Owner": {"name": "Bob"}},
    ]
    payload, mappings = bulk_csv_zip(records, ["Email", "Account_Name", "Owner"], "leads.csv")
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        assert archive.read("leads.csv").decode() == "Email,Account_Name,Owner\na@x.io,41,Ann\nb@x.io,,Bob\n"
    assert mappings == [
        {"api_name": "Email", "index": 0},
        {"api_name": "Account_Name", "index": 1, "find_by": "id"},
        {"api_name": "Owner", "index": 2, "find_by": "name"},
    ]


@pytest.mark.parametrize(
    "row, code, message",
    [
        ({"STATUS": "Unprocessed"}, "UNPROCESSED", "the bulk job did not process this row"),
        ({"STATUS": "skipped", "RECORD_ID": "41"}, "SKIPPED", "bulk write row skipped"),
        ({}, "SKIPPED", "bulk write row without status"),
        (
            {"STATUS": "skipped", "ERRORS": "MANDATORY_NOT_FOUND-Last_Name,Company:INVALID_DATA-Email"},
            "MANDATORY_NOT_FOUND",
            "MANDATORY_NOT_FOUND (Last_Name, Company); INVALID_DATA (Email)",
        ),
    ],
)
def test_a_bulk_result_row_not_added_or_updated_is_a_failed_outcome_saying_why(row, code, message):
    outcome = _bulk_outcome(row)
    assert (outcome.ok, outcome.code, outcome.message) == (False, code, message)
    assert outcome.details.get("id") == row.get("RECORD_ID")


def _zip(**files: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_a_bulk_result_that_is_not_a_zip_of_a_csv_is_a_request_error():
    with pytest.raises(ZohoRequestError, match="not a zip"):
        parse_bulk_result(b"<html>Service unavailable</html>", [{"Email": "a@x.io"}])
    with pytest.raises(ZohoRequestError, match="holds no CSV"):
        parse_bulk_result(_zip(**{"readme.txt": "nothing"}), [{"Email": "a@x.io"}])


def test_a_bulk_result_is_read_row_by_row_for_the_records_sent():
    text = "Email,STATUS,RECORD_ID,ERRORS\r\na@x.io,Added,41,\r\nb@x.io,Updated,42,\r\n"
    outcomes = parse_bulk_result(_zip(**{"result.csv": "\ufeff" + text}), [{"Email": "A@x.io"}, {"Email": "b@x.io"}])
    assert [(o.ok, o.action, o.zoho_id) for o in outcomes] == [(True, "insert", "41"), (True, "update", "42")]
