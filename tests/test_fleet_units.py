"""The fleet's pure parts: topics, command rules, signed pushes, remote config layers,
masked logs. (Their MQTT behaviour with a real broker: test_fleet.py.)"""

from __future__ import annotations

import argparse
import json
import logging
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from edge import config as config_mod
from edge.config import MqttConfig
from edge.core.model import iso_utc
from edge.fleet import cli as fleet_cli
from edge.fleet import signing
from edge.fleet.commands import Command, CommandFailed, CommandRejected, Commands, Spec
from edge.fleet.operator import FleetClient, Message
from edge.fleet.remote import RemoteConfig
from edge.mqtt import topics
from edge.service.logbuffer import RecentLogs, mask

from .conftest import make_config

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


# -- topics ---------------------------------------------------------------------------


def test_topics_build_and_parse_back() -> None:
    cases = {
        topics.status("lane-1"): ("lane-1", "status", ""),
        topics.meta("lane-1"): ("lane-1", "meta", ""),
        topics.alert("lane-1", "camera-down"): ("lane-1", "alert", "camera-down"),
        topics.reply("lane-1", "ping"): ("lane-1", "res", "ping"),
        topics.reply("lane-1", "ping") + "/op-1": ("lane-1", "res", "ping"),
        topics.command("lane-1", "set-mode"): ("lane-1", "cmd", "set-mode"),
        topics.command(topics.ALL, "ping"): ("$all", "cmd", "ping"),
        topics.config_desired("lane-1"): ("lane-1", "config", "desired"),
        topics.config_reported("lane-1"): ("lane-1", "config", "reported"),
        topics.fleet_push("trust"): ("$all", "trust", ""),
        topics.central_status(): ("$central", "status", ""),
        topics.ack("lane-1"): ("lane-1", "ack", ""),
    }
    for topic, (device, kind, name) in cases.items():
        assert topics.parse(topic) == topics.Parsed(device, kind, name), topic


@pytest.mark.parametrize(
    "topic",
    [
        "cp/v2/lane-1/status",
        "cp/v1/lane-1",
        "cp/v1/Lane-1/status",
        "cp/v1/$other/status",
        "cp/v1/lane-1/cmd/Ping",
        "cp/v1/lane-1/cmd/a/b",
        "cp/v1/lane-1/status/extra",
        "cp/v1/lane-1/nonsense",
        "cp/v1/+/status",
    ],
)
def test_topics_refuse_what_is_not_of_the_scheme(topic: str) -> None:
    assert topics.parse(topic) is None


# -- commands ---------------------------------------------------------------------------


def envelope(cid: str = "c1", expires: Any = None, args: Any = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "id": cid,
        "expires": expires or (NOW + timedelta(minutes=1)).isoformat(),
    }
    if args is not None:
        doc["args"] = args
    doc.update(extra)
    return json.dumps(doc).encode()


class Table:
    def __init__(self) -> None:
        self.runs: list[Command] = []

    def commands(self) -> Commands:
        def ok(command: Command) -> dict[str, Any]:
            self.runs.append(command)
            return {"n": len(self.runs)}

        def refuse(command: Command) -> dict[str, Any]:
            raise CommandRejected("not now")

        def fail(command: Command) -> dict[str, Any]:
            raise CommandFailed("broken relay")

        def crash(command: Command) -> dict[str, Any]:
            raise ZeroDivisionError

        return Commands(
            {
                "ping": Spec(ok),
                "open-barrier": Spec(ok, fleet_wide=False),
                "refuse": Spec(refuse),
                "fail": Spec(fail),
                "crash": Spec(crash),
            }
        )


def handle(cmds: Commands, name: str, payload: bytes, **kw: Any) -> Any:
    opts: dict[str, Any] = {"retained": False, "fleet_wide": False, "now": NOW}
    opts.update(kw)
    return cmds.handle(name, payload, **opts)


def test_command_runs_and_a_repeated_id_is_answered_from_memory() -> None:
    t = Table()
    cmds = t.commands()
    first = handle(cmds, "open-barrier", envelope("x1"))
    again = handle(cmds, "open-barrier", envelope("x1"))
    assert first.status == "ok"
    assert again == first
    assert len(t.runs) == 1
    other = handle(cmds, "open-barrier", envelope("x2"))
    assert other.data == {"n": 2}


