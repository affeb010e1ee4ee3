"""Broker security: the fleet PKI (edge.pki.ca) and the deployed mosquitto configuration.

The broker runs ``deploy/mosquitto/checkpoint-edge.conf`` itself (only paths,
listener and user changed, which a test checks) with the ACL that ``pki acl``
renders and certificates ``edge.pki.ca`` issued at test time. Whether a message
did NOT arrive is proven with a marker sent after it, never with a sleep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from edge.fleet.commands import MAX_COMMAND_BYTES
from edge.fleet.remote import MAX_DESIRED_BYTES
from edge.fleet.signing import MAX_PUSH_BYTES
from edge.pki import ca as pki
from edge.pki import cli as pki_cli

from .pki_helpers import (
    DEPLOY,
    FORGED_BY_LANE_A,
    GRANTED_QOS1,
    INSTALLED,
    LANE_A_READS,
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    OWN_TOPICS,
    SUCCESS,
    TO_LANE_A_FROM_OPERATOR,
    Broker,
    TlsClient,
    example_fleet,
    run,
    runnable_config,
)

ACCEPTED = (SUCCESS, NO_MATCHING_SUBSCRIBERS)  # a PUBACK that is not a refusal
OP = "op-admin"
INGEST = "ingest-1"
# The deploy config's max_packet_size: the largest packet a client may send.
MAX_PACKET = 8 * 1024 * 1024 + 64 * 1024


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PKI made with the CLI: two kiosks, an ingest worker, an operator, their ACL."""
    d = example_fleet(tmp_path_factory.mktemp("pki"))
    assert run("acl", "--dir", d, "--out", d / pki.ACL) == 0
    return d


@pytest.fixture
def own_fleet(fleet: Path, tmp_path: Path) -> Path:
    """A copy of ``fleet`` that a test may change (revocations)."""
    return Path(shutil.copytree(fleet, tmp_path / "pki"))


@pytest.fixture
def start_broker(tmp_path: Path) -> Iterator[Callable[[Path], Broker]]:
    started: list[Broker] = []

    def start(pki_dir: Path) -> Broker:
        broker = Broker.deployed(pki_dir, tmp_path / f"broker{len(started)}").start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        broker.stop()


@pytest.fixture
def broker(fleet: Path, start_broker: Callable[[Path], Broker]) -> Broker:
    """Here, the broker is the deployed one (this overrides conftest's plain broker)."""
    return start_broker(fleet)


@pytest.fixture
def connect(fleet: Path) -> Iterator[Callable[..., TlsClient]]:
    """``connect(broker, account, client_id="", pki_dir=fleet)``: a connected TLS client."""
    made: list[TlsClient] = []

    def make(broker: Broker, name: str, client_id: str = "", pki_dir: Path = fleet) -> TlsClient:
        client = TlsClient.account(broker.port, pki_dir, name, client_id)
        made.append(client)
        return client.connect()

    yield make
    for client in made:
        client.disconnect()


@pytest.fixture
def operator(broker: Broker, connect: Callable[..., TlsClient]) -> TlsClient:
    """The operator, reading the whole namespace: where arrivals are checked."""
    op = connect(broker, OP)
    assert op.subscribe("cp/v1/#") == [GRANTED_QOS1]
    return op


def op_drain(op: TlsClient) -> list[tuple[str, bytes]]:
    """What the operator got since last time (its marker: a command to a device that is not)."""
    return [(m.topic, m.payload) for m in op.drain(op, "cp/v1/no-device/cmd/marker")]


def attempts(client: TlsClient, topics: list[str]) -> dict[str, int]:
    return {topic: client.publish(topic, f"from {client.client_id}".encode()) for topic in topics}


# -- the deployed configuration --------------------------------------------------------


