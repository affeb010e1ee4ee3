"""The centre against hostile messages: one typed passage model, rejected messages kept and
answered, conflicts refused, sizes bounded, a batch never blocked by one bad row, personal
data purged after its retention.

Every message here goes through a real mosquitto to the real ingest and database (SQLite,
and PostgreSQL when it answers).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from edge.central.db import Checked, DatabaseError, PassageDB, Query, Rejection, Stored, open_db
from edge.central.ingest import Ingest
from edge.config import Config
from edge.core.model import Credential, Passage, PassageDraft, Vehicle
from edge.core.passage import (
    INT64_MAX,
    MAX_CREDENTIALS,
    MAX_PASSAGE_BYTES,
    BadPassage,
    check_passage,
)
from edge.mqtt import topics
from edge.mqtt.device import parse_ack
from edge.scan.dcc import Dcc
from edge.scan.declaration import Place
from edge.scan.idcard import IdCard
from edge.store.snapshot import snapshot

from .conftest import Mosquitto, Subscriber, archived_messages, stop_loop
from .test_declaration import make_declaration
from .test_e2e import Kiosk
from .test_ingest import device, ingest_config, ingests, kiosks, postgres_url, wave_through

__all__ = ["ingests", "kiosks"]  # fixtures used by name

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # every time here derives from it


def passage(device_id: str = "lane-x", seq: int = 1, **changes: Any) -> dict[str, Any]:
    """A valid passage message of ``device_id``."""
    msg: dict[str, Any] = {
        "v": 1, "pid": str(uuid.uuid4()), "seq": seq, "device": device_id, "site": "QL1",
        "ts": "2026-11-26T08:00:00.000Z", "decision": "approved", "decided_by": "officer",
        "reasons": [], "mode": "officer", "verdict": "approve",
        "credentials": [{"kind": "id_card", "sha256": "a" * 64, "ref": None, "valid": True,
                         "reasons": [], "lookup": None}],
        "traveller": {"id_number": "001190000001", "name": "Trần Thị Mai"},
    }  # fmt: skip
    msg.update(changes)
    return msg


def body(msg: Any) -> bytes:
    return json.dumps(msg, ensure_ascii=False).encode()


def with_name(name: str) -> bytes:
    """A passage naming its traveller ``name``, written with JSON escapes (\\u0000, \\ud800)."""
    msg = passage(traveller={"id_number": "001190000001", "name": name})
    return json.dumps(msg, ensure_ascii=True).encode()


# (what, payload, the reason the ingest gives): every class the red team found
HOSTILE: list[tuple[str, bytes, str]] = [
    ("seq beyond 64 bits", body(passage(seq=2**70)), "seq must be an integer from 1"),
    ("seq just beyond int64", body(passage(seq=INT64_MAX + 1)), "seq must be an integer"),
    ("seq as text", body(passage(seq="1")), "seq must be an integer"),
    ("seq true", body(passage(seq=True)), "seq must be an integer"),
    (
        "far future, extreme offset",
        body(passage(ts="9999-12-31T23:59:59.999+23:59")),
        "ts must be ISO 8601 UTC",
    ),
    ("no such day", body(passage(ts="2026-02-30T08:00:00.000Z")), "ts is not a real time"),
    ("object for a string", body(passage(site={"$gt": ""})), "site: not a string"),
    ("array for the traveller", body(passage(traveller=[])), "traveller is not an object"),
    ("NUL in a name", with_name("Tran\u0000Mai"), "traveller.name: holds a control character"),
    ("escaped lone surrogate", with_name("\ud800"), "traveller.name: holds a control character"),
    (
        "raw lone surrogate bytes",
        body(passage()).replace("Trần".encode(), b"\xed\xa0\x80"),
        "not UTF-8",
    ),
    ("terminal escape", with_name("\x1b[2J"), "traveller.name: holds a control character"),
    ("10,000-character name", with_name("A" * 10_000), "longer than 200 characters"),
    ("unknown key", body(passage(extra=1)), "unknown key 'extra'"),
    ("unknown traveller field", body(passage(traveller={"x": "y"})), "unknown field 'x'"),
    ("not JSON", b"{not json", "not JSON"),
    ("JSON array", b"[1, 2]", "not a JSON object"),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ("huge integer text", body(passage()).replace(b'"seq": 1,', b'"seq": ' + b"9" * 5000 + b","),
     "not JSON"),
    ("credential kind", body(passage(credentials=[{"kind": "x"}])), "credentials[0] must have"),
    ("occupant index out of range",
     body(passage(occupants=[{"credentials": [5], "traveller": {}}])),
     "occupants[0].credentials must be indexes"),
    ("vehicle plate", body(passage(vehicle={"kind": "car", "occupants": 0, "opened_by": "officer",
                                             "plate": "=cmd|x"})), "vehicle.plate is not a plate"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "payload", "reason"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_the_model_refuses_every_hostile_class_naming_the_field(
    what: str, payload: bytes, reason: str
) -> None:
    with pytest.raises((BadPassage, ValueError, RecursionError)) as caught:
        check_passage(json.loads(payload.decode("utf-8")), "lane-x")
    if isinstance(caught.value, BadPassage):
        assert reason in str(caught.value)
        assert "Trần" not in str(caught.value)
        assert "\x00" not in str(caught.value)


def test_the_model_takes_a_passage_of_every_shape_the_device_builds() -> None:
    plain = passage()
    party = passage(
        credentials=[*plain["credentials"], *plain["credentials"]],
        occupants=[
            {"credentials": [0], "traveller": {"name": "A"}},
            {"credentials": [1], "traveller": {}},
        ],
        vehicle={"kind": "car", "occupants": 2, "opened_by": "greenlane", "plate": "51H-123.45"},
    )
    nobody = passage(credentials=[], traveller={}, verdict=None, reasons=["no_credential"])
    for msg in (plain, party, nobody):
        assert check_passage(msg, msg["device"]) is msg
    with pytest.raises(BadPassage, match="published on the topic of 'lane-y'"):
        check_passage(plain, "lane-y")


# -- the device never builds a passage the model refuses ---------------------------


def built(draft: PassageDraft, fields: tuple[str, ...]) -> dict[str, Any]:
    return Passage(str(uuid.uuid4()), 1, "lane-a", "QL1", draft).to_message(fields)


EVERY_FIELD = (
    "declaration_id", "id_number", "name", "birth_date", "sex", "phone", "origin",
    "destination", "plate", "transport", "purpose", "dcc_id", "qid",
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=400), uvci=st.text(max_size=200), born=st.text(max_size=20))
def test_whatever_a_signed_code_says_the_device_builds_a_valid_passage(
    name: str, uvci: str, born: str
) -> None:
    # A DCC's text fields are whatever its issuer signed: NUL, escapes, lone surrogates.
    claims = Dcc(
        issuer="XX", issued_at=T0, expires_at=T0 + timedelta(days=1), type="v",
        certificate_id=uvci, name=name, birth_date=born,
    )  # fmt: skip
    cred = Credential.from_raw("dcc", b"HC1:x", valid=True, claims=claims)
    draft = PassageDraft(T0, "approved", "officer", (), (cred,), "officer", "approve")
    msg = built(draft, EVERY_FIELD)
    assert check_passage(json.loads(json.dumps(msg)), "lane-a") == msg


def test_an_id_card_printed_with_a_nul_and_escapes_makes_a_clean_passage() -> None:
    card = IdCard(
        "001190000001", "", "Trần\u0000 Thị\x1b[31m Mai\u202e", date(1990, 1, 31), "F", "",
        date(2022, 1, 1), 7,
    )  # fmt: skip
    cred = Credential.from_raw("id_card", b"card", valid=True, claims=card)
    draft = PassageDraft(T0, "approved", "officer", (), (cred,), "officer", "approve")
    msg = built(draft, EVERY_FIELD)
    assert check_passage(msg, "lane-a") is msg
    assert msg["traveller"]["name"] == "Trần Thị [31m Mai"


def test_a_vehicle_and_its_party_make_a_valid_passage() -> None:
    cred = Credential.from_raw("unrecognised", b"x")
    draft = PassageDraft(
        T0, "approved", "officer", (), (cred, cred), "officer", "approve",
        occupants=((0,), (1,)), vehicle=Vehicle("bus", "51B-000.01"),
    )  # fmt: skip
    msg = built(draft, EVERY_FIELD)
    assert check_passage(msg, "lane-a") is msg


def test_the_largest_passage_a_kiosk_can_build_fits_the_model_and_the_size_limit() -> None:
    """A coach of MAX_CREDENTIALS / 2 travellers, each showing a declaration with every
    field at its longest and a DCC whose text is longer than any field: one passage."""
    place = Place("79", "760", "x" * 200)
    decl = make_declaration(
        T0, name="N" * 100, purpose="P" * 100, plate="51H-123.45" + "9" * 5,
        origin=place, destination=place,
    )  # fmt: skip
    dcc = Dcc(
        issuer="XX", issued_at=T0, expires_at=T0, type="v", certificate_id="U" * 500,
        name="Ñ" * 500, birth_date="1990-01-31",
    )  # fmt: skip
    people = MAX_CREDENTIALS // 2
    creds = []
    for _ in range(people):
        creds += [
            Credential.from_raw("declaration", b"d", valid=True, claims=decl),
            Credential.from_raw("dcc", b"HC1:x", valid=True, claims=dcc),
        ]
    draft = PassageDraft(
        T0, "approved", "officer", tuple(f"rule_failed:VR-VN-{n:04d}" for n in range(50)),
        tuple(creds), "officer", "approve",
        occupants=tuple((2 * i, 2 * i + 1) for i in range(people)),
        vehicle=Vehicle("bus", "51B-000.01"),
    )  # fmt: skip
    msg = built(draft, EVERY_FIELD)
    size = len(json.dumps(msg, ensure_ascii=False, separators=(",", ":")).encode())
    assert 300_000 < size < MAX_PASSAGE_BYTES / 2  # large indeed, and twice within the limit
    assert check_passage(json.loads(json.dumps(msg)), "lane-a") == msg


# -- through the broker to the ingest -------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return postgres_url(f"ce_{uuid.uuid4().hex[:10]}")


class Publisher:
    """A device's MQTT client (what a stolen device certificate can do on its own topic)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    pub = Publisher(broker.port)
    yield pub
    pub.close()


