"""Ingest throughput next to the raw MQTT subscribe rate; a soak with a hostile device.

Throughput (issue 14, item 7). For each round and each database (SQLite in a
file of a temporary directory, PostgreSQL in a fresh schema), two phases, each
on a fresh mosquitto of its own (persistence off, ``max_queued_messages``
large, ``max_inflight_messages 100`` as in deploy/):

1. the ingest's client id connects once with a persistent session (clean start
   off, a session expiry), subscribes through the shared group
   (``$share/ingest/cp/v1/+/passage``) and disconnects;
2. 10 devices (10 paho clients, MQTT v5, QoS 1, each on ``cp/v1/<device>/passage``)
   publish the backlog of N real passages (20,000 by default: each phase lasts
   about a second, long enough that connecting is not what is measured; the
   kiosk's own message model; pid a
   uuid4, seq 1.. per device); the broker queues it for the absent session;
3. *raw*: a bare paho client (callback API 2) with that client id reconnects and
   counts N messages, PUBACKed by paho as they come: from connect to the N-th;
   *ingest*: the real :class:`Ingest` with that client id and group, from
   ``start()`` until it has stored N (then the database's count is checked).

Raw and ingest alternate (raw, ingest, raw, ingest, ...); the same backlog is
drained by both phases of a round. Each round's ratio ingest/raw is printed,
then per database the median and min-max of the ratios, PASS/FAIL against the
targets: >= 0.8 for SQLite, >= 0.6 for PostgreSQL. PostgreSQL is skipped (said
so) when it does not answer.

Soak (``--soak N``): one broker, one Ingest (SQLite in a temporary directory,
or ``--database URL``; a PostgreSQL URL gets a fresh schema). 10 devices publish
N good passages in all while a hostile device sends :func:`hostile_corpus` after
every ``--every`` good ones. At the end: every good passage stored exactly once
(each device's stored passages are read back by pid), nothing of the corpus
stored but the hostile device's own valid passage, every message accounted
for (stored + duplicates + rejected), and the ingest's worker alive at every
check.

Exit code 0, unless ``--check``: then 1 when a target is missed (or the soak
found a problem).

Run: ``.venv/bin/python bench/ingest_bench.py [--passages N] [--rounds R]
[--databases sqlite,postgres] [--postgres URL] [--check] [--json]``
or ``.venv/bin/python bench/ingest_bench.py --soak N [--every K] [--database URL]
[--check] [--json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from statistics import median
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from outbox_bench import T0, TRAVELLER  # noqa: E402

from edge import config as config_mod  # noqa: E402
from edge.central.db import Query, open_db  # noqa: E402
from edge.central.ingest import Ingest  # noqa: E402
from edge.config import IngestFile, PassageConfig  # noqa: E402
from edge.core.model import Credential, Passage, PassageDraft  # noqa: E402
from edge.mqtt import topics  # noqa: E402
from tests.conftest import Mosquitto  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEVICES = tuple(f"lane-{i:02d}" for i in range(1, 11))
HOSTILE = "lane-hostile"
SITE = "QL1"
CLIENT_ID = "ingest-bench"
GROUP = "ingest"
SESSION_EXPIRY_S = 3600
TARGETS = {"sqlite": 0.8, "postgres": 0.6}
FIELDS = PassageConfig().fields

log = logging.getLogger("ingest_bench")


# -- passages ----------------------------------------------------------------


def passage(device: str, seq: int, pid: str | None = None) -> dict[str, Any]:
    """A passage as a kiosk publishes it: a verified declaration of typical size,
    the default traveller fields (the kiosk's own model builds it)."""
    cred = Credential.from_raw("declaration", uuid.uuid4().bytes, valid=True, claims=TRAVELLER)
    draft = PassageDraft(
        T0 + timedelta(seconds=seq), "approved", "policy", (), (cred,), "auto", "approve"
    )
    return Passage(pid or str(uuid.uuid4()), seq, device, SITE, draft).to_message(FIELDS)


def encode(msg: Any) -> bytes:
    """As the kiosk's outbox stores and publishes it."""
    return json.dumps(msg, separators=(",", ":")).encode()


@dataclass
class Sent:
    """A good passage published: its device and seq, for the exactly-once check."""

    pid: str
    device: str
    seq: int


def backlog(n: int, devices: Sequence[str] = DEVICES) -> dict[str, list[tuple[str, bytes]]]:
    """``n`` passages spread over ``devices``: device -> [(pid, payload)], seq 1.. each."""
    out: dict[str, list[tuple[str, bytes]]] = {d: [] for d in devices}
    for i in range(n):
        device = devices[i % len(devices)]
        msg = passage(device, len(out[device]) + 1)
        out[device].append((msg["pid"], encode(msg)))
    return out


# -- the hostile corpus ------------------------------------------------------


class Hostile(NamedTuple):
    kind: str
    payload: bytes
    stores: bool  # whether a correct ingest stores it as a new passage


def hostile_corpus(device: str, victim_pid: str, seq: int = 1) -> list[Hostile]:
    """What a hostile (or broken) ``device`` may publish on its own passage topic.

    ``victim_pid`` is the pid of another device's passage already sent: a message
    of ``device`` taking it must not replace it. Of the corpus only ``own passage``
    (valid, then sent again: ``own passage again``) is to be stored, once; all the
    rest is rejected (kept in ``rejected``), or, for the taken pid, at most counted
    as a duplicate. ``seq`` numbers the device's own passages (one per corpus).
    """

    def variant(**changes: Any) -> dict[str, Any]:
        msg = passage(device, seq)
        msg.update(changes)
        return msg

    def named(name: str) -> dict[str, Any]:
        msg = passage(device, seq)
        msg["traveller"] = {**msg["traveller"], "name": name}
        return msg

    own = encode(passage(device, seq))
    surrogate = encode(named("Nguyen SURROGATE")).replace(b"SURROGATE", b"\xed\xa0\x80")
    corpus = [
        ("not JSON", b'{"v":1,"pid":', False),
        ("empty", b"", False),
        ("JSON array", encode([passage(device, seq)]), False),
        ("huge seq", encode(variant(seq=2**70)), False),
        ("seq as string", encode(variant(seq=str(seq))), False),
        ("seq zero", encode(variant(seq=0)), False),
        ("seq true", encode(variant(seq=True)), False),
        ("object for a string", encode(variant(site={"$gt": ""})), False),
        ("NUL in name", encode(named("Nguy\u0000n")), False),
        ("lone surrogate bytes", surrogate, False),
        ("lone surrogate escape", encode(named("\ud800")), False),
        ("ts year 9999 +23:59", encode(variant(ts="9999-12-31T23:59:59.999+23:59")), False),
        ("ts before year 1 in UTC", encode(variant(ts="0001-01-01T00:00:00.000+23:59")), False),
        ("ts without zone", encode(variant(ts="2026-11-26T08:00:00.000")), False),
        ("pid of another device", encode(variant(pid=victim_pid)), False),
        ("own passage", own, True),
        ("300 KB", encode(named("A" * 300_000)), False),
        ("deeply nested", b"[" * 100_000, False),
        ("wrong device", encode(variant(device=DEVICES[0])), False),
        ("unknown keys", encode(variant(admin=True, sql="'; DROP TABLE passages; --")), False),
        ("own passage again", own, False),
    ]
    return [Hostile(kind, payload, stores) for kind, payload, stores in corpus]


# -- brokers and clients -----------------------------------------------------


@contextmanager
def fresh_broker(workdir: Path, queued: int) -> Iterator[Mosquitto]:
    """A mosquitto of its own, configured like deploy/ (persistence off)."""
    extra = (
        "persistence false\n"
        f"max_queued_messages {max(1_000_000, 2 * queued)}\n"
        "max_queued_bytes 0\n"
        "max_inflight_messages 100\n"
    )
    broker = Mosquitto(workdir, extra=extra).start()
    try:
        yield broker
    finally:
        broker.stop()


def client(client_id: str) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)


