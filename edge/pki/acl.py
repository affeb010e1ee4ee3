"""The broker's access control: the dynamic-security file that ``pki acl`` writes.

The broker (``deploy/mosquitto/checkpoint-edge.conf``) checks every SUBSCRIBE,
publish and delivery with mosquitto's dynamic-security plugin, configured by
the JSON document :func:`render` returns. Mosquitto 2.0's ``acl_file`` cannot
do this job: it grants every SUBSCRIBE and checks only each delivery, so any
kiosk could join the ingest's shared subscription and make the broker hand it
(and drop) every other passage (``deploy/mosquitto/README.md``, issue 14).

Every account is a client of the plugin, named by its certificate CN (the
MQTT username), holding roles; whatever no role allows is refused
(``defaultACLAccess`` all false but unsubscribing). The plugin of mosquitto
2.0 has no ``%u`` substitution, so each device has a role of its own
(``device-<id>``) for its own topics, besides the fleet-wide role ``devices``.
A device whose certificate is newer than the file may connect but do nothing
until ``pki acl`` is run again and the broker restarted.

Only ingest accounts may subscribe to passages other than their own, and so
join a shared subscription (``$share/<group>/cp/v1/+/passage``, any group);
operators read everything but may not join a ``$share`` group.

Every topic and pattern comes from :mod:`edge.mqtt.topics`: a device writes
its ``up`` topics and reads its ``down`` ones and the ``fleet_wide`` ones. What
each kind of account may do (:class:`Rights`) is one table, which
:mod:`edge.pki.nats` turns into a NATS cluster's permissions too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edge.mqtt import topics
from edge.mqtt.topics import ANY

# Roles shared by several clients (a device's own role is ``device-<id>``).
DEVICES, INGEST, OPERATORS = "devices", "ingest", "operators"
FLEET = topics.fleet_wide()
CENTRAL_STATUS = topics.central_status()


@dataclass(frozen=True)
class Rights:
    """What an account may publish (``writes``) and read (``reads``): MQTT topic filters.

    One table for every broker: this module's mosquitto roles and the NATS
    permissions of :mod:`edge.pki.nats` are both made from it.
    """

    writes: tuple[str, ...]
    reads: tuple[str, ...]


def device_rights(device: str) -> Rights:
    """A kiosk's own topics; every kiosk also reads :data:`DEVICES_READ`."""
    return Rights(writes=topics.up(device), reads=topics.down(device))


DEVICES_READ = (*FLEET, CENTRAL_STATUS)
INGEST_RIGHTS = Rights(
    writes=(topics.ack(ANY), CENTRAL_STATUS), reads=(topics.all_passages(), CENTRAL_STATUS)
)
OPERATOR_RIGHTS = Rights(
    writes=(topics.commands(ANY), topics.config_desired(ANY), *FLEET),
    reads=(topics.everything(),),
)


def _allow(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def _reads(*filters: str) -> list[dict[str, Any]]:
    """Subscribing to ``filters`` (or narrower ones), and receiving what they match."""
    acls = [_allow("subscribePattern", f) for f in filters]
    return acls + [_allow("publishClientReceive", f) for f in filters]


def _writes(*filters: str) -> list[dict[str, Any]]:
    return [_allow("publishClientSend", f) for f in filters]


def _role(name: str, text: str, acls: list[dict[str, Any]]) -> dict[str, Any]:
    return {"rolename": name, "textdescription": text, "acls": acls}


def device_role(device: str) -> str:
    return f"device-{device}"


def config(
    devices: Iterable[str], ingest: Iterable[str], operators: Iterable[str]
) -> dict[str, Any]:
    """The plugin's configuration for these accounts (each a certificate CN)."""
    roles = [
        _role(
            DEVICES,
            "every kiosk: fleet-wide commands and pushes, the ingest's status",
            _reads(*DEVICES_READ),
        ),
        _role(
            INGEST,
            "ingest workers: every passage, alone or in a shared subscription; acks",
            [
                # any group; mosquitto only (MQTT 3.1.1 on NATS has no shared subscriptions)
                _allow("subscribePattern", topics.shared(ANY, topics.all_passages())),
                *_reads(*INGEST_RIGHTS.reads),
                *_writes(*INGEST_RIGHTS.writes),
            ],
        ),
        _role(
            OPERATORS,
            "operators: read everything (no shared subscription); commands, config, pushes",
            [*_reads(*OPERATOR_RIGHTS.reads), *_writes(*OPERATOR_RIGHTS.writes)],
        ),
    ]
    clients: list[dict[str, Any]] = []
    for device in sorted(set(devices)):
        own = device_rights(device)
        roles.append(
            _role(
                device_role(device),
                f"kiosk {device}: its own topics",
                [*_writes(*own.writes), *_reads(*own.reads)],
            )
        )
        clients.append(_client(device, device_role(device), DEVICES))
    clients += [_client(name, INGEST) for name in sorted(set(ingest))]
    clients += [_client(name, OPERATORS) for name in sorted(set(operators))]
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": sorted(clients, key=lambda c: str(c["username"])),
        "groups": [],
        "roles": roles,
    }


def _client(username: str, *roles: str) -> dict[str, Any]:
    # No password: the broker authenticates by certificate (use_identity_as_username).
    return {"username": username, "roles": [{"rolename": r} for r in roles]}


def render(devices: Iterable[str], ingest: Iterable[str], operators: Iterable[str]) -> str:
    """:func:`config` as the file's text: a client or an ACL a line, the same bytes each time."""
    doc = config(devices, ingest, operators)
    roles = []
    for role in doc["roles"]:
        fields = [f"{_one(k)}: {_one(v)}" for k, v in role.items() if k != "acls"]
        fields.append(f'"acls": {_rows([_one(acl) for acl in role["acls"]], 4)}')
        roles.append(_rows(fields, 3, "{}"))
    fields = [
        f'"defaultACLAccess": {_one(doc["defaultACLAccess"])}',
        f'"clients": {_rows([_one(client) for client in doc["clients"]], 2)}',
        f'"groups": {_one(doc["groups"])}',
        f'"roles": {_rows(roles, 2)}',
    ]
    return _rows(fields, 1, "{}") + "\n"


def _one(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "))


def _rows(items: list[str], depth: int, brackets: str = "[]") -> str:
    """``items`` one a line, ``depth`` levels of two spaces in, between ``brackets``."""
    inner, outer = "  " * depth, "  " * (depth - 1)
    body = ",\n".join(inner + item for item in items)
    return f"{brackets[0]}\n{body}\n{outer}{brackets[1]}"
