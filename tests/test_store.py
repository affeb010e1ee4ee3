"""The outbox: durable, numbered, atomic, and honest about corruption."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.errors import StoreCorrupt, StoreError
from edge.model import Credential, PassageDraft
from edge.store import Outbox

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def draft(decision: str = "denied") -> PassageDraft:
    return PassageDraft(
        T0,
        decision,
        "policy",
        ("unrecognised",),
        (Credential.from_raw("unrecognised", b"x"),),
        "auto",  # type: ignore[arg-type]
    )


def test_append_numbers_and_persists(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "lane-1", "site-a")
    first = box.append(draft())
    second = box.append(draft("approved"))
    assert (first.seq, second.seq) == (1, 2)
    assert first.pid != second.pid
    on_disk = json.loads((tmp_path / "outbox.json").read_text())
    assert on_disk["passages"]["1"]["msg"]["pid"] == first.pid
    assert on_disk["passages"]["2"]["state"] == "stored"
    box.close()


def test_seq_continues_after_reopen_and_never_repeats(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "lane-1", "")
    box.append(draft())
    box.append(draft())
    box.close()
    box = Outbox(tmp_path, "lane-1", "")
    assert box.append(draft()).seq == 3
    assert box.counts().last_seq == 3


def test_unsent_in_order_and_mark_sent(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "lane-1", "")
    for _ in range(5):
        box.append(draft())
    assert [m["seq"] for m in box.unsent(limit=3)] == [1, 2, 3]
    assert [m["seq"] for m in box.unsent(limit=10, exclude={1, 3})] == [2, 4, 5]
    box.mark_sent([2, 4, 99])
    assert [m["seq"] for m in box.unsent(limit=10)] == [1, 3, 5]
    counts = box.counts()
    assert (counts.stored, counts.sent) == (3, 2)
    box.close()
    reopened = Outbox(tmp_path, "lane-1", "")
    assert [m["seq"] for m in reopened.unsent(limit=10)] == [1, 3, 5]


def test_message_holds_no_raw_payload(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "lane-1", "")
    secret = b"NGUYEN VAN A|012345678901"
    box.append(
        PassageDraft(
            T0, "denied", "policy", (), (Credential.from_raw("unrecognised", secret),), "auto"
        )
    )
    text = (tmp_path / "outbox.json").read_text()
    assert "NGUYEN" not in text
    assert "012345678901" not in text


def test_failed_write_keeps_the_previous_file_and_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Outbox(tmp_path, "lane-1", "")
    box.append(draft())
    before = (tmp_path / "outbox.json").read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left"):
        box.append(draft())
    monkeypatch.undo()
    assert (tmp_path / "outbox.json").read_bytes() == before
    # the seq of the failed append is not burned, and the store still works
    assert box.append(draft()).seq == 2


def test_corrupt_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    (tmp_path / "outbox.json").write_text('{"passages": {"1": {"msg"')
    with pytest.raises(StoreCorrupt, match="not valid JSON"):
        Outbox(tmp_path, "lane-1", "")
    assert (tmp_path / "outbox.json").read_text() == '{"passages": {"1": {"msg"'
    (tmp_path / "outbox.json").write_text("[1, 2]")
    with pytest.raises(StoreCorrupt, match="TinyDB tables"):
        Outbox(tmp_path, "lane-1", "")


def test_leftover_temp_file_from_a_crash_is_harmless(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "lane-1", "")
    box.append(draft())
    box.close()
    (tmp_path / "outbox.json.tmp").write_text("half a wri")
    box = Outbox(tmp_path, "lane-1", "")
    assert box.append(draft()).seq == 2
    assert not (tmp_path / "outbox.json.tmp").exists()


def test_check_writable(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "s", "lane-1", "")
    box.check_writable()
    assert not (tmp_path / "s" / ".probe").exists()
