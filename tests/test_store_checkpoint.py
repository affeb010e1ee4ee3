"""The journal as the outbox's write-ahead log: one sync per passage, checkpoints, and
what a start puts back after a power cut took unsynced segment records."""

from __future__ import annotations

import io
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from edge.errors import StoreError
from edge.store import journal, outbox, storage
from edge.store import tool as outbox_tool
from edge.store.outbox import STORED, Outbox
from edge.store.thread import StoreThread

from .test_store import T0, box, draft

SEG0 = "outbox/seg-00000000.log"


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files fdatasynced or fsynced, in order."""
    names: list[str] = []
    real_fdatasync, real_fsync = os.fdatasync, os.fsync

    def name_of(fd: int) -> str:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).name

    def fdatasync(fd: int) -> None:
        names.append(name_of(fd))
        real_fdatasync(fd)

    def fsync(fd: int) -> None:
        names.append(name_of(fd))
        real_fsync(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "fsync", fsync)
    return names


def killed(b: Outbox) -> None:
    """The process ends without close(): only the kernel releases the lock."""
    b._lock_file.close()


def journal_bytes(store: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((store / "journal").glob("*.jsonl")))


def ends_with_checkpoint(store: Path, seq: int) -> bool:
    data = journal_bytes(store)
    return data[: storage.data_end(data)].endswith(journal.checkpoint_line(seq))


def test_an_append_syncs_its_journal_line_only(tmp_path: Path, synced: list[str]) -> None:
    b = box(tmp_path)
    b.append(draft())
    assert b.unsynced == 1
    b.checkpoint()  # the first: the new segment's directory entry too
    assert b.unsynced == 0
    synced.clear()
    b.append(draft())
    assert synced == [f"{T0.date()}.jsonl"]
    assert b.unsynced == 1
    seg = (tmp_path / SEG0).read_bytes()
    assert seg.count(b"\n") == 2  # the segment has the record all the same (not yet durable)
    synced.clear()
    b.checkpoint()
    assert synced == ["seg-00000000.log"]  # the journal's ckpt line rides with the next sync
    assert b.unsynced == 0
    assert ends_with_checkpoint(tmp_path, 2)
    b.close()


def test_segment_records_a_power_cut_took_are_put_back_from_the_journal(tmp_path: Path) -> None:
    store = tmp_path / "store"
    b = box(store)
    first = [b.append(draft()) for _ in range(3)]
    b.checkpoint()
    seg_at_checkpoint = (store / SEG0).read_bytes()
    later = [b.append(draft()) for _ in range(5)]
    texts = {x.seq: bytes(x.data) for x in b.payloads(range(1, 9))}
    killed(b)
    seg_after = (store / SEG0).read_bytes()
    # the power cut: none, some or all of the unsynced bytes reached the disk
    cuts = [len(seg_at_checkpoint), len(seg_at_checkpoint) + 40, len(seg_after) - 1]
    for n, cut in enumerate(cuts):
        copy = tmp_path / f"cut-{n}"
        shutil.copytree(store, copy)
        (copy / SEG0).write_bytes(seg_after[:cut])
        reopened = box(copy)
        assert reopened.alerts == [], n
        entries = reopened.entries()
        assert [e.pid for e in entries.values()] == [p.pid for p in [*first, *later]], n
        assert all(e.state == STORED for e in entries.values())
        payloads = reopened.payloads(range(1, 9))
        assert {x.seq: bytes(x.data) for x in payloads} == texts, n  # byte for byte
        assert reopened.append(draft()).seq == 9, n
        reopened.close()
        again = box(copy)
        assert sorted(again.entries()) == list(range(1, 10)), n
        again.close()


def test_a_new_segment_file_lost_whole_is_put_back(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=3)
    pids = [b.append(draft()).pid for _ in range(5)]  # seg 0 done (compacted), seg 1 new
    killed(b)
    (tmp_path / "outbox" / "seg-00000001.log").unlink()  # its directory entry never synced
    reopened = box(tmp_path, segment_size=3)
    assert [e.pid for e in reopened.entries().values()] == pids
    assert reopened.alerts == []


def test_acknowledged_passages_of_the_tail_are_not_put_back(tmp_path: Path) -> None:
    b = box(tmp_path, segment_size=3)
    passages = [b.append(draft()) for _ in range(4)]
    b.acknowledge([p.pid for p in passages[:3]], T0)  # seg 0 archived and deleted
    assert not (tmp_path / SEG0).exists()
    killed(b)
    reopened = box(tmp_path, segment_size=3)
    assert sorted(reopened.entries()) == [4]
    assert reopened.alerts == []


def test_opening_after_a_kill_syncs_the_segments_of_the_tail(
    tmp_path: Path, synced: list[str]
) -> None:
    """Killed, the machine up: the records are in the kernel's cache, not on the disk.
    The next process syncs them before any checkpoint of its own says they are."""
    b = box(tmp_path, segment_size=3)
    for _ in range(5):
        b.append(draft())
    killed(b)
    synced.clear()
    reopened = box(tmp_path, segment_size=3)
    assert "seg-00000001.log" in synced  # seq 4-5: only their journal lines were synced
    assert ends_with_checkpoint(tmp_path, 5)  # the next start reads nothing more
    reopened.close()
    synced.clear()
    box(tmp_path, segment_size=3).close()
    assert not [n for n in synced if n.startswith("seg-")]


def test_checkpoints_come_every_so_many_passages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "CHECKPOINT_EVERY", 3)
    b = box(tmp_path)
    for _ in range(2):
        b.append(draft())
    assert b.unsynced == 2
    b.append(draft())
    assert b.unsynced == 0
    assert ends_with_checkpoint(tmp_path, 3)
    b.close()


def test_the_day_file_left_behind_ends_with_a_checkpoint(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    b.append(draft(ts=T0 + timedelta(days=1)))
    first, _ = sorted((tmp_path / "journal").glob("*.jsonl"))
    data = first.read_bytes()
    assert data[: storage.data_end(data)].endswith(journal.checkpoint_line(1))
    assert b.unsynced == 1
    b.close()
    assert ends_with_checkpoint(tmp_path, 2)


def test_a_clock_put_back_writes_to_an_earlier_day_file_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    b = box(tmp_path)
    b.append(draft(ts=T0 + timedelta(days=3650)))  # a jumped clock
    b.checkpoint()
    at_checkpoint = (tmp_path / SEG0).read_bytes()
    pids = [b.append(draft()).pid for _ in range(2)]  # put right: back to the earlier day
    killed(b)
    (tmp_path / SEG0).write_bytes(at_checkpoint)  # the power cut took seq 2-3's records
    reopened = box(tmp_path)
    assert [e.pid for e in reopened.entries().values()][1:] == pids
    assert sorted(reopened.entries()) == [1, 2, 3]


def test_the_store_thread_makes_a_checkpoint_when_idle(tmp_path: Path) -> None:
    thread = StoreThread(box(tmp_path), checkpoint_after=0.01)
    thread.start()
    try:
        thread.append(draft())
        assert thread.checkpointed.wait(10)
        assert thread.outbox.unsynced == 0
        assert ends_with_checkpoint(tmp_path, 1)
    finally:
        thread.stop()


def test_status_before_the_daemon_starts_counts_the_journal_tail(tmp_path: Path) -> None:
    b = box(tmp_path)
    b.append(draft())
    b.checkpoint()
    at_checkpoint = (tmp_path / SEG0).read_bytes()
    b.append(draft())
    b.append(draft())
    killed(b)
    (tmp_path / SEG0).write_bytes(at_checkpoint)  # the power cut took seq 2-3's records
    report = outbox_tool.status(tmp_path, io.StringIO())
    assert (report["depth"], report["last_seq"], report["missing"]) == (3, 3, [])


def test_a_store_without_checkpoints_opens_once_slowly_then_quickly(
    tmp_path: Path, synced: list[str]
) -> None:
    """The journal as an older version left it: no ckpt line, every segment synced."""
    b = box(tmp_path, segment_size=3)
    for _ in range(7):
        b.append(draft())
    b.close()
    for day in (tmp_path / "journal").glob("*.jsonl"):
        data = day.read_bytes()
        day.write_bytes(b"".join(x for x in data.splitlines(keepends=True) if b"ckpt" not in x))
    synced.clear()
    reopened = box(tmp_path, segment_size=3)
    assert sorted(reopened.entries()) == list(range(1, 8))
    assert reopened.alerts == []
    assert {"seg-00000000.log", "seg-00000001.log", "seg-00000002.log"} <= set(synced)
    reopened.close()
    assert ends_with_checkpoint(tmp_path, 7)


def write_day(path: Path, *lines: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))


def passage_line(seq: int) -> bytes:
    return journal.line_of(seq, json.dumps({"pid": f"p{seq}", "seq": seq, "pad": "x" * 800}))


def test_the_tail_is_what_follows_the_last_whole_checkpoint(tmp_path: Path) -> None:
    day = tmp_path / "2026-11-26.jsonl"
    write_day(day, *map(passage_line, (1, 2, 3)), journal.checkpoint_line(3),
              *map(passage_line, (4, 5)), b'{"ckpt":5')  # fmt: skip
    tail = journal.tail(tmp_path)
    assert (tail.checkpoint, sorted(tail.pending()), tail.highest) == (3, [4, 5], 5)
    assert tail.late == [day]


def test_the_tail_of_a_file_without_a_checkpoint_is_all_of_it(tmp_path: Path) -> None:
    write_day(tmp_path / "2026-11-26.jsonl", *map(passage_line, (1, 2)))
    assert sorted(journal.tail(tmp_path).pending()) == [1, 2]


def test_the_tail_is_found_far_back_and_across_day_files(tmp_path: Path) -> None:
    big = [passage_line(s) for s in range(2, 400)]  # far more than one step back
    assert sum(map(len, big)) > 4 * journal.TAIL_STEP
    write_day(tmp_path / "2026-11-26.jsonl", passage_line(1), journal.checkpoint_line(1), *big)
    write_day(tmp_path / "2036-11-26.jsonl", passage_line(400), journal.checkpoint_line(400))
    tail = journal.tail(tmp_path)
    assert tail.checkpoint == 400  # seq 2-399 are in their segments: synced before it
    assert tail.pending() == {}
    assert tail.highest == 400  # numbered, all of them: a floor for the next seq


def test_a_voided_line_is_not_in_the_tail(tmp_path: Path) -> None:
    write_day(tmp_path / "2026-11-26.jsonl", journal.checkpoint_line(0), passage_line(1),
              b'{"seq":1,"void":"p1"}\n')  # fmt: skip
    assert journal.tail(tmp_path).pending() == {}


def test_a_journal_line_that_cannot_be_synced_fails_the_append_but_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written but not synced: the caller hears of it (the store fault), and the passage,
    in both files all the same, is kept and its seq never used again."""
    b = box(tmp_path)
    b.append(draft())
    real_sync = storage.AppendLog.sync

    def failing(self: storage.AppendLog) -> None:
        if self.path.suffix == ".jsonl":
            raise storage.Unsynced(f"{self.path.name} written but not synced: I/O error")
        real_sync(self)

    monkeypatch.setattr(storage.AppendLog, "sync", failing)
    with pytest.raises(StoreError, match="not synced"):
        b.append(draft())
    monkeypatch.setattr(storage.AppendLog, "sync", real_sync)
    assert sorted(b.entries()) == [1, 2]
    assert b.append(draft()).seq == 3
    killed(b)
    (tmp_path / SEG0).write_bytes(b"")  # a power cut took every segment record: never synced
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == [1, 2, 3]
    assert reopened.alerts == []


