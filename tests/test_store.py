"""The outbox: durable, numbered, segmented, archived, and honest about damage."""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.core.model import Credential, PassageDraft
from edge.errors import StoreError
from edge.store import journal, seglog, storage
from edge.store import tool as outbox_tool
from edge.store.outbox import SENT, STORED, Outbox
from edge.store.records import LiveIndex, doc_of, read_archive

from .test_declaration import make_declaration

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def draft(decision: str = "denied", ts: datetime = T0) -> PassageDraft:
    return PassageDraft(
        ts,
        decision,  # type: ignore[arg-type]
        "policy",
        ("unrecognised",),
        (Credential.from_raw("unrecognised", b"x"),),
        "auto",
    )


def box(path: Path, **kw: object) -> Outbox:
    return Outbox(path, "lane-1", "site-a", **kw)  # type: ignore[arg-type]


def segment_files(path: Path) -> list[str]:
    return sorted(p.name for p in (path / "outbox").glob("seg-*.log"))


def segment_docs(path: Path, index: int = 0) -> dict[str, dict[str, object]]:
    """A segment log's documents, as read from its file."""
    replayed = seglog.load(path / "outbox" / f"seg-{index:08d}.log")
    assert replayed is not None
    assert not replayed.damaged
    return replayed.docs()