def test_retained_commands_are_ignored_without_reply() -> None:
    t = Table()
    assert handle(t.commands(), "ping", envelope(), retained=True) is None
    assert t.runs == []


@pytest.mark.parametrize(
    ("expires", "status"),
    [
        ((NOW - timedelta(seconds=1)).isoformat(), "expired"),
        (NOW.timestamp() - 1, "expired"),
        ((NOW + timedelta(seconds=5)).isoformat().replace("+00:00", "Z"), "ok"),
        (NOW.timestamp() + 5, "ok"),
        ("2026-11-26T10:00:05", "rejected"),  # no time zone
        ("tomorrow", "rejected"),
        (True, "rejected"),
    ],
)
def test_expiry_is_required_and_enforced(expires: Any, status: str) -> None:
    t = Table()
    reply = handle(t.commands(), "ping", envelope(expires=expires))
    assert reply.status == status
    assert len(t.runs) == (1 if status == "ok" else 0)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"expires": NOW.isoformat()}).encode(), "id must be"),
        (json.dumps({"id": "", "expires": NOW.isoformat()}).encode(), "id must be"),
        (json.dumps({"id": "x" * 65, "expires": NOW.isoformat()}).encode(), "id must be"),
        (json.dumps({"id": "a"}).encode(), "expires is required"),
        (envelope(args=[1]), "args must be a JSON object"),
        (envelope(extra=1), "unknown field"),
        (b"{" + b" " * 20000 + b"}", "too large"),
    ],
)
def test_malformed_commands_are_rejected_with_a_reason(payload: bytes, needle: str) -> None:
    t = Table()
    reply = handle(t.commands(), "ping", payload)
    assert reply.status == "rejected"
    assert needle in reply.error
    assert t.runs == []
    json.loads(reply.payload())  # still a well-formed reply


def test_unknown_commands_and_hardware_commands_sent_fleet_wide_are_rejected() -> None:
    t = Table()
    cmds = t.commands()
    reply = handle(cmds, "self-destruct", envelope("u1"))
    assert reply.status == "rejected"
    assert "unknown command" in reply.error
    reply = handle(cmds, "open-barrier", envelope("u2"), fleet_wide=True)
    assert reply.status == "rejected"
    assert "moves hardware" in reply.error
    assert handle(cmds, "ping", envelope("u3"), fleet_wide=True).status == "ok"


def test_handler_outcomes_map_to_statuses() -> None:
    cmds = Table().commands()
    assert handle(cmds, "refuse", envelope("r")).status == "rejected"
    failed = handle(cmds, "fail", envelope("f"))
    assert (failed.status, failed.error) == ("error", "broken relay")
    crashed = handle(cmds, "crash", envelope("c"))
    assert crashed.status == "error"
    assert "internal error" in crashed.error


# -- signed pushes -------------------------------------------------------------------------


def test_signed_pushes_verify_and_any_change_breaks_them() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    payload = signing.sign("trust", 3, b'{"a": 1}', key, NOW)
    push = signing.verify(payload, "trust", [key.public_key()])
    assert (push.kind, push.version, push.body, push.issued) == ("trust", 3, b'{"a": 1}', NOW)
    doc = json.loads(payload)
    for field, value in [("version", 4), ("issued", "2027-01-01T00:00:00.000Z"), ("body", "e30=")]:
        tampered = json.dumps({**doc, field: value}).encode()
        with pytest.raises(signing.PushRejected) as caught:
            signing.verify(tampered, "trust", [key.public_key()])
        assert caught.value.reason == "bad_signature", field
    with pytest.raises(signing.PushRejected) as caught:
        signing.verify(payload, "policy", [key.public_key()])
    assert caught.value.reason == "wrong_kind"