def test_a_hole_where_records_were_not_yet_synced_is_no_alert(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A power cut before the checkpoint: the start of the last record never reached the
    disk, its end did (a file grown ahead allows it). The journal is there for that."""
    b = box(tmp_path)
    pids = [b.append(draft()).pid for _ in range(3)]
    killed(b)
    seg = tmp_path / SEG0
    data = seg.read_bytes()
    end = storage.data_end(data)
    last = data.rfind(b"\n", 0, end - 1) + 1
    seg.write_bytes(data[:last] + bytes(6) + data[last + 6 :])
    reopened = box(tmp_path)
    assert [e.pid for e in reopened.entries().values()] == pids
    assert reopened.alerts == []
    assert not (tmp_path / "incidents.jsonl").exists()
    assert "records not yet synced when the power went" in caplog.text
    reopened.close()
    assert box(tmp_path).alerts == []  # repaired for good


def test_garbage_where_records_were_not_yet_synced_is_still_damage(tmp_path: Path) -> None:
    b = box(tmp_path)
    for _ in range(3):
        b.append(draft())
    killed(b)
    seg = tmp_path / SEG0
    data = seg.read_bytes()
    seg.write_bytes(b"rot!" + data[4:])  # not zeros: not what a power cut leaves
    reopened = box(tmp_path)
    assert sorted(reopened.entries()) == [1, 2, 3]
    assert [a.kind for a in reopened.alerts] == ["store_corrupt"]