def answers(acks: Subscriber, n: int) -> tuple[set[str], dict[str, str]]:
    """Stored pids and rejected pid -> reason from the next ``n`` acknowledgements."""
    stored: set[str] = set()
    rejected: dict[str, str] = {}
    for _ in range(n):
        ack = parse_ack(acks.get(timeout=15).payload)
        assert ack is not None
        stored |= set(ack.pids)
        rejected |= dict(ack.rejected)
    return stored, rejected


def rejected_rows(db_url: str) -> list[tuple[str, str]]:
    db = open_db(db_url)
    try:
        conn: Any = db._conn  # type: ignore[attr-defined]  # the test reads the table itself
        rows = conn.execute("SELECT reason, pid FROM rejected ORDER BY id").fetchall()
    finally:
        db.close()
    return [(r[0], r[1]) for r in rows]


def test_hostile_messages_are_rejected_kept_answered_and_block_nothing(
    tmp_path: Path,
    broker: Mosquitto,
    database: str,
    ingests: Callable[..., Ingest],
    publisher: Publisher,
) -> None:
    cfg = ingest_config(tmp_path, broker.port, database=database, batch_wait_s=0.2)
    ingest = ingests(cfg)
    acks = Subscriber(broker.port, ["cp/v1/+/ack"]).connect()
    topic = topics.passage("lane-x")
    good = [passage(seq=n) for n in range(1, len(HOSTILE) + 2)]
    # one hostile message between every two good ones: they share batches
    publisher.send(topic, body(good[0]))
    for (_, payload, _), msg in zip(HOSTILE, good[1:], strict=True):
        publisher.send(topic, payload)
        publisher.send(topic, body(msg))
    total = len(good) + len(HOSTILE)
    assert ingest.wait_until(lambda i: i.stored + i.duplicates + i.rejected >= total, 30)
    assert (ingest.stored, ingest.duplicates, ingest.rejected) == (len(good), 0, len(HOSTILE))
    assert ingest._thread.is_alive()

    db = open_db(database, readonly=True)
    try:
        assert sorted(m["pid"] for m in db.find(Query(device="lane-x"))) == sorted(
            m["pid"] for m in good
        )
    finally:
        db.close()
    kept = rejected_rows(database)
    assert len(kept) == len(HOSTILE)
    for (what, _, reason), (kept_reason, _) in zip(HOSTILE, kept, strict=True):
        assert reason in kept_reason, what
    # those that name a pid are answered to their device as rejected, with the reason
    stored, refused = set(), {}
    while len(stored) < len(good):
        more_stored, more_refused = answers(acks, 1)
        stored |= more_stored
        refused |= more_refused
    assert stored == {m["pid"] for m in good}
    named = {pid: reason for reason, pid in kept if pid is not None}
    assert len(named) >= 10
    while set(refused) != set(named):
        refused |= answers(acks, 1)[1]
    assert refused == named
    acks.disconnect()

    # PUBACKed: a restarted ingest gets none of them again
    ingest.stop()
    again = ingests(cfg)
    publisher.send(topic, body(passage(seq=len(good) + 1)))
    assert again.wait_until(lambda i: i.stored == 1, 15)
    assert (again.duplicates, again.rejected) == (0, 0)


