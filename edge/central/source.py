"""Where an ingest worker's passages come from, behind one small interface.

The worker thread (:mod:`edge.central.ingest`) takes :class:`Incoming` messages from
its inbox, has them checked and stored, and then tells the source what became of
each batch: **settled** (stored, or kept as rejected: the source may forget them), or
to come **again** (the database failed: nothing of it was acknowledged). Two sources
(``[ingest] source``):

- :class:`MqttPassages`: the worker's own MQTT link, subscribed to the passages at the
  broker; settled = PUBACKed, again = a reconnection, after which the broker delivers
  what was not PUBACKed;
- :class:`edge.central.nats_source.NatsPassages`: a durable pull consumer of a NATS
  JetStream stream, on an asyncio loop of its own; settled = acked, again = nakked.

Either way the MQTT link stays the ingest's: it says ``cp/v1/$central/status`` and
answers the devices on ``cp/v1/<device>/ack``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from edge.errors import EdgeError
from edge.mqtt.link import MqttLink

NATS_MISSING = "[ingest] source = \"nats\" needs nats-py: pip install 'checkpoint-edge[nats]'"


class Incoming(NamedTuple):  # a tuple: made once per passage on a hot path
    topic: str  # the MQTT topic it was published on
    payload: bytes
    ref: Any  # what its source needs to settle it: MQTT (mid, qos, connection); a NATS Msg


class SourceError(EdgeError, RuntimeError):
    """The source of passages cannot be used and waiting will not cure it: a library
    missing, a stream that does not capture the passages, a consumer of another kind."""


class PassageSource(Protocol):
    @property
    def ready(self) -> bool:
        """Passages can come (the ingest says online only then)."""
        ...

    @property
    def alive(self) -> bool:
        """Its thread runs (the supervisor restarts it otherwise)."""
        ...

    @property
    def failure(self) -> str | None:
        """Why it gave up for good (then the worker stops), else None."""
        ...

    def start(self) -> None: ...

    def restart(self) -> None: ...

    def stop(self) -> None:
        """Give back what was received and not settled, and disconnect."""
        ...

    def settle(self, batch: Sequence[Incoming]) -> None:
        """Stored or kept: the source may forget them (never blocks)."""
        ...

    def again(self, batch: Sequence[Incoming]) -> None:
        """Not stored (the database failed): they must come again (never blocks)."""
        ...


class MqttPassages:
    """Passages on the worker's MQTT link, which the ingest starts and stops itself."""

    ready = True
    alive = True
    failure: str | None = None

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    def start(self) -> None:
        """Nothing to do: the ingest starts the link."""

    def restart(self) -> None:
        """Nothing to do: the ingest restarts the link."""

    def stop(self) -> None:
        """Nothing to do: what was not PUBACKed, the broker keeps in the session."""

    def settle(self, batch: Sequence[Incoming]) -> None:
        # the network thread PUBACKs them, woken by the answers the ingest publishes
        self.link.ack_later([item.ref for item in batch])

    def again(self, batch: Sequence[Incoming]) -> None:
        # a new connection to the persistent session: the broker delivers the rest again
        self.link.stop()
        self.link.start()
