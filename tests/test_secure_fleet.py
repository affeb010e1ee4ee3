"""The whole fleet on the deployed broker: TLS client certificates and the ACL.

The broker runs ``deploy/mosquitto/checkpoint-edge.conf`` (only paths, the
listener and the user changed: tests/pki_helpers.py) with a PKI made by
``checkpoint-edge pki``. On it: a real kiosk (lane-a), a real ingest worker
(ingest-1, shared subscription), the operator's tool (op-admin), and another
kiosk's certificate (lane-b) trying what it must not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge import cli
from edge import config as config_mod
from edge.central.ingest import Ingest
from edge.config import Config, IngestFile
from edge.core.lane import State
from edge.core.model import iso_utc
from edge.credtools import keys_new
from edge.fleet.operator import FleetClient
from edge.mqtt import topics
from edge.pki import ca as pki

from . import test_e2e
from .conftest import make_config, toml_text, write_frame
from .pki_helpers import Broker, TlsClient
from .test_e2e import PERSON, Kiosk

kiosks = test_e2e.kiosks  # the fixture
NOT_AUTHORIZED = 0x87


def pki_run(*argv: str | Path) -> None:
    assert cli.main(["pki", *(str(a) for a in argv)]) == 0


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fleet-pki")
    pki_run("init", "--dir", d)
    for device in ("lane-a", "lane-b"):
        pki_run("device", device, "--dir", d)
    pki_run("ingest", "1", "--dir", d)
    for operator in ("admin", "raw"):  # two operators: one account = one connection
        pki_run("operator", operator, "--dir", d)
    pki_run("acl", "--dir", d, "--out", d / pki.ACL)
    return d


@pytest.fixture
def secure_broker(pki_dir: Path, tmp_path: Path) -> Iterator[Broker]:
    broker = Broker.deployed(pki_dir, tmp_path / "broker").start()
    yield broker
    broker.stop()


def tls(pki_dir: Path, port: int, account: str) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "tls": True,
        "ca_file": str(pki_dir / "ca.pem"),
        "cert_file": str(pki_dir / f"{account}.pem"),
        "key_file": str(pki_dir / f"{account}.key"),
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1,
    }


def kiosk_config(tmp_path: Path, pki_dir: Path, port: int) -> Config:
    (tmp_path / "frames").mkdir(parents=True, exist_ok=True)
    return make_config(
        tmp_path,
        device={"id": "lane-a"},
        mqtt={**tls(pki_dir, port, "lane-a"), "ack": "ingest", "ack_timeout_s": 5},
        lane={"mode": "officer", "open_s": 0.5, "decision_timeout_s": 60},
        fleet={
            "keys": [str(pki_dir / "fleet-signing.pub.pem")],
            "clock_check": False,
            "trust_max_age_h": 0,
        },
    )


@pytest.fixture
def ingest(tmp_path: Path, pki_dir: Path, secure_broker: Broker) -> Iterator[Ingest]:
    data = {
        "mqtt": tls(pki_dir, secure_broker.port, "ingest-1"),
        "ingest": {"database": f"sqlite:///{tmp_path / 'central.db'}", "client_id": "ingest-1"},
    }
    worker = Ingest(config_mod.from_mapping_as(data, tmp_path, "test", IngestFile))
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def operator(pki_dir: Path, secure_broker: Broker) -> Iterator[FleetClient]:
    cfg = config_mod.from_mapping_as(
        {"mqtt": tls(pki_dir, secure_broker.port, "op-admin")}, Path("/"), "test", IngestFile
    ).mqtt
    client = FleetClient(cfg).connect()
    yield client
    client.close()


def online(op: FleetClient, device: str) -> bool:
    view = op.devices.get(device)
    return view is not None and view.state == "online" and bool(view.reported)


def test_kiosk_ingest_and_operator_work_together_over_tls(
    tmp_path: Path,
    frames_dir: Path,
    pki_dir: Path,
    secure_broker: Broker,
    ingest: Ingest,
    operator: FleetClient,
    kiosks: Callable[[Config], Kiosk],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = kiosk_config(tmp_path, pki_dir, secure_broker.port)
    write_frame(frames_dir / "01.png", PERSON.encode())
    kiosk = kiosks(cfg).start()
    op = operator
    assert op.wait_for(lambda: online(op, "lane-a"), 15), "lane-a not online over TLS"
    kiosk.wait_state(State.AWAITING_DECISION)
    kiosk.press(kiosk.cfg.gpio.approve_pin)
    assert kiosk.relay.wait_for(True)
    # the ingest stores it and acknowledges; the kiosk's outbox empties
    assert ingest.wait_until(lambda i: i.stored == 1, 15), "the ingest did not store it"
    publisher = kiosk.app.publisher
    # acknowledged: counted once the store has booked the ack (backlog is 0 before that)
    assert publisher.wait_until(lambda p: p.acknowledged == 1, 15), "no acknowledgement"
    assert op.send("lane-a", "get-status")["data"]["outbox"]["depth"] == 0
    assert ingest.db.count() == 1

    # the operator's command line, with its own certificate
    op_cfg = tmp_path / "operator.toml"
    # (another operator's account: one account is one connection, the broker's client id)
    op_cfg.write_text(toml_text({"mqtt": tls(pki_dir, secure_broker.port, "op-raw")}))
    assert cli.main(["fleet", "-c", str(op_cfg), "send", "lane-a", "ping"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    issuer = keys_new("tls-issuer", "ES256", tmp_path / "issuer")
    key = pki_dir / "fleet-signing.key"
    push = ["fleet", "-c", str(op_cfg), "trust", "push", issuer["trust_list"], "--key", str(key)]
    assert cli.main([*push, "--version", "9"]) == 0
    assert op.wait_for(lambda: op.devices["lane-a"].reported.get("trust_version") == 9, 10)


def test_retained_expired_and_foreign_commands_do_nothing_at_a_real_kiosk(
    tmp_path: Path,
    pki_dir: Path,
    secure_broker: Broker,
    operator: FleetClient,
    kiosks: Callable[[Config], Kiosk],
) -> None:
    # a retained open-barrier left on the broker by an operator: it must not run
    # when the kiosk subscribes
    op_raw = TlsClient.account(secure_broker.port, pki_dir, "op-raw").connect()
    stale = {
        "id": "stale-1",
        "expires": iso_utc(datetime.now(UTC) + timedelta(minutes=5)),
        "args": {},
    }
    code = op_raw.publish(
        topics.command("lane-a", "open-barrier"), json.dumps(stale).encode(), retain=True
    )
    assert code in (0, 0x10)  # success, or "no matching subscribers" (retained all the same)
    kiosk = kiosks(kiosk_config(tmp_path, pki_dir, secure_broker.port)).start()
    op = operator
    assert op.wait_for(lambda: online(op, "lane-a"), 15)
    assert op.send("lane-a", "ping")["status"] == "ok"

    # expired: answered so, not run
    cid = op.command("lane-a", "open-barrier", expires_s=-5)
    got = op.reply(cid, 10)
    assert got is not None
    assert got[1]["status"] == "expired"

    # another kiosk's certificate cannot command lane-a, nor the fleet
    op_raw.subscribe("cp/v1/lane-a/res/#", "cp/v1/no-device/cmd/marker")
    other = TlsClient.account(secure_broker.port, pki_dir, "lane-b").connect()
    forged = json.dumps({**stale, "id": "forged-1"}).encode()
    assert other.publish(topics.command("lane-a", "open-barrier"), forged) == NOT_AUTHORIZED
    assert other.publish(topics.command(topics.ALL, "open-barrier"), forged) == NOT_AUTHORIZED
    assert other.publish(topics.config_desired("lane-a"), b"{}") == NOT_AUTHORIZED
    other.disconnect()

    status = op.send("lane-a", "get-status")["data"]
    assert status["outbox"]["last_seq"] == 0, "a passage was recorded: something opened"
    assert status["barrier_open"] is False
    assert kiosk.relay.state is False
    seen = op_raw.drain(op_raw, "cp/v1/no-device/cmd/marker")
    answered = [json.loads(m.payload).get("id") for m in seen]
    assert "stale-1" not in answered, "the retained command was answered"
    assert "forged-1" not in answered
    assert any(a for a in answered), "the replies above should have been seen"
    op_raw.disconnect()
