"""Passages from a NATS JetStream stream: one durable pull consumer every worker shares.

Kiosks publish each passage over MQTT (3.1.1, QoS 1) to the cluster's MQTT listener;
the server turns ``cp/v1/<id>/passage`` into the subject ``cp.v1.<id>.passage``, which
the stream (``[nats] stream``) captures on ``replicas`` nodes. Every worker binds the
same durable pull consumer (``[nats] durable``), so JetStream hands each passage to one
of them, and again to one of them when it is not acknowledged within ``ack_wait_s``
(the stream and the consumer: :mod:`edge.central.jetstream`).

A worker fetches up to ``batch_size`` at a time and hands them to the ingest's inbox;
each is **acked only after the database has it** (rejected messages too: they are
kept), and **nakked** with a delay when the database failed. At stop, what was fetched
and not stored is nakked (to another worker at once, not after ``ack_wait_s``).

**Threads**: nats-py is asyncio, so the source runs an event loop of its own in a thread
of its own (``ingest-nats``). That thread alone touches the client and the table of
messages handed out; the worker thread reaches it through ``call_soon_threadsafe``, and
passages reach the worker through its inbox (a thread-safe queue).

**Outages**: nats-py reconnects across the servers (those given and those the cluster
announces) for ever, from the first connection on; JetStream requests that fail (a node
lost, a leader being elected) are retried with jittered backoff. Each outage is logged
when it starts and when it ends, never once per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from edge.central.source import NATS_MISSING, Incoming, SourceError
from edge.config import IngestFile
from edge.mqtt import topics
from edge.mqtt.link import backoff

try:
    import nats.errors
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.errors import NotFoundError

    from edge.central.jetstream import connect_options, ensure_consumer, ensure_stream
except ImportError as exc:  # a kiosk's install: only an ingest with source = "nats" needs it
    raise SourceError(NATS_MISSING) from exc

log = logging.getLogger(__name__)

FETCH_WAIT_S = 2.0  # how long one pull request waits for a passage
API_TIMEOUT_S = 5.0  # one JetStream API request
NAK_DELAY_S = 5.0  # a passage the database did not take comes again after this
CHECK_IDLE_S = 30.0  # while no passage comes, make sure the consumer is still there
STOP_TIMEOUT_S = 10.0
Pull = JetStreamContext.PullSubscription


class NatsPassages:
    """A durable pull consumer of the passages' stream, on an asyncio loop of its own."""

    def __init__(
        self, cfg: IngestFile, deliver: Callable[[Incoming], None], on_ready: Callable[[], None]
    ) -> None:
        """``deliver``: takes each passage fetched (from the loop's thread); ``on_ready``:
        called once the consumer is bound for the first time (passages can come)."""
        self.cfg = cfg.nats
        self.batch = cfg.ingest.batch_size
        self._options = connect_options(cfg.nats, cfg.ingest.client_id)
        self._deliver = deliver
        self._on_ready = on_ready
        self._ready = threading.Event()
        self._failure: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self.client: Client | None = None  # the current connection (its loop's thread only)
        self._given_up = False  # nats-py closed the connection for good
        self._thread: threading.Thread | None = None
        self._rng = random.Random()  # noqa: S311 - jitter, not cryptography
        # the loop thread's alone:
        self._handed: dict[int, Msg] = {}  # id -> a message handed to the worker, not settled
        self._replies: set[asyncio.Task[None]] = set()
        self._outage: str | None = None
        self._outage_since = 0.0
        self._closing = False
        self._sub: Pull | None = None  # the pull subscription bound now
        self._expires = 0.0  # when its last pull request expires at the server (monotonic)
        self.fetched = 0
        self.acked = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failure(self) -> str | None:
        return self._failure

    # -- the worker's side (any thread) ------------------------------------------------

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop, self._task = loop, loop.create_task(self._main())
        self._thread = threading.Thread(
            target=_run, args=(loop, self._task), name="ingest-nats", daemon=True
        )
        self._thread.start()

    def restart(self) -> None:
        """A new loop and connection after the old thread died (the supervisor's call)."""
        log.warning("nats: consumer thread restarted")
        self.start()

    def stop(self) -> None:
        """Send the acks still queued, nak what was fetched and not settled, disconnect."""
        loop, task, thread = self._loop, self._task, self._thread
        if loop is None or task is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop has just ended by itself
            loop.call_soon_threadsafe(task.cancel)  # after the settle() calls before it
        thread.join(STOP_TIMEOUT_S)

    def settle(self, batch: Sequence[Incoming]) -> None:
        self._call(self._reply_now, [item.ref for item in batch], None)

    def again(self, batch: Sequence[Incoming]) -> None:
        self._call(self._reply_now, [item.ref for item in batch], NAK_DELAY_S)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        # a closed loop: its connection is gone; the server hands its unacknowledged
        # messages out again after ack_wait_s (stored once, by pid)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    # -- the loop's thread -----------------------------------------------------------------

    async def _main(self) -> None:
        self._handed, self._closing, self._given_up = {}, False, False
        client = self.client = Client()
        try:
            await client.connect(
                **self._options,
                error_cb=self._error,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                closed_cb=self._closed,
            )
            log.info("nats: connected to %s", _where(client))
            await self._consume(client.jetstream(timeout=API_TIMEOUT_S))
        except asyncio.CancelledError:
            pass  # stop()
        except SourceError as exc:
            self._failure = str(exc)
            log.error("nats: %s", exc)  # noqa: TRY400 - a reason, not a bug
        finally:
            await self._goodbye(client)

    async def _consume(self, js: JetStreamContext) -> None:
        while not self._given_up:
            sub = self._sub = await self._bind(js)
            if not self._ready.is_set():
                self._ready.set()
                self._on_ready()  # publishes at most (paho's publish is thread-safe)
            await self._pull(js, sub)
            self._sub = None
            with contextlib.suppress(nats.errors.Error, OSError):
                await sub.unsubscribe()

    async def _bind(self, js: JetStreamContext) -> Pull:
        """The stream and the consumer made sure of, and a pull subscription bound to it;
        tried again until it works (SourceError when it never can)."""
        attempt = 0
        while True:
            if self._given_up:
                raise asyncio.CancelledError  # the connection is closed: end this thread
            try:
                await ensure_stream(js, self.cfg)
                await ensure_consumer(js, self.cfg)
                sub = await js.pull_subscribe_bind(durable=self.cfg.durable, stream=self.cfg.stream)
            except (nats.errors.Error, OSError) as exc:
                self._trouble(f"cannot bind the consumer {self.cfg.durable!r}: {_why(exc)}")
            else:
                self._working()
                return sub
            await asyncio.sleep(backoff(attempt, 0.5, 10.0, self._rng))
            attempt += 1

    async def _pull(self, js: JetStreamContext, sub: Pull) -> None:
        """Fetch batches for the worker until the consumer must be bound again."""
        idle = 0.0
        failed = 0
        while not self._given_up:
            try:
                self._expires = time.monotonic() + FETCH_WAIT_S
                msgs = await sub.fetch(self.batch, timeout=FETCH_WAIT_S)
            except TimeoutError:  # no passage (nats-py's timeouts derive from it)
                idle += FETCH_WAIT_S
                if idle >= CHECK_IDLE_S:
                    idle = 0.0
                    if not await self._consumer_there(js):
                        return
                continue
            except (nats.errors.Error, OSError) as exc:
                self._trouble(f"cannot fetch passages: {_why(exc)}")
                failed += 1
                await asyncio.sleep(backoff(failed, 0.5, 10.0, self._rng))
                if failed >= 3:
                    return  # bind again: the consumer may be gone
                continue
            idle, failed = 0.0, 0
            self._working()
            self.fetched += len(msgs)
            for msg in msgs:
                self._handed[id(msg)] = msg
                topic = topics.topic_of_subject(msg.subject) or msg.subject  # else: rejected
                self._deliver(Incoming(topic, msg.data, msg))

    async def _consumer_there(self, js: JetStreamContext) -> bool:
        """False when the consumer is gone (deleted by hand, lost with its stream)."""
        try:
            await js.consumer_info(self.cfg.stream, self.cfg.durable)
        except NotFoundError:
            self._trouble(f"the consumer {self.cfg.durable!r} is gone; binding it again")
            return False
        except (nats.errors.Error, OSError) as exc:
            self._trouble(f"cannot reach the consumer {self.cfg.durable!r}: {_why(exc)}")
            return True
        self._working()
        return True

    def _reply_now(self, msgs: list[Msg], nak_delay: float | None) -> None:
        """Ack (or nak) those of ``msgs`` still handed out by this connection."""
        mine = [m for m in msgs if self._handed.pop(id(m), None) is not None]
        if mine:
            task = asyncio.get_running_loop().create_task(self._reply(mine, nak_delay))
            self._replies.add(task)
            task.add_done_callback(self._replies.discard)

    async def _reply(self, msgs: list[Msg], nak_delay: float | None) -> None:
        try:
            for msg in msgs:
                if nak_delay is None:
                    await msg.ack()
                    self.acked += 1
                else:
                    await msg.nak(delay=nak_delay)
        except (nats.errors.Error, OSError) as exc:
            # not acknowledged: JetStream hands them out again after ack_wait_s
            self._trouble(f"cannot acknowledge passages: {_why(exc)}")

    async def _goodbye(self, client: Client) -> None:
        self._closing = True
        if self._replies:
            await asyncio.gather(*self._replies, return_exceptions=True)
        left, self._handed = list(self._handed.values()), {}
        with contextlib.suppress(nats.errors.Error, OSError):
            if client.is_connected:
                if self._sub is not None and left:
                    # The pull request still waiting at the server must be gone before
                    # the naks: else nats-server hands what is nakked to it (lost until
                    # ack_wait_s); and 2.9.10 with it unsubscribed mishandles the first
                    # nak all the same (measured: that passage came again only after
                    # ack_wait_s, another one twice). So: unsubscribe, let it expire.
                    await self._sub.unsubscribe()
                    await asyncio.sleep(max(0.0, self._expires - time.monotonic()) + 0.1)
                for msg in left:  # to another worker now, not after ack_wait_s
                    await msg.nak()
                await client.flush(timeout=2)
        with contextlib.suppress(nats.errors.Error, OSError):
            await client.close()

    # -- nats-py's callbacks, and outages logged once ------------------------------------

    async def _error(self, exc: Exception) -> None:
        self._trouble(_why(exc))

    async def _disconnected(self) -> None:
        if not self._closing:
            self._trouble("disconnected from the cluster")

    async def _reconnected(self) -> None:
        log.info("nats: reconnected")

    async def _closed(self) -> None:
        """nats-py gave the connection up for good (an -ERR it does not retry: an
        authorization violation, expired credentials): end this thread, so that the
        supervisor starts a new client, instead of fetching on a closed one for ever."""
        if not self._closing:
            log.error("nats: the connection was closed for good; starting a new one")
            self._given_up = True  # the loops end; a fetch or a wait in progress first

    def _trouble(self, what: str) -> None:
        if self._outage is None:
            self._outage, self._outage_since = what, time.monotonic()
            log.warning("nats: %s; trying again (logged once, until it works)", what)

    def _working(self) -> None:
        if self._outage is not None:
            log.info(
                "nats: working again after %.0f s (%s)",
                time.monotonic() - self._outage_since,
                self._outage,
            )
            self._outage = None


def _run(loop: asyncio.AbstractEventLoop, task: asyncio.Task[None]) -> None:
    """The thread of one loop: its main task, then what is left of nats-py's tasks."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(task)
    except Exception:
        log.exception("nats: the consumer's loop failed")
    finally:
        rest = asyncio.all_tasks(loop)
        for left in rest:
            left.cancel()
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _where(client: Client) -> str:
    url = client.connected_url
    return url.netloc if url is not None else "?"
