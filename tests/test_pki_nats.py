"""The NATS access control that ``pki nats`` writes, and the nodes' certificates.

The permissions are the mosquitto ACL's (``pki acl``) as NATS subjects: over every
topic of the fleet, each account may publish and read exactly what mosquitto's
dynamic-security roles let it, nothing more (the cluster tests are in
``tests/test_nats_security.py``).
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.client import topic_matches_sub

from edge.config.nats import NatsConfig
from edge.mqtt import topics
from edge.pki import acl, nats
from edge.pki import cli as pki_cli
from edge.pki.ca import Kind, PkiError

DEVICES, INGEST, OPERATORS = ["lane-1", "lane-2"], ["ingest-a"], ["op-admin"]


def run(*argv: str | Path) -> int:
    return pki_cli.cli([str(a) for a in argv])


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("cp/v1/lane-1/status", ("cp.v1.lane-1.status",)),
        ("cp/v1/+/passage", ("cp.v1.*.passage",)),
        ("cp/v1/$all/cmd/+", ("cp.v1.$all.cmd.*",)),
        ("cp/v1/lane-1/res/#", ("cp.v1.lane-1.res", "cp.v1.lane-1.res.>")),  # '#': the parent too
        ("cp/v1/#", ("cp.v1", "cp.v1.>")),
    ],
)
def test_mqtt_filters_become_nats_subjects(topic_filter: str, expected: tuple[str, ...]) -> None:
    assert nats.subjects(topic_filter) == expected


@pytest.mark.parametrize("bad", ["cp/v1.x", "cp//v1", "cp/v1/", "cp/*", "cp/>", "cp/a b"])
def test_a_level_nats_would_read_differently_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="has no plain NATS subject"):
        nats.subjects(bad)


# -- the same rights as mosquitto ---------------------------------------------------------


def _nats_match(subject: str, pattern: str) -> bool:
    """NATS matching: ``*`` is one token, ``>`` one or more at the end."""
    s, p = subject.split("."), pattern.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(s) == len(p)


def _every_topic() -> list[str]:
    """Every topic of the fleet for two kiosks and the pseudo devices, and a few others."""
    out = []
    for device in ("lane-1", "lane-2", "lane-3", topics.ALL, topics.CENTRAL):
        out += [
            topics.status(device),
            topics.meta(device),
            topics.passage(device),
            topics.telemetry(device),
            topics.alert(device, "camera"),
            topics.reply(device, "ping"),
            topics.reply_prefix(device) + "ping/7",
            topics.reply_prefix(device).rstrip("/"),
            topics.config_reported(device),
            topics.command(device, "open"),
            topics.config_desired(device),
            topics.ack(device),
            *(topics.fleet_push(kind) for kind in topics.PUSH_KINDS),
        ]
    return [*out, "cp/v1", "cp", "other/topic", "cp/v2/lane-1/status"]


def _mosquitto(account: str) -> tuple[set[str], set[str]]:
    """The topics the dynamic-security roles let ``account`` write and read."""
    doc = acl.config(DEVICES, INGEST, OPERATORS)
    client = next(c for c in doc["clients"] if c["username"] == account)
    names = {r["rolename"] for r in client["roles"]}
    entries = [a for r in doc["roles"] if r["rolename"] in names for a in r["acls"]]
    writes = [a["topic"] for a in entries if a["acltype"] == "publishClientSend"]
    reads = [a["topic"] for a in entries if a["acltype"] == "publishClientReceive"]
    every = _every_topic()
    return (
        {t for t in every if any(topic_matches_sub(f, t) for f in writes)},
        {t for t in every if any(topic_matches_sub(f, t) for f in reads)},
    )


def _nats(account: str, kind: Kind) -> tuple[set[str], set[str]]:
    perms = nats.permissions(nats.rights(account, kind))
    assert perms["subscribe"][-1] == nats.QOS1_DELIVERY
    every = _every_topic()

    def allowed(patterns: list[str]) -> set[str]:
        return {t for t in every if any(_nats_match(t.replace("/", "."), p) for p in patterns)}

    return allowed(perms["publish"]), allowed(perms["subscribe"][:-1])


@pytest.mark.parametrize(
    ("account", "kind"),
    [("lane-1", "device"), ("lane-2", "device"), ("ingest-a", "ingest"), ("op-admin", "operator")],
)
def test_each_account_may_do_on_nats_exactly_what_mosquitto_lets_it(
    account: str, kind: Kind
) -> None:
    writes, reads = _nats(account, kind)
    assert (writes, reads) == _mosquitto(account)
    assert writes
    assert reads


def test_a_kiosk_writes_and_reads_its_own_topics_and_the_fleets_only() -> None:
    writes, reads = _nats("lane-1", "device")
    assert {topics.device_of(t) for t in writes} == {"lane-1"}
    assert {topics.device_of(t) for t in reads} == {"lane-1", topics.ALL, topics.CENTRAL}
    assert topics.command("lane-1", "open") not in writes


# -- the rendered file ------------------------------------------------------------------


def _sample() -> str:
    accounts = [
        nats.Account(name, f"{i:064x}", kind)
        for i, (name, kind) in enumerate(
            [("op-admin", "operator"), ("lane-2", "device"), ("ingest-a", "ingest")]
        )
    ]
    return nats.render(accounts, [nats.Pinned("n2", "b" * 64), nats.Pinned("n1", "a" * 64)])


def test_the_rendered_file_pins_every_certificate_and_grants_by_allow_lists_only() -> None:
    text = _sample()
    assert text == _sample()  # the same bytes each time
    assert "deny" not in text
    assert re.findall(r'"([0-9a-f]{64})",  # (\S+)', text) == [
        (f"{2:064x}", "ingest-a"),
        (f"{1:064x}", "lane-2"),
        (f"{0:064x}", "op-admin"),
        ("a" * 64, "n1"),
        ("b" * 64, "n2"),
    ]
    users = re.findall(r'\{user: "([^"]+)", allowed_connection_types: (\[[^]]*\])', text)
    assert users == [
        ("CN=ingest-a", '["MQTT", "STANDARD"]'),  # its JetStream consumer: the NATS port
        ("CN=lane-2", '["MQTT"]'),
        ("CN=op-admin", '["MQTT"]'),
    ]
    assert text.count('"$MQTT.sub.>"') == 3  # the one grant beyond the topics
    assert text.count("$MQTT") == 3
    assert text.count("$JS") == len(nats.jetstream(nats.Consumer())["publish"])  # the ingest's


def _user(text: str, account: str) -> tuple[list[str], list[str]]:
    """The publish and subscribe allow lists of ``account``'s user in a rendered file."""
    found = re.search(
        rf'\{{user: "CN={account}".*?publish: \{{allow: (\[.*?\])\}},\n'
        r"\s*subscribe: \{allow: (\[.*?\])\}",
        text,
        re.S,
    )
    assert found, account
    return json.loads(found.group(1)), json.loads(found.group(2))