def test_the_test_broker_runs_the_deploy_config_with_only_paths_listener_and_user_changed(
    tmp_path: Path,
) -> None:
    deploy = (DEPLOY / "checkpoint-edge.conf").read_text()
    runnable = runnable_config(deploy, tmp_path / "pki", 12345, tmp_path / "data")
    before, after = deploy.splitlines(), runnable.splitlines()
    assert after[: len(before)] != before  # something changed...
    changed = {old: new for old, new in zip(before, after, strict=False) if old != new}
    assert changed == {
        "listener 8883": "listener 12345 127.0.0.1",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {tmp_path}/data/",
        **{
            f"{key} {INSTALLED}{name}": f"{key} {tmp_path}/pki/{name}"
            for key, name in [
                ("cafile", "ca.pem"),
                ("certfile", "broker.pem"),
                ("keyfile", "broker.key"),
                ("crlfile", "crl.pem"),
                ("plugin_opt_config_file", pki.ACL),
            ]
        },
    }
    extra = after[len(before) :]
    assert len(extra) <= 1
    assert all(line.startswith("user ") for line in extra)


def test_the_deploy_config_holds_the_settings_the_fleet_relies_on() -> None:
    settings: dict[str, str] = {}
    for line in (DEPLOY / "checkpoint-edge.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            assert key not in settings, f"{key} given twice"
            settings[key] = value
    assert settings == {
        "per_listener_settings": "false",
        "listener": "8883",
        "cafile": f"{INSTALLED}ca.pem",
        "certfile": f"{INSTALLED}broker.pem",
        "keyfile": f"{INSTALLED}broker.key",
        "crlfile": f"{INSTALLED}crl.pem",
        "tls_version": "tlsv1.2",
        "require_certificate": "true",
        "use_identity_as_username": "true",
        "use_username_as_clientid": "true",
        "allow_anonymous": "false",
        "plugin": "mosquitto_dynamic_security.so",
        "plugin_opt_config_file": f"{INSTALLED}{pki.ACL}",
        "persistence": "true",
        "persistence_location": "/var/lib/mosquitto/",
        "autosave_interval": "10",
        "autosave_on_changes": "false",
        "max_queued_messages": "1000000",
        "max_inflight_messages": "100",
        "max_packet_size": str(MAX_PACKET),
    }


def test_the_deploy_acl_is_what_pki_acl_writes_for_the_example_accounts(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed = (DEPLOY / pki.ACL).read_text()
    capsys.readouterr()
    assert run("acl", "--dir", fleet) == 0
    assert capsys.readouterr().out == deployed  # lane-a, lane-b, ingest-1 and op-admin
    assert (fleet / pki.ACL).read_text() == deployed
    assert pki.render_acl(["lane-b", OP, "lane-a", INGEST]) == deployed


def test_the_packet_limit_fits_the_largest_legitimate_message() -> None:
    """A signed fleet push may be MAX_PUSH_BYTES of payload; its topic and header fit too."""
    assert MAX_PUSH_BYTES + 1024 <= MAX_PACKET <= MAX_PUSH_BYTES + 64 * 1024
    assert max(MAX_DESIRED_BYTES, MAX_COMMAND_BYTES) < MAX_PUSH_BYTES


# -- what each account may do -------------------------------------------------------------


def test_a_device_publishes_its_own_topics(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    lane_a = connect(broker, "lane-a")
    assert all(rc in ACCEPTED for rc in attempts(lane_a, OWN_TOPICS).values())
    assert op_drain(operator) == [(topic, b"from lane-a") for topic in OWN_TOPICS]


def test_a_device_cannot_publish_for_another_or_for_the_fleet(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    lane_a = connect(broker, "lane-a")
    forged = FORGED_BY_LANE_A
    assert attempts(lane_a, forged) == dict.fromkeys(forged, NOT_AUTHORIZED)
    assert op_drain(operator) == []


def test_a_device_cannot_read_another_devices_topics(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    lane_a, lane_b = connect(broker, "lane-a"), connect(broker, "lane-b")
    assert lane_b.publish("cp/v1/lane-b/status", b"online", retain=True) in ACCEPTED
    filters = [
        "cp/v1/lane-b/passage",
        "cp/v1/lane-b/status",
        "cp/v1/lane-b/cmd/+",
        "cp/v1/+/passage",
        "cp/v1/#",
        "#",
        "cp/v1/lane-a/cmd/+",  # its own: where the marker comes
    ]
    # refused at SUBSCRIBE (the dynamic-security plugin), and filtered on delivery too
    assert lane_a.subscribe(*filters) == [NOT_AUTHORIZED] * (len(filters) - 1) + [GRANTED_QOS1]
    assert lane_b.publish("cp/v1/lane-b/passage", b"b's passage") in ACCEPTED
    assert operator.publish("cp/v1/lane-b/cmd/open", b"for b") in ACCEPTED
    # they were published (the operator sees them) and lane-a got none of them
    assert op_drain(operator) == [
        ("cp/v1/lane-b/status", b"online"),
        ("cp/v1/lane-b/passage", b"b's passage"),
        ("cp/v1/lane-b/cmd/open", b"for b"),
    ]
    assert lane_a.drain(operator, "cp/v1/lane-a/cmd/marker") == []


def test_a_device_receives_its_commands_and_the_fleets_from_operators_and_ingest(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    lane_a, ingest = connect(broker, "lane-a"), connect(broker, INGEST)
    wanted = LANE_A_READS
    assert lane_a.subscribe(*wanted) == [GRANTED_QOS1] * len(wanted)
    from_operator = TO_LANE_A_FROM_OPERATOR
    assert all(rc in ACCEPTED for rc in attempts(operator, from_operator).values())
    from_ingest = ["cp/v1/lane-a/ack", "cp/v1/$central/status"]
    assert all(rc in ACCEPTED for rc in attempts(ingest, from_ingest).values())
    assert [(m.topic, m.payload) for m in lane_a.drain(operator, "cp/v1/lane-a/cmd/marker")] == [
        *((topic, f"from {OP}".encode()) for topic in from_operator),
        *((topic, f"from {INGEST}".encode()) for topic in from_ingest),
    ]


def test_the_ingest_takes_passages_by_shared_subscription_and_acks(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    ingest = connect(broker, INGEST)
    lane_a, lane_b = connect(broker, "lane-a"), connect(broker, "lane-b")
    assert ingest.subscribe("$share/ingest/cp/v1/+/passage") == [GRANTED_QOS1]
    assert lane_a.subscribe("cp/v1/lane-a/ack") == [GRANTED_QOS1]
    assert lane_a.publish("cp/v1/lane-a/passage", b"p-a") == SUCCESS  # a subscriber: 0, not 0x10
    assert lane_b.publish("cp/v1/lane-b/passage", b"p-b") == SUCCESS
    got = sorted((ingest.messages.get(timeout=10).topic, ingest.messages.get(timeout=10).topic))
    assert got == ["cp/v1/lane-a/passage", "cp/v1/lane-b/passage"]
    assert ingest.publish("cp/v1/lane-a/ack", b'{"pids": ["p-a"]}') == SUCCESS
    assert lane_a.messages.get(timeout=10).payload == b'{"pids": ["p-a"]}'
    assert ingest.publish("cp/v1/$central/status", b"online", retain=True) in ACCEPTED
    # but it commands no kiosk and forges no passage
    forged = ["cp/v1/lane-a/cmd/open", "cp/v1/lane-a/passage", "cp/v1/$all/trust"]
    assert attempts(ingest, forged) == dict.fromkeys(forged, NOT_AUTHORIZED)
    assert [topic for topic, _ in op_drain(operator)] == [
        "cp/v1/lane-a/passage",
        "cp/v1/lane-b/passage",
        "cp/v1/lane-a/ack",
        "cp/v1/$central/status",
    ]


def test_a_device_cannot_join_the_ingests_shared_subscription(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    """Issue 14: a kiosk in the ingest's group would be handed every other passage."""
    ingest = connect(broker, INGEST)
    lane_a, lane_b = connect(broker, "lane-a"), connect(broker, "lane-b")
    group = "$share/ingest/cp/v1/+/passage"
    assert ingest.subscribe(group, "cp/v1/$central/status") == [GRANTED_QOS1] * 2
    # the thief: refused outright, or at least never a member that takes a turn
    assert lane_b.subscribe(group, "cp/v1/lane-b/cmd/+")[1] == GRANTED_QOS1
    sent = []
    for i in range(25):
        for lane in (lane_a, lane_b):
            topic, payload = f"cp/v1/{lane.client_id}/passage", f"p-{i}".encode()
            assert lane.publish(topic, payload) == SUCCESS
            sent.append((topic, payload))
    got = ingest.drain(ingest, "cp/v1/$central/status")
    assert sorted((m.topic, m.payload) for m in got) == sorted(sent)  # all 50, once each
    assert lane_b.drain(operator, "cp/v1/lane-b/cmd/marker") == []


def test_only_ingest_accounts_join_a_shared_subscription_of_passages(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    ingest, lane_a = connect(broker, INGEST), connect(broker, "lane-a")
    # whatever group the ingest is configured with ([ingest] group), or none
    assert ingest.subscribe("$share/night/cp/v1/+/passage", "cp/v1/+/passage") == [GRANTED_QOS1] * 2
    joins = [
        "$share/ingest/cp/v1/+/passage",
        "$share/ingest/cp/v1/lane-a/passage",  # not even its own passages
        "$share/ingest/cp/v1/#",
        "$share/ingest/#",
    ]
    assert lane_a.subscribe(*joins) == [NOT_AUTHORIZED] * len(joins)
    assert operator.subscribe(*joins) == [NOT_AUTHORIZED] * len(joins)  # it reads, plainly


# -- how large a message may be ---------------------------------------------------------


def test_a_packet_over_the_limit_is_refused_and_never_reaches_the_ingest(
    broker: Broker, connect: Callable[..., TlsClient]
) -> None:
    ingest, lane_a = connect(broker, INGEST), connect(broker, "lane-a")
    group = "$share/ingest/cp/v1/+/passage"
    assert ingest.subscribe(group, "cp/v1/$central/status") == [GRANTED_QOS1] * 2
    topic = "cp/v1/lane-a/passage"
    under = b"u" * (MAX_PACKET - 1024)  # with its topic and header: just under the limit
    assert lane_a.publish(topic, under) == SUCCESS
    mark = broker.mark()
    lane_a.client.publish(topic, b"o" * MAX_PACKET, qos=1)  # the payload alone is the limit
    broker.wait_log("Client lane-a disconnected due to oversize packet.", mark)
    assert lane_a.disconnects.get(timeout=10) is not None  # DISCONNECT 0x95, or the socket
    got = ingest.drain(ingest, "cp/v1/$central/status")
    assert [(m.topic, len(m.payload)) for m in got] == [(topic, len(under))]


def test_the_largest_fleet_push_fits_under_the_limit(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    lane_a = connect(broker, "lane-a")
    assert lane_a.subscribe("cp/v1/$all/trust", "cp/v1/lane-a/cmd/+") == [GRANTED_QOS1] * 2
    assert operator.publish("cp/v1/$all/trust", b"t" * MAX_PUSH_BYTES) == SUCCESS
    got = lane_a.drain(operator, "cp/v1/lane-a/cmd/marker")
    assert [(m.topic, len(m.payload)) for m in got] == [("cp/v1/$all/trust", MAX_PUSH_BYTES)]


def test_an_operator_commands_but_forges_nothing(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    allowed = ["cp/v1/lane-b/cmd/open", "cp/v1/lane-b/config/desired", "cp/v1/$all/cmd/ping"]
    assert all(rc in ACCEPTED for rc in attempts(operator, allowed).values())
    forged = ["cp/v1/lane-b/passage", "cp/v1/lane-b/status", "cp/v1/lane-b/ack"]
    assert attempts(operator, forged) == dict.fromkeys(forged, NOT_AUTHORIZED)
    assert [topic for topic, _ in op_drain(operator)] == allowed
    # nor does it change the access control through the plugin's own topics
    control = "$CONTROL/dynamic-security/v1"
    assert operator.subscribe(control + "/#") == [NOT_AUTHORIZED]
    assert operator.publish(control, b'{"commands": [{"command": "listClients"}]}') == (
        NOT_AUTHORIZED
    )


def test_new_accounts_are_in_once_pki_acl_is_rerun_and_the_broker_restarted(
    own_fleet: Path, start_broker: Callable[[Path], Broker], connect: Callable[..., TlsClient]
) -> None:
    broker = start_broker(own_fleet)
    assert run("device", "lane-c", "--dir", own_fleet) == 0
    assert run("operator", "alice", "--dir", own_fleet) == 0
    lane_c = connect(broker, "lane-c", pki_dir=own_fleet)  # the CA vouches for them...
    alice = connect(broker, "op-alice", pki_dir=own_fleet)
    assert lane_c.publish("cp/v1/lane-c/status", b"too early") == NOT_AUTHORIZED  # ...not the ACL
    assert lane_c.subscribe("cp/v1/lane-c/cmd/+") == [NOT_AUTHORIZED]
    assert alice.publish("cp/v1/lane-c/cmd/open", b"too early") == NOT_AUTHORIZED
    assert run("acl", "--dir", own_fleet, "--out", own_fleet / pki.ACL) == 0
    written = (own_fleet / pki.ACL).read_bytes()
    broker.reload()  # mosquitto 2.0.11 does not read the plugin's file again on SIGHUP
    assert lane_c.publish("cp/v1/lane-c/status", b"still early") == NOT_AUTHORIZED
    broker.restart()
    assert (own_fleet / pki.ACL).read_bytes() == written  # the broker never writes it
    for client in (lane_c, alice):
        client.disconnects.get(timeout=10)
        client.disconnect()
    lane_c = connect(broker, "lane-c", pki_dir=own_fleet)
    alice = connect(broker, "op-alice", pki_dir=own_fleet)
    assert lane_c.subscribe("cp/v1/lane-c/cmd/+") == [GRANTED_QOS1]
    assert alice.subscribe("cp/v1/lane-c/status") == [GRANTED_QOS1]
    assert lane_c.publish("cp/v1/lane-c/status", b"now") == SUCCESS
    assert alice.publish("cp/v1/lane-c/cmd/open", b"now") == SUCCESS
    assert [(m.topic, m.payload) for m in lane_c.drain(alice, "cp/v1/lane-c/cmd/marker")] == [
        ("cp/v1/lane-c/cmd/open", b"now")
    ]
    assert alice.messages.get(timeout=10).payload == b"now"


# -- who may connect -----------------------------------------------------------------------


def test_a_client_without_a_certificate_is_refused(broker: Broker, fleet: Path) -> None:
    mark = broker.mark()
    client = TlsClient(broker.port, fleet / "ca.pem", None, None, "lane-a")
    assert client.try_connect().startswith("refused")
    client.disconnect()
    broker.wait_log("peer did not return a certificate", mark)  # refused by TLS itself


def test_a_certificate_of_another_ca_is_refused(
    broker: Broker, fleet: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other-pki"
    assert run("init", "--dir", other) == 0
    assert run("device", "lane-a", "--dir", other) == 0  # the same name, another CA
    mark = broker.mark()
    client = TlsClient(broker.port, fleet / "ca.pem", other / "lane-a.pem", other / "lane-a.key")
    assert client.try_connect().startswith("refused")
    client.disconnect()
    broker.wait_log("certificate verify failed", mark)
    # the same client with the fleet's own certificate gets in
    welcome = TlsClient.account(broker.port, fleet, "lane-a")
    assert welcome.try_connect() == "connected"
    welcome.disconnect()


def test_a_revoked_certificate_is_refused_once_the_broker_restarts(
    own_fleet: Path, start_broker: Callable[[Path], Broker], connect: Callable[..., TlsClient]
) -> None:
    broker = start_broker(own_fleet)
    stolen = connect(broker, "lane-b", pki_dir=own_fleet)
    assert run("revoke", "lane-b", "--dir", own_fleet, "--reason", "key_compromise") == 0
    broker.restart()  # the connected unit is cut off...
    assert stolen.disconnects.get(timeout=10) is not None
    stolen.disconnect()
    # ...and cannot come back, while the others can
    mark = broker.mark()
    again = TlsClient.account(broker.port, own_fleet, "lane-b")
    assert again.try_connect().startswith("refused")
    again.disconnect()
    broker.wait_log("certificate verify failed", mark)
    assert (
        connect(broker, "lane-a", pki_dir=own_fleet).publish("cp/v1/lane-a/status", b"online")
        in ACCEPTED
    )


def test_a_reload_applies_a_new_crl_to_new_connections_only(
    own_fleet: Path, start_broker: Callable[[Path], Broker], connect: Callable[..., TlsClient]
) -> None:
    """mosquitto 2.0.11 re-reads crlfile on SIGHUP, but keeps the connections it has."""
    broker = start_broker(own_fleet)
    assert run("revoke", "lane-b", "--dir", own_fleet) == 0
    # the broker has not read the new CRL yet
    stolen = connect(broker, "lane-b", pki_dir=own_fleet)
    broker.reload()
    again = TlsClient.account(broker.port, own_fleet, "lane-b")
    assert again.try_connect().startswith("refused")
    again.disconnect()
    # the stolen unit's live connection goes on: hence a restart in the README
    assert stolen.publish("cp/v1/lane-b/status", b"still here") in ACCEPTED
    assert stolen.disconnects.empty()


def test_an_expired_crl_locks_every_client_out(
    own_fleet: Path, start_broker: Callable[[Path], Broker]
) -> None:
    """Why ``pki crl`` must run before ``next_update`` (``pki list`` shows it)."""
    pki.write_crl(own_fleet, days=1, now=datetime.now(UTC) - timedelta(days=2))
    broker = start_broker(own_fleet)
    refused = TlsClient.account(broker.port, own_fleet, "lane-a")
    assert refused.try_connect().startswith("refused")
    refused.disconnect()
    assert run("crl", "--dir", own_fleet) == 0
    broker.reload()
    welcome = TlsClient.account(broker.port, own_fleet, "lane-a")
    assert welcome.try_connect() == "connected"
    welcome.disconnect()


def test_the_client_id_is_the_certificate_cn_whatever_the_client_says(
    broker: Broker, connect: Callable[..., TlsClient], operator: TlsClient
) -> None:
    lane_b = connect(broker, "lane-b")
    mark = broker.mark()
    first_a = connect(broker, "lane-a", client_id="anything")
    impostor = connect(broker, "lane-a", client_id="lane-b")
    # the broker named both lane-a connections "lane-a": the second took over the first
    # (mosquitto 2.0.11 closes it without a DISCONNECT 0x8E reaching the client)...
    first_a.disconnects.get(timeout=10)
    broker.wait_log("Client lane-a already connected, closing old connection.", mark)
    connected = [line for line in broker.log[mark:] if "New client connected" in line]
    assert [" as lane-a (" in line for line in connected] == [True, True], connected
    # ...and lane-b, whose client id the impostor gave, was left alone
    assert lane_b.publish("cp/v1/lane-b/status", b"b is fine") in ACCEPTED
    assert lane_b.disconnects.empty()
    assert impostor.publish("cp/v1/lane-b/status", b"forged") == NOT_AUTHORIZED
    assert op_drain(operator) == [("cp/v1/lane-b/status", b"b is fine")]


# -- edge.pki.ca ------------------------------------------------------------------------------


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    assert "Traceback" not in err
    return err


def test_init_writes_a_pki_with_private_keys_only_for_the_owner(fleet: Path) -> None:
    for name in ("ca.key", "broker.key", "fleet-signing.key", "lane-a.key", "op-admin.key"):
        assert stat.S_IMODE((fleet / name).stat().st_mode) == 0o600, name
    for name in ("ca.pem", "broker.pem", "crl.pem", "fleet-signing.pub.pem", "lane-a.pem"):
        assert stat.S_IMODE((fleet / name).stat().st_mode) == 0o644, name
    ca = load_cert(fleet / "ca.pem")
    ca_public = ca.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    assert ca_public.curve.name == "secp256r1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3651)
    signing = serialization.load_pem_private_key((fleet / "fleet-signing.key").read_bytes(), None)
    assert isinstance(signing, ed25519.Ed25519PrivateKey)
    public = serialization.load_pem_public_key((fleet / "fleet-signing.pub.pem").read_bytes())
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(signing.sign(b"trust list"), b"trust list")


def test_certificates_chain_to_the_ca_with_the_right_names_and_uses(fleet: Path) -> None:
    ca = load_cert(fleet / "ca.pem")
    broker = load_cert(fleet / "broker.pem")
    policy = PolicyBuilder().store(Store([ca]))
    for name in (DNSName("localhost"), IPAddress(ip_address("127.0.0.1"))):
        chain = policy.build_server_verifier(name).verify(broker, [])
        assert chain[-1] == ca
    for account in ("lane-a", "lane-b", INGEST, OP):
        cert = load_cert(fleet / f"{account}.pem")
        cert.verify_directly_issued_by(ca)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [a.value for a in cn] == [account]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = broker.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_init_takes_the_brokers_names_and_addresses(tmp_path: Path) -> None:
    names = ["--broker-name", "mqtt.example.vn", "--broker-name", "broker"]
    assert run("init", "--dir", tmp_path, *names, "--broker-ip", "10.0.0.5") == 0
    san = load_cert(tmp_path / "broker.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["mqtt.example.vn", "broker"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]


def test_the_index_records_every_certificate(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = json.loads((fleet / "index.json").read_text())
    kinds = {c["name"]: c["kind"] for c in index["certificates"]}
    assert kinds == {"lane-a": "device", "lane-b": "device", INGEST: "ingest", OP: "operator"}
    for entry in index["certificates"]:
        cert = load_cert(fleet / f"{entry['name']}.pem")
        assert int(entry["serial"], 16) == cert.serial_number
        assert datetime.fromisoformat(entry["not_after"]) == cert.not_valid_after_utc
        assert entry["revoked_at"] is None
    capsys.readouterr()
    assert run("list", "--dir", fleet) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out[:4]] == [
        ["lane-a", "device"],
        ["lane-b", "device"],
        [INGEST, "ingest"],
        [OP, "operator"],
    ]
    assert out[-1].startswith("crl.pem: number 1, 0 revoked, next update")


def test_revoking_puts_the_serial_in_a_fresh_signed_crl(
    own_fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serial = load_cert(own_fleet / "lane-b.pem").serial_number
    assert run("revoke", "lane-b", "--dir", own_fleet, "--reason", "key_compromise") == 0
    crl = x509.load_pem_x509_crl((own_fleet / "crl.pem").read_bytes())
    ca_public = load_cert(own_fleet / "ca.pem").public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_public)
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert len(crl) == 1
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    index = {
        c["name"]: c for c in json.loads((own_fleet / "index.json").read_text())["certificates"]
    }
    assert index["lane-b"]["revoked_at"]
    assert index["lane-b"]["reason"] == "key_compromise"
    assert index["lane-a"]["revoked_at"] is None
    capsys.readouterr()
    assert run("revoke", "lane-b", "--dir", own_fleet) == 2
    assert error_line(capsys) == "checkpoint-edge pki revoke: lane-b: already revoked\n"
    assert run("revoke", "lane-z", "--dir", own_fleet) == 2
    assert "lane-z: no such account" in error_line(capsys)


def test_the_crl_command_signs_a_fresh_next_update(own_fleet: Path) -> None:
    assert run("crl", "--dir", own_fleet, "--days", "7") == 0
    crl = x509.load_pem_x509_crl((own_fleet / "crl.pem").read_bytes())
    assert crl.next_update_utc is not None
    left = crl.next_update_utc - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < left <= timedelta(days=7)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def test_the_acl_lists_every_live_account_each_device_with_a_role_of_its_own(
    own_fleet: Path,
) -> None:
    def clients() -> dict[str, list[str]]:
        doc = json.loads(pki.acl_text(own_fleet))
        return {c["username"]: [r["rolename"] for r in c["roles"]] for c in doc["clients"]}

    assert run("operator", "alice", "--dir", own_fleet) == 0
    assert clients() == {
        "lane-a": ["device-lane-a", "devices"],
        "lane-b": ["device-lane-b", "devices"],
        INGEST: ["ingest"],
        OP: ["operators"],
        "op-alice": ["operators"],
    }
    assert run("revoke", OP, "--dir", own_fleet) == 0
    assert run("revoke", "lane-b", "--dir", own_fleet) == 0
    assert sorted(clients()) == ["ingest-1", "lane-a", "op-alice"]
    doc = json.loads(pki.acl_text(own_fleet))
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {r["rolename"]: r["acls"] for r in doc["roles"]}
    assert sorted(roles) == ["device-lane-a", "devices", "ingest", "operators"]
    assert all(acl["allow"] for acls in roles.values() for acl in acls)
    assert {acl["topic"].split("/")[2] for acl in roles["device-lane-a"]} == {"lane-a"}
    assert {acl["topic"] for acl in roles["devices"]} == {
        "cp/v1/$all/cmd/+",
        "cp/v1/$all/trust",
        "cp/v1/$all/policy",
        "cp/v1/$all/rules",
        "cp/v1/$central/status",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["device", "ingest-7"], "device ingest-7: the prefix 'ingest-' is reserved for ingest"),
        (["device", "op-root"], "device op-root: the prefix 'op-' is reserved for operator"),
        (["device", "ca"], "device ca: the name is reserved for the PKI's own files"),
        (["device", "Lane-1"], "device 'Lane-1': invalid name: use a-z, 0-9 and '-'"),
        (["device", "--", "-lane"], "device '-lane': invalid name"),
        (["device", "lane/1"], "device 'lane/1': invalid name"),
        (["device", "lane+"], "device 'lane+': invalid name"),
        (["device", "a" * 64], f"device '{'a' * 64}': invalid name"),
        (["ingest", "ingest-2"], "ingest ingest-2: give the name without 'ingest-'"),
        (["operator", "op-bob"], "operator op-bob: give the name without 'op-'"),
        (["operator", "b" * 61], f"operator op-{'b' * 61}: too long"),
        (["device", "lane-a"], "device lane-a: already issued (serial "),
        (["operator", "admin"], "operator op-admin: already issued"),
        (["device", "lane-c", "--days", "0"], "device lane-c: --days must be at least 1"),
        (["device", "lane-c", "--days", "4000"], "device lane-c: 4000 days would outlive the CA"),
        (["revoke", "lane-a", "--reason", "bogus"], None),  # argparse's own usage error
    ],
)
def test_refusals_are_one_line_naming_the_account_and_reason(
    fleet: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str | None
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in fleet.iterdir()}
    capsys.readouterr()
    assert run(argv[0], "--dir", fleet, *argv[1:]) == 2
    if message is None:
        assert "invalid choice: 'bogus'" in capsys.readouterr().err
    else:
        line = error_line(capsys)
        assert line.startswith(f"checkpoint-edge pki {argv[0]}: {message}"), line
    assert {p.name: p.stat().st_mtime_ns for p in fleet.iterdir()} == before  # nothing written


def test_nothing_is_overwritten_without_force(
    own_fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_before = (own_fleet / "ca.pem").read_bytes()
    capsys.readouterr()
    assert run("init", "--dir", own_fleet) == 2
    assert error_line(capsys) == (
        f"checkpoint-edge pki init: init: {own_fleet / 'ca.key'} exists; "
        "use --force to overwrite it\n"
    )
    assert (own_fleet / "ca.pem").read_bytes() == ca_before
    # a revoked account can be issued again, over its old files only with --force
    assert run("revoke", "lane-b", "--dir", own_fleet) == 0
    old = (own_fleet / "lane-b.pem").read_bytes()
    capsys.readouterr()
    assert run("device", "lane-b", "--dir", own_fleet) == 2
    assert "device lane-b: " in error_line(capsys)
    assert (own_fleet / "lane-b.pem").read_bytes() == old
    assert run("device", "lane-b", "--dir", own_fleet, "--force") == 0
    assert (own_fleet / "lane-b.pem").read_bytes() != old
    assert stat.S_IMODE((own_fleet / "lane-b.key").stat().st_mode) == 0o600
    assert [
        c["name"] for c in json.loads((own_fleet / "index.json").read_text())["certificates"]
    ].count("lane-b") == 2
    assert run("init", "--dir", own_fleet, "--force") == 0
    assert (own_fleet / "ca.pem").read_bytes() != ca_before


def test_a_missing_ca_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("device", "lane-1", "--dir", tmp_path / "nowhere") == 2
    assert error_line(capsys).startswith(
        f"checkpoint-edge pki device: device lane-1: no CA in {tmp_path / 'nowhere'}"
    )
    assert run("list", "--dir", tmp_path) == 2
    assert "run 'pki init' first" in error_line(capsys)


def test_register_adds_pki_to_the_main_command_line(
    fleet: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="checkpoint-edge")
    pki_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["pki", "list", "--dir", str(fleet)])
    assert args.command == "pki"
    capsys.readouterr()
    assert pki_cli.main(args) == 0
    assert capsys.readouterr().out.startswith("lane-a ")
