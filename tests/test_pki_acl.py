"""The broker ACL that ``pki acl`` writes, with every topic from edge.mqtt.topics.

``data/acl/dynamic-security-sample.json`` was written by the code before its
topics came from :mod:`edge.mqtt.topics` (three devices, two ingest workers, two
operators, one name twice): the file must stay the same, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

from paho.mqtt.client import topic_matches_sub

from edge.mqtt import topics
from edge.pki import acl
from edge.pki import ca as pki

SAMPLE = Path(__file__).parent / "data" / "acl" / "dynamic-security-sample.json"
ACCOUNTS = ["lane-2", "op-night", "lane-1", "ingest-b", "ingest-a", "op-admin", "gate-07", "lane-1"]


def test_the_acl_for_a_sample_fleet_is_byte_for_byte_what_it_was() -> None:
    assert pki.render_acl(ACCOUNTS) == SAMPLE.read_text(encoding="utf-8")


def _acls(role: str) -> dict[str, list[str]]:
    doc = acl.config(["lane-1"], ["ingest-a"], ["op-admin"])
    found = next(r for r in doc["roles"] if r["rolename"] == role)
    by_type: dict[str, list[str]] = {}
    for entry in found["acls"]:
        assert entry["allow"] is True
        by_type.setdefault(entry["acltype"], []).append(entry["topic"])
    return by_type


def test_each_role_holds_exactly_these_topics() -> None:
    fleet = ["cp/v1/$all/cmd/+", "cp/v1/$all/trust", "cp/v1/$all/policy", "cp/v1/$all/rules"]
    central = "cp/v1/$central/status"
    assert _acls("devices") == {
        "subscribePattern": [*fleet, central],
        "publishClientReceive": [*fleet, central],
    }
    own = [
        "cp/v1/lane-1/status",
        "cp/v1/lane-1/meta",
        "cp/v1/lane-1/passage",
        "cp/v1/lane-1/telemetry",
        "cp/v1/lane-1/alert/+",
        "cp/v1/lane-1/res/#",
        "cp/v1/lane-1/config/reported",
    ]
    mine = ["cp/v1/lane-1/cmd/+", "cp/v1/lane-1/config/desired", "cp/v1/lane-1/ack"]
    assert _acls("device-lane-1") == {
        "publishClientSend": own,
        "subscribePattern": mine,
        "publishClientReceive": mine,
    }
    assert _acls("ingest") == {
        "subscribePattern": ["$share/+/cp/v1/+/passage", "cp/v1/+/passage", central],
        "publishClientReceive": ["cp/v1/+/passage", central],
        "publishClientSend": ["cp/v1/+/ack", central],
    }
    assert _acls("operators") == {
        "subscribePattern": ["cp/v1/#"],
        "publishClientReceive": ["cp/v1/#"],
        "publishClientSend": ["cp/v1/+/cmd/+", "cp/v1/+/config/desired", *fleet],
    }


def test_a_devices_acl_covers_every_topic_it_uses_and_no_other_devices() -> None:
    """What the device publishes and subscribes to, built by edge.mqtt.topics, matches
    its role's patterns; another device's topics do not."""
    dev = "lane-1"
    writes, reads = topics.up(dev), (*topics.down(dev), *topics.fleet_wide())
    for topic in (
        topics.status(dev),
        topics.passage(dev),
        topics.alert(dev, "disk-low"),
        topics.reply(dev, "ping"),
        f"{topics.reply_prefix(dev)}ping/op-admin-1",
        topics.config_reported(dev),
    ):
        assert any(topic_matches_sub(f, topic) for f in writes), topic
    for topic in (topics.command(dev, "ping"), topics.ack(dev), topics.fleet_push("trust")):
        assert any(topic_matches_sub(f, topic) for f in reads), topic
    other = "lane-2"
    for topic in (topics.status(other), topics.command(other, "ping"), topics.ack(other)):
        assert not any(topic_matches_sub(f, topic) for f in (*writes, *reads)), topic
