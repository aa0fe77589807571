"""The tenant's phone book: parsed phones kept between runs never change a result, and only new numbers are parsed."""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from pathlib import Path

import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from zoho_store_sync import field_values, phone_book, staging
from zoho_store_sync.customers import prepare
from zoho_store_sync.mapping import Mapping, build_payloads, with_org_lengths

TENANT_ID = "phones"
TOO_LONG = "+1 415 555 0132 0000 0000 0000 0000 0000"
# (number, country): valid and invalid numbers, regions by code, name and alias, written with + or 00, none at all.
CUSTOMERS = [
    ("(415) 555-0132", "US"),
    ("(415) 555-0132", "us"),
    ("(415) 555-0132", "United Kingdom"),  # the same digits in another region: another answer
    ("020 7946 0958", "United Kingdom"),
    ("020 7946 0958", "UK"),
    ("020 7946 0958", "gb"),
    ("+61 2 9374 4000", None),
    ("0061 2 9374 4000", "France"),
    ("030 901820", None),  # the default region (DE)
    ("030 901820", "Atlantis"),  # an unknown country: the default region too
    ("01 42 68 53 00", "FR"),
    ("022 2778 0000", "India"),
    ("12", "US"),
    ("not a number", "US"),
    (TOO_LONG, "US"),
    ("+44 7911 123456", "DE"),
    ("", "US"),
    ("   ", "US"),
    (None, "US"),
    (None, None),
    ("(415) 555-0132", None),
    ("+1 (415) 555-0132", "Russia"),
]
MAX_LENGTHS = (30, 12)  # 12: the UK numbers' 13 characters do not fit


def phones_one_by_one(numbers: list, countries: list, default_region: str | None, max_length: int) -> list:
    """What ``phones`` returned before the phone book: each customer's number parsed in its own country's region."""
    out = []
    for number, country in zip(numbers, countries):
        if not isinstance(number, str) or not number.strip():
            out.append(None)
            continue
        value = field_values.e164(number, field_values.region_of(country, default_region))
        out.append(value if value is not None and len(value) <= max_length else None)
    return out


def customers(rows: list[tuple[str | None, str | None]] = CUSTOMERS) -> tuple[pd.Series, pd.Series]:
    frame = pd.DataFrame(rows, columns=["phone_number", "country_name"], dtype="string")
    return frame["phone_number"], frame["country_name"]


def book(full_pass: bool = True) -> phone_book.PhoneBook:
    return field_values.phone_book(TENANT_ID, full_pass=full_pass)


def book_path() -> Path:
    return Path(phone_book.url_of(TENANT_ID).removeprefix("file://"))


def looked_up(max_length: int = 30, the_book: phone_book.PhoneBook | None = None, rows: list = CUSTOMERS) -> list:
    numbers, countries = customers(rows)
    out = field_values.phones(numbers, countries, "DE", max_length, the_book)
    assert out.dtype == "string" and out.index.equals(numbers.index)
    return [None if pd.isna(v) else v for v in out.tolist()]


def expected(max_length: int = 30, rows: list = CUSTOMERS) -> list:
    numbers, countries = zip(*rows)
    return phones_one_by_one(list(numbers), list(countries), "DE", max_length)


@pytest.fixture(autouse=True)
def own_staging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOHO_SYNC_STAGING_URL", f"file://{tmp_path}/staging")


def test_the_set_covers_valid_invalid_and_over_long_numbers():
    answers = expected(30)
    assert "+14155550132" in answers and "+442079460958" in answers and "+61293744000" in answers
    assert "+4930901820" in answers and "+33142685300" in answers and "+912227780000" in answers
    assert answers.count(None) >= 8
    assert expected(12).count(None) > answers.count(None)  # some fit 30 characters, not 12


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_without_a_book_each_number_is_what_parsing_it_alone_gives(max_length):
    assert looked_up(max_length) == expected(max_length)


@pytest.mark.parametrize("max_length", MAX_LENGTHS)
def test_a_cold_then_a_warm_book_give_what_parsing_each_number_gives(max_length):
    cold = book()
    assert looked_up(max_length, cold) == expected(max_length)
    cold.save()
    warm = book()
    assert looked_up(max_length, warm) == expected(max_length)
    assert warm.misses == 0 and warm.hits == cold.misses > 0