def session_props() -> Properties:
    make: Any = Properties  # paho's Properties has no type hints
    props = make(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    return props  # type: ignore[no-any-return]


def prepare_session(port: int) -> None:
    """The ingest's persistent session, subscribed through the shared group, left
    absent: the broker queues what is published next."""
    subscribed = threading.Event()
    c = client(CLIENT_ID)
    c.on_subscribe = lambda *_a: subscribed.set()
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    c.loop_start()
    c.subscribe(topics.shared(GROUP, topics.all_passages()), qos=1)
    if not subscribed.wait(10):
        raise RuntimeError("the broker did not acknowledge the subscription")
    c.disconnect()
    c.loop_stop()


class Publishers:
    """One paho client per device (QoS 1, MQTT v5), on its own passage topic."""

    def __init__(self, port: int, devices: Sequence[str]) -> None:
        self.clients: dict[str, mqtt.Client] = {}
        for device in devices:
            c = client(f"pub-{device}")
            c.max_inflight_messages_set(100)
            c.max_queued_messages_set(0)
            c.connect("127.0.0.1", port)
            c.loop_start()
            self.clients[device] = c

    def publish(self, device: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.clients[device].publish(topics.passage(device), payload, qos=1)

    def close(self) -> None:
        for c in self.clients.values():
            c.disconnect()
            c.loop_stop()


def publish_backlog(port: int, messages: dict[str, list[tuple[str, bytes]]]) -> None:
    """Every device publishes its passages (interleaved); returns once the broker
    has PUBACKed all of them (they are queued for the session)."""
    pubs = Publishers(port, list(messages))
    try:
        infos = []
        longest = max(len(m) for m in messages.values())
        for i in range(longest):
            for device, items in messages.items():
                if i < len(items):
                    infos.append(pubs.publish(device, items[i][1]))
        for info in infos:
            info.wait_for_publish(120)
    finally:
        pubs.close()


# -- the two phases ------------------------------------------------------------


@dataclass
class Phase:
    seconds: float
    stored: int
    rows: int
    duplicates: int = 0
    rejected: int = 0


def raw_drain(port: int, n: int, timeout: float) -> tuple[float, int]:
    """A bare paho client takes over the session: seconds from connect to the N-th
    message (and how many came)."""
    done = threading.Event()
    count = 0
    end = 0.0

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal count, end
        if msg.topic.endswith("/passage"):
            count += 1
            if count == n:
                end = time.perf_counter()
                done.set()

    c = client(CLIENT_ID)
    c.on_message = on_message
    start = time.perf_counter()
    c.connect("127.0.0.1", port, clean_start=False, properties=session_props())
    c.loop_start()
    finished = done.wait(timeout)
    elapsed = (end if finished else time.perf_counter()) - start
    c.disconnect()
    c.loop_stop()
    return elapsed, count


def ingest_config(port: int, database: str, base_dir: Path) -> IngestFile:
    data = {
        "mqtt": {"host": "127.0.0.1", "port": port},
        "ingest": {"database": database, "client_id": CLIENT_ID, "group": GROUP},
        "log": {"level": "warning"},
    }
    return config_mod.from_mapping_as(data, base_dir, "ingest_bench", IngestFile)


def ingest_drain(port: int, database: str, n: int, timeout: float, workdir: Path) -> Phase:
    """The real ingest takes over the session: seconds from start() to N stored."""
    ingest = Ingest(ingest_config(port, database, workdir))
    start = time.perf_counter()
    ingest.start()
    try:
        ingest.wait_until(lambda i: i.stored >= n, timeout)
        elapsed = time.perf_counter() - start
    finally:
        ingest.stop()
    db = open_db(database)
    try:
        rows = db.count()
    finally:
        db.close()
    return Phase(elapsed, ingest.stored, rows, ingest.duplicates, ingest.rejected)


# -- databases ---------------------------------------------------------------


class Unavailable(Exception):
    """A database the benchmark cannot use (the reason says why)."""


def with_options(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def fresh_schema(base: str) -> tuple[str, Callable[[], None]]:
    """A new, empty schema in the PostgreSQL database ``base``: its URL (search_path
    set through the connection options) and a function dropping it."""
    try:
        import psycopg
    except ImportError as exc:
        raise Unavailable("psycopg is not installed (pip install -e '.[postgres]')") from exc
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(base, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())  # psycopg's message spans lines
        raise Unavailable(f"PostgreSQL at {base} does not answer: {reason}") from exc

    def drop() -> None:
        try:
            with psycopg.connect(base, connect_timeout=3, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        except psycopg.Error as exc:
            log.warning("could not drop schema %s: %s", schema, exc)

    return with_options(base, schema), drop


@contextmanager
def database(kind: str, workdir: Path, postgres: str) -> Iterator[str]:
    """A fresh, empty database of ``kind`` (sqlite, postgres): its URL."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'central.db'}"
        return
    url, drop = fresh_schema(postgres)
    try:
        yield url
    finally:
        drop()


# -- throughput ----------------------------------------------------------------


@dataclass
class Round:
    round: int
    database: str
    raw: float  # messages/s
    ingest: float  # passages/s
    ratio: float
    stored: int
    rows: int
    complete: bool


def throughput_round(
    index: int, kind: str, url: str, messages: dict[str, list[tuple[str, bytes]]], root: Path
) -> Round:
    n = sum(len(m) for m in messages.values())
    timeout = 60 + n / 50
    with fresh_broker(root / f"r{index}-{kind}-raw", n) as broker:
        prepare_session(broker.port)
        publish_backlog(broker.port, messages)
        raw_s, raw_count = raw_drain(broker.port, n, timeout)
    if raw_count < n:
        raise RuntimeError(f"raw phase: only {raw_count} of {n} messages came in {timeout:.0f} s")
    with fresh_broker(root / f"r{index}-{kind}-ingest", n) as broker:
        prepare_session(broker.port)
        publish_backlog(broker.port, messages)
        phase = ingest_drain(broker.port, url, n, timeout, root)
    raw = n / raw_s
    ingest = min(phase.stored, n) / phase.seconds
    complete = phase.stored == n and phase.rows == n
    return Round(index, kind, raw, ingest, ingest / raw, phase.stored, phase.rows, complete)


def summarise(rounds: list[Round], kind: str) -> dict[str, Any]:
    ratios = [r.ratio for r in rounds if r.database == kind]
    target = TARGETS[kind]
    ok = all(r.complete for r in rounds if r.database == kind) and median(ratios) >= target
    return {
        "median": median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "raw_median": median(r.raw for r in rounds if r.database == kind),
        "ingest_median": median(r.ingest for r in rounds if r.database == kind),
        "target": target,
        "pass": ok,
    }


def throughput(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    for kind in kinds:
        if kind not in TARGETS:
            raise SystemExit(f"unknown database {kind!r} (sqlite, postgres)")
    skipped: dict[str, str] = {}
    if "postgres" in kinds:
        try:
            _url, drop = fresh_schema(args.postgres)
            drop()
        except Unavailable as exc:
            skipped["postgres"] = str(exc)
            kinds.remove("postgres")
    size = len(encode(passage(DEVICES[0], 1)))
    text = not args.json
    if text:
        print(
            f"ingest throughput: {args.passages} passages of {size} bytes from {len(DEVICES)}"
            f" devices, QoS 1, {args.rounds} round(s); broker max_inflight_messages 100"
        )
        for kind, reason in skipped.items():
            print(f"  {kind}: SKIPPED ({reason})")
        print(f"  {'round':>5}  {'database':<8}  {'raw msg/s':>10}  {'ingest msg/s':>12}  ratio")
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        root = Path(tmp)
        for index in range(1, args.rounds + 1):
            messages = backlog(args.passages)
            for kind in kinds:
                workdir = root / f"db-{index}-{kind}"
                workdir.mkdir()
                with database(kind, workdir, args.postgres) as url:
                    r = throughput_round(index, kind, url, messages, root)
                rounds.append(r)
                if text:
                    note = "" if r.complete else f"  INCOMPLETE: {r.stored} stored, {r.rows} rows"
                    print(
                        f"  {r.round:>5}  {r.database:<8}  {r.raw:>10.0f}  {r.ingest:>12.0f}"
                        f"  {r.ratio:.2f}{note}",
                        flush=True,
                    )
    summary = {kind: summarise(rounds, kind) for kind in kinds}
    if args.json:
        report = {
            "passages": args.passages,
            "devices": len(DEVICES),
            "size": size,
            "rounds": [asdict(r) for r in rounds],
            "summary": summary,
            "skipped": skipped,
        }
        print(json.dumps(report, indent=2))
    else:
        for kind, s in summary.items():
            verdict = "PASS" if s["pass"] else "FAIL"
            print(
                f"  {kind:<8} ingest/raw median {s['median']:.2f} (min {s['min']:.2f}, max"
                f" {s['max']:.2f}); raw {s['raw_median']:.0f}/s, ingest"
                f" {s['ingest_median']:.0f}/s; target >= {s['target']}: {verdict}"
            )
    missed = [kind for kind, s in summary.items() if not s["pass"]]
    return 1 if args.check and missed else 0


# -- soak --------------------------------------------------------------------


@dataclass
class SoakReport:
    database: str
    good: int  # good passages published by the 10 devices
    hostile: int  # messages of the hostile corpus published
    expected_rows: int  # good + the hostile device's own valid passages
    elapsed: float = 0.0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    rows: int = 0
    missing: list[str] = field(default_factory=list)  # good pids not stored
    doubled: list[str] = field(default_factory=list)  # pids read back more than once
    altered: list[str] = field(default_factory=list)  # good pids stored with other content
    hostile_stored: list[str] = field(default_factory=list)  # corpus stored that should not be
    hostile_missing: list[str] = field(default_factory=list)  # own valid passages not stored
    alive_checks: int = 0
    died_after_s: float | None = None  # when the worker was first seen dead
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def worker_alive(ingest: Ingest) -> bool:
    """The ingest's worker thread is running. It is a private attribute
    (``Ingest._thread``, which ``Ingest.run`` supervises too): no public sign of it
    exists. (The network thread is not checked: after a database error the worker
    restarts it on purpose.)"""
    return ingest._thread.is_alive()


class Watch:
    """Checks the ingest is alive every ``period`` seconds, from start to stop."""

    def __init__(self, ingest: Ingest, period: float = 0.1) -> None:
        self.ingest = ingest
        self.period = period
        self.checks = 0
        self.died_at: float | None = None
        self._start = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.check()

    def check(self) -> bool:
        self.checks += 1
        alive = worker_alive(self.ingest)
        if not alive and self.died_at is None:
            self.died_at = time.perf_counter() - self._start
        return alive

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def wait_for_ingest(ingest: Ingest, watch: Watch, total: int, stall_s: float) -> None:
    """Until every message sent is accounted for (stored, duplicate or rejected),
    the worker is dead, or nothing has moved for ``stall_s`` seconds."""

    def handled(i: Ingest) -> int:
        return i.stored + i.duplicates + i.rejected

    last, moved = -1, time.monotonic()
    while time.monotonic() - moved < stall_s:
        if ingest.wait_until(lambda i: handled(i) >= total, 0.5):
            return
        if not watch.check():
            return
        now = handled(ingest)
        if now != last:
            last, moved = now, time.monotonic()


def soak(
    n: int,
    database_url: str | None = None,
    every: int = 1000,
    stall_s: float = 30.0,
    postgres: str = POSTGRES,
) -> SoakReport:
    """N good passages from 10 devices, the hostile corpus after every ``every``."""
    with tempfile.TemporaryDirectory(prefix="ingest-soak-") as tmp:
        root = Path(tmp)
        if database_url is None:
            with database("sqlite", root, postgres) as url:
                return _soak(root, url, "sqlite", n=n, every=every, stall_s=stall_s)
        if database_url.startswith(("postgresql://", "postgres://")):
            url, drop = fresh_schema(database_url)
            try:
                return _soak(root, url, "postgres", n=n, every=every, stall_s=stall_s)
            finally:
                drop()
        return _soak(root, database_url, database_url, n=n, every=every, stall_s=stall_s)


def _soak(root: Path, url: str, name: str, *, n: int, every: int, stall_s: float) -> SoakReport:
    db = open_db(url)
    try:
        if db.count():
            raise SystemExit(f"the soak needs an empty database; {name} holds passages")
    finally:
        db.close()
    sent: list[Sent] = []
    own: list[str] = []  # the hostile device's valid passages (to be stored once)
    hostile_sent = 0
    with fresh_broker(root / "broker", 2 * n) as broker:
        prepare_session(broker.port)  # nothing is lost before the ingest subscribes
        ingest = Ingest(ingest_config(broker.port, url, root))
        pubs = Publishers(broker.port, [*DEVICES, HOSTILE])
        start = time.perf_counter()
        ingest.start()
        watch = Watch(ingest)
        try:
            seqs = dict.fromkeys(DEVICES, 0)
            last: mqtt.MQTTMessageInfo | None = None
            for i in range(n):
                device = DEVICES[i % len(DEVICES)]
                seqs[device] += 1
                msg = passage(device, seqs[device])
                last = pubs.publish(device, encode(msg))
                sent.append(Sent(msg["pid"], device, msg["seq"]))
                if (i + 1) % every == 0:
                    assert last is not None
                    last.wait_for_publish(60)  # the victim is at the broker before the corpus
                    corpus = hostile_corpus(HOSTILE, sent[-1].pid, len(own) + 1)
                    for item in corpus:
                        pubs.publish(HOSTILE, item.payload)
                        if item.stores:
                            own.append(json.loads(item.payload)["pid"])
                    hostile_sent += len(corpus)
            wait_for_ingest(ingest, watch, n + hostile_sent, stall_s)
            elapsed = time.perf_counter() - start
        finally:
            watch.stop()
            pubs.close()
            counters = (ingest.stored, ingest.duplicates, ingest.rejected)
            ingest.stop()
    report = SoakReport(name, n, hostile_sent, n + len(own), elapsed, *counters)
    report.alive_checks = watch.checks
    report.died_after_s = watch.died_at
    check_stored(report, url, sent, own)
    return report


def check_stored(report: SoakReport, url: str, sent: list[Sent], own: list[str]) -> None:
    """Read every device's passages back: each good pid once, as it was sent."""
    db = open_db(url)
    try:
        report.rows = db.count()
        by_pid: dict[str, list[tuple[str, int]]] = {}  # pid -> (device, seq) of each read
        for device in [*DEVICES, HOSTILE]:
            for msg in db.find(Query(device=device)):
                by_pid.setdefault(msg["pid"], []).append((msg["device"], msg["seq"]))
    finally:
        db.close()
    report.doubled = [pid for pid, found in by_pid.items() if len(found) > 1]
    good = {s.pid for s in sent}
    for s in sent:
        found = by_pid.get(s.pid)
        if not found:
            report.missing.append(s.pid)
        elif any(stored != (s.device, s.seq) for stored in found):
            report.altered.append(s.pid)
    wanted = set(own)
    report.hostile_stored = [
        pid
        for pid, found in by_pid.items()
        if pid not in wanted and pid not in good and any(d == HOSTILE for d, _ in found)
    ]
    report.hostile_missing = [pid for pid in own if pid not in by_pid]
    problems = report.problems
    if report.died_after_s is not None:
        problems.append(f"the ingest's worker died {report.died_after_s:.1f} s into the soak")
    for what, pids in (
        ("good passages not stored", report.missing),
        ("passages read back more than once", report.doubled),
        ("good passages stored with another device's content", report.altered),
        ("corpus messages stored", report.hostile_stored),
        ("hostile device's valid passages not stored", report.hostile_missing),
    ):
        if pids:
            problems.append(f"{len(pids)} {what} (first: {pids[0]})")
    if report.rows != report.expected_rows:
        problems.append(f"{report.rows} rows in the database, expected {report.expected_rows}")
    handled = report.stored + report.duplicates + report.rejected
    if handled != report.good + report.hostile:
        problems.append(
            f"stored + duplicates + rejected = {handled}, but"
            f" {report.good + report.hostile} messages were sent"
        )


def print_soak(report: SoakReport) -> None:
    print(
        f"ingest soak: {report.good} good passages from {len(DEVICES)} devices and"
        f" {report.hostile} hostile messages ({report.database})"
    )
    print(
        f"  stored {report.stored}, duplicates {report.duplicates}, rejected"
        f" {report.rejected}; {report.rows} rows (expected {report.expected_rows});"
        f" {report.elapsed:.1f} s"
    )
    if report.died_after_s is None:
        print(f"  the ingest's worker alive at every check ({report.alive_checks} checks)")
    else:
        print(f"  the ingest's worker DEAD {report.died_after_s:.1f} s in")
    for problem in report.problems:
        print(f"  PROBLEM: {problem}")
    print(f"  every good passage stored exactly once: {'PASS' if report.ok else 'FAIL'}")


# -- main --------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--passages", type=int, default=20000, help="backlog per phase (steady state: ~1 s)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgres", help="comma-separated")
    parser.add_argument("--postgres", default=POSTGRES, help="PostgreSQL (a schema per round)")
    parser.add_argument("--soak", type=int, metavar="N", help="soak with N good passages")
    parser.add_argument("--every", type=int, default=1000, help="soak: corpus every K passages")
    parser.add_argument("--database", help="soak: sqlite:///PATH or postgresql://... URL")
    parser.add_argument("--stall-s", type=float, default=30.0, help="soak: give up waiting")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--json", action="store_true", help="a JSON report")
    parser.add_argument("--verbose", action="store_true", help="the ingest's warnings too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if not args.verbose:  # one warning per rejected message: thousands in a soak
        logging.getLogger("edge.central").setLevel(logging.ERROR)
    if args.soak is None:
        return throughput(args)
    try:
        report = soak(args.soak, args.database, args.every, args.stall_s, args.postgres)
    except Unavailable as exc:
        print(f"ingest soak: SKIPPED ({exc})")
        return 1 if args.check else 0
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    else:
        print_soak(report)
    return 1 if args.check and not report.ok else 0


if __name__ == "__main__":
    sys.exit(main())