def test_pushes_from_another_key_unsigned_or_malformed_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ed25519.Ed25519PrivateKey.generate()
    payload = signing.sign("policy", 1, b"{}", key, NOW)
    assert signing.verify(payload, "policy", [other.public_key(), key.public_key()]).version == 1
    cases = {
        "bad_signature": payload,
        "unsigned": json.dumps(
            {k: v for k, v in json.loads(payload).items() if k != "sig"}
        ).encode(),
        "malformed": b"{nope",
    }
    for reason, data in cases.items():
        with pytest.raises(signing.PushRejected) as caught:
            signing.verify(data, "policy", [other.public_key()])
        assert caught.value.reason == reason
    with pytest.raises(signing.PushRejected) as caught:
        signing.verify(payload, "policy", [])
    assert caught.value.reason == "no_fleet_key"


# -- remote config ----------------------------------------------------------------------------


def fleet_key(tmp_path: Path) -> tuple[ed25519.Ed25519PrivateKey, Path]:
    key = ed25519.Ed25519PrivateKey.generate()
    pub = tmp_path / "fleet.pub.pem"
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, pub


def remote_for(tmp_path: Path, **sections: dict[str, Any]) -> RemoteConfig:
    return RemoteConfig.from_config(make_config(tmp_path, **sections))


def desired(version: int, config: dict[str, Any]) -> bytes:
    return json.dumps({"version": version, "config": config}).encode()


def test_desired_config_applies_when_newer_and_valid_and_survives_restart(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)
    assert remote.effective.lane.mode == "auto"
    offer = remote.offer_desired(desired(1, {"lane": {"mode": "officer", "open_s": 7}}))
    assert (offer.changed, offer.state) == (True, "applying")  # until the kiosk runs with it
    assert remote.pending
    remote.confirm()
    assert remote.reported()["last"]["desired"]["state"] == "applied"
    assert remote.effective.lane.mode == "officer"
    assert remote.effective.lane.open_s == 7
    assert remote.reported()["version"] == 1
    # the retained copy arrives again on the next connect: nothing to do
    assert remote.offer_desired(desired(1, {"lane": {"mode": "officer"}})).state == "unchanged"
    again = remote_for(tmp_path)
    assert again.effective.lane.mode == "officer"
    assert again.config_version == 1


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (desired(2, {"lane": {"mode": "bogus"}}), "lane.mode: must be one of"),
        (desired(2, {"lane": {"nope": 1}}), "lane.nope: unknown key"),
        (desired(2, {"mqtt": {"host": "evil.example"}}), "mqtt: cannot be set remotely"),
        (desired(2, {"store": {"dir": "/tmp"}}), "store: cannot be set remotely"),
        (desired(2, {"fleet": {"keys": []}}), "fleet.keys: cannot be set remotely"),
        (desired(2, {"kiosk": {"listen": "0.0.0.0:80"}}), "kiosk.listen: cannot be set remotely"),
        (desired(2, {"kiosk": {"voice_volume": 150}}), "kiosk.voice_volume: must be a whole"),
        (desired(0, {}), "version must be a positive integer"),
        (b"{]", "not JSON"),
        (b"", "empty"),
        (json.dumps({"version": 2, "config": {}, "x": 1}).encode(), "must be"),
    ],
)
def test_invalid_desired_config_is_rejected_and_the_last_good_stays(
    tmp_path: Path, payload: bytes, needle: str
) -> None:
    remote = remote_for(tmp_path)
    remote.offer_desired(desired(1, {"lane": {"open_s": 2}}))
    offer = remote.offer_desired(payload)
    assert (offer.changed, offer.state) == (False, "rejected")
    assert needle in offer.detail
    assert remote.effective.lane.open_s == 2
    report = remote.reported()
    assert report["version"] == 1
    assert report["last"]["desired"]["state"] == "rejected"
    assert needle in report["last"]["desired"]["detail"]


def test_the_screens_language_and_voice_are_set_per_lane_remotely(tmp_path: Path) -> None:
    remote = remote_for(tmp_path, kiosk={"listen": "127.0.0.1:0", "voice_volume": 90})
    offer = remote.offer_desired(
        desired(1, {"kiosk": {"language": "en", "voice": False, "voice_volume": 40}})
    )
    assert (offer.changed, offer.state) == (True, "applying")
    remote.confirm()
    kiosk = remote.effective.kiosk
    assert (kiosk.language, kiosk.voice, kiosk.voice_volume) == ("en", False, 40)
    assert kiosk.listen == "127.0.0.1:0"  # the rest of [kiosk] stays the local file's
    again = remote_for(tmp_path, kiosk={"listen": "127.0.0.1:0", "voice_volume": 90})
    assert again.effective.kiosk.voice_volume == 40


