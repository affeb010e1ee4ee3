"""Archive retention on a jumped clock (issue 15, item 3): nothing is deleted while
the clock is far from the newest passage, the clock-jumped alert says why, and the
purge resumes once time is consistent again. Every time comes from one clock the
test controls (T0 and offsets), never the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.service.alerts import CLOCK_JUMPED, Alerts
from edge.store.outbox import Outbox
from edge.store.retention import JUMPED, MAX_AHEAD, UNSYNCHRONISED, Purge, Retention, clock_problem

from .test_store import box, draft

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class Clock:
    """The wall clock and the monotonic clock of one test."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.mono = 1000.0

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        self.mono += delta.total_seconds()


def archive_days(path: Path) -> list[str]:
    return sorted(p.stem for p in (path / "archive").glob("*.jsonl"))


def filled(path: Path, days: int = 40) -> Outbox:
    """A store with a passage on each of the ``days`` days up to T0, all acknowledged."""
    b = box(path, retention_days=30)
    for ago in range(days, -1, -1):
        b.append(draft(ts=T0 - timedelta(days=ago)))
    b.acknowledge([e.pid for e in b.entries().values()], T0)
    return b


def keeper(b: Outbox, clock: Clock, alerts: Alerts, synced: bool | None = None) -> Retention:
    return Retention(
        b.purge,
        alerts,
        clock=lambda: clock.now,
        synchronised=lambda: synced,
        monotonic=lambda: clock.mono,
    )


def test_a_start_with_the_clock_fourteen_years_ahead_deletes_nothing(tmp_path: Path) -> None:
    filled(tmp_path).close()
    before = archive_days(tmp_path)
    assert len(before) == 41
    b = box(tmp_path, retention_days=30)  # restarted, the clock now in 2040
    clock, alerts = Clock(T0.replace(year=2040)), Alerts()
    result = keeper(b, clock, alerts).tick()
    assert result is not None
    assert result.deleted == ()
    assert result.refused is not None
    assert result.refused.kind == JUMPED
    assert archive_days(tmp_path) == before
    [alert] = alerts.open()
    assert alert.name == CLOCK_JUMPED
    assert alert.severity == "critical"
    assert "2040-11-26" in alert.detail
    assert "2026-11-26 08:00Z" in alert.detail
    b.close()


def test_a_refused_purge_is_retried_and_resumes_once_passages_advance_time(
    tmp_path: Path,
) -> None:
    b = filled(tmp_path)
    clock, alerts = Clock(T0 + timedelta(days=5)), Alerts()
    retention = keeper(b, clock, alerts)
    assert retention.tick() is not None  # refused: 5 days past the newest passage
    assert alerts.names() == [CLOCK_JUMPED]
    clock.advance(timedelta(seconds=10))
    assert retention.tick() is None  # not retried at once
    b.append(draft(ts=clock.now))  # a traveller passes: the last known time moves on
    clock.advance(timedelta(minutes=1))
    result = retention.tick()
    assert result is not None
    assert result.refused is None
    # 30 days before T0 + 5 days: the days up to T0 - 26 days are gone
    assert len(result.deleted) == 15
    assert min(archive_days(tmp_path)) == (T0 - timedelta(days=25)).date().isoformat()
    assert alerts.names() == []
    clock.advance(timedelta(hours=1))
    assert retention.tick() is None  # done for today
    b.close()


def test_a_normal_day_by_day_advance_purges_as_before(tmp_path: Path) -> None:
    b = filled(tmp_path)  # 41 days up to T0
    clock, alerts = Clock(T0), Alerts()
    retention = keeper(b, clock, alerts)
    first = retention.tick()
    assert first is not None
    assert first.deleted == tuple(
        f"{(T0 - timedelta(days=ago)).date()}.jsonl" for ago in range(40, 30, -1)
    )
    for day in range(1, 6):  # no traveller for five days: the kiosk keeps running
        clock.advance(timedelta(days=1))
        result = retention.tick()
        assert result is not None
        assert result.refused is None
        assert result.deleted == (f"{(T0 - timedelta(days=30 - day + 1)).date()}.jsonl",)
    assert alerts.names() == []
    assert b.last_known == clock.now
    b.close()
    again = box(tmp_path, retention_days=30)  # the last known time survives a restart
    assert again.last_known == clock.now
    again.close()


def test_a_clock_behind_the_newest_passage_deletes_nothing(tmp_path: Path) -> None:
    b = filled(tmp_path)
    b.append(draft(ts=T0 + timedelta(days=1)))  # the newest passage: a day after T0
    before = archive_days(tmp_path)
    clock, alerts = Clock(T0), Alerts()  # a reboot to an old RTC time
    result = keeper(b, clock, alerts).tick()
    assert result is not None
    assert result.refused is not None
    assert "behind" in result.refused.detail
    assert archive_days(tmp_path) == before
    assert alerts.names() == [CLOCK_JUMPED]
    b.close()


def test_an_unsynchronised_clock_deletes_nothing(tmp_path: Path) -> None:
    b = filled(tmp_path)
    before = archive_days(tmp_path)
    alerts = Alerts()
    result = keeper(b, Clock(T0), alerts, synced=False).tick()
    assert result is not None
    assert result.refused is not None
    assert result.refused.kind == UNSYNCHRONISED
    assert archive_days(tmp_path) == before
    assert alerts.names() == []  # the fleet agent raises clock-unsynchronised
    b.close()


def test_the_last_known_time_comes_from_the_archive_when_meta_has_none(tmp_path: Path) -> None:
    b = filled(tmp_path)
    b.close()
    (tmp_path / "meta.json").write_text('{"last_seq": 41}')  # a store of an older version
    again = box(tmp_path, retention_days=30)
    assert again.last_known == datetime.combine(T0.date(), datetime.min.time(), UTC)
    assert again.purge(T0.replace(year=2040)).refused is not None
    again.close()


@pytest.mark.parametrize(
    ("offset", "synced", "kind"),
    [
        (timedelta(0), None, None),
        (MAX_AHEAD, True, None),
        (MAX_AHEAD + timedelta(seconds=1), True, JUMPED),
        (-timedelta(minutes=5), None, None),
        (-timedelta(hours=1), None, JUMPED),
        (timedelta(0), False, UNSYNCHRONISED),
    ],
)
def test_clock_problem_bounds(offset: timedelta, synced: bool | None, kind: str | None) -> None:
    problem = clock_problem(T0 + offset, T0, synced)
    assert (problem.kind if problem else None) == kind


def test_a_corrected_clock_purges_again_after_the_next_passage(tmp_path: Path) -> None:
    b = box(tmp_path, retention_days=30)
    clock, alerts = Clock(T0.replace(year=2040)), Alerts()
    retention = keeper(b, clock, alerts)
    assert keeper(b, clock, alerts).tick() == Purge()  # an empty store: nothing to protect
    b.append(draft(ts=clock.now))  # a passage recorded on the jumped clock
    clock.now = T0  # put right (NTP, an operator)
    result = retention.tick()
    assert result is not None
    assert result.refused is not None  # behind the passage of 2040
    assert alerts.names() == [CLOCK_JUMPED]
    b.append(draft(ts=T0))  # the next traveller: the latest passage is right again
    clock.advance(timedelta(minutes=1))
    result = retention.tick()
    assert result is not None
    assert result.refused is None
    assert alerts.names() == []
    b.close()