def test_a_warm_book_parses_nothing(monkeypatch):
    cold = book()
    looked_up(30, cold)
    cold.save()

    def no_parsing(number: str, region: str | None) -> str | None:
        raise AssertionError(f"{number!r} parsed again")

    answers = expected(30)
    monkeypatch.setattr(field_values, "e164", no_parsing)
    assert looked_up(30, book()) == answers


def test_the_field_length_is_checked_outside_the_book():
    short_first = book()
    assert looked_up(12, short_first) == expected(12)
    short_first.save()
    assert looked_up(30, book()) == expected(30)  # a number too long for one field is still sent to a longer one


def test_invalid_numbers_are_kept_as_such_and_not_parsed_again():
    rows = [("12", "US"), ("not a number", "US"), ("+999 123 4567", None)]
    first = book()
    assert looked_up(30, first, rows) == [None, None, None]
    first.save()
    again = book()
    assert looked_up(30, again, rows) == [None, None, None]
    assert again.misses == 0 and again.hits == 3


def test_a_corrupt_book_is_ignored_with_a_warning_and_rebuilt(caplog):
    book_path().parent.mkdir(parents=True, exist_ok=True)
    book_path().write_bytes(b"PAR1 this is not a parquet file")
    damaged = book()
    with caplog.at_level(logging.WARNING, logger="zoho_store_sync.phone_book"):
        assert looked_up(30, damaged) == expected(30)
    assert "cannot be read" in caplog.text
    damaged.save()
    rebuilt = book()
    assert looked_up(30, rebuilt) == expected(30) and rebuilt.misses == 0


def test_a_book_with_other_columns_is_ignored_with_a_warning(caplog):
    book_path().parent.mkdir(parents=True, exist_ok=True)
    version = {b"zoho_store_sync.phone_book.version": field_values._phone_book_version().encode()}
    pq.write_table(pa.table({"number": ["(415) 555-0132"]}).replace_schema_metadata(version), book_path())
    with caplog.at_level(logging.WARNING, logger="zoho_store_sync.phone_book"):
        assert looked_up(30, book()) == expected(30)
    assert "has columns ['number']" in caplog.text


def poison_the_book() -> None:
    """Every saved answer replaced by a wrong one: shows whether a run reads the book or parses."""
    saved = pq.read_table(book_path())
    wrong = pa.array(["+10000000000"] * saved.num_rows, saved.schema.field("value").type)
    pq.write_table(saved.set_column(1, "value", wrong), book_path())


def test_a_book_of_the_same_version_is_believed():
    first = book()
    looked_up(30, first)
    first.save()
    poison_the_book()
    assert set(looked_up(30, book())) == {"+10000000000", None}  # None: empty numbers, never looked up


def test_a_new_phonenumbers_release_starts_a_fresh_book(monkeypatch):
    first = book()
    looked_up(30, first)
    first.save()
    poison_the_book()
    monkeypatch.setattr(phonenumbers, "__version__", phonenumbers.__version__ + ".post1")
    upgraded = book()
    assert looked_up(30, upgraded) == expected(30)
    assert upgraded.hits == 0
    upgraded.save()
    assert looked_up(30, book()) == expected(30)  # rewritten under the new version


def test_changed_phone_rules_start_a_fresh_book(monkeypatch):
    first = book()
    looked_up(30, first)
    first.save()
    poison_the_book()
    monkeypatch.setattr(field_values, "PHONE_RULES", field_values.PHONE_RULES + 1)
    assert looked_up(30, book()) == expected(30)


def test_the_phone_rules_version_is_bumped_whenever_e164_changes():
    # Changed e164()? Bump PHONE_RULES (saved books would give its old answers) and record the new digest here.
    digests = {1: "71d616dc"}
    source = inspect.getsource(field_values.e164)
    assert hashlib.sha256(source.encode()).hexdigest()[:8] == digests[field_values.PHONE_RULES]


def test_a_full_pass_keeps_only_the_numbers_it_saw():
    old = book(full_pass=True)
    looked_up(30, old, [("(415) 555-0132", "US"), ("020 7946 0958", "GB")])
    old.save()
    now = book(full_pass=True)
    looked_up(30, now, [("020 7946 0958", "GB"), ("030 901820", "DE")])
    now.save()
    kept = pq.read_table(book_path()).column("value").to_pylist()
    assert sorted(kept) == ["+442079460958", "+4930901820"]


