"""The outbox: durable, numbered, segmented, archived, and honest about damage."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge import storage
from edge.errors import StoreError
from edge.model import Credential, PassageDraft
from edge.store import SENT, STORED, Outbox, read_archive

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
    return sorted(p.name for p in (path / "outbox").glob("seg-*.json"))


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
        "seg-00000000.json",
        "seg-00000001.json",
        "seg-00000002.json",
    ]
    on_disk = json.loads((tmp_path / "outbox" / "seg-00000001.json").read_text())["passages"]
    assert sorted(map(int, on_disk)) == list(range(11, 21))
    assert json.loads(on_disk["11"]["msg"])["pid"] == passages[10].pid  # the text published
    assert on_disk["11"]["state"] == STORED
    b.close()


def test_seq_continues_after_reopen_and_never_repeats(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=10)
    for _ in range(12):
        b.append(draft())
    pids = [e.pid for e in b.entries().values()]
    b.acknowledge(pids, T0)  # everything leaves the outbox
    b.close()
    assert segment_files(tmp_path) == ["seg-00000001.json"]  # the head segment stays
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
    assert [m["seq"] for m in b.messages([12, 3, 15, 99])] == [12, 3, 15]


def test_no_raw_payload_is_stored(tmp_path: Path) -> None:
    b = box(tmp_path)
    secret = b"NGUYEN VAN A|012345678901"
    b.append(
        PassageDraft(
            T0, "denied", "policy", (), (Credential.from_raw("unrecognised", secret),), "auto"
        )
    )
    b.close()
    text = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert "NGUYEN" not in text
    assert "012345678901" not in text


def test_failed_write_keeps_the_previous_file_and_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = box(tmp_path)
    b.append(draft())
    seg = tmp_path / "outbox" / "seg-00000000.json"
    before = seg.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left"):
        b.append(draft())
    monkeypatch.undo()
    assert seg.read_bytes() == before
    assert b.append(draft()).seq == 2  # the failed append burned no seq


def test_a_damaged_segment_is_quarantined_and_its_last_good_copy_used(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    b.append(draft())  # the segment's .prev now holds the version with seq 1 only
    b.close()
    seg = tmp_path / "outbox" / "seg-00000000.json"
    seg.write_text('{"passages": {"1": {"msg"')  # bit rot
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == [1]
    assert reopened.alerts == ["store_corrupt: seg-00000000.json recovered from its last good copy"]
    (damaged,) = (tmp_path / "outbox" / "quarantine").iterdir()
    assert damaged.read_text() == '{"passages": {"1": {"msg"'  # kept as evidence
    assert reopened.append(draft()).seq == 3  # seq 2 is never reused


def test_a_damaged_file_without_a_good_copy_is_reported(tmp_path: Path) -> None:
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "seg-00000000.json").write_text("[1, 2]")
    b = box(tmp_path)
    assert b.entries() == {}
    assert b.alerts == ["store_corrupt: seg-00000000.json damaged, no good copy; moved aside"]


@pytest.mark.parametrize(
    "content",
    [
        '{"passages": {"x": {"msg": {}, "state": "stored"}}}',
        '{"passages": {"1": {"msg": {}, "state": "lost"}}}',
        '{"passages": {"1": {"state": "stored"}}}',
        '{"passages": {"1": {"msg": "{\\"pid\\": ", "state": "stored"}}}',  # torn message text
        '{"passages": {"1": {"msg": "[1, 2]", "state": "stored"}}}',
    ],
)
def test_malformed_segments_are_damaged_files(tmp_path: Path, content: str) -> None:
    (tmp_path / "outbox").mkdir()
    (tmp_path / "outbox" / "seg-00000000.json").write_text(content)
    assert box(tmp_path).alerts[0].startswith("store_corrupt: seg-00000000.json")


def test_leftover_temp_files_from_a_crash_are_harmless(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    b.close()
    (tmp_path / "outbox" / "seg-00000000.json.tmp").write_text("half a wri")
    b = box(tmp_path)
    assert b.append(draft()).seq == 2
    assert not (tmp_path / "outbox" / "seg-00000000.json.tmp").exists()


def test_the_first_store_layout_moves_into_segments(tmp_path: Path) -> None:
    old = {"passages": {"1": {"msg": {"pid": "p1", "seq": 1, "ts": "2026-11-26T08:00:00.000Z",
                                      "decision": "denied"}, "state": "stored"}}}  # fmt: skip
    (tmp_path / "outbox.json").write_text(json.dumps(old))
    b = box(tmp_path)
    assert b.entries()[1].pid == "p1"
    assert b.append(draft()).seq == 2
    assert (tmp_path / "outbox.json.migrated").exists()
    assert (
        b.payloads([1])[0].data == json.dumps(old["passages"]["1"]["msg"]).replace(" ", "").encode()
    )


def test_segments_holding_message_objects_still_load(tmp_path: Path) -> None:
    """Stores written before messages were kept as text: read, published, archived."""
    msg = {"pid": "p1", "seq": 1, "ts": "2026-11-26T08:00:00.000Z", "decision": "approved"}
    (tmp_path / "outbox").mkdir()
    seg = {"passages": {"1": {"msg": msg, "state": "sent"}}}
    (tmp_path / "outbox" / "seg-00000000.json").write_text(json.dumps(seg))
    b = box(tmp_path)
    assert b.entries()[1].state == SENT
    assert json.loads(b.payloads([1])[0].data) == msg
    assert b.acknowledge(["p1"], T0) == [1]
    assert read_archive(tmp_path / "archive" / "2026-11-26.jsonl") == [msg]


def test_what_is_published_is_the_text_stored(tmp_path: Path) -> None:
    b = box(tmp_path)
    p = b.append(draft())
    b.close()
    b = box(tmp_path)  # after a restart too: byte for byte, no re-encoding
    [payload] = b.payloads([p.seq])
    on_disk = json.loads((tmp_path / "outbox" / "seg-00000000.json").read_text())
    assert payload.data.decode() == on_disk["passages"]["1"]["msg"]
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


def test_bytes_written_per_passage_stay_bounded_by_the_segment(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=50)
    for _ in range(120):
        b.append(draft())
    storage.written.bytes = 0
    b.append(draft())
    one = storage.written.bytes
    seg = max((tmp_path / "outbox").glob("seg-*.json"), key=lambda p: p.stat().st_size)
    assert one <= seg.stat().st_size + 64  # one segment rewritten, not the whole outbox


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
    assert b.alerts == [
        "store_foreign: 1 passage(s) stored as lane-1 cannot be delivered as lane-2; "
        "kept (checkpoint-edge outbox export)"
    ]
    assert [e.device for e in b.entries().values()] == ["lane-1"]
    assert b.append(draft()).seq == 2
