"""The NATS cluster's access control and node certificates: ``pki nats``, ``pki nats-node``.

The fleet may run on a NATS JetStream cluster through its MQTT 3.1.1 listener
(``deploy/nats/``) instead of mosquitto. Every node runs the same
``checkpoint-edge.conf``, which includes the file :func:`render` writes
(``nats-fleet.conf``, from the PKI's index):

- ``FLEET_CERTS``: the SHA-256 of the public key (SubjectPublicKeyInfo) of
  every live account certificate, which the client and MQTT listeners pin.
  nats-server 2.9 reads no CRL: pinning is how a revoked certificate (whose
  name may live on in a replacement unit) is refused, in the TLS handshake.
- ``NODE_CERTS``: the same for the nodes' own certificates, the only ones the
  route listener takes: a kiosk's certificate comes from the same CA and may
  authenticate clients too, and a route is trusted with every message.
- ``authorization { users }``: one user per live account, named as
  ``verify_and_map`` names a certificate with no SAN (``CN=<account>``), for
  MQTT connections only, with the permissions of :mod:`edge.pki.acl`'s
  :class:`~edge.pki.acl.Rights` turned into NATS subjects. Ingest workers
  alone may also use the NATS protocol port, for their JetStream consumer
  (``[ingest] source = "nats"``; :func:`jetstream`).

Permissions are allow lists only, and no account may subscribe to a filter
that matches a topic it may not read: nats-server before 2.12.12 / 2.14.3
ignores ``deny`` rules for retained messages and QoS 1 deliveries to MQTT
clients (GHSA-7qmq-8cc4-hxwg, CVE-2026-58209; 2.9.10, measured, QoS 0 ones
too), so a deny rule would protect nothing. Besides its topics, an account
may subscribe to ``$MQTT.sub.>``: the server delivers each QoS 1
subscription's JetStream consumer to an internal ``$MQTT.sub.<nuid>``
subscription made under the client's permissions, and refuses the SUBSCRIBE
without it. An MQTT client cannot subscribe there
itself (the server reserves the prefix), and a user of MQTT only cannot come
in by the NATS port, so the grant gives no other way in. Nothing else is
needed: sessions, retained messages and QoS 1 storage go through the server's
own internal client.

An ingest worker's JetStream consumer (:func:`jetstream`) needs the JetStream API
of one stream and one durable consumer, by name (``[nats] stream`` and
``durable``; ``pki nats --stream --durable``, by default the ingest's), as
nats-py asks it: their info, the next messages (a pull request), the acks and
naks, and the inboxes where the answers come. Nothing else of JetStream, and
no publishing beyond its MQTT topics: the passages come from the kiosks only.
Creating the stream and creating or changing the consumer is a **setup**
grant (``pki nats --ingest-setup``), for the first start of the ingest and for
a change of ``ack_wait_s`` or ``max_ack_pending``, then rendered away: whoever
may create the durable may also give it an ``inactive_threshold`` (nats-server
2.9.10 takes it for a durable, and deletes the consumer a second later,
measured), then make it again as a push consumer delivering the passages to
any subject; and whoever may create the stream while it is missing chooses
what it captures. Once made, nothing may update, purge or delete them.

Node certificates (``nats-nodes/<node>.pem`` and ``.key`` in the PKI folder,
kept apart from the accounts' files) serve the client, route and MQTT
listeners; they are for server and client authentication (a route is both)
and name the node's DNS names and addresses. A node whose files are removed is
no longer pinned by the next ``pki nats``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge import files
from edge.config.nats import NAME_RE, NatsConfig
from edge.errors import InputError
from edge.mqtt import topics
from edge.pki import acl
from edge.pki import ca as pki
from edge.pki.ca import PkiError

NODES = "nats-nodes"  # the nodes' certificates, a folder of the PKI directory
CONF = "nats-fleet.conf"  # what ``pki nats --out`` writes, included by every node
# The internal subject of QoS 1 deliveries (nats-server's mqttSubPrefix).
QOS1_DELIVERY = "$MQTT.sub.>"
CONNECTION_TYPES = ("MQTT",)
# An ingest worker's: its MQTT link (status, acks) and its JetStream consumer.
INGEST_CONNECTION_TYPES = ("MQTT", "STANDARD")
# Where nats-py's requests get their answers, and a pull consumer its messages:
# _INBOX.<nuid>.<token>, _INBOX.<nuid> (nats.aio.client, DEFAULT_INBOX_PREFIX).
INBOXES = "_INBOX.>"
_DEFAULTS = NatsConfig()
_DNS_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def subjects(topic_filter: str) -> tuple[str, ...]:
    """The NATS subjects of an MQTT topic filter: ``/`` -> ``.``, ``+`` -> ``*``, ``#`` -> ``>``.

    MQTT's ``a/#`` also matches ``a`` itself, NATS's ``a.>`` does not: such a
    filter is two subjects. ValueError for a level nats-server would read as
    something else (empty, or with ``.``, a space, ``*`` or ``>``).
    """
    levels = topic_filter.split("/")
    for level in levels:
        if not level or any(c in level for c in ". *>"):
            raise ValueError(f"{topic_filter!r}: level {level!r} has no plain NATS subject")
    mapped = [{"+": "*", "#": ">"}.get(level, level) for level in levels]
    if levels[-1] == "#" and len(levels) > 1:
        return ".".join(mapped[:-1]), ".".join(mapped)
    return (".".join(mapped),)


def permissions(rights: acl.Rights) -> dict[str, list[str]]:
    """The subjects ``rights`` may publish and subscribe to (QoS 1 delivery included)."""
    publish = [s for f in rights.writes for s in subjects(f)]
    subscribe = [s for f in rights.reads for s in subjects(f)]
    return {"publish": publish, "subscribe": [*subscribe, QOS1_DELIVERY]}


@dataclass(frozen=True)
class Consumer:
    """The stream and the durable pull consumer every ingest worker shares: ``[nats]
    stream`` and ``durable`` (by default the ingest's own defaults); ``setup``: the
    workers may also create them, and change the consumer."""

    stream: str = _DEFAULTS.stream
    durable: str = _DEFAULTS.durable
    setup: bool = False

    def __post_init__(self) -> None:
        for what, name in (("stream", self.stream), ("durable", self.durable)):
            if not NAME_RE.fullmatch(name):
                raise PkiError(
                    f"nats: --{what} {name!r}: use 1-64 of A-Z, a-z, 0-9, '_' and '-', "
                    "as [nats] allows"
                )


def jetstream(consumer: Consumer) -> dict[str, list[str]]:
    """What an ingest worker publishes and subscribes to on the NATS port, for ``consumer``.

    The subjects of nats-py 2.9 or later on nats-server 2.9 or later (``nats.js``),
    as :mod:`edge.central.jetstream` and :mod:`edge.central.nats_source` use them:
    ``stream_info``, ``consumer_info``, the pull requests (MSG.NEXT), the acks and
    naks (``$JS.ACK.<stream>.<durable>.``...), the inboxes of the answers; with
    ``setup``, ``add_stream`` and ``add_consumer`` (CREATE.<stream>.<durable>.<filter>,
    the filter being the passages').
    """
    api, stream, durable = "$JS.API", consumer.stream, consumer.durable
    publish = [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.CONSUMER.INFO.{stream}.{durable}",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]
    if consumer.setup:
        passages = topics.nats_subject(topics.all_passages())
        publish += [
            f"{api}.STREAM.CREATE.{stream}",
            f"{api}.CONSUMER.CREATE.{stream}.{durable}.{passages}",
        ]
    return {"publish": publish, "subscribe": [INBOXES]}


def rights(account: str, kind: pki.Kind) -> acl.Rights:
    """What an account of ``kind`` may do: the same as on mosquitto (:mod:`edge.pki.acl`)."""
    if kind == "ingest":
        return acl.INGEST_RIGHTS
    if kind == "operator":
        return acl.OPERATOR_RIGHTS
    own = acl.device_rights(account)
    return acl.Rights(writes=own.writes, reads=(*own.reads, *acl.DEVICES_READ))


def user_name(account: str) -> str:
    """The user ``verify_and_map`` finds for a certificate whose subject is only its CN."""
    return f"CN={account}"


def pin(cert: x509.Certificate) -> str:
    """What ``pinned_certs`` lists: hex SHA-256 of the DER SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


@dataclass(frozen=True)
class Pinned:
    """A node, or an account, with the pin of its certificate."""

    name: str
    pin: str


@dataclass(frozen=True)
class Account(Pinned):
    kind: pki.Kind


def account_permissions(
    account: Account, consumer: Consumer
) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    """An account's connection types and permissions: its topics (and QoS 1 delivery);
    an ingest worker's JetStream consumer too, on the NATS port."""
    perms = permissions(rights(account.name, account.kind))
    if account.kind != "ingest":
        return CONNECTION_TYPES, perms
    js = jetstream(consumer)
    return INGEST_CONNECTION_TYPES, {
        "publish": [*perms["publish"], *js["publish"]],
        "subscribe": [*perms["subscribe"], *js["subscribe"]],
    }


def render(
    accounts: Sequence[Account], nodes: Sequence[Pinned], consumer: Consumer | None = None
) -> str:
    """The included file: pins, then one user a few lines, the same bytes each time.

    ``consumer``: the ingest workers' stream and durable (default: the ingest's)."""
    consumer = consumer or Consumer()
    if not accounts:
        raise PkiError("nats: no live account: issue certificates first ('pki device' ...)")
    if not nodes:
        raise PkiError(f"nats: no node certificate in {NODES}/: run 'pki nats-node NAME' first")
    out = [
        "# The fleet's NATS accounts, written by 'checkpoint-edge pki nats' from the PKI's",
        "# index: do not edit. Included by checkpoint-edge.conf on every node; after a",
        "# change, restart the nodes one at a time (deploy/nats/README.md).",
        "",
        "# Live account certificates (SHA-256 of each public key): the client and MQTT listeners.",
        *_pins("FLEET_CERTS", sorted(accounts, key=lambda a: a.name)),
        "# The nodes' certificates: the only ones the route listener takes.",
        *_pins("NODE_CERTS", sorted(nodes, key=lambda n: n.name)),
        "",
        "authorization {",
        "  users: [",
    ]
    for account in sorted(accounts, key=lambda a: a.name):
        types, perms = account_permissions(account, consumer)
        out += [
            f"    {{user: {_q(user_name(account.name))}, "
            f"allowed_connection_types: {_q(list(types))}, permissions: {{",
            f"      publish: {{allow: {_q(perms['publish'])}}},",
            f"      subscribe: {{allow: {_q(perms['subscribe'])}}}",
            "    }},",
        ]
    return "\n".join([*out, "  ]", "}", ""])


def _pins(variable: str, pinned: Iterable[Pinned]) -> list[str]:
    rows = [f"  {_q(p.pin)},  # {p.name}" for p in pinned]
    return [f"{variable}: [", *rows, "]"]


def _q(value: str | list[str]) -> str:
    """A string or list of strings in NATS configuration syntax (JSON's is a subset)."""
    return json.dumps(value, separators=(", ", ": "))


# -- from the PKI directory ----------------------------------------------------------


def conf_text(directory: Path, consumer: Consumer | None = None) -> str:
    """:func:`render` for every live account in the index and every node certificate."""
    index = pki.load_index(directory)
    accounts = []
    for issued in index.certificates:
        if issued.live:
            cert = _load(directory / f"{issued.name}.pem", issued.name)
            if cert.serial_number != issued.serial:
                raise PkiError(
                    f"{issued.name}: {directory / issued.name}.pem is not the certificate the "
                    f"index lists (serial {issued.serial:x})"
                )
            accounts.append(Account(issued.name, pin(cert), issued.kind))
    node_dir = directory / NODES
    paths = sorted(node_dir.glob("*.pem")) if node_dir.is_dir() else []
    nodes = [Pinned(p.stem, pin(_load(p, f"node {p.stem}"))) for p in paths]
    return render(accounts, nodes, consumer)


def _load(path: Path, label: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(files.read_limited(path, files.KEY, "certificate"))
    except InputError as exc:
        raise PkiError(f"{label}: {exc}") from exc
    except ValueError as exc:
        raise PkiError(f"{label}: {path}: not a PEM certificate ({exc})") from exc


def issue_node(
    directory: Path,
    name: str,
    dns_names: Sequence[str],
    ips: Sequence[str],
    *,
    force: bool = False,
    now: datetime | None = None,
) -> Path:
    """A node's certificate ``nats-nodes/<name>.pem`` and key, valid as long as the CA.

    For server and client authentication (routes are both), with ``dns_names``
    and ``ips`` as its names: every name kiosks and the other nodes use for it.
    """
    now = now or datetime.now(UTC)
    label = f"nats-node {name}"
    if not pki.NAME_RE.fullmatch(name):
        raise PkiError(f"{label}: invalid name: use a-z, 0-9 and '-', 63 characters at most")
    if not dns_names and not ips:
        raise PkiError(f"{label}: give at least one --dns or --ip")
    for dns in dns_names:
        if not _DNS_RE.fullmatch(dns):
            raise PkiError(f"{label}: {dns!r} is not a DNS name")
    sans: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    for ip in ips:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PkiError(f"{label}: {ip!r} is not an IP address") from None
    ca_key, ca_cert = pki._load_ca(directory, label)
    paths = [directory / NODES / f"{name}.key", directory / NODES / f"{name}.pem"]
    pki._check_free(paths, force, label)
    paths[0].parent.mkdir(mode=0o755, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = pki._sign(
        ca_key,
        ca_cert,
        name,
        key,
        not_after=ca_cert.not_valid_after_utc,
        now=now,
        extensions=[x509.ExtendedKeyUsage(usage), x509.SubjectAlternativeName(sans)],
    )
    pki._write_key(paths[0], key, force)
    pki.write_file(paths[1], pki._pem(cert), 0o644, force)
    return paths[1]
