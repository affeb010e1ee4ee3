"""The control room's figures: passages sent by devices over a real broker to the real
ingest (SQLite and PostgreSQL), counted into the hourly roll-ups once each (sent again,
refused or conflicting ones not at all), then summed up by ``summary`` exactly as the
messages say, for any range, one checkpoint or all; an older database without
roll-ups is counted once when an ingest opens it."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from edge.central.db import open_db
from edge.central.ingest import Ingest
from edge.central.summary import RangeError, summary
from edge.core.model import iso_utc
from edge.mqtt import topics
from edge.mqtt.device import parse_ack

from .conftest import Mosquitto, Subscriber
from .test_ingest import ingest_config, ingests
from .test_ingest_hostile import Publisher, body, database, passage, publisher

__all__ = ["database", "ingests", "publisher"]  # fixtures used by name

T0 = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # every time here derives from it
SITES = ("QL1-Km1500", "Chốt Dầu Giây", "QL14")
REASONS = ("expired", "symptoms_declared", "no_declaration", "rule_failed:VR-VN-0001")


def varied(rng: random.Random, n: int) -> list[dict[str, Any]]:
    """``n`` valid passages of three devices over two days: approved and denied with
    reasons, vehicles with their occupants, surge hours."""
    msgs = []
    seqs: Counter[str] = Counter()
    for _ in range(n):
        site = rng.choice(SITES)
        dev = f"lane-{SITES.index(site)}"
        seqs[dev] += 1
        ts = T0 + timedelta(minutes=rng.randrange(2 * 24 * 60), milliseconds=rng.randrange(1000))
        surge = ts.hour in (7, 8) and site == SITES[0]
        denied = not surge and rng.random() < 0.3
        msg = passage(
            dev,
            seqs[dev],
            site=site,
            ts=iso_utc(ts),
            decision="denied" if denied else "approved",
            mode="surge" if surge else "officer",
            reasons=rng.sample(REASONS, rng.randrange(1, 3)) if denied else [],
        )
        if rng.random() < 0.2:
            people = rng.randrange(1, 4)
            msg["credentials"] = msg["credentials"] * people
            msg["occupants"] = [{"credentials": [i], "traveller": {}} for i in range(people)]
            msg["vehicle"] = {"kind": "car", "occupants": people, "opened_by": "officer"}
        msgs.append(msg)
    return msgs


def expected(msgs: list[dict[str, Any]], start: datetime, end: datetime) -> dict[str, Any]:
    """What the messages themselves say about [start, end)."""
    total: Counter[str] = Counter()
    sites: dict[str, Counter[str]] = {}
    reasons: Counter[str] = Counter()
    for m in msgs:
        if not iso_utc(start) <= m["ts"] < iso_utc(end):
            continue
        counts = Counter(passages=1)
        counts[m["decision"]] += 1
        if "vehicle" in m:
            counts["vehicles"] += 1
            counts["occupants"] += len(m["occupants"])
        counts["surge"] += m["mode"] == "surge"
        total.update(counts)
        sites.setdefault(m["site"], Counter()).update(counts)
        if m["decision"] == "denied":
            reasons.update(set(m["reasons"]))
    names = ("passages", "approved", "denied", "vehicles", "occupants", "surge")
    return {
        **{k: total[k] for k in names},
        "by_site": {s: {k: c[k] for k in names} for s, c in sorted(sites.items())},
        "by_reason": dict(reasons),
    }


def send_all(
    broker: Mosquitto, publisher: Publisher, msgs: list[dict[str, Any]], extra: list[bytes]
) -> None:
    """Every message, then ``extra`` payloads on the first device's topic, then a last
    passage of that device (in its topic's order: once it is answered, so is all
    before it); waits until every message is acknowledged as stored."""
    last = msgs[-1]
    assert last["device"] == "lane-0"
    acks = Subscriber(broker.port, [topics.ack(topics.ANY)]).connect()
    try:
        for m in msgs[:-1]:
            publisher.send(topics.passage(m["device"]), body(m))
        for payload in extra:
            publisher.send(topics.passage("lane-0"), payload)
        publisher.send(topics.passage("lane-0"), body(last))
        stored: set[str] = set()
        want = {m["pid"] for m in msgs}
        while not want <= stored:
            ack = parse_ack(acks.get(timeout=15).payload)
            assert ack is not None
            stored |= set(ack.pids)
    finally:
        acks.disconnect()


def test_the_summary_counts_each_passage_once_as_its_message_says(
    database: str,
    broker: Mosquitto,
    publisher: Publisher,
    ingests: Callable[..., Ingest],
    tmp_path: Path,
) -> None:
    rng = random.Random(17)
    msgs = varied(rng, 599)
    seq = max(m["seq"] for m in msgs if m["device"] == "lane-0") + 1
    msgs.append(passage("lane-0", seq, site=SITES[0], ts=iso_utc(T0 + timedelta(hours=30))))
    ingest = ingests(ingest_config(tmp_path, broker.port, database=database))
    again = [body(m) for m in rng.sample(msgs, 40)]  # sent again: stored, never counted twice
    thief = passage("lane-0", 99_999, pid=msgs[0]["pid"], site="Chốt giả")  # another's pid
    bad = [b"{not json", body({**msgs[1], "decision": "maybe"}), body(thief)]
    send_all(broker, publisher, msgs, again + bad)
    ingest.stop()

    db = open_db(database, readonly=True)
    try:
        whole = summary(db, T0, T0 + timedelta(days=2))
        assert whole == {**whole, **expected(msgs, T0, T0 + timedelta(days=2))}
        assert whole["passages"] == 600
        assert (whole["from"], whole["to"]) == (
            "2026-11-26T00:00:00.000Z",
            "2026-11-28T00:00:00.000Z",
        )
        assert len(whole["by_hour"]) == 48
        assert sum(h["passages"] for h in whole["by_hour"]) == 600
        assert "Chốt giả" not in whole["by_site"]
        # surge: 07:00-09:00 at the first checkpoint, each day
        assert [(p["site"], p["from"], p["to"]) for p in whole["surge_periods"]] == [
            (SITES[0], "2026-11-26T07:00:00.000Z", "2026-11-26T09:00:00.000Z"),
            (SITES[0], "2026-11-27T07:00:00.000Z", "2026-11-27T09:00:00.000Z"),
        ]
        # a local day in Vietnam (UTC+7), widened to whole hours; one checkpoint
        vn = timezone(timedelta(hours=7))
        day = datetime(2026, 11, 27, tzinfo=vn)
        one = summary(db, day, day + timedelta(days=1), SITES[1])
        want = expected([m for m in msgs if m["site"] == SITES[1]], day, day + timedelta(days=1))
        assert one == {**one, **want}
        assert one["from"] == "2026-11-26T17:00:00.000Z"
        odd = summary(db, T0 + timedelta(minutes=30), T0 + timedelta(hours=2, minutes=1))
        assert (odd["from"], odd["to"]) == ("2026-11-26T00:00:00.000Z", "2026-11-26T03:00:00.000Z")
        assert odd["passages"] == expected(msgs, T0, T0 + timedelta(hours=3))["passages"]
    finally:
        db.close()


def test_a_database_from_before_the_roll_ups_is_counted_once(tmp_path: Path) -> None:
    from edge.central.contract import Checked

    url = f"sqlite:///{tmp_path / 'central.db'}"
    msgs = varied(random.Random(3), 200)
    db = open_db(url)
    db.store([Checked(m, json.dumps(m)) for m in msgs])
    db.close()
    import sqlite3

    with sqlite3.connect(tmp_path / "central.db") as conn:  # as an older ingest left it
        conn.executescript("DROP TABLE hourly; DROP TABLE hourly_reasons; DROP TABLE rollup_state;")
        # a message that no longer parses (the purge rewrites such a one as {}): counted
        # from its columns
        conn.execute("UPDATE passages SET message = '{' WHERE pid = ?", (msgs[0]["pid"],))
        msgs[0] = {k: v for k, v in msgs[0].items() if k not in ("vehicle", "occupants")}
        msgs[0]["reasons"] = []
    for _ in range(2):  # counted at the first opening only
        db = open_db(url)
        db.close()
    db = open_db(url, readonly=True)
    try:
        got = summary(db, T0, T0 + timedelta(days=2))
        assert got == {**got, **expected(msgs, T0, T0 + timedelta(days=2))}
    finally:
        db.close()


def test_ranges_it_cannot_sum_up_are_refused_with_the_reason(tmp_path: Path) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        for start, end, why in (
            (T0, T0, "to must be after from"),
            (T0, T0 - timedelta(hours=1), "to must be after from"),
            (T0, T0 + timedelta(days=94), "at most 93 days"),
            (T0.replace(tzinfo=None), T0 + timedelta(hours=1), "need a time zone"),
            (
                datetime(9999, 12, 31, 23, 30, tzinfo=UTC),
                datetime(9999, 12, 31, 23, 45, tzinfo=UTC),
                "between the years",
            ),
        ):
            with pytest.raises(RangeError, match=why):
                summary(db, start, end)
        empty = summary(db, T0, T0 + timedelta(hours=3))
        assert (empty["passages"], len(empty["by_hour"]), empty["by_site"]) == (0, 3, {})
    finally:
        db.close()


def test_two_workers_storing_the_same_passage_at_once_count_it_once(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device re-sends a passage that another worker is storing at that very moment
    (not yet committed): on PostgreSQL the second INSERT waits for the first, then
    finds it stored; only the transaction that inserted it counts it."""
    import threading

    from edge.central import rollup
    from edge.central.contract import Checked

    msg = passage("lane-0", 1, site=SITES[0], ts=iso_utc(T0))
    first, second = open_db(database), open_db(database)
    inside = threading.Event()
    release = threading.Event()
    real_add = rollup.add

    def slow_add(tx: Any, mark: str, messages: Any) -> None:
        if threading.current_thread().name == "worker-a":
            inside.set()  # inserted, not committed
            assert release.wait(10)
        real_add(tx, mark, messages)

    monkeypatch.setattr(rollup, "add", slow_add)
    results: dict[str, Any] = {}
    a = threading.Thread(
        target=lambda: results.__setitem__("a", first.store([Checked(msg, json.dumps(msg))])),
        name="worker-a",
    )
    b = threading.Thread(
        target=lambda: results.__setitem__("b", second.store([Checked(msg, json.dumps(msg))])),
        name="worker-b",
    )
    a.start()
    assert inside.wait(10)
    b.start()  # SQLite: waits at BEGIN IMMEDIATE; PostgreSQL: at the INSERT's conflict
    b.join(0.5)
    release.set()
    a.join(10)
    b.join(10)
    try:
        assert results["a"].stored == results["b"].stored == [msg["pid"]]
        assert results["a"].new + results["b"].new == 1
        got = summary(first, T0, T0 + timedelta(hours=1))
        assert got["passages"] == 1
    finally:
        first.close()
        second.close()