def test_a_pid_or_seq_another_passage_holds_is_a_conflict_never_acknowledged(
    tmp_path: Path,
    broker: Mosquitto,
    database: str,
    ingests: Callable[..., Ingest],
    publisher: Publisher,
) -> None:
    ingest = ingests(ingest_config(tmp_path, broker.port, database=database))
    acks = Subscriber(broker.port, ["cp/v1/+/ack"]).connect()
    first = passage("lane-x", 1)
    publisher.send(topics.passage("lane-x"), body(first))
    assert answers(acks, 1) == ({first["pid"]}, {})
    # lane-y claims lane-x's pid; lane-x numbers another passage 1 again
    stolen = passage("lane-y", 1, pid=first["pid"])
    renumbered = passage("lane-x", 1)
    resent = dict(first)
    for topic, msg in (
        (topics.passage("lane-y"), stolen),
        (topics.passage("lane-x"), renumbered),
        (topics.passage("lane-x"), resent),
    ):
        publisher.send(topic, body(msg))
    assert ingest.wait_until(lambda i: i.duplicates + i.rejected == 3, 15)
    assert (ingest.stored, ingest.duplicates, ingest.rejected) == (1, 1, 2)
    told: dict[str, tuple[set[str], dict[str, str]]] = {}
    for _ in range(3):
        got = acks.get(timeout=15)
        ack = parse_ack(got.payload)
        assert ack is not None
        pids, refused = told.setdefault(str(topics.device_of(got.topic)), (set(), {}))
        pids |= set(ack.pids)
        refused |= dict(ack.rejected)
        if len(told.get("lane-x", ((), {}))[1]) == 1 and "lane-y" in told:
            break
    assert told["lane-y"] == (set(), {first["pid"]: "pid already stored for another device"})
    assert told["lane-x"][1] == {renumbered["pid"]: "seq 1 already stored for another passage"}
    db = open_db(database, readonly=True)
    try:
        assert [(m["pid"], m["device"]) for m in db.find(Query())] == [(first["pid"], "lane-x")]
    finally:
        db.close()
    acks.disconnect()


