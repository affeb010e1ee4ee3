"""The publisher's drain: read ahead, bookkeeping in bounded batches, paho's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.mqtt import publisher as publisher_mod
from edge.store.outbox import Outbox
from edge.store.snapshot import snapshot

from .conftest import Mosquitto, make_config
from .test_e2e import Kiosk
from .test_store import draft


def prefill(store: Path, count: int) -> None:
    """``count`` passages waiting, written through the outbox as the lane writes them."""
    box = Outbox(store, "lane-test", "test-site")
    for _ in range(count):
        box.append(draft())
    box.close()


def test_a_backlog_drains_in_small_chunks_though_paho_refuses_part_of_each_top_up(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small read-ahead chunks and bookkeeping batches: many of each in a drain of 60
    monkeypatch.setattr(publisher_mod, "READ_AHEAD", 10)
    monkeypatch.setattr(publisher_mod, "BOOKKEEP_MAX", 7)
    (tmp_path / "frames").mkdir()
    prefill(tmp_path / "store", 60)
    cfg = make_config(tmp_path, mqtt={"port": broker.port, "inflight": 2})  # a window of 20
    kiosk = Kiosk(cfg)
    # paho takes fewer than the window: the rest of each top-up is refused and must go
    # with a later round (before, the walk moved past them: stuck until a reconnect)
    kiosk.app.link.link._client.max_queued_messages_set(8)
    kiosk.start()
    try:
        # (backlog is 0 also before the publisher thread has read the outbox)
        assert kiosk.app.publisher.wait_until(lambda p: p.published == 60 and p.backlog == 0, 30)
    finally:
        kiosk.stop()
    store = snapshot(tmp_path / "store")
    assert store.live == {}  # every bookkeeping batch was written, the last at the stop
    assert sorted(m["seq"] for m in store.archived) == list(range(1, 61))


def test_the_device_link_queues_more_than_the_publisher_window(tmp_path: Path) -> None:
    """Status, alerts and replies fit beside a full window of passages."""
    (tmp_path / "frames").mkdir()
    kiosk = Kiosk(make_config(tmp_path, mqtt={"inflight": 3}))
    try:
        window = kiosk.app.publisher.window
        assert window == 30
        assert kiosk.app.link.link.options.max_queued > window
    finally:
        kiosk.stop()
