"""The central ingest: every device's passages, stored once, acknowledged.

A worker connects with a persistent MQTT v5 session (clean start off on every
connection, a session expiry), so that the broker queues passages while it is
away, and subscribes to ``cp/v1/+/passage``, through a shared subscription
when workers share the load. Each passage is:

1. checked (a passage of the device whose topic it came on),
2. stored in the central database in a batch transaction, idempotently by pid,
3. PUBACKed to the broker only then (manual acknowledgement: a worker that
   dies before storing gets it again),
4. acknowledged to its device on ``cp/v1/<device>/ack`` (``{"pids": [...]}``),
   which lets the device move it out of its outbox.

The worker publishes ``cp/v1/$central/status`` online (retained) on every
connect, with a will of offline; devices replay their backlog only while it is
online. With several workers, one that stops (or dies) says offline; the others
see it and say online again.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from edge.central.db import BadPassage, DatabaseError, PassageDB, check_passage, open_db, unique
from edge.config import IngestFile
from edge.mqtt import topics
from edge.mqtt.device import parse_central
from edge.mqtt.link import LinkOptions, MqttLink, Will, state_payload

log = logging.getLogger(__name__)


def central_payload(state: str, worker: str) -> bytes:
    return state_payload(state, worker=worker)


@dataclass(frozen=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int


class Ingest:
    """One ingest worker: MQTT in, database, acknowledgements out."""

    def __init__(self, cfg: IngestFile, db: PassageDB | None = None) -> None:
        self.cfg = cfg
        self.worker = cfg.ingest.client_id
        self.db = db or open_db(cfg.ingest.database)
        passages = topics.all_passages()
        if cfg.ingest.group:
            passages = topics.shared(cfg.ingest.group, passages)
        options = LinkOptions(
            client_id=self.worker,
            will=Will(topics.central_status(), central_payload("offline", self.worker)),
            clean_start=False,
            session_expiry_s=cfg.ingest.session_expiry_s,
            subscriptions=[(passages, 1), (topics.central_status(), 1)],
            manual_ack=True,
            max_queued=100_000,
        )
        self.link = MqttLink(
            cfg.mqtt, options, on_connected=self._connected, on_message=self._message
        )
        self._inbox: queue.Queue[_Incoming | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="ingest", daemon=True)
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self._progress = threading.Condition()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        log.info("ingest: worker %s, database %s", self.worker, _safe_url(self.cfg.ingest.database))
        self._thread.start()
        self.link.start()

    def stop(self) -> None:
        """Say offline, finish what is queued, disconnect."""
        self.link.publish_and_wait(
            topics.central_status(), central_payload("offline", self.worker), True, 2.0
        )
        self.link.stop()
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(timeout=10)
        self.db.close()

    def run(self, stop: threading.Event) -> int:
        self.start()
        try:
            while not stop.wait(1.0):
                if not self.link.alive:
                    self.link.restart()
                if not self._thread.is_alive():
                    log.critical("ingest: worker thread died; restarting")
                    return 1
        finally:
            self.stop()
        return 0

    def wait_until(self, condition: Callable[[Ingest], bool], timeout: float) -> bool:
        with self._progress:
            return self._progress.wait_for(lambda: condition(self), timeout)

    # -- network thread ------------------------------------------------------

    def _connected(self) -> None:
        self.link.publish(
            topics.central_status(), central_payload("online", self.worker), retain=True
        )

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == topics.central_status():
            if parse_central(bytes(msg.payload)) is False and self.link.connected:
                # another worker went away; as long as this one is here, say so
                self._connected()
            if msg.qos:
                self.link.ack(msg.mid, msg.qos)
            return
        self._inbox.put(_Incoming(msg.topic, bytes(msg.payload), msg.mid, msg.qos))

    # -- worker thread -------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            batch = self._take_batch()
            if not batch:
                continue
            try:
                self._handle(batch)
            except DatabaseError as exc:
                # not PUBACKed: the broker gives them to us again after a reconnect
                log.error("ingest: %s; %d passage(s) wait for the next try", exc, len(batch))  # noqa: TRY400
                self._stop.wait(2.0)
                self.link.stop()
                self.link.start()
            with self._progress:
                self._progress.notify_all()

    def _take_batch(self) -> list[_Incoming]:
        try:
            first = self._inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        if first is None:
            return []
        # Whatever is already waiting joins the batch; beyond that, wait only
        # briefly: the batch grows with the load and costs no latency when quiet.
        batch = [first]
        while len(batch) < self.cfg.ingest.batch_size:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                try:
                    item = self._inbox.get(timeout=self.cfg.ingest.batch_wait_s)
                except queue.Empty:
                    break
            if item is None:
                break
            batch.append(item)
        return batch

    def _handle(self, batch: list[_Incoming]) -> None:
        good: list[tuple[_Incoming, dict[str, Any]]] = []
        for item in batch:
            device = topics.device_of(item.topic)
            try:
                if device is None:
                    raise BadPassage("not a device topic")
                msg = check_passage(json.loads(item.payload), device)
            except (ValueError, RecursionError, BadPassage) as exc:
                reason = str(exc) if isinstance(exc, BadPassage) else "not JSON"
                log.warning("ingest: rejected a message on %s: %s", item.topic, reason)
                self.db.reject(item.topic, item.payload, reason)
                self.rejected += 1
                self.link.ack(item.mid, item.qos)  # kept in 'rejected': nothing is lost
                continue
            good.append((item, msg))
        if good:
            messages = unique(m for _, m in good)
            new = self.db.store(messages)
            self.stored += new
            self.duplicates += len(good) - new  # already stored, or twice in this batch
        for item, _ in good:
            self.link.ack(item.mid, item.qos)  # stored: the broker may forget it
        by_device: dict[str, list[str]] = {}
        for _, msg in good:
            by_device.setdefault(msg["device"], []).append(msg["pid"])
        for device, pids in by_device.items():
            once = list(dict.fromkeys(pids))
            payload = json.dumps({"pids": once}, separators=(",", ":")).encode()
            self.link.publish(topics.ack(device), payload, qos=1)


def _safe_url(url: str) -> str:
    """A database URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
