"""What ``GET /api/summary`` accepts: ``from`` and ``to`` (ISO 8601, both or neither),
``site`` (one checkpoint), nothing else.

A time without an offset (``2026-11-26T08:00``, what the page's inputs give) is a
time of the dashboard's zone (``--tz``); neither ``from`` nor ``to``: today in
that zone, midnight to midnight. :func:`edge.central.summary.summary` widens the
range to whole UTC hours and refuses a reversed or too long one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo

from edge.core.passage import MAX_SITE, text_problem

PARAMETERS = frozenset({"from", "to", "site"})
MAX_TIME_TEXT = 40  # the longest ISO 8601 time worth parsing


class BadQuery(ValueError):
    """A query the API refuses (400); the message names the parameter."""


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime
    site: str | None


def today(zone: tzinfo, now: datetime) -> tuple[datetime, datetime]:
    """Midnight to midnight of ``now``'s day in ``zone``."""
    day = now.astimezone(zone).date()
    start = datetime.combine(day, time(0), zone)
    return start, datetime.combine(day + timedelta(days=1), time(0), zone)


def parse_time(name: str, text: str, zone: tzinfo) -> datetime:
    """An ISO 8601 time; without an offset, a time of ``zone``."""
    if len(text) > MAX_TIME_TEXT:
        raise BadQuery(f"{name}: not an ISO 8601 time")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"{name}: not an ISO 8601 time (2026-11-26T08:00 or with Z)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def parse(query: dict[str, list[str]], zone: tzinfo, now: datetime) -> Range:
    """The range and checkpoint of a query string (``parse_qs``'s, blank values kept)."""
    unknown = sorted(set(query) - PARAMETERS)
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0][:40]!r} (from, to, site)")
    for name, values in query.items():
        if len(values) > 1:
            raise BadQuery(f"{name}: given more than once")
    start_text = query.get("from", [""])[0]
    end_text = query.get("to", [""])[0]
    if bool(start_text) != bool(end_text):
        raise BadQuery("give both from and to, or neither (today)")
    if start_text:
        start, end = parse_time("from", start_text, zone), parse_time("to", end_text, zone)
    else:
        start, end = today(zone, now)
    site = query.get("site", [""])[0]
    problem = text_problem(site, MAX_SITE)
    if problem is not None:
        raise BadQuery(f"site: {problem}")
    return Range(start, end, site or None)
