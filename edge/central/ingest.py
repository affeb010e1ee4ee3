"""The central ingest: every device's passages, stored once, acknowledged.

A worker connects with a persistent MQTT v5 session (clean start off on every
connection, a session expiry), so that the broker queues passages while it is
away, and subscribes to ``cp/v1/+/passage``, through a shared subscription
when workers share the load. Messages are taken in batches; each is:

1. checked against the passage model (:mod:`edge.core.passage`): at most
   ``max_message_bytes``, UTF-8 JSON, parsed once, every field of its type and
   range, a passage of the device whose topic it came on. What fails is
   **rejected**: kept in the ``rejected`` table with its reason;
2. stored in the central database, the whole batch in one transaction
   (``executemany``); a pid stored for another device, or a seq the device
   already used, is a **conflict**, rejected too. Should the database still
   refuse a value, the batch is split until the one message it refuses is
   rejected alone: one bad row never blocks the others;
3. PUBACKed to the broker only then (manual acknowledgement: a worker that
   dies before storing gets it again); rejected messages too, since they are
   kept;
4. answered to its device on ``cp/v1/<device>/ack``:
   ``{"pids": [stored...], "rejected": [{"pid": ..., "reason": ...}]}``. The
   device moves stored passages out of its outbox; a rejected one goes to its
   archive marked rejected, with an alert, and is never sent again.

Personal data older than ``retention_days`` is purged at start and every hour
(:meth:`PassageDB.purge`); what was purged is logged as counts.

The worker publishes ``cp/v1/$central/status`` online (retained) on every
connect, with a will of offline; devices replay their backlog only while it is
online. With several workers, one that stops (or dies) says offline; the others
see it and say online again.

With ``[ingest] source = "nats"`` the passages come from a NATS JetStream stream
instead (:mod:`edge.central.nats_source`): the MQTT link, to the cluster's MQTT
listener, then only says the status and answers the devices, and "PUBACKed"
above reads "acknowledged to JetStream". The two sources are one interface
(:mod:`edge.central.source`): settle a batch, or have it come again.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt

from edge.central.db import DatabaseError, PassageDB, open_db
from edge.central.source import Incoming, MqttPassages, PassageSource
from edge.central.writer import Outcome, Writer, WriterProcess
from edge.config import IngestFile
from edge.mqtt import topics
from edge.mqtt.client import LinkOptions, Will, state_payload
from edge.mqtt.device import parse_central
from edge.mqtt.link import MqttLink

log = logging.getLogger(__name__)


def central_payload(state: str, worker: str) -> bytes:
    return state_payload(state, worker=worker)


RETENTION_EVERY_S = 3600.0


@dataclass
class _Answer:
    """What one device is told about a batch."""

    pids: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # pid -> reason

    def payload(self) -> bytes:
        doc: dict[str, Any] = {"pids": list(dict.fromkeys(self.pids))}
        if self.rejected:
            doc["rejected"] = [{"pid": p, "reason": r} for p, r in self.rejected.items()]
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class Ingest:
    """One ingest worker: passages in (MQTT or NATS), database, acknowledgements out."""

    def __init__(self, cfg: IngestFile, db: PassageDB | None = None) -> None:
        """``db``: check and store in this process, into ``db`` (tests give one that fails
        on purpose); without it, a writer process does, on its own connection."""
        self.cfg = cfg
        self.worker = cfg.ingest.client_id
        # the connections first: a bad secret or a missing library fails before the writer
        self.link = MqttLink(
            cfg.mqtt, _link_options(cfg), on_connected=self._connected, on_message=self._message
        )
        self._central_topic = topics.central_status()
        self._inbox: queue.SimpleQueue[Incoming | None] = queue.SimpleQueue()  # C: cheap put
        self.source: PassageSource
        if cfg.ingest.source == "nats":
            # only here: a kiosk's install has no nats-py (SourceError then says so)
            from edge.central.nats_source import NatsPassages  # noqa: PLC0415

            self.source = NatsPassages(cfg, self._inbox.put, on_ready=self._announce)
        else:
            self.source = MqttPassages(self.link)
        limit = cfg.ingest.max_message_bytes
        self.writer: Writer | WriterProcess
        if db is None:
            self.writer = WriterProcess(cfg.ingest.database, limit)
        else:
            self.writer = Writer(db, limit)
        # this process's own connection: retention
        self.db = db or open_db(cfg.ingest.database)
        if not cfg.ingest.retention_days:
            log.warning("ingest: retention_days = 0: personal data is kept forever")
        self._stop = threading.Event()
        self._leaving = False  # stop() said offline: no online again, not even to its own echo
        self._thread = threading.Thread(target=self._work, name="ingest", daemon=True)
        self._retention = threading.Thread(
            target=self._retain, name="ingest-retention", daemon=True
        )
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.purged = 0  # passages emptied of personal data
        self._progress = threading.Condition()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        log.info("ingest: worker %s, database %s", self.worker, _safe_url(self.cfg.ingest.database))
        # what is built by now lives as long as the worker: out of the cyclic collector's
        # scans, which then look only at what the passages make (stop() unfreezes)
        gc.freeze()
        self._thread.start()
        if self.cfg.ingest.retention_days:
            self._retention.start()
        self.source.start()
        self.link.start()

    def stop(self) -> None:
        """Finish the batch in hand, say offline, disconnect; give back what was received
        and not stored (NATS: to another worker at once)."""
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(timeout=10)
        self._leaving = True
        self.link.publish_and_wait(
            topics.central_status(), central_payload("offline", self.worker), True, 2.0
        )
        self.link.stop()
        self.source.stop()
        if self._retention.is_alive():
            self._retention.join(timeout=10)
        self.close()
        gc.unfreeze()

    def close(self) -> None:
        """Release the database and the writer (an ingest never started needs only this)."""
        if isinstance(self.writer, WriterProcess):
            self.writer.close()
        self.db.close()

    def run(self, stop: threading.Event) -> int:
        self.start()
        try:
            while not stop.wait(1.0):
                if not self.link.alive:
                    self.link.restart()
                if self.source.failure is not None:
                    log.critical("ingest: cannot take passages: %s", self.source.failure)
                    return 1
                if not self.source.alive:
                    self.source.restart()
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
        if self.source.ready and not self._leaving:  # NATS: once stream and consumer are there
            self.link.publish(
                topics.central_status(), central_payload("online", self.worker), retain=True
            )

    def _announce(self) -> None:
        """The source became ready (NATS' thread): say online if connected."""
        if self.link.connected:
            self._connected()

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        # the hot path of the network thread: one passage at a time, kept short
        topic = msg.topic
        if topic == self._central_topic:
            if parse_central(bytes(msg.payload)) is False and self.link.connected:
                # another worker went away; as long as this one is here, say so
                self._connected()
            if msg.qos:
                self.link.ack(msg.mid, msg.qos)
            return
        payload = bytes(msg.payload)  # paho hands bytes: no copy
        # the link's connection it came on: its mid means nothing on another
        self._inbox.put(Incoming(topic, payload, (msg.mid, msg.qos, self.link.connects)))

    # -- worker thread -------------------------------------------------------

    def _work(self) -> None:
        """Batches go to the writer one ahead: while it checks and stores one, this thread
        settles and answers the one before, and the network thread receives the next.
        At stop, the batch in hand is finished."""
        pending: list[Incoming] | None = None
        while pending is not None or not self._stop.is_set():
            stopping = self._stop.is_set()
            batch = [] if stopping else self._take_batch(wait=0.5 if pending is None else 0.0)
            previous, pending = pending, None
            try:
                if batch:
                    self.writer.submit([(item.topic, item.payload) for item in batch])
                if previous is not None:
                    self._finish(previous, self.writer.result())
            except DatabaseError as exc:
                # not settled: the source gives them to us again
                log.error("ingest: %s; the passage(s) wait for the next try", exc)  # noqa: TRY400
                if batch:
                    with contextlib.suppress(DatabaseError):
                        self.writer.result()  # sent meanwhile: comes again too
                if not self._stop.wait(2.0):  # at stop, the source gives them back itself
                    self.source.again((previous or []) + batch)
                batch = []
            pending = batch or None
            with self._progress:
                self._progress.notify_all()

    def _take_batch(self, wait: float) -> list[Incoming]:
        try:
            first = self._inbox.get(timeout=wait) if wait else self._inbox.get_nowait()
        except queue.Empty:
            return []
        if first is None:
            return []
        # Whatever is already waiting joins the batch (beyond that, wait batch_wait_s):
        # the batch grows with the load, since the next one gathers while one is stored.
        batch = [first]
        while len(batch) < self.cfg.ingest.batch_size:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                if not self.cfg.ingest.batch_wait_s:
                    break
                try:
                    item = self._inbox.get(timeout=self.cfg.ingest.batch_wait_s)
                except queue.Empty:
                    break
            if item is None:
                break
            batch.append(item)
        return batch

    def _finish(self, batch: list[Incoming], outcome: Outcome) -> None:
        """A batch checked and stored: settle it (PUBACK, or ack to JetStream), answer its
        devices, count."""
        self.source.settle(batch)  # stored or kept: the source may forget them
        answers: dict[str, _Answer] = {}
        for device, pid in outcome.stored:
            answers.setdefault(device, _Answer()).pids.append(pid)
        for to, named, reason in outcome.rejected:
            if to is not None and named is not None:
                answers.setdefault(to, _Answer()).rejected[named] = reason
        for device, answer in answers.items():
            self.link.publish(topics.ack(device), answer.payload(), qos=1)
        self.stored += outcome.new
        self.duplicates += outcome.duplicates
        self.rejected += len(outcome.rejected)
        if outcome.rejected:
            reasons = Counter(reason for _, _, reason in outcome.rejected)
            for reason, n in reasons.most_common(5):
                log.warning("ingest: rejected %d message(s): %s", n, reason)

    # -- retention -----------------------------------------------------------------

    def _retain(self) -> None:
        """Purge personal data past retention now, then every hour, until stopped."""
        while True:
            self.purge_once()
            if self._stop.wait(RETENTION_EVERY_S):
                return

    def purge_once(self, now: datetime | None = None) -> None:
        """One retention pass (``now``: the clock; tests pass their own)."""
        days = self.cfg.ingest.retention_days
        if not days:
            return
        before = (now or datetime.now(UTC)) - timedelta(days=days)
        try:
            purged = self.db.purge(before)
        except DatabaseError as exc:
            log.error("ingest: retention: %s; trying again within the hour", exc)  # noqa: TRY400
            return
        self.purged += purged.passages
        if purged:
            log.info(
                "ingest: retention: personal data purged from %d passage(s), %d occupant(s), "
                "%d vehicle(s), %d rejected message(s) older than %d days",
                purged.passages, purged.occupants, purged.vehicles, purged.rejected, days,
            )  # fmt: skip
        with self._progress:
            self._progress.notify_all()


def _link_options(cfg: IngestFile) -> LinkOptions:
    """The worker's MQTT connection. MQTT source: a persistent session subscribed to the
    passages (shared by the group's workers); NATS: a clean one, for the status and the
    acks only (the passages come from JetStream)."""
    will = Will(topics.central_status(), central_payload("offline", cfg.ingest.client_id))
    status = (topics.central_status(), 1)
    if cfg.ingest.source == "nats":
        return LinkOptions(
            client_id=cfg.ingest.client_id,
            will=will,
            subscriptions=[status],
            manual_ack=True,
            max_queued=100_000,
        )
    passages = topics.all_passages()
    if cfg.ingest.group:
        passages = topics.shared(cfg.ingest.group, passages)
    return LinkOptions(
        client_id=cfg.ingest.client_id,
        will=will,
        clean_start=False,
        session_expiry_s=cfg.ingest.session_expiry_s,
        subscriptions=[(passages, 1), status],
        manual_ack=True,
        max_queued=100_000,
        receive_maximum=cfg.ingest.receive_maximum,
    )


def _safe_url(url: str) -> str:
    """A database URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url