def test_older_desired_versions_are_rejected(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)
    remote.offer_desired(desired(5, {"lane": {"open_s": 2}}))
    offer = remote.offer_desired(desired(4, {"lane": {"open_s": 3}}))
    assert offer.state == "rejected"
    assert "older" in offer.detail
    assert remote.effective.lane.open_s == 2


def test_remote_config_can_be_turned_off_locally(tmp_path: Path) -> None:
    remote = remote_for(tmp_path, fleet={"remote_config": False})
    offer = remote.offer_desired(desired(1, {"lane": {"open_s": 2}}))
    assert offer.state == "rejected"
    assert "off" in offer.detail


def test_policy_push_is_a_layer_under_the_device_config(tmp_path: Path) -> None:
    key, pub = fleet_key(tmp_path)
    remote = remote_for(tmp_path, fleet={"keys": [str(pub)]})
    body = json.dumps({"max_declaration_age_h": 12, "deny_exposure": False}).encode()
    offer = remote.offer_push("policy", signing.sign("policy", 10, body, key, NOW))
    assert offer.state == "applying"
    remote.confirm()
    assert remote.effective.policy.max_declaration_age_h == 12
    remote.offer_desired(desired(1, {"policy": {"max_declaration_age_h": 6}}))
    assert remote.effective.policy.max_declaration_age_h == 6  # the device's own wins
    assert remote.effective.policy.deny_exposure is False  # the push still applies
    bad = signing.sign("policy", 11, json.dumps({"max_declaration_age_h": -1}).encode(), key, NOW)
    offer = remote.offer_push("policy", bad)
    assert offer.state == "rejected"
    assert "policy.max_declaration_age_h" in offer.detail
    assert remote.policy_version == 10
    stranger = ed25519.Ed25519PrivateKey.generate()
    offer = remote.offer_push("policy", signing.sign("policy", 12, body, stranger, NOW))
    assert offer.state == "rejected"
    assert "bad_signature" in offer.detail


def test_trust_push_must_load_as_a_trust_list(tmp_path: Path) -> None:
    from edge.credtools import keys_new

    key, pub = fleet_key(tmp_path)
    remote = remote_for(tmp_path, fleet={"keys": [str(pub)]})
    files = keys_new("pushed-issuer", "ES256", tmp_path / "issuer")
    body = Path(files["trust_list"]).read_bytes()
    offer = remote.offer_push("trust", signing.sign("trust", 1, body, key, NOW))
    assert offer.state == "applied"
    assert remote.trust_files()[-1] == remote.trust_path
    assert remote.trust_path.read_bytes() == body
    offer = remote.offer_push("trust", signing.sign("trust", 2, b'{"format": "x"}', key, NOW))
    assert offer.state == "rejected"
    assert remote.trust_path.read_bytes() == body
    assert remote.trust_version == 1


