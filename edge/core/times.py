"""Reading ISO 8601 times: one parser for every caller, each saying how strict it is.

Passages write their times one way (:func:`edge.core.model.iso_utc`:
``2026-11-26T15:10:17.123Z``); what comes from elsewhere (a command, a pushed
rule set, a trust list, a DCC's sample time, an online confirmation) is read
here. What Python's ``datetime.fromisoformat`` reads is ISO 8601 enough; the
callers differ only in what a time without a zone means to them (``naive``)
and in how a ``Z`` is read (``z_as_offset``). Pure: no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from edge.errors import EdgeError

Naive = Literal["refuse", "utc", "keep"]


class TimeZoneMissing(EdgeError, ValueError):
    """An ISO 8601 time without a zone, where the caller needs one."""


def parse_iso(text: str, *, naive: Naive = "refuse", z_as_offset: bool = True) -> datetime:
    """``text`` as a datetime; ValueError when it is not an ISO 8601 time.

    ``naive`` says what a time without a zone becomes: ``refuse`` raises
    :class:`TimeZoneMissing`, ``utc`` takes it as UTC, ``keep`` returns it naive.
    ``z_as_offset`` reads every ``Z`` as ``+00:00`` before parsing (what times from
    outside have always been read with); False leaves the text to Python's own
    reading, which takes a ``Z`` only where an offset may stand (the few readers of
    times this software wrote itself, or of trust lists).
    """
    ts = datetime.fromisoformat(text.replace("Z", "+00:00") if z_as_offset else text)
    if ts.tzinfo is not None or naive == "keep":
        return ts
    if naive == "utc":
        return ts.replace(tzinfo=UTC)
    raise TimeZoneMissing(f"no time zone: {text[:40]}")
