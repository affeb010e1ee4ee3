"""CertLogic's date-times: parsed from the allowed ISO 8601 forms, offset as JavaScript's
``Date`` does (the specification defines ``plusTime`` by ``setUTCDate`` and its
kin), compared, and nothing else.

A :class:`DateTime` is milliseconds since the epoch, UTC. It is only ever made by
``plusTime`` and ``dccDateOfBirth``; rules cannot write one as a literal.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edge.errors import EdgeError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 24 * _MS_PER_HOUR
_YEAR = re.compile(r"[0-9]{4}")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
# the date-time forms of the specification (plusTime), offsets [+-]h, hh, hmm, hhmm, h:mm, hh:mm
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+?)?"
    r"(Z|([+-])([0-9]{1,2}):?([0-9]{2})?)?"
)
TIME_UNITS = ("year", "month", "day", "hour")


class DateError(EdgeError, ValueError):
    """A string that is not an allowed date(-time), or a result out of range."""


@dataclass(frozen=True, order=True)
class DateTime:
    """A point in time with millisecond precision (milliseconds since 1970, UTC)."""

    ms: int

    def iso(self) -> str:
        """``YYYY-MM-DDThh:mm:ss.sssZ``, as JavaScript's ``toISOString``."""
        when = _to_datetime(self.ms)
        return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.ms % 1000:03d}Z"

    def __repr__(self) -> str:
        return f"DateTime({self.iso()})"


def _to_datetime(ms: int) -> datetime:
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError as exc:
        raise DateError("date-time out of range") from exc


def _from_datetime(when: datetime) -> int:
    delta = when - _EPOCH
    return (delta.days * _MS_PER_DAY) + delta.seconds * 1000 + delta.microseconds // 1000


def _date(year: int, month: int, day: int) -> datetime:
    """A UTC midnight, rolling days past the month's end over (as JavaScript does)."""
    try:
        return datetime(year, month, 1, tzinfo=UTC) + timedelta(days=day - 1)
    except (ValueError, OverflowError) as exc:
        raise DateError("date out of range") from exc


def date_of_birth(text: str) -> DateTime:
    """``dccDateOfBirth``: ``YYYY`` -> 31 December, ``YYYY-MM`` -> the month's last day,
    ``YYYY-MM-DD`` as is; midnight UTC (the latest date the value allows)."""
    if _YEAR.fullmatch(text):
        return DateTime(_from_datetime(_checked(int(text), 12, 31)))
    found = _MONTH.fullmatch(text)
    if found:
        year, month = int(found[1]), int(found[2])
        if not 1 <= month <= 12:
            raise DateError(f"not a month: {text}")
        last = calendar.monthrange(year, month)[1] if year >= 1 else 31
        return DateTime(_from_datetime(_checked(year, month, last)))
    found = _DATE.fullmatch(text)
    if found:
        return DateTime(_from_datetime(_checked(int(found[1]), int(found[2]), int(found[3]))))
    raise DateError(f"not a date of birth (YYYY, YYYY-MM or YYYY-MM-DD): {text[:40]}")


def _checked(year: int, month: int, day: int) -> datetime:
    try:
        return datetime(year, month, day, tzinfo=UTC)
    except ValueError as exc:
        raise DateError(f"not a date: {year:04d}-{month:02d}-{day:02d}") from exc


def parse(text: str) -> DateTime:
    """A date or date-time string of the allowed forms (partial dates as
    :func:`date_of_birth`); a missing offset is UTC; sub-milliseconds are dropped."""
    if _YEAR.fullmatch(text) or _MONTH.fullmatch(text) or _DATE.fullmatch(text):
        return date_of_birth(text)
    found = _DATE_TIME.fullmatch(text)
    if found is None:
        raise DateError(f"not an allowed date or date-time format: {text[:40]}")
    year, month, day, hour, minute, second = (int(found[i]) for i in range(1, 7))
    fraction = (found[7] or ".")[1:]
    millis = int((fraction + "000")[:3])
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise DateError(f"not a date-time: {text[:40]}") from exc
    offset = 0
    if found[8] and found[8] != "Z":
        sign = -1 if found[9] == "-" else 1
        offset = sign * (int(found[10]) * 60 + int(found[11] or 0))
    return DateTime(_from_datetime(when) + millis - offset * 60_000)


def plus(value: DateTime, amount: int, unit: str) -> DateTime:
    """``value`` plus ``amount`` of ``unit``, as ``Date.setUTC<Unit>(get + amount)``: a day
    past the end of the month rolls over (2020-02-29 plus 1 year is 2021-03-01)."""
    if amount == 0:
        return value
    if unit == "hour":
        return _bounded(value.ms + amount * _MS_PER_HOUR)
    if unit == "day":
        return _bounded(value.ms + amount * _MS_PER_DAY)
    when = _to_datetime(value.ms)
    months = when.month - 1 + (amount if unit == "month" else 12 * amount)
    year = when.year + months // 12
    if not 1 <= year <= 9999:
        raise DateError("date-time out of range")
    midnight = _date(year, months % 12 + 1, when.day)
    since_midnight = value.ms - _from_datetime(_date(when.year, when.month, when.day))
    return _bounded(_from_datetime(midnight) + since_midnight)


def _bounded(ms: int) -> DateTime:
    _to_datetime(ms)  # raises when out of range
    return DateTime(ms)
