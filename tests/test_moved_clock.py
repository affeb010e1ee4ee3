"""The moved-clock run of tools/test really runs on a moved clock.

``tools/test`` runs the date-sensitive modules a second time under Debian's
``faketime`` at 2029-07-02 03:30 in Vietnam's time zone (20:30 UTC the day
before). This module proves that run is what it says, so that it cannot pass
by silently running on the real clock; in the ordinary run it is skipped.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.skipif(
    not os.environ.get("FAKETIME"), reason="only in tools/test's moved-clock run (faketime)"
)


def test_the_clock_is_years_ahead_and_local_dates_differ_from_utc() -> None:
    now = datetime.now(UTC)
    assert now >= datetime(2029, 7, 1, 20, 30, tzinfo=UTC)
    local = datetime.now().astimezone()
    assert local.utcoffset() is not None
    assert local.utcoffset().total_seconds() == 7 * 3600  # type: ignore[union-attr]
    assert local.date() != now.date()  # a test that mixes them up fails in this run


def test_sleep_and_timed_waits_work_on_the_moved_clock() -> None:
    """tests/faketime/sitecustomize.py: time.sleep through select (libfaketime #426)."""
    start = time.monotonic()
    time.sleep(0.05)
    assert time.monotonic() - start >= 0.05
    assert time.monotonic() < 10 * 365 * 86400  # the monotonic clock was left real