def test_a_message_above_the_size_limit_is_rejected_unread(
    tmp_path: Path, broker: Mosquitto, ingests: Callable[..., Ingest], publisher: Publisher
) -> None:
    database = f"sqlite:///{tmp_path / 'central.db'}"
    ingest = ingests(ingest_config(tmp_path, broker.port, database=database))
    assert ingest.cfg.ingest.max_message_bytes == MAX_PASSAGE_BYTES
    huge = passage(site="x" * (20 * 1024 * 1024))
    publisher.send(topics.passage("lane-x"), body(huge))
    publisher.send(topics.passage("lane-x"), body(passage(seq=2)))
    assert ingest.wait_until(lambda i: i.stored + i.rejected == 2, 30)
    assert (ingest.stored, ingest.rejected) == (1, 1)
    with sqlite3.connect(tmp_path / "central.db") as conn:
        reason, size, kept = conn.execute(
            "SELECT reason, size, length(payload) FROM rejected"
        ).fetchone()
    assert reason.startswith(f"larger than {MAX_PASSAGE_BYTES} bytes")
    assert size > 20 * 1024 * 1024
    assert kept == 64 * 1024  # its size and a sample, not 20 MB


def test_the_same_rejected_message_again_only_counts(
    tmp_path: Path, broker: Mosquitto, ingests: Callable[..., Ingest], publisher: Publisher
) -> None:
    ingest = ingests(ingest_config(tmp_path, broker.port))
    for _ in range(5):
        publisher.send(topics.passage("lane-x"), b"{not json")
    assert ingest.wait_until(lambda i: i.rejected == 5, 15)
    with sqlite3.connect(tmp_path / "central.db") as conn:
        assert conn.execute("SELECT reason, count FROM rejected").fetchall() == [("not JSON", 5)]