def test_rules_push_must_load_as_a_rule_set_and_the_last_good_stays(tmp_path: Path) -> None:
    from edge.rules.book import bundle, bundled_rules, from_bundle

    key, pub = fleet_key(tmp_path)
    remote = remote_for(tmp_path, fleet={"keys": [str(pub)]})
    doc = bundle([bundled_rules()])
    body = json.dumps(doc).encode()
    offer = remote.offer_push("rules", signing.sign("rules", 3, body, key, NOW))
    assert (offer.changed, offer.state) == (True, "applied")  # no restart: the rules reload
    assert remote.rules_path.read_bytes() == body
    assert (remote.rules_version, remote.rules_issued) == (3, NOW)
    assert remote.reported()["rules_version"] == 3
    broken = json.dumps({**doc, "rules": [{**doc["rules"][0], "Logic": {"nope": [1]}}]}).encode()
    for version, payload, problem in [
        (4, b"[not json", "not JSON"),
        (5, broken, 'unrecognised operator: "nope"'),
        (6, b'{"format": "x"}', "checkpoint-edge-rules"),
    ]:
        offer = remote.offer_push("rules", signing.sign("rules", version, payload, key, NOW))
        assert offer.state == "rejected"
        assert problem in offer.detail
    older = remote.offer_push("rules", signing.sign("rules", 2, body, key, NOW))
    assert older.state == "rejected"
    stranger = ed25519.Ed25519PrivateKey.generate()
    forged = remote.offer_push("rules", signing.sign("rules", 9, body, stranger, NOW))
    assert "bad_signature" in forged.detail
    assert remote.rules_path.read_bytes() == body
    assert len(from_bundle(json.loads(remote.rules_path.read_bytes())).rules) == 11
    assert remote_for(tmp_path, fleet={"keys": [str(pub)]}).rules_version == 3  # kept
    # the card damaged the saved copy: the retained push, seen again, repairs it
    retained = signing.sign("rules", 3, body, key, NOW)
    assert remote.offer_push("rules", retained).state == "unchanged"
    remote.rules_path.write_bytes(b'{"format": "checkpoint-edge-rules", "ru')
    repaired = remote.offer_push("rules", retained)
    assert (repaired.changed, repaired.state) == (True, "applied")
    assert remote.rules_path.read_bytes() == body
    # rules that say nothing of this kiosk's country of arrival are no rules for it
    german = {**doc, "rules": [{**r, "Country": "DE", "Identifier": r["Identifier"][:3] + "DE"
                                + r["Identifier"][5:]} for r in doc["rules"]]}  # fmt: skip
    elsewhere = remote.offer_push(
        "rules", signing.sign("rules", 10, json.dumps(german).encode(), key, NOW)
    )
    assert elsewhere.state == "rejected"
    assert "no Acceptance rule of VN" in elsewhere.detail


def test_pushes_are_refused_without_fleet_keys(tmp_path: Path) -> None:
    key, _ = fleet_key(tmp_path)
    remote = remote_for(tmp_path)
    offer = remote.offer_push("policy", signing.sign("policy", 1, b"{}", key, NOW))
    assert offer.state == "rejected"
    assert "no_fleet_key" in offer.detail


def test_session_counter_grows_across_restarts(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)
    assert [remote.next_session(), remote.next_session()] == [1, 2]
    assert remote_for(tmp_path).next_session() == 3


def test_session_numbers_stay_ahead_after_the_state_file_was_recovered(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)
    used = [remote.next_session() for _ in range(3)]
    remote.state_path.write_text("{garbage")  # the last write was cut: .prev is behind
    again = remote_for(tmp_path)
    assert again.next_session() > max(used)


def test_a_corrupt_state_file_is_quarantined_not_fatal(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)
    remote.offer_desired(desired(1, {"lane": {"open_s": 2}}))
    remote.offer_desired(desired(2, {"lane": {"open_s": 3}}))
    remote.state_path.write_text("{garbage")
    again = remote_for(tmp_path)
    assert again.config_version == 1  # the last good copy
    assert again.effective.lane.open_s == 2


def test_config_round_trips_through_to_mapping(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, policy={"proof_zones": ["79"]})
    assert config_mod.from_mapping(config_mod.to_mapping(cfg), Path("/")) == cfg


# -- masked logs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("id 079203001234 seen", "079203001234"),
        ("plate 51F-123.45 passed", "51F-123.45"),
        ("plate 29A12345 passed", "29A12345"),
        ("mail an@example.vn", "an@example.vn"),
        ("phone 0912345678", "0912345678"),
    ],
)
def test_masking_hides_what_may_be_personal(text: str, hidden: str) -> None:
    masked = mask(text)
    assert hidden not in masked
    assert "<" in masked


def test_masking_keeps_ordinary_log_lines() -> None:
    line = "passage seq=12 stored: approved by officer (12.5 ms)"
    assert mask(line) == line


def test_recent_logs_keep_the_last_lines_at_a_level_masked() -> None:
    logs = RecentLogs(capacity=5)
    logger = logging.getLogger("test.recent")
    logger.addHandler(logs)
    logger.setLevel(logging.DEBUG)
    try:
        for i in range(8):
            logger.info("line %d of 079203001234", i)
        logger.debug("quiet")
        logger.warning("loud")
    finally:
        logger.removeHandler(logs)
    lines = logs.lines(3)
    assert len(lines) == 3
    assert lines[-1].endswith("loud")
    assert all("079203001234" not in line for line in lines)
    assert logs.lines(10, logging.WARNING)[0].endswith("loud")
    assert logs.lines(0) == []


