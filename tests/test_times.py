"""edge.core.times: the one ISO 8601 parser, and what each kind of strictness accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.core.times import TimeZoneMissing, parse_iso

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T08:00:00Z", NOW),
        ("2026-11-26T08:00:00.000Z", NOW),  # a passage's own form
        ("2026-11-26T08:00:00+00:00", NOW),
        ("2026-11-26T15:00:00+07:00", NOW),
        ("2026-11-26T08:00Z", NOW),
        ("2026-11-26 08:00:00Z", NOW),
    ],
)
def test_times_with_a_zone_are_read_whatever_the_strictness(text: str, expected: datetime) -> None:
    for naive in ("refuse", "utc", "keep"):
        assert parse_iso(text, naive=naive) == expected  # type: ignore[arg-type]
    assert parse_iso(text, z_as_offset=False) == expected


def test_an_offset_is_kept_not_converted() -> None:
    ts = parse_iso("2026-11-26T15:00:00+07:00")
    assert ts.utcoffset() == timedelta(hours=7)
    assert ts.tzinfo == timezone(timedelta(hours=7))


def test_a_time_without_a_zone_is_refused_taken_as_utc_or_kept() -> None:
    with pytest.raises(TimeZoneMissing):
        parse_iso("2026-11-26T08:00:00")
    assert isinstance(TimeZoneMissing("x"), ValueError)  # callers catching ValueError see it
    assert parse_iso("2026-11-26T08:00:00", naive="utc") == NOW
    kept = parse_iso("2026-11-26T08:00:00", naive="keep")
    assert kept.tzinfo is None
    assert kept == NOW.replace(tzinfo=None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",  # no 13th month
        "2026-11-31T00:00:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T08:00:00z",  # only an upper-case Z is UTC
        "2026-11-26T08:00:00ZZ",
        "2026-11-26T08:00:00Z+01:00",
        "2026-11-26T08:00:00+25:00",
        "\x00",
    ],
)
def test_what_is_not_a_time_is_a_value_error_not_a_missing_zone(text: str) -> None:
    for naive in ("refuse", "utc", "keep"):
        with pytest.raises(ValueError, match=r"isoformat|must be|out of range") as caught:
            parse_iso(text, naive=naive)  # type: ignore[arg-type]
        assert not isinstance(caught.value, TimeZoneMissing)


def test_the_message_of_a_bad_time_is_pythons() -> None:
    """A trust list shows it (``issued_at: not ISO 8601: ...``)."""
    with pytest.raises(ValueError, match="Invalid isoformat string: 'soon'"):
        parse_iso("soon", z_as_offset=False)


def test_z_as_offset_is_how_a_z_in_the_middle_is_read() -> None:
    # a Z anywhere read as +00:00: a date with "Z" is a naive midnight...
    assert parse_iso("2026-11-26Z", naive="keep") == datetime(2026, 11, 26)
    with pytest.raises(TimeZoneMissing):
        parse_iso("2026-11-26Z")
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_iso("2026-11-26Z08:00:00Z")
    # ... Python's own reading takes a Z only where an offset may stand
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_iso("2026-11-26Z", naive="keep", z_as_offset=False)
    assert parse_iso("2026-11-26Z08:00:00Z", z_as_offset=False) == NOW


def test_a_missing_zone_names_the_text_cut_short() -> None:
    with pytest.raises(TimeZoneMissing, match=r"no time zone: 2026-11-26T08:00:00\.0{20}$"):
        parse_iso("2026-11-26T08:00:00." + "0" * 60)


@given(st.datetimes(timezones=st.just(UTC)))
def test_every_time_written_as_passages_write_it_reads_back(ts: datetime) -> None:
    text = ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    expected = ts.replace(microsecond=ts.microsecond // 1000 * 1000)
    assert parse_iso(text) == expected
    assert parse_iso(text, z_as_offset=False) == expected