def test_an_incremental_run_only_adds():
    old = book(full_pass=True)
    looked_up(30, old, [("(415) 555-0132", "US"), ("020 7946 0958", "GB")])
    old.save()
    now = book(full_pass=False)
    looked_up(30, now, [("030 901820", "DE")])
    now.save()
    kept = pq.read_table(book_path()).column("value").to_pylist()
    assert sorted(kept) == ["+14155550132", "+442079460958", "+4930901820"]


def test_a_run_that_changes_nothing_does_not_rewrite_the_book():
    first = book()
    looked_up(30, first)
    first.save()
    os.utime(book_path(), ns=(10**18, 10**18))  # a mark a rewrite would replace
    again = book()
    looked_up(30, again)
    again.save()
    assert book_path().stat().st_mtime_ns == 10**18


def test_no_numbers_give_an_empty_column_and_leave_the_book_alone():
    empty = book()
    assert looked_up(30, empty, []) == []
    empty.save()
    assert not book_path().exists()


def test_a_crash_while_saving_leaves_the_previous_book_and_no_partial_file(monkeypatch, caplog):
    first = book()
    looked_up(30, first, [("(415) 555-0132", "US")])
    first.save()
    previous = book_path().read_bytes()

    def crash(table: pa.Table, handle: object) -> None:
        handle.write(b"PAR1 half a file")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(phone_book.pq, "write_table", crash)
    second = book()
    with caplog.at_level(logging.WARNING, logger="zoho_store_sync.phone_book"):
        assert looked_up(30, second) == expected(30)
        second.save()  # a warning, never the run's failure
    assert "not saved (disk full)" in caplog.text
    assert book_path().read_bytes() == previous
    assert [p.name for p in book_path().parent.iterdir()] == [phone_book.FILE_NAME]


def test_the_book_survives_the_end_of_a_run(monkeypatch):
    monkeypatch.delenv("ZOHO_SYNC_STAGING_RETENTION_HOURS", raising=False)
    first = book()
    looked_up(30, first)
    first.save()
    staging.clean_up_run(TENANT_ID, "run-1", now=10**12)
    assert phone_book.FOLDER in staging.kept_dirs() and book_path().exists()


ORG = {
    "Contacts": [
        {"api_name": "Last_Name", "data_type": "text", "length": 80, "system_mandatory": True},
        {"api_name": "Phone", "data_type": "phone", "length": 30},
        {"api_name": "Mobile", "data_type": "phone", "length": 12},
    ]
}


def fit(tenant_book: phone_book.PhoneBook | None) -> pd.DataFrame:
    from zoho_store_sync.config import TenantConfig

    tenant = TenantConfig.model_validate(
        {
            "tenant_id": TENANT_ID,
            "source": "magento",
            "store_conn_id": "m",
            "zoho_conn_id": "z",
            "phone_default_region": "DE",
        }
    )
    rows = [
        {"customer_key": str(i), "email": f"p{i}@example.com", "lastname": "Lee", "registered": True, "order_count": 1}
        | {"phone_number": number, "country_name": country}
        for i, (number, country) in enumerate(CUSTOMERS)
    ]
    fields = {"Email": "email", "Last_Name": "lastname", "Phone": "phone_number", "Mobile": "phone_number"}
    mapping = with_org_lengths(Mapping(fields={"Contacts": fields}), ORG)
    out, fitted, _ = field_values.fit_to_org(
        tenant, prepare(pd.DataFrame(rows)), mapping, ORG, ("Contacts",), tenant_book
    )
    return build_payloads(out.valid, fitted, "Contacts")


def test_fitting_to_the_org_with_the_tenants_book_sends_what_it_sends_without_and_saves_the_book_once():
    without = fit(None)
    assert not book_path().exists()
    tenant_book = book()
    with_book = fit(tenant_book)
    pd.testing.assert_frame_equal(with_book, without)
    # Each distinct (number, region) parsed once for both fields: "US" and "us", "UK" and "GB" are one region.
    assert tenant_book.misses == len({(n, field_values.region_of(c, "DE")) for n, c in CUSTOMERS if n is not None})
    warm = book()
    pd.testing.assert_frame_equal(fit(warm), without)
    assert warm.misses == 0
    assert without["Mobile"].notna().sum() < without["Phone"].notna().sum()  # the field lengths still apply