def test_the_ingest_may_use_its_stream_and_durable_consumer_and_nothing_else_of_jetstream() -> None:
    publish, subscribe = _user(_sample(), "ingest-a")
    topics_only = nats.permissions(acl.INGEST_RIGHTS)
    assert publish == [
        *topics_only["publish"],
        "$JS.API.STREAM.INFO.CP_PASSAGES",
        "$JS.API.CONSUMER.INFO.CP_PASSAGES.ingest",
        "$JS.API.CONSUMER.MSG.NEXT.CP_PASSAGES.ingest",
        "$JS.ACK.CP_PASSAGES.ingest.>",
    ]
    assert subscribe == [*topics_only["subscribe"], "_INBOX.>"]
    # kiosks and operators: nothing of JetStream, no inbox
    for account in ("lane-2", "op-admin"):
        publish, subscribe = _user(_sample(), account)
        granted = " ".join([*publish, *subscribe])
        assert "$JS" not in granted
        assert "_INBOX" not in granted


def test_the_setup_grants_add_creating_the_stream_and_the_consumer_only() -> None:
    setup = nats.jetstream(nats.Consumer("PASSAGES_2", "workers", setup=True))
    assert setup["publish"] == [
        "$JS.API.STREAM.INFO.PASSAGES_2",
        "$JS.API.CONSUMER.INFO.PASSAGES_2.workers",
        "$JS.API.CONSUMER.MSG.NEXT.PASSAGES_2.workers",
        "$JS.ACK.PASSAGES_2.workers.>",
        "$JS.API.STREAM.CREATE.PASSAGES_2",
        "$JS.API.CONSUMER.CREATE.PASSAGES_2.workers.cp.v1.*.passage",  # nats-py's subject
    ]
    assert setup["subscribe"] == ["_INBOX.>"]


def test_the_default_names_are_the_ingests() -> None:
    assert (nats.Consumer().stream, nats.Consumer().durable) == (
        NatsConfig().stream,
        NatsConfig().durable,
    )


def test_render_refuses_a_fleet_without_accounts_or_nodes() -> None:
    with pytest.raises(PkiError, match="no live account"):
        nats.render([], [nats.Pinned("n1", "a" * 64)])
    with pytest.raises(PkiError, match="no node certificate"):
        nats.render([nats.Account("lane-1", "a" * 64, "device")], [])


# -- from a PKI directory -----------------------------------------------------------------