class RefusingDB:
    """The real database, refusing any batch holding one pid (as a database refuses a
    value no check foresaw): the ingest must find that one and store the rest."""

    def __init__(self, url: str, poison: str) -> None:
        self.db = open_db(url)
        self.poison = poison
        self.tries = 0

    def store(self, passages: Any) -> Stored:
        self.tries += 1
        if any(p.msg["pid"] == self.poison for p in passages):
            raise DatabaseError("database error: DataError: refused", transient=False)
        return self.db.store(passages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


def test_a_value_the_database_refuses_is_rejected_alone_and_the_batch_stored(
    tmp_path: Path, broker: Mosquitto, ingests: Callable[..., Ingest], publisher: Publisher
) -> None:
    cfg = ingest_config(tmp_path, broker.port, batch_wait_s=0.5)
    batch = [passage(seq=n) for n in range(1, 21)]
    db = RefusingDB(cfg.ingest.database, batch[7]["pid"])
    ingest = ingests(cfg, db)
    acks = Subscriber(broker.port, ["cp/v1/+/ack"]).connect()
    for msg in batch:
        publisher.send(topics.passage("lane-x"), body(msg))
    assert ingest.wait_until(lambda i: i.stored + i.rejected == 20, 20)
    assert (ingest.stored, ingest.rejected) == (19, 1)
    stored, refused = set(), {}
    while len(stored) < 19 or not refused:
        more, also = answers(acks, 1)
        stored |= more
        refused |= also
    assert refused == {
        batch[7]["pid"]: "the database refused it: database error: DataError: refused"
    }
    acks.disconnect()


def test_a_kiosk_whose_passage_is_rejected_archives_it_marked_and_alerts(
    tmp_path: Path,
    broker: Mosquitto,
    ingests: Callable[..., Ingest],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    """A kiosk whose store restarted its numbering (a new SD card): its seq 1 is taken."""
    cfg = ingest_config(tmp_path, broker.port)
    db: PassageDB = open_db(cfg.ingest.database)
    taken = passage("lane-a", 1)
    assert db.store([Checked.of(taken)]).new == 1
    db.close()
    ingests(cfg)
    kiosk = kiosks(device(tmp_path, broker.port)).start()
    wave_through(kiosk, 2)
    publisher = kiosk.app.publisher
    assert publisher.wait_until(lambda p: p.acknowledged == 2, 20)
    assert publisher.rejected == 1
    assert kiosk.app.outbox.status().depth == 0  # never sent again
    alert = next(a for a in kiosk.app.alerts.open() if a.name == "passage-rejected")
    assert alert.severity == "critical"
    assert "1 passage(s) refused" in alert.detail
    assert "seq 1 already stored for another passage" in alert.detail
    snap = snapshot(kiosk.cfg.store.dir)
    assert [m["seq"] for m in archived_messages(kiosk.cfg.store.dir)] == [1, 2]
    mine = {m["seq"]: m["pid"] for m in snap.archived}
    assert snap.rejected == {mine[1]: "seq 1 already stored for another passage"}


# -- retention --------------------------------------------------------------------------


def test_personal_data_is_purged_after_retention_and_the_counts_kept(
    tmp_path: Path, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = open_db(database)
    old = passage("lane-1", 1, ts="2026-10-01T08:00:00.000Z")
    old_party = passage(
        "lane-1", 2, ts="2026-10-02T08:00:00.000Z",
        occupants=[{"credentials": [0], "traveller": {"id_number": "001190000002", "name": "B"}}],
        vehicle={"kind": "car", "occupants": 1, "opened_by": "officer", "plate": "51H-123.45"},
    )  # fmt: skip
    recent = passage("lane-1", 3, ts="2026-11-25T08:00:00.000Z")
    try:
        db.store([Checked.of(m) for m in (old, old_party, recent)])
        db.reject([_rejection(b'{"name": "Tran Thi Mai"}')])
    finally:
        db.close()

    ingest_cfg = ingest_config(tmp_path, 1, database=database, retention_days=30)
    ingest = Ingest(ingest_cfg)  # not started: only its database and retention are used
    caplog.set_level(logging.INFO, "edge.central.ingest")
    # decided 2026-10-01 and 10-02, received "now" (the wall clock): purged by their ts
    ingest.purge_once(now=T0)
    ingest.close()
    assert ingest.purged == 2
    assert "personal data purged from 2 passage(s), 1 occupant(s), 1 vehicle(s)" in caplog.text

    db = open_db(database, readonly=True)
    try:
        everything = db.find(Query())
        assert [m["seq"] for m in everything] == [1, 2, 3]  # counted still
        assert [m["traveller"] for m in everything] == [{}, {}, recent["traveller"]]
        assert everything[1]["occupants"] == [{"credentials": [0], "traveller": {}}]
        assert "plate" not in everything[1]["vehicle"]
        assert db.find(Query(id_number="001190000001")) == [everything[2]]
        assert db.find(Query(id_number="001190000002")) == []
        assert db.find(Query(plate="51H-123.45")) == []
    finally:
        db.close()
    # a second pass finds nothing more
    again = Ingest(ingest_cfg)
    again.purge_once(now=T0)
    again.close()
    assert again.purged == 0


def _rejection(payload: bytes) -> Rejection:
    return Rejection("cp/v1/lane-1/passage", "lane-1", None, "not a passage", payload)


def test_rejected_payloads_are_purged_after_retention(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}"
    db = open_db(url)
    db.reject([_rejection(b'{"name": "Tran Thi Mai"}')])
    # received now (the wall clock): a purge 31 days later empties it
    purged = db.purge(datetime.now(UTC) + timedelta(days=1))
    db.close()
    assert purged.rejected == 1
    with sqlite3.connect(tmp_path / "central.db") as conn:
        assert conn.execute("SELECT reason, length(payload) FROM rejected").fetchall() == [
            ("not a passage", 0)
        ]


def test_a_retention_of_zero_keeps_everything_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ingest = Ingest(ingest_config(tmp_path, 1, retention_days=0))
    assert "retention_days = 0: personal data is kept forever" in caplog.text
    db = ingest.db
    db.store([Checked.of(passage(ts="2000-01-01T00:00:00.000Z"))])
    ingest.purge_once(now=T0)
    assert db.find(Query())[0]["traveller"] != {}
    ingest.close()


def test_an_old_database_gains_the_new_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "central.db"
    with sqlite3.connect(path) as conn:  # the first schema, as ingests before it wrote it
        conn.executescript(
            "CREATE TABLE passages (pid TEXT PRIMARY KEY, device TEXT NOT NULL, seq INTEGER "
            "NOT NULL, site TEXT NOT NULL, ts TEXT NOT NULL, decision TEXT NOT NULL, decided_by "
            "TEXT NOT NULL, mode TEXT NOT NULL, verdict TEXT, id_number TEXT, declaration_id "
            "TEXT, name TEXT, message TEXT NOT NULL, received_at TEXT NOT NULL);"
            "CREATE INDEX passages_device_seq ON passages (device, seq);"
            "CREATE TABLE rejected (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, reason TEXT NOT NULL, received_at TEXT NOT NULL);"
        )
        msg = passage()
        conn.execute(
            "INSERT INTO passages VALUES (?, 'lane-x', 1, 'QL1', ?, 'approved', 'officer', "
            "'officer', 'approve', NULL, NULL, NULL, ?, ?)",
            (msg["pid"], msg["ts"], json.dumps(msg), msg["ts"]),
        )
    db = open_db(f"sqlite:///{path}")
    try:
        assert db.count() == 1
        assert db.store([Checked.of(passage(seq=1))]).conflicts  # (device, seq) unique now
        db.reject([_rejection(b"x")])
    finally:
        db.close()


def test_parse_ack_reads_rejections_and_refuses_nonsense() -> None:
    ok = parse_ack(b'{"pids": ["a"], "rejected": [{"pid": "b", "reason": "seq\\u001b[2J"}]}')
    assert ok is not None
    assert (ok.pids, dict(ok.rejected)) == (("a",), {"b": "seq [2J"})
    assert parse_ack(b'{"pids": []}') is not None  # an older ingest
    for bad in (b'{"pids": [], "rejected": {}}', b'{"pids": [], "rejected": [{"pid": 1}]}'):
        assert parse_ack(bad) is None


def test_a_postgresql_connection_cut_is_transient_and_reopened() -> None:
    """A database restart (here: its backend terminated) fails the batch in flight as
    transient (it comes again), and the next one goes through a new connection."""
    url = postgres_url(f"ce_{uuid.uuid4().hex[:10]}")
    psycopg = pytest.importorskip("psycopg")
    db = open_db(url)
    try:
        assert db.store([Checked.of(passage(seq=1))]).new == 1
        pid = db._conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseError) as cut:
            db.store([Checked.of(passage(seq=2))])
        assert cut.value.transient
        assert db.store([Checked.of(passage(seq=2))]).new == 1
        assert db.count() == 2
    finally:
        db.close()
