"""Archive retention on a clock that can be trusted.

Deleting the day archives older than ``[store] retention_days`` depends on the
clock: a kiosk that starts with its clock jumped to 2040 (a bad RTC, a wrong
manual setting) would delete every archive as "past retention". So the store
keeps a *last known time* (the newest passage it wrote, and the last time a
purge found the clock consistent; persisted in ``meta.json``) and the purge is
refused, nothing deleted, when

- the kernel reports the clock unsynchronised (``[fleet] clock_check``),
- now is more than :data:`MAX_AHEAD` past the last known time (a jump forward),
- now is more than :data:`MAX_BEHIND` before it (a jump back).

:class:`Retention` runs the purge from the kiosk's supervision loop: once a
day, and every :data:`RETRY_S` seconds while refused, with the
``clock-jumped`` alert raised until the clock is consistent again (new passages
advance the last known time; a corrected clock comes back within the bounds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from edge.errors import EdgeError
from edge.service.alerts import CLOCK_JUMPED, Alerts

log = logging.getLogger(__name__)

MAX_AHEAD = timedelta(days=2)  # a kiosk idle (or off) longer waits for a passage to purge
MAX_BEHIND = timedelta(minutes=10)  # NTP steps are seconds; a reboot to an old RTC is not
RETRY_S = 60.0

UNSYNCHRONISED = "unsynchronised"
JUMPED = "jumped"


@dataclass(frozen=True)
class ClockProblem:
    kind: str  # UNSYNCHRONISED or JUMPED
    detail: str  # no personal data: times only


@dataclass(frozen=True)
class Purge:
    """What a purge did: the day archives deleted, or why it deleted nothing."""

    deleted: tuple[str, ...] = ()
    refused: ClockProblem | None = None


def clock_problem(
    now: datetime, last_known: datetime | None, synchronised: bool | None
) -> ClockProblem | None:
    """Why ``now`` cannot be trusted to delete data (None: it can). ``last_known``:
    the store's newest trusted time; ``synchronised``: the kernel's word, if asked."""
    if synchronised is False:
        return ClockProblem(UNSYNCHRONISED, "the kernel reports the clock unsynchronised")
    if last_known is None:
        return None
    if now > last_known + MAX_AHEAD:
        days = (now - last_known) / timedelta(days=1)
        return ClockProblem(
            JUMPED,
            f"the clock ({now:%Y-%m-%d}) is {days:.0f} day(s) past the newest passage or last "
            f"known time ({last_known:%Y-%m-%d %H:%M}Z): archive purge suspended",
        )
    if now < last_known - MAX_BEHIND:
        return ClockProblem(
            JUMPED,
            f"the clock ({now:%Y-%m-%d}) is behind the newest passage or last known time "
            f"({last_known:%Y-%m-%d %H:%M}Z): archive purge suspended",
        )
    return None


class Retention:
    """Purges the archive once a day on a trusted clock (called from the main loop).

    ``purge(now, synchronised)`` is the store's; ``clock`` the wall clock (UTC),
    ``synchronised`` the kernel's word (None: not asked), ``monotonic`` for retries.
    """

    def __init__(
        self,
        purge: Callable[[datetime, bool | None], Purge],
        alerts: Alerts,
        *,
        clock: Callable[[], datetime],
        synchronised: Callable[[], bool | None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._purge = purge
        self._alerts = alerts
        self._clock = clock
        self._synchronised = synchronised
        self._monotonic = monotonic
        self._done_on: date | None = None
        self._retry_at = float("-inf")
        self._refused: ClockProblem | None = None

    def tick(self) -> Purge | None:
        """Purge if due (None: not due, or the store failed)."""
        now = self._clock()
        if self._done_on == now.date() or self._monotonic() < self._retry_at:
            return None
        try:
            result = self._purge(now, self._synchronised())
        except (EdgeError, OSError) as exc:
            log.error("edge: archive purge failed: %s", exc)  # noqa: TRY400 - a reason
            self._retry_at = self._monotonic() + RETRY_S
            return None
        problem = result.refused
        if problem is None:
            self._done_on = now.date()
            if self._refused is not None:
                log.info("store: the clock is consistent again: archive purge resumed")
            self._alerts.clear(CLOCK_JUMPED)
        else:
            self._retry_at = self._monotonic() + RETRY_S
            if problem != self._refused:
                log.warning("store: nothing purged: %s", problem.detail)
            if problem.kind == JUMPED:
                self._alerts.raise_(CLOCK_JUMPED, problem.detail, "critical")
            # (unsynchronised: the fleet agent's clock-unsynchronised alert says it)
        self._refused = problem
        return result