def archived(path: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for day in sorted((path / "archive").glob("*.jsonl")):
        out += read_archive(day)
    return out


def test_append_numbers_and_persists_in_segments(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    passages = [b.append(draft()) for _ in range(25)]
    assert [p.seq for p in passages] == list(range(1, 26))
    assert len({p.pid for p in passages}) == 25
    assert segment_files(tmp_path) == [
        "seg-00000000.log",
        "seg-00000001.log",
        "seg-00000002.log",
    ]
    on_disk = segment_docs(tmp_path, 1)
    assert sorted(map(int, on_disk)) == list(range(11, 21))
    assert json.loads(on_disk["11"]["msg"])["pid"] == passages[10].pid  # type: ignore[arg-type]
    assert on_disk["11"]["state"] == STORED
    b.close()


def test_seq_continues_after_reopen_and_never_repeats(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for _ in range(12):
        b.append(draft())
    pids = [e.pid for e in b.entries().values()]
    b.acknowledge(pids, T0)  # everything leaves the outbox
    b.close()
    assert segment_files(tmp_path) == ["seg-00000001.log"]  # the head segment stays
    b = box(tmp_path, segment_size=10)
    assert b.append(draft()).seq == 13
    b.close()


def test_meta_survives_losing_every_segment(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for _ in range(20):
        b.append(draft())
    b.acknowledge([e.pid for e in b.entries().values()], T0)
    b.close()
    for seg in (tmp_path / "outbox").iterdir():
        seg.unlink()
    assert box(tmp_path, segment_size=10).append(draft()).seq == 21


def test_delivery_states_and_acknowledgement_to_the_archive(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for i in range(5):
        b.append(draft(ts=T0 + timedelta(days=i % 2)))
    b.mark_sent([2, 4, 99])
    assert {s: e.state for s, e in b.entries().items()} == {
        1: STORED,
        2: SENT,
        3: STORED,
        4: SENT,
        5: STORED,
    }
    pids = {s: e.pid for s, e in b.entries().items()}
    assert b.acknowledge([pids[2], pids[3], "unknown-pid"], T0) == [2, 3]
    assert sorted(b.entries()) == [1, 4, 5]
    status = b.status()
    assert (status.depth, status.stored, status.sent, status.last_seq) == (3, 2, 1, 5)
    assert status.last_ack == "2026-11-26T08:00:00.000Z"
    days = sorted(p.name for p in (tmp_path / "archive").iterdir())
    assert days == ["2026-11-26.jsonl", "2026-11-27.jsonl"]  # by passage day
    assert sorted(m["seq"] for m in archived(tmp_path)) == [2, 3]  # type: ignore[type-var]
    b.close()
    reopened = box(tmp_path, segment_size=10)
    assert sorted(reopened.entries()) == [1, 4, 5]
    assert reopened.entries()[4].state == SENT


def test_messages_come_from_disk_in_the_order_asked(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for _ in range(15):
        b.append(draft())
    payloads = b.payloads([12, 3, 15, 99])
    assert [json.loads(p.data)["seq"] for p in payloads] == [12, 3, 15]


def test_no_raw_payload_is_stored(tmp_path: Path) -> None:
    b = box(tmp_path)
    secret = b"NGUYEN VAN A|012345678901"
    b.append(
        PassageDraft(
            T0, "denied", "policy", (), (Credential.from_raw("unrecognised", secret),), "auto"
        )
    )
    b.close()
    text = "".join(p.read_text() for p in tmp_path.rglob("*") if p.is_file())
    assert "NGUYEN" not in text
    assert "012345678901" not in text


def test_failed_write_keeps_the_previous_file_and_raises(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    seg = tmp_path / "outbox" / "seg-00000000.log"
    before = seg.read_bytes()

    def disk_full_half_way(step: str) -> None:
        if step == "record-half" and seg.read_bytes() != before:  # the segment's, not the journal's
            raise OSError(28, "No space left on device")

    storage.crash = disk_full_half_way
    try:
        with pytest.raises(StoreError, match="No space left"):
            b.append(draft())
    finally:
        storage.crash = storage._no_crash
    # the half record was cut off again (and the zeros grown ahead with it)
    assert seg.read_bytes() == before[: storage.data_end(before)]
    assert b.append(draft()).seq == 2  # the failed append burned no seq
    b.close()
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == [1, 2]
    assert reopened.alerts == []


def cut_points(before: int, after: int) -> list[int]:
    """Where a power cut may end an append of bytes ``before`` to ``after``: every byte
    near both ends, every seventh in between."""
    return sorted({*range(before, after + 1, 7), *range(before, before + 16), after - 1, after})


def test_a_power_cut_at_any_byte_of_an_append_loses_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    """The journal line is written (and synced) first, then the segment record: cut either
    at any byte, the store opens without an alert, holds every passage acknowledged
    before, the one cut short too once its journal line is whole, and the next passage
    is in both records."""
    store = tmp_path / "store"
    b = box(store, segment_size=10)
    acknowledged = [b.append(draft()).pid for _ in range(3)]
    seg = store / "outbox" / "seg-00000000.log"
    (day,) = (store / "journal").iterdir()
    seg_before, day_before = seg.read_bytes(), day.read_bytes()
    b.append(draft())  # the one cut short
    seg_after, day_after = seg.read_bytes(), day.read_bytes()
    b.close()
    cuts = [(day_after[:k], seg_before) for k in cut_points(len(day_before), len(day_after))]
    cuts += [(day_after, seg_after[:k]) for k in cut_points(len(seg_before), len(seg_after))]
    for n, (day_bytes, seg_bytes) in enumerate(cuts):
        copy = tmp_path / f"cut-{n}"
        shutil.copytree(store, copy)
        (copy / "journal" / day.name).write_bytes(day_bytes)
        (copy / "outbox" / seg.name).write_bytes(seg_bytes)
        reopened = box(copy, segment_size=10)
        assert reopened.alerts == [], n
        assert [e.pid for e in reopened.entries().values()][:3] == acknowledged, n
        assert set(reopened.entries()) <= {1, 2, 3, 4}, n
        if day_bytes == day_after:  # its journal line whole: the append had returned
            assert 4 in reopened.entries(), n
        nxt = reopened.append(draft())
        reopened.close()
        again = box(copy, segment_size=10)
        assert again.entries()[nxt.seq].pid == nxt.pid, n
        assert again.alerts == [], n
        again.close()
        assert json.loads(journal.read(copy / "journal")[nxt.seq])["pid"] == nxt.pid, n
        shutil.rmtree(copy)


@pytest.mark.parametrize("step", ["temp-open", "temp-half", "temp-written", "temp-synced",
                                  "replaced"])  # fmt: skip
def test_a_power_cut_during_a_compaction_loses_nothing(tmp_path: Path, step: str) -> None:
    class PowerCut(BaseException):
        pass

    def cut(reached: str) -> None:
        if reached == step:
            raise PowerCut

    b = box(tmp_path, segment_size=10)
    pids = [b.append(draft()).pid for _ in range(9)]
    storage.crash = cut
    try:
        with pytest.raises(PowerCut):
            pids.append(b.append(draft()).pid)  # the 10th: its segment is done, compacted
    finally:
        storage.crash = storage._no_crash
    b._lock_file.close()  # killed
    reopened = box(tmp_path, segment_size=10)
    assert reopened.alerts == []
    assert [e.pid for e in reopened.entries().values()][:9] == pids
    assert len(reopened.entries()) == 10  # the 10th was on disk before the compaction
    assert reopened.append(draft()).seq == 11


def test_a_damaged_segment_is_restored_from_the_journal(tmp_path: Path) -> None:
    """Issue 15: 11 passages waiting, their segment overwritten with garbage."""
    b = box(tmp_path)
    pids = [b.append(draft()).pid for _ in range(11)]
    b.close()
    seg = tmp_path / "outbox" / "seg-00000000.log"
    seg.write_bytes(b"\x00garbage" * 50)  # bit rot
    report = outbox_tool.status(tmp_path, io.StringIO())  # before the daemon starts again
    assert (report["depth"], report["missing"]) == (11, [])
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == list(range(1, 12))
    assert [e.pid for e in reopened.entries().values()] == pids
    assert reopened.entries()[10].state == STORED  # sent again: the ingest drops a duplicate
    assert list(map(str, reopened.alerts)) == [
        "store_corrupt: seg-00000000.log damaged, moved aside; seq 1-11 restored from the journal"
    ]
    (damaged,) = (tmp_path / "outbox" / "quarantine").iterdir()
    assert damaged.read_bytes() == b"\x00garbage" * 50  # kept as evidence
    assert reopened.append(draft()).seq == 12
    reopened.close()
    out = io.StringIO()
    report = outbox_tool.status(tmp_path, out)
    assert report["depth"] == 12
    assert "seq 1-11 restored from the journal" in out.getvalue()


def test_one_damaged_record_costs_nothing_and_is_named(tmp_path: Path) -> None:
    b = box(tmp_path)
    for _ in range(11):
        b.append(draft())
    b.mark_sent([3])
    b.close()
    seg = tmp_path / "outbox" / "seg-00000000.log"
    lines = seg.read_bytes().split(b"\n")
    lines[9] = lines[9].replace(b'"state"', b'"stat\x00"')  # seq 10's record, one byte
    seg.write_bytes(b"\n".join(lines))
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == list(range(1, 12))
    assert reopened.entries()[3].state == SENT  # the records after the damage still count
    assert list(map(str, reopened.alerts)) == [
        "store_corrupt: seg-00000000.log damaged, moved aside; seq 10 restored from the journal"
    ]


def test_a_gap_nothing_can_fill_is_reported_by_number(tmp_path: Path) -> None:
    b = box(tmp_path)
    for _ in range(12):
        b.append(draft())
    b.close()
    for day in (tmp_path / "journal").iterdir():  # the second record is gone too...
        lines = day.read_bytes().splitlines(keepends=True)
        day.write_bytes(b"".join(lines[:9] + lines[12:]))  # ...for seq 10-12
    seg = tmp_path / "outbox" / "seg-00000000.log"
    seg.write_bytes(b"garbage")
    out = io.StringIO()
    assert outbox_tool.status(tmp_path, out)["missing"] == [10, 11, 12]
    assert "missing      seq 10-12" in out.getvalue()
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == list(range(1, 10))
    assert list(map(str, reopened.alerts)) == [
        "store_corrupt: seg-00000000.log damaged, moved aside; seq 1-9 restored from the "
        "journal; seq 10-12 missing (in neither the journal nor the archive)"
    ]
    assert reopened.append(draft()).seq == 13  # a lost seq is never reused
    reopened.close()
    out = io.StringIO()
    outbox_tool.status(tmp_path, out)
    assert "seq 10-12 missing" in out.getvalue()  # still said after the repair


def test_acknowledged_passages_are_not_restored(tmp_path: Path) -> None:
    b = box(tmp_path)
    for _ in range(5):
        b.append(draft())
    b.acknowledge([b.entries()[2].pid, b.entries()[4].pid], T0)
    b.close()
    (tmp_path / "outbox" / "seg-00000000.log").write_bytes(b"garbage")
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == [1, 3, 5]
    assert list(map(str, reopened.alerts)) == [
        "store_corrupt: seg-00000000.log damaged, moved aside; seq 1, 3, 5 restored from the "
        "journal"
    ]


MSG = {"pid": "p1", "seq": 1, "device": "lane-1", "ts": "2026-11-26T08:00:00.000Z"}
FIELDS = {k: v for k, v in doc_of(json.dumps(MSG), MSG, STORED).items() if k != "msg"}


@pytest.mark.parametrize(
    ("key", "fields", "text"),
    [
        ("x", FIELDS, json.dumps(MSG)),  # not a seq
        ("1", {**FIELDS, "state": "lost"}, json.dumps(MSG)),
        ("1", {"state": "stored"}, json.dumps(MSG)),  # no index fields
        ("1", {**FIELDS, "refs": 5}, json.dumps(MSG)),
        ("1", {**FIELDS, "msg": MSG}, None),  # a message object, not its text
    ],
)
def test_malformed_segments_are_damaged_files(
    tmp_path: Path, key: str, fields: dict[str, object], text: str | None
) -> None:
    (tmp_path / "outbox").mkdir()
    texts = [] if text is None else [text.encode()]
    record = seglog.encode({"put": {key: fields}, "len": [len(t) for t in texts] or [-1]}, texts)
    # a record after it: a bad last one would be an append cut short, not damage
    (tmp_path / "outbox" / "seg-00000000.log").write_bytes(record + seglog.encode({"probe": 1}))
    assert str(box(tmp_path).alerts[0]).startswith("store_corrupt: seg-00000000.log")


def test_leftover_temp_files_from_a_crash_are_harmless(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    b.close()
    (tmp_path / "outbox" / "seg-00000000.log.tmp").write_text("half a wri")
    b = box(tmp_path)
    assert b.append(draft()).seq == 2
    assert not (tmp_path / "outbox" / "seg-00000000.log.tmp").exists()


def test_what_is_published_is_the_text_stored(tmp_path: Path) -> None:
    b = box(tmp_path)
    p = b.append(draft())
    b.close()
    b = box(tmp_path)  # after a restart too: byte for byte, no re-encoding
    [payload] = b.payloads([p.seq])
    assert payload.data.decode() == segment_docs(tmp_path)["1"]["msg"]
    assert (payload.seq, payload.pid) == (1, p.pid)
    assert json.loads(payload.data) == p.to_message(b.fields)
    b.acknowledge([p.pid], T0)
    line = (tmp_path / "archive" / f"{p.draft.ts.date()}.jsonl").read_text()
    assert json.loads(line)["msg"] == json.loads(payload.data)


def test_archive_days_past_retention_are_purged(tmp_path: Path) -> None:
    b = box(tmp_path, retention_days=30)
    for days_ago in (40, 31, 30, 1):
        b.append(draft(ts=T0 - timedelta(days=days_ago)))
    b.acknowledge([e.pid for e in b.entries().values()], T0)
    gone = b.purge(T0).deleted
    assert gone == ("2026-10-17.jsonl", "2026-10-26.jsonl")
    left = sorted(p.name for p in (tmp_path / "archive").iterdir())
    assert left == ["2026-10-27.jsonl", "2026-11-25.jsonl"]


def test_approved_since_reads_live_and_archived_passages(tmp_path: Path) -> None:
    b = box(tmp_path)

    def approved(decl_id: str, ts: datetime) -> PassageDraft:
        claims = make_declaration(declaration_id=decl_id)
        cred = Credential.from_raw("declaration", decl_id.encode(), valid=True, claims=claims)
        return PassageDraft(ts, "approved", "policy", (), (cred,), "auto")

    archived_one = b.append(approved("AAAA-0001", T0 - timedelta(minutes=2)))
    live_one = b.append(approved("AAAA-0002", T0 - timedelta(minutes=1)))
    b.append(approved("AAAA-0003", T0 - timedelta(hours=2)))  # too long ago
    b.append(draft("denied"))
    b.acknowledge([archived_one.pid], T0)
    refs = dict(b.approved_since(T0 - timedelta(minutes=5)))
    expected = {p.draft.credentials[0].ref: p.draft.ts for p in (archived_one, live_one)}
    assert refs == expected


def test_check_writable(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.check_writable()
    b.append(draft())
    b.check_writable()
    assert b.entries()[1].state == STORED


def test_a_torn_archive_line_costs_only_itself(tmp_path: Path) -> None:
    day = tmp_path / "d.jsonl"
    storage.append_lines(day, [json.dumps({"msg": {"seq": 1}})])
    with open(day, "a") as fh:
        fh.write('{"msg": {"se')  # a power cut mid-append
    storage.append_lines(day, [json.dumps({"msg": {"seq": 2}})])
    assert [m["seq"] for m in read_archive(day)] == [1, 2]


def test_bytes_written_per_passage_are_its_own_not_its_segments(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=50)
    for _ in range(120):
        b.append(draft())
    storage.written.bytes = 0
    passage = b.append(draft())
    text = json.dumps(passage.to_message(b.fields), separators=(",", ":"))
    assert storage.written.bytes <= 2 * len(text) + 600  # its segment record and journal line


def test_a_done_segment_is_compacted_into_one_record(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for _ in range(12):
        b.append(draft())
    b.mark_sent([2])
    b.close()
    seg = (tmp_path / "outbox" / "seg-00000000.log").read_bytes()
    assert seg.count(b"\n") == 2  # the compacted record, then the "sent" mark
    assert (tmp_path / "outbox" / "seg-00000001.log").read_bytes().count(b"\n") == 2
    reopened = box(tmp_path, segment_size=10)
    assert sorted(reopened.entries()) == list(range(1, 13))
    assert reopened.entries()[2].state == SENT


def test_a_log_grown_past_its_live_size_is_compacted(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=1000)
    for _ in range(150):
        p = b.append(draft())
        b.mark_sent([p.seq])
        b.acknowledge([p.pid], T0)
    seg = tmp_path / "outbox" / "seg-00000000.log"
    assert storage.data_end(seg.read_bytes()) < seglog.COMPACT_SLACK + 4096  # its records
    assert seg.stat().st_size <= storage.data_end(seg.read_bytes()) + storage.PREALLOC
    assert b.entries() == {}
    assert [p.name for p in (tmp_path / "journal").iterdir()] == ["2026-11-26.jsonl"]


def test_journal_days_with_nothing_waiting_are_deleted(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for i in range(25):
        b.append(draft(ts=T0 + timedelta(days=i // 10)))
    assert len(list((tmp_path / "journal").iterdir())) == 3
    b.acknowledge([e.pid for s, e in b.entries().items() if s <= 10], T0)
    days = sorted(p.name for p in (tmp_path / "journal").iterdir())
    assert days == ["2026-11-27.jsonl", "2026-11-28.jsonl"]


def test_live_days_are_kept_up_to_date_when_a_segment_is_read_again() -> None:
    """A drain reads segments again (only the oldest stay open): the day count is kept,
    not recounted over every waiting passage at the next drop."""
    live = LiveIndex()
    docs = {
        str(seq): doc_of(
            "{}", {"pid": f"p{seq}", "ts": f"2026-11-2{seq % 2 + 6}T08:00:00.000Z"}, "stored"
        )
        for seq in range(1, 5)
    }
    live.add_all(docs)
    assert live.days() == {"2026-11-26": 2, "2026-11-27": 2}
    live.add_all(docs)  # the same segment loaded again
    moved = {"3": doc_of("{}", {"pid": "p3", "ts": "2026-11-28T08:00:00.000Z"}, "stored")}
    live.add_all(moved)
    live.remove(1)
    assert live.days() == {"2026-11-26": 2, "2026-11-28": 1}


def test_one_store_one_kiosk(tmp_path: Path) -> None:
    first = box(tmp_path)
    with pytest.raises(StoreError, match="in use by another kiosk process"):
        box(tmp_path)
    first.close()
    box(tmp_path).close()  # free again


def test_seq_never_repeats_after_a_kill_once_everything_was_acknowledged(tmp_path: Path) -> None:
    b = box(tmp_path)
    for _ in range(3):
        b.append(draft())
    b.acknowledge([e.pid for e in b.entries().values()], T0)
    b._lock_file.close()  # killed: no close(), only the kernel releasing the lock
    assert box(tmp_path).append(draft()).seq == 4


def test_passages_of_another_device_id_raise_an_alert(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    b.close()
    b = Outbox(tmp_path, "lane-2", "site-a")
    assert list(map(str, b.alerts)) == [
        "store_foreign: 1 passage(s) stored as lane-1 cannot be delivered as lane-2; "
        "kept (checkpoint-edge outbox export)"
    ]
    assert [e.device for e in b.entries().values()] == ["lane-1"]
    assert b.append(draft()).seq == 2


def test_a_journal_day_stays_while_any_segment_holds_a_passage_of_it(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    days = [0] * 5 + [1] * 5 + [0] * 5 + [2] * 10  # day 0 in segments 0 and 1
    for d in days:
        b.append(draft(ts=T0 + timedelta(days=d)))
    first = [e.pid for s, e in b.entries().items() if s <= 10]
    b.acknowledge(first, T0)
    names = sorted(p.name for p in (tmp_path / "journal").iterdir())
    assert names == ["2026-11-26.jsonl", "2026-11-28.jsonl"]  # day 1 gone, day 0 still waits
    b.close()
    reopened = box(tmp_path, segment_size=10)  # counted afresh from the segments
    reopened.acknowledge([e.pid for s, e in reopened.entries().items() if s <= 20], T0)
    assert [p.name for p in (tmp_path / "journal").iterdir()] == ["2026-11-28.jsonl"]
    assert sorted(reopened.entries()) == list(range(21, 26))


def test_a_wholly_acknowledged_segment_goes_without_a_delete_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = box(tmp_path, segment_size=10)
    for _ in range(25):
        b.append(draft())
    appended: list[bytes] = []
    real = storage.AppendLog.append
    monkeypatch.setattr(
        storage.AppendLog, "append", lambda log, data: (appended.append(data), real(log, data))
    )
    b.acknowledge([e.pid for s, e in b.entries().items() if s <= 23], T0)
    assert not (tmp_path / "outbox" / "seg-00000000.log").exists()
    assert not (tmp_path / "outbox" / "seg-00000001.log").exists()
    # only the segment appends go to has a record (its checksum, a space, the JSON)
    assert [json.loads(r.split(b" ", 1)[1]) for r in appended] == [{"del": ["21", "22", "23"]}]
    archived = [m["seq"] for m in read_archive(tmp_path / "archive" / "2026-11-26.jsonl")]
    assert archived == list(range(1, 24))


def test_a_sent_mark_is_written_but_costs_no_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = box(tmp_path, segment_size=100)
    for _ in range(5):
        b.append(draft())
    syncs: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (syncs.append(fd), real(fd)))
    b.mark_sent([1, 2, 3])
    assert syncs == []
    b.append(draft())  # the next synced record makes it durable with its own
    assert syncs
    b.close()
    assert [s for s, e in box(tmp_path).entries().items() if e.state == SENT] == [1, 2, 3]


# -- logs grown ahead (storage.PREALLOC) --------------------------------------


def test_an_append_log_grows_ahead_in_zeroed_steps_and_reopens_at_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    log = storage.AppendLog(path, lines=True)
    records = [b"%d one record\n" % i for i in range(3)]
    for record in records:
        log.append(record)
    log.close()
    data = path.read_bytes()
    assert len(data) == storage.PREALLOC  # one step grown, not a size change per record
    assert data[: storage.data_end(data)] == b"".join(records)
    again = storage.AppendLog(path, lines=True)
    again.append(b"3 after reopening\n")
    again.close()
    data = path.read_bytes()
    assert data[: storage.data_end(data)] == b"".join(records) + b"3 after reopening\n"
    big = b"x" * (storage.PREALLOC + 10) + b"\n"  # larger than a step: grown past it
    storage.AppendLog(path, lines=True).append(big)
    data = path.read_bytes()
    assert len(data) % storage.PREALLOC == 0
    assert data[: storage.data_end(data)].endswith(big)


@pytest.mark.parametrize("step", ["grown", "record-half", "record-written"])
def test_a_power_cut_while_a_log_grows_loses_only_the_append_cut_short(
    tmp_path: Path, step: str
) -> None:
    b = box(tmp_path, segment_size=1000)
    kept = [b.append(draft()).seq for _ in range(60)]
    grown = 0

    def cut(at: str) -> None:
        nonlocal grown
        grown += at == "grown"
        if at == step and grown:  # in an append that grows a file, at this step
            raise SystemExit(f"power cut at {at}")

    storage.crash = cut
    try:
        while True:  # until the cut: some appends fit, one grows its file
            kept.append(b.append(draft()).seq)
    except SystemExit:
        pass
    finally:
        storage.crash = storage._no_crash
    b._lock_file.close()  # killed: no close()
    reopened = box(tmp_path, segment_size=1000)
    assert sorted(reopened.entries())[: len(kept)] == kept
    assert reopened.alerts == []  # a cut-short append is no damage
    nxt = reopened.append(draft())
    reopened.close()
    assert sorted(box(tmp_path, segment_size=1000).entries())[-1] == nxt.seq


def test_a_record_whose_first_block_never_reached_the_disk_is_damage_not_torn(
    tmp_path: Path,
) -> None:
    """Writes into a file grown ahead are not ordered: after a power cut a record's end
    may be on the disk and its start still zeros. That cannot be told from garbage,
    so it is repaired as damage from the journal: nothing is lost either way."""
    b = box(tmp_path)
    pids = [b.append(draft()).pid for _ in range(3)]
    b.close()
    seg = tmp_path / "outbox" / "seg-00000000.log"
    data = seg.read_bytes()
    end = storage.data_end(data)
    last = data.rfind(b"\n", 0, end - 1) + 1  # the third passage's record
    seg.write_bytes(data[:last] + bytes(6) + data[last + 6 :])
    assert seglog.replay(seg.read_bytes()).bad == 1
    reopened = box(tmp_path)
    assert [e.pid for e in reopened.entries().values()] == pids
    assert list(map(str, reopened.alerts)) == [
        "store_corrupt: seg-00000000.log damaged, moved aside; seq 3 restored from the journal"
    ]
