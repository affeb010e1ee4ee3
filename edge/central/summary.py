"""The figures a control room asks for, over a range of time: the dashboard's
``/api/summary`` and the daily report.

Counted from the hourly roll-ups the ingest keeps (rollup.py), never from the
passages themselves, so a month of a province (30 million passages) answers in
about as long as an hour: the grain is the hour (UTC), and a range is widened to
whole hours (``from`` down, ``to`` up; the answer says which hours it counted).
Counts only: nothing here is personal data.

The answer::

    {"from": ISO, "to": ISO,                     the whole hours counted (UTC)
     "passages", "approved", "denied", "vehicles", "occupants", "surge",
     "by_site": {site: {the same six counts}},
     "by_reason": {reason code: denied passages giving it},
     "by_hour": [{"hour": ISO, the six counts, "by_site": {site: passages}}, ...],
     "surge_periods": [{"site", "from", "to", "passages"}, ...]}

``by_hour`` has every hour of the range, with zeros; ``surge_periods`` are the
runs of hours in which a checkpoint let passages through in surge mode.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from edge.central.contract import PassageDB
from edge.central.rollup import COUNTS
from edge.core.model import iso_utc

MAX_RANGE = timedelta(days=93)  # a quarter: by_hour stays a few thousand entries
HOUR = timedelta(hours=1)


class RangeError(ValueError):
    """A range that cannot be summed up (the message says why)."""


def whole_hours(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``start`` down and ``end`` up to whole UTC hours; RangeError for a range that
    is empty, reversed, naive or longer than :data:`MAX_RANGE`."""
    if start.tzinfo is None or end.tzinfo is None:
        raise RangeError("from and to need a time zone (Z or +07:00)")
    try:
        first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        last = end.astimezone(UTC)
        if last.replace(minute=0, second=0, microsecond=0) != last:
            last = last.replace(minute=0, second=0, microsecond=0) + HOUR
    except OverflowError as exc:  # year 1 or 9999 and a zone or an hour away
        raise RangeError("from and to must be between the years 2 and 9998") from exc
    if last <= first:
        raise RangeError("to must be after from")
    if last - first > MAX_RANGE:
        raise RangeError(f"at most {MAX_RANGE.days} days at a time")
    return first, last


def _key(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%dT%H")


def _iso(key: str) -> str:
    return f"{key}:00:00Z"


def _counts(values: Counter[str] | None = None) -> dict[str, int]:
    return {name: int((values or Counter())[name]) for name in COUNTS}


def summary(
    db: PassageDB, start: datetime, end: datetime, site: str | None = None
) -> dict[str, Any]:
    """The figures of the whole hours around ``start`` .. ``end`` (one checkpoint or all)."""
    first, last = whole_hours(start, end)
    rows = db.hourly(_key(first), _key(last), site or None)
    total: Counter[str] = Counter()
    sites: dict[str, Counter[str]] = defaultdict(Counter)
    hours: dict[str, Counter[str]] = defaultdict(Counter)
    hour_sites: dict[str, dict[str, int]] = defaultdict(dict)
    surge: dict[str, dict[str, int]] = defaultdict(dict)
    for hour, where, counts in rows.counted():
        total.update(counts)
        sites[where].update(counts)
        hours[hour].update(counts)
        hour_sites[hour][where] = counts["passages"]
        if counts["surge"]:
            surge[where][hour] = counts["surge"]
    reasons: Counter[str] = Counter()
    for _site, reason, count in rows.reasons:
        reasons[str(reason)] += int(count)
    by_hour = []
    at = first
    while at < last:
        key = _key(at)
        by_hour.append(
            {"hour": _iso(key), **_counts(hours.get(key)), "by_site": hour_sites.get(key, {})}
        )
        at += HOUR
    return {
        "from": iso_utc(first),
        "to": iso_utc(last),
        **_counts(total),
        "by_site": {name: _counts(sites[name]) for name in sorted(sites)},
        "by_reason": dict(reasons.most_common()),
        "by_hour": by_hour,
        "surge_periods": _periods(surge),
    }


def _periods(surge: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """Runs of consecutive hours with surge passages, per checkpoint, in time order."""
    periods: list[dict[str, Any]] = []
    for where, by_hour in surge.items():
        run: dict[str, Any] | None = None
        for key in sorted(by_hour):
            start = datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=UTC)
            if run is not None and run["end"] == start:
                run["end"] = start + HOUR
                run["passages"] += by_hour[key]
                continue
            run = {"site": where, "start": start, "end": start + HOUR, "passages": by_hour[key]}
            periods.append(run)
    periods.sort(key=lambda p: (p["start"], p["site"]))
    return [
        {
            "site": p["site"],
            "from": iso_utc(p["start"]),
            "to": iso_utc(p["end"]),
            "passages": p["passages"],
        }
        for p in periods
    ]