def test_a_config_the_kiosk_cannot_start_with_is_rolled_back(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)
    remote.offer_desired(desired(1, {"lane": {"open_s": 2}}))
    remote.confirm()
    offer = remote.offer_desired(desired(2, {"scan": {"decoder": "pyzbar"}, "lane": {"open_s": 3}}))
    assert offer.state == "applying"
    assert remote.effective.lane.open_s == 3
    # (cli._serve: App() raised) -> back to version 1, reported rejected, and it stays so
    assert remote.rollback("the kiosk could not start with it: no libzbar")
    assert remote.effective.lane.open_s == 2
    assert remote.effective.scan.decoder == "auto"
    report = remote.reported()
    assert report["version"] == 1
    assert report["last"]["desired"]["state"] == "rejected"
    assert "could not start" in report["last"]["desired"]["detail"]
    assert not remote.rollback("again")
    again = remote_for(tmp_path)  # after a restart: still the last good one
    assert (again.config_version, again.effective.lane.open_s) == (1, 2)
    # the retained version 2 comes again at the next connect: it is refused, not re-run
    assert again.offer_desired(desired(2, {"lane": {"open_s": 3}})).state == "unchanged"
    assert again.config_version == 1
    assert again.offer_desired(desired(3, {"lane": {"open_s": 4}})).state == "applying"


def test_a_config_that_cannot_be_saved_is_not_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.errors import StoreError
    from edge.fleet import remote as remote_mod

    remote = remote_for(tmp_path)

    def full(path: Path, data: bytes) -> None:
        raise StoreError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(remote_mod, "replace_file", full)
    offer = remote.offer_desired(desired(1, {"lane": {"open_s": 2}}))
    assert (offer.changed, offer.state) == (False, "rejected")
    assert "No space left" in offer.detail
    assert remote.config_version == 0
    assert remote.effective.lane.open_s == 1.0