@pytest.fixture
def pki_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    assert run("init", "--dir", d) == 0
    for argv in (("device", "lane-1"), ("ingest", "a"), ("operator", "admin")):
        assert run(*argv, "--dir", d) == 0
    return d


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_pki_nats_needs_the_nodes_certificates_first(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run("nats", "--dir", pki_dir) == 2
    assert _error(capsys).startswith("checkpoint-edge pki nats: nats: no node certificate")
    assert run("nats-node", "nats-1", "--dns", "nats-1.example.vn", "--dir", pki_dir) == 0
    capsys.readouterr()
    assert run("nats", "--dir", pki_dir) == 0
    out = capsys.readouterr().out
    assert out == nats.conf_text(pki_dir)
    assert [line.split("# ")[1] for line in out.splitlines() if '",  # ' in line] == [
        "ingest-a",
        "lane-1",
        "op-admin",
        "nats-1",
    ]


def test_pki_nats_names_the_stream_and_the_consumer_and_grants_the_setup_on_demand(
    pki_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir) == 0
    capsys.readouterr()
    assert run("nats", "--dir", pki_dir, "--stream", "PASSAGES_2", "--durable", "workers") == 0
    publish, _ = _user(capsys.readouterr().out, "ingest-a")
    assert "$JS.API.CONSUMER.MSG.NEXT.PASSAGES_2.workers" in publish
    assert not [s for s in publish if "CREATE" in s or "CP_PASSAGES" in s]
    out = pki_dir / "nats-fleet.conf"
    assert run("nats", "--dir", pki_dir, "--ingest-setup", "--out", out) == 0
    said = capsys.readouterr().out
    assert "run 'pki nats' again without --ingest-setup" in said
    publish, _ = _user(out.read_text(), "ingest-a")
    assert "$JS.API.STREAM.CREATE.CP_PASSAGES" in publish


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stream", "CP.PASSAGES"], "nats: --stream 'CP.PASSAGES': use 1-64 of"),
        (["--durable", "ingest.>"], "nats: --durable 'ingest.>': use 1-64 of"),
        (["--durable", ""], "nats: --durable '': use 1-64 of"),
    ],
)
def test_a_stream_or_durable_no_subject_token_can_hold_is_refused(
    pki_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir) == 0
    capsys.readouterr()
    assert run("nats", "--dir", pki_dir, *argv) == 2
    assert _error(capsys).startswith(f"checkpoint-edge pki nats: {message}")


def test_revoked_accounts_are_left_out_and_a_replacement_is_pinned_anew(pki_dir: Path) -> None:
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir) == 0
    before = nats.conf_text(pki_dir)
    assert run("revoke", "lane-1", "--dir", pki_dir) == 0
    assert '"CN=lane-1"' not in nats.conf_text(pki_dir)
    assert run("device", "lane-1", "--dir", pki_dir, "--force") == 0
    after = nats.conf_text(pki_dir)
    pin = nats.pin(x509.load_pem_x509_certificate((pki_dir / "lane-1.pem").read_bytes()))
    assert f'"{pin}",  # lane-1' in after
    assert pin not in before
    assert after.count('"CN=lane-1"') == 1


def test_a_certificate_file_the_index_does_not_list_is_refused(
    pki_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir) == 0
    other = tmp_path / "other"
    assert run("init", "--dir", other) == 0
    assert run("device", "lane-1", "--dir", other) == 0
    (pki_dir / "lane-1.pem").write_bytes((other / "lane-1.pem").read_bytes())
    capsys.readouterr()
    assert run("nats", "--dir", pki_dir) == 2
    assert "is not the certificate the index lists (serial " in _error(capsys)
    (pki_dir / "lane-1.pem").unlink()
    with pytest.raises(PkiError, match="lane-1: "):
        nats.conf_text(pki_dir)


# -- node certificates --------------------------------------------------------------------


def test_a_node_certificate_serves_and_routes_under_its_names(pki_dir: Path) -> None:
    argv = ["nats-node", "nats-2", "--dns", "nats-2.example.vn", "--dns", "broker.example.vn"]
    assert run(*argv, "--ip", "10.0.0.2", "--dir", pki_dir) == 0
    cert = x509.load_pem_x509_certificate((pki_dir / nats.NODES / "nats-2.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "nats-2"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["nats-2.example.vn", "broker.example.vn"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.2"]
    assert cert.not_valid_after_utc == ca.not_valid_after_utc
    key = pki_dir / nats.NODES / "nats-2.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nats-node", "Nats-1", "--ip", "10.0.0.1"], "nats-node Nats-1: invalid name"),
        (["nats-node", "nats-1"], "nats-node nats-1: give at least one --dns or --ip"),
        (["nats-node", "nats-1", "--dns", "bad name"], "nats-node nats-1: 'bad name' is not"),
        (
            ["nats-node", "nats-1", "--ip", "10.0.0.300"],
            "nats-node nats-1: '10.0.0.300' is not an IP",
        ),
    ],
)
def test_node_refusals_are_one_line(
    pki_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    capsys.readouterr()
    assert run(*argv, "--dir", pki_dir) == 2
    assert _error(capsys).startswith(f"checkpoint-edge pki nats-node: {message}")
    assert not (pki_dir / nats.NODES).exists()


def test_a_node_certificate_is_not_overwritten_without_force(pki_dir: Path) -> None:
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir) == 0
    first = (pki_dir / nats.NODES / "nats-1.pem").read_bytes()
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir) == 2
    assert (pki_dir / nats.NODES / "nats-1.pem").read_bytes() == first
    assert run("nats-node", "nats-1", "--ip", "10.0.0.1", "--dir", pki_dir, "--force") == 0
    assert (pki_dir / nats.NODES / "nats-1.pem").read_bytes() != first
