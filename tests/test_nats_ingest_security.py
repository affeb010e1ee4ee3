"""The ingest on the deployed NATS cluster: its JetStream consumer over the NATS port.

The cluster of ``tests/test_nats_security.py`` (deploy/nats/ with only paths and ports
changed, the permissions ``pki nats`` renders): a real ingest worker
(:class:`edge.central.ingest.Ingest`, ``[ingest] source = "nats"``) takes the passages
from the stream over TLS with its fleet certificate (``verify_and_map``), and says its
status and answers the kiosks over MQTT 3.1.1 TLS. As deploy/nats/README.md says: the
first worker makes the stream and its durable consumer under ``pki nats
--ingest-setup``; then ``pki nats`` without it, installed with the nodes restarted one
at a time, leaves the workers the rights to use them and nothing more.

Every refusal is proven by the server's answer to that very request (nats-py's error
callback: ``permissions violation for publish to "<subject>"``, one per request, in
order) and by the node's log line, never by waiting for nothing to happen.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import api
from nats.js.errors import NotFoundError

from edge import config as config_mod
from edge.central.ingest import Ingest
from edge.config import Config, IngestFile
from edge.mqtt import topics
from edge.pki import nats as pki_nats

from .conftest import Received, make_config
from .nats_deploy import deployed_cluster, install_fleet_conf
from .nats_rig import NatsCluster
from .pki_helpers import TlsClient, example_fleet, run
from .test_e2e import Kiosk
from .test_ingest import kiosks, rows, wave_through  # noqa: F401 - kiosks: a fixture
from .test_ingest_nats import passage, until, worker_data
from .test_nats_security import GRANTED_QOS1, INGEST, OP, log_mark, nats_attempt, refused

STREAM, DURABLE = pki_nats.Consumer().stream, pki_nats.Consumer().durable
PASSAGES = topics.nats_subject(topics.all_passages())  # cp.v1.*.passage
TIMEOUT = 10.0


def render(pki_dir: Path, *flags: str) -> None:
    assert run("nats", "--dir", pki_dir, "--out", pki_dir / pki_nats.CONF, *flags) == 0


def make_fleet(directory: Path) -> Path:
    """Kiosks lane-a and lane-b, ingest-1, op-admin, nodes n1-n3 (the rig's names)."""
    pki_dir = example_fleet(directory)
    for node in ("n1", "n2", "n3"):
        argv = ("nats-node", node, "--dns", "localhost", "--ip", "127.0.0.1", "--dir", pki_dir)
        assert run(*argv) == 0
    return pki_dir


def tls(pki_dir: Path, account: str) -> dict[str, Any]:
    return {
        "tls": True,
        "ca_file": str(pki_dir / "ca.pem"),
        "cert_file": str(pki_dir / f"{account}.pem"),
        "key_file": str(pki_dir / f"{account}.key"),
    }


def ingest_config(
    tmp_path: Path, on: NatsCluster, pki_dir: Path, node: int, **nats_keys: Any
) -> IngestFile:
    """ingest-1 as deploy/nats/README.md configures it: MQTT 3.1.1 TLS to ``node``'s
    listener, NATS over TLS to every node's client port (``node``'s first), both with
    its fleet certificate."""
    ordered = on.nodes[node:] + on.nodes[:node]
    servers = [f"tls://127.0.0.1:{n.client_port}" for n in ordered]
    data = worker_data(
        tmp_path,
        on,
        node,
        INGEST,
        mqtt=tls(pki_dir, INGEST),
        nats={"servers": servers, **tls(pki_dir, INGEST), **nats_keys},
    )
    return config_mod.from_mapping_as(data, tmp_path, "test", IngestFile)


def next_message(client: TlsClient, deadline: float, what: str) -> Received:
    try:
        return client.messages.get(timeout=max(0.1, deadline - time.monotonic()))
    except queue.Empty:
        pytest.fail(f"{client.client_id}: {what} did not come")


def wait_online(watch: TlsClient, timeout: float = 30.0) -> None:
    """Until ``watch`` (subscribed to the central status) sees ingest-1 say online."""
    deadline = time.monotonic() + timeout
    while True:
        msg = next_message(watch, deadline, "ingest-1 online")
        if msg.topic == topics.central_status():
            doc = json.loads(msg.payload)
            if (doc.get("worker"), doc.get("state")) == (INGEST, "online"):
                return


def started(cfg: IngestFile, watch: TlsClient) -> Ingest:
    worker = Ingest(cfg)
    worker.start()
    try:
        wait_online(watch)
    except BaseException:
        worker.stop()
        raise
    return worker


def status_watch(on: NatsCluster, node: int, pki_dir: Path, account: str) -> TlsClient:
    client = TlsClient.account(on.nodes[node].mqtt_port, pki_dir, account, v311=True).connect()
    assert client.subscribe(topics.central_status()) == [GRANTED_QOS1]
    return client


class Refusals:
    """The errors the server sends a NATS client, in order (nats-py's error callback)."""

    def __init__(self) -> None:
        self.errors: asyncio.Queue[str] = asyncio.Queue()

    async def callback(self, exc: Exception) -> None:
        await self.errors.put(str(exc))

    async def next(self) -> str:
        return await asyncio.wait_for(self.errors.get(), TIMEOUT)


@asynccontextmanager
async def connected(
    on: NatsCluster, node: int, pki_dir: Path, account: str, refusals: Refusals
) -> AsyncIterator[Client]:
    """``account``'s NATS connection over TLS to ``node``, with its certificate."""
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    context.load_cert_chain(str(pki_dir / f"{account}.pem"), str(pki_dir / f"{account}.key"))
    client = await nats.connect(
        f"tls://127.0.0.1:{on.nodes[node].client_port}",
        tls=context,
        error_cb=refusals.callback,
        allow_reconnect=False,
        connect_timeout=TIMEOUT,
    )
    try:
        yield client
    finally:
        await client.close()


async def publish_refused(client: Client, refusals: Refusals, subject: str, body: bytes) -> str:
    """Send ``body`` to ``subject`` as a request (as nats-py does): the server's refusal."""
    await client.publish(subject, body, reply=client.new_inbox())
    return await refusals.next()


def violation(action: str, subject: str) -> str:
    # nats-py lowercases what the server says ("Permissions Violation for Publish to")
    return f'nats: permissions violation for {action} to "{subject.lower()}"'


def backlog(on: NatsCluster, pki_dir: Path) -> tuple[int, int, float]:
    """(messages in the stream, handed out and not acknowledged, the consumer's ack_wait),
    asked with the ingest's own certificate: the info it may read."""

    async def ask() -> tuple[int, int, float]:
        async with connected(on, 0, pki_dir, INGEST, Refusals()) as client:
            js = client.jetstream(timeout=TIMEOUT)
            stream = await js.stream_info(STREAM)
            consumer = await js.consumer_info(STREAM, DURABLE)
            assert consumer.config.ack_wait is not None
            return stream.state.messages, consumer.num_ack_pending, consumer.config.ack_wait

    return asyncio.run(ask())


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cluster(fleet: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """The deployed cluster once the first ingest worker made its stream and consumer
    under the setup grants, and the nodes, one at a time, took the ordinary ones."""
    render(fleet, "--ingest-setup")
    on = deployed_cluster(fleet, tmp_path_factory.mktemp("nats")).start()
    try:
        work = tmp_path_factory.mktemp("first-worker")
        watch = status_watch(on, 1, fleet, "lane-a")
        first = started(ingest_config(work, on, fleet, 0), watch)
        first.stop()
        watch.disconnect()
        render(fleet)
        install_fleet_conf(on, fleet)
        on.rolling_restart()
        yield on
    finally:
        on.stop()


def kiosk_config(tmp_path: Path, on: NatsCluster, pki_dir: Path, node: int) -> Config:
    """The real kiosk lane-a on ``node``'s MQTT listener, with its certificate."""
    (tmp_path / "lane-a" / "frames").mkdir(parents=True)
    mqtt = {"host": "127.0.0.1", "port": on.nodes[node].mqtt_port, **tls(pki_dir, "lane-a")}
    return make_config(
        tmp_path / "lane-a",
        device={"id": "lane-a"},
        mqtt={**mqtt, "protocol": "3.1.1", "ack": "ingest", "ack_timeout_s": 20},
        lane={"mode": "officer", "open_s": 0.1},
    )


# -- the ingest at work --------------------------------------------------------------------


def test_the_ingest_stores_the_kiosks_passages_from_jetstream_and_answers_them(
    tmp_path: Path,
    cluster: NatsCluster,
    fleet: Path,
    kiosks: Callable[[Config], Kiosk],  # noqa: F811 - the fixture imported above
) -> None:
    """Kiosks on two other nodes than the worker's MQTT link: a real one (lane-a, its
    outbox waiting for the ingest's acknowledgements) and lane-b's certificate sending
    30 passages; all stored once, acknowledged to each, and gone from the stream."""
    lane_b = TlsClient.account(cluster.nodes[1].mqtt_port, fleet, "lane-b", v311=True, clean=False)
    lane_b.connect()
    assert lane_b.subscribe(topics.ack("lane-b"), topics.central_status()) == [GRANTED_QOS1] * 2
    worker = started(ingest_config(tmp_path, cluster, fleet, 0), lane_b)
    try:
        kiosk = kiosks(kiosk_config(tmp_path, cluster, fleet, 2)).start()
        sent = [passage("lane-b", seq) for seq in range(1, 31)]
        for msg in sent:
            lane_b.publish(topics.passage("lane-b"), json.dumps(msg).encode())
        wave_through(kiosk, 3)
        acked: set[str] = set()
        deadline = time.monotonic() + 30
        while acked != {m["pid"] for m in sent}:
            msg = next_message(lane_b, deadline, "every acknowledgement")
            if msg.topic == topics.ack("lane-b"):
                doc = json.loads(msg.payload)
                assert doc.get("rejected") is None
                acked |= set(doc["pids"])
        assert kiosk.app.publisher.wait_until(lambda p: p.acknowledged == 3, 30)
        assert rows(tmp_path / "central.db") == [
            *(("lane-a", seq) for seq in range(1, 4)),
            *(("lane-b", seq) for seq in range(1, 31)),
        ]
        assert (worker.stored, worker.rejected) == (33, 0)  # each stored by this worker
        # work-queue retention: what the database has left the stream
        until(lambda: backlog(cluster, fleet)[:2] == (0, 0), 10, "the stream drained")
    finally:
        worker.stop()
        lane_b.disconnect()


def test_kiosks_and_operators_stay_refused_on_the_nats_port(
    cluster: NatsCluster, fleet: Path
) -> None:
    for name in ("lane-a", "lane-b", OP):
        assert nats_attempt(cluster, 1, fleet, name) == "nats: 'Authorization Violation'", name


# -- what the ingest may not do over NATS -------------------------------------------------


def test_the_ingest_cannot_delete_purge_or_change_its_stream_nor_touch_another(
    cluster: NatsCluster, fleet: Path
) -> None:
    """Each JetStream API request refused by the server, and the stream and its
    consumer as they were."""
    config = api.StreamConfig(name=STREAM, subjects=["cp.v1.>"]).as_dict()
    durable = api.ConsumerConfig(
        name=DURABLE,
        durable_name=DURABLE,
        ack_policy=api.AckPolicy.EXPLICIT,
        filter_subject=PASSAGES,
        # what the setup grants allow (test_the_setup_grants_...): the durable deleted
        inactive_threshold=1.0,
    ).as_dict()
    push = api.ConsumerConfig(
        name="spy", durable_name="spy", deliver_subject="cp.v1.lane-a.cmd.open"
    ).as_dict()
    requests = {
        f"$JS.API.STREAM.DELETE.{STREAM}": b"",
        f"$JS.API.STREAM.PURGE.{STREAM}": b"",
        f"$JS.API.STREAM.UPDATE.{STREAM}": json.dumps(config).encode(),
        f"$JS.API.STREAM.CREATE.{STREAM}": json.dumps(config).encode(),
        f"$JS.API.STREAM.MSG.DELETE.{STREAM}": b'{"seq": 1}',
        "$JS.API.STREAM.CREATE.OTHER": json.dumps({**config, "name": "OTHER"}).encode(),
        f"$JS.API.CONSUMER.DELETE.{STREAM}.{DURABLE}": b"",
        f"$JS.API.CONSUMER.CREATE.{STREAM}.{DURABLE}.{PASSAGES}": json.dumps(
            {"stream_name": STREAM, "config": durable}
        ).encode(),
        f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{DURABLE}": json.dumps(
            {"stream_name": STREAM, "config": durable}
        ).encode(),
        f"$JS.API.CONSUMER.CREATE.{STREAM}.spy": json.dumps(
            {"stream_name": STREAM, "config": push}
        ).encode(),
        # the server's own streams: every MQTT session, retained and QoS 1 message
        "$JS.API.STREAM.DELETE.$MQTT_sess": b"",
        "$JS.API.STREAM.PURGE.$MQTT_msgs": b"",
        "$JS.API.STREAM.INFO.$MQTT_rmsgs": b"",
        "$JS.API.STREAM.NAMES": b"",
        "$JS.API.STREAM.LIST": b"",
        "$JS.API.INFO": b"",
        "$JS.ACK.$MQTT_msgs.anyone.1.1.1.1.0": b"",
    }
    before = backlog(cluster, fleet)

    async def attempt() -> list[str]:
        refusals = Refusals()
        async with connected(cluster, 0, fleet, INGEST, refusals) as client:
            return [await publish_refused(client, refusals, s, b) for s, b in requests.items()]

    mark = log_mark(cluster, 0)
    assert asyncio.run(attempt()) == [violation("publish", s) for s in requests]
    refused(cluster, 0, mark, "Publish", INGEST, list(requests))
    assert backlog(cluster, fleet) == before  # the stream and its consumer: still there


def test_the_ingest_publishes_no_passage_nor_command_over_nats_and_reads_only_its_own(
    cluster: NatsCluster, fleet: Path
) -> None:
    """It has no need to publish a passage (they come from the kiosks), nor to read
    beyond its MQTT topics and the answers to its requests."""
    forged = [topics.nats_subject(t) for t in ("cp/v1/lane-a/passage", "cp/v1/lane-a/cmd/open")]
    forged += ["cp.v1.$all.trust", "$MQTT.msgs.cp.v1.lane-a.passage"]
    spied = ["cp.v1.lane-a.cmd.*", "cp.v1.>", ">", "$MQTT.>", "$JS.API.>", "$JS.EVENT.>"]
    before = backlog(cluster, fleet)

    async def attempt() -> tuple[list[str], list[str]]:
        refusals = Refusals()
        async with connected(cluster, 0, fleet, INGEST, refusals) as client:
            published = [await publish_refused(client, refusals, s, b"{}") for s in forged]
            subscribed = []
            for subject in spied:
                await client.subscribe(subject)
                subscribed.append(await refusals.next())
            return published, subscribed

    mark = log_mark(cluster, 0)
    published, subscribed = asyncio.run(attempt())
    assert published == [violation("publish", s) for s in forged]
    assert subscribed == [violation("subscription", s) for s in spied]
    refused(cluster, 0, mark, "Publish", INGEST, forged)
    refused(cluster, 0, mark, "Subscription", INGEST, spied)
    assert backlog(cluster, fleet) == before  # no passage entered the stream


def test_a_worker_that_would_change_the_consumer_says_why_and_stays_offline(
    tmp_path: Path, cluster: NatsCluster, fleet: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another ack_wait_s needs the setup grants (deploy/nats/README.md): without them
    the worker logs the server's refusal, never says online, and the consumer stays."""
    caplog.set_level(logging.WARNING, logger="edge.central.nats_source")
    worker = Ingest(ingest_config(tmp_path, cluster, fleet, 0, ack_wait_s=7))
    worker.start()
    try:
        said = violation("publish", f"$JS.API.CONSUMER.CREATE.{STREAM}.{DURABLE}.{PASSAGES}")
        until(lambda: said in caplog.text, 20, "the refusal logged")
        assert not worker.source.ready
    finally:
        worker.stop()
    assert backlog(cluster, fleet)[2] == 30.0  # ack_wait_s as the first worker made it


# -- why the setup grants are rendered away ----------------------------------------------


def test_the_setup_grants_let_the_ingest_delete_its_consumer(fleet: Path, tmp_path: Path) -> None:
    """Creating the durable means changing it too: on nats-server 2.9.10 an
    ``inactive_threshold`` given to a durable consumer deletes it a moment later; then
    it may be made anew as any consumer (a push one delivering the passages to any
    subject). Hence ``pki nats`` grants it only with ``--ingest-setup``."""
    own = Path(shutil.copytree(fleet, tmp_path / "pki"))
    render(own, "--ingest-setup")
    on = deployed_cluster(own, tmp_path / "nats").start()

    async def attempt() -> str:
        async with connected(on, 0, own, INGEST, Refusals()) as client:
            js = client.jetstream(timeout=TIMEOUT)
            await js.add_stream(name=STREAM, subjects=[PASSAGES], num_replicas=3)
            pull = api.ConsumerConfig(
                name=DURABLE,
                durable_name=DURABLE,
                ack_policy=api.AckPolicy.EXPLICIT,
                filter_subject=PASSAGES,
            )
            await js.add_consumer(STREAM, pull)
            await js.add_consumer(STREAM, pull.evolve(inactive_threshold=1.0))
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                try:
                    await js.consumer_info(STREAM, DURABLE)
                except NotFoundError as exc:
                    return str(exc.description)
                await asyncio.sleep(0.2)  # polling the consumer's info
            return "still there"

    try:
        assert asyncio.run(attempt()) == "consumer not found"
    finally:
        on.stop()