def test_deeply_nested_json_is_a_clear_rejection(tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    remote = remote_for(tmp_path)
    assert remote.offer_desired(deep).state == "rejected"
    reply = handle(Table().commands(), "ping", deep[:16_000])
    assert reply.status == "rejected"


def test_commands_far_in_the_future_are_refused() -> None:
    t = Table()
    reply = handle(t.commands(), "ping", envelope(expires=(NOW + timedelta(hours=2)).isoformat()))
    assert reply.status == "rejected"
    assert "ahead" in reply.error
    assert t.runs == []


def test_a_hardware_command_never_runs_twice_even_across_restarts(tmp_path: Path) -> None:
    remote = remote_for(tmp_path)  # the journal: in the fleet state file
    t = Table()
    specs = t.commands().specs
    first = Commands(specs, journal=remote).handle(
        "open-barrier", envelope("o-1"), retained=False, fleet_wide=False, now=NOW
    )
    assert first is not None
    assert first.status == "ok"
    # a restart: a new table, no memory of replies; the journal is read from disk
    after = Commands(specs, journal=remote_for(tmp_path)).handle(
        "open-barrier", envelope("o-1"), retained=False, fleet_wide=False, now=NOW
    )
    assert after is not None
    assert (after.status, after.error) == ("rejected", "already carried out (before a restart)")
    assert len(t.runs) == 1
    # commands that move nothing are not journalled (a repeated ping after a restart runs)
    for _ in range(2):
        reply = Commands(specs, journal=remote_for(tmp_path)).handle(
            "ping", envelope("p-1"), retained=False, fleet_wide=False, now=NOW
        )
        assert reply is not None
        assert reply.status == "ok"


def test_last_seen_is_when_the_device_last_spoke_not_when_its_session_began() -> None:
    """fleet status's LAST SEEN: the latest of the session start, the last telemetry
    (retained) and any live message of the device's own; never an operator's message,
    a retained copy, or the will the broker sends for it."""
    clock = [NOW]
    client = FleetClient(MqttConfig(host="127.0.0.1", port=1), clock=lambda: clock[0])
    dev = "lane-9"

    def arrive(topic: str, doc: Any, retained: bool) -> None:
        client._absorb(Message(topic, json.dumps(doc).encode(), retained))

    session = iso_utc(NOW - timedelta(hours=5))
    telemetry = iso_utc(NOW - timedelta(minutes=3))
    arrive(topics.status(dev), {"state": "online", "session": 4, "ts": session}, True)
    arrive(topics.telemetry(dev), {"ts": telemetry}, True)
    assert client.devices[dev].heard is None  # retained: said earlier, not now
    assert fleet_cli.device_row(client.devices[dev])["last_seen"] == telemetry

    clock[0] = NOW + timedelta(seconds=30)
    arrive(topics.config_desired(dev), {"version": 2, "config": {}}, False)  # an operator's
    arrive(topics.status(dev), {"state": "offline", "session": 4, "ts": session}, False)  # will
    assert client.devices[dev].heard is None
    assert fleet_cli.device_row(client.devices[dev])["last_seen"] == telemetry

    arrive(topics.reply(dev, "get-status"), {"id": "x", "status": "ok", "data": {}}, False)
    assert client.devices[dev].heard == iso_utc(NOW + timedelta(seconds=30))
    assert fleet_cli.device_row(client.devices[dev])["last_seen"] == iso_utc(
        NOW + timedelta(seconds=30)
    )


# what a hostile (or broken) device may publish, for the operator's terminal
ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\u2028\x7f"


def _unsafe(text: str) -> list[str]:
    bad = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    return [ch for ch in text if ch != "\n" and unicodedata.category(ch) in bad]


def test_fleet_watch_prints_no_device_text_a_terminal_would_act_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    passage = {"seq": 1, "traveller": {"name": ESCAPES, "id_number": "079190012345"}}
    alert = {"severity": "critical", "detail": "\ud800" + ESCAPES}
    arriving = [
        Message(topics.passage("odd-lane"), json.dumps(passage).encode(), False),
        Message(topics.alert("odd-lane", "camera-down"), json.dumps(alert).encode(), False),
        Message(topics.alert("odd-lane", "disk-low"), ESCAPES.encode() + b"\xff", False),
    ]
    client = FleetClient(MqttConfig(host="127.0.0.1", port=1))
    # no broker: the messages arrive the moment watch subscribes
    monkeypatch.setattr(client, "_subscribe", lambda *_a: [client._absorb(m) for m in arriving])
    args = argparse.Namespace(device="+", show_personal=True, count=3)
    assert fleet_cli._watch(client, args) == 0
    out = capsys.readouterr().out
    assert _unsafe(out) == []
    lines = out.splitlines()
    assert len(lines) == 3
    shown = lines[0].removeprefix("odd-lane passage: ")
    assert json.loads(shown) == passage  # escaped, not changed
    assert json.loads(lines[1].removeprefix("odd-lane alert camera-down: ")) == alert
    assert lines[2].startswith("odd-lane alert disk-low: ")  # not JSON: still shown


def test_fleet_status_shows_a_devices_escapes_visibly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = FleetClient(MqttConfig(host="127.0.0.1", port=1), clock=lambda: NOW)
    for topic, doc in [
        (topics.status("odd-lane"), {"state": "online\x1b[2J", "session": 2}),
        (topics.meta("odd-lane"), {"version": "1.0\u202e", "site": ESCAPES}),
        (topics.telemetry("odd-lane"), {"mode": "auto\x9b31m", "ts": "\ud800"}),
    ]:
        client._absorb(Message(topic, json.dumps(doc).encode(), True))
    row = fleet_cli.device_row(client.devices["odd-lane"])
    assert (row["state"], row["version"], row["mode"]) == (
        "online\\x1b[2J",
        "1.0\\u202e",
        "auto\\x9b31m",
    )
    assert row["site"] == "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil\\u2028\\x7f"
    assert row["last_seen"] is None  # "\ud800" is no time: not shown as the latest
    fleet_cli._table([row])
    table = capsys.readouterr().out
    assert _unsafe(table) == []
    assert "online\\x1b[2J" in table
