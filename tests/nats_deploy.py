"""The deployed NATS cluster configuration (deploy/nats/) made runnable on loopback.

Each node of a :class:`~tests.nats_rig.NatsCluster` runs
``deploy/nats/checkpoint-edge.conf`` with only its paths, addresses and ports
changed (:func:`runnable_config`), its own ``nats-server/node.conf`` (this
node's name and every node's route, as ``deploy/nats/node.conf`` has them) and
the ``nats-fleet.conf`` that ``checkpoint-edge pki nats`` wrote for the PKI.
The nodes' certificates are ``pki nats-node n1`` ... ``n3`` (the rig's names).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edge.pki import nats as pki_nats

from .conftest import REPO
from .nats_rig import NatsCluster, Node, nats_binary

DEPLOY = REPO / "deploy" / "nats"
INSTALLED = "/etc/nats-server/"
STORE = "/var/lib/nats-server"
# The deploy config's listeners and the loopback port of a rig node for each.
LISTENERS = {
    "listen: 0.0.0.0:4222": "client_port",
    "http: 127.0.0.1:8222": "http_port",
    "listen: 0.0.0.0:6222": "route_port",
    "listen: 0.0.0.0:8883": "mqtt_port",
}


def runnable_config(deploy: str, node: Node, pki_dir: Path) -> str:
    """``deploy`` with only the certificate paths, the store and the listeners changed."""
    paths = {
        f'"{INSTALLED}node.pem"': f'"{pki_dir}/{pki_nats.NODES}/{node.name}.pem"',
        f'"{INSTALLED}node.key"': f'"{pki_dir}/{pki_nats.NODES}/{node.name}.key"',
        f'"{INSTALLED}ca.pem"': f'"{pki_dir}/ca.pem"',
        f'"{STORE}"': f'"{node.store}"',
    }

    def change(line: str) -> str:
        if line.lstrip().startswith("#"):
            return line
        for old, new in paths.items():
            line = line.replace(old, new)
        for listener, port in LISTENERS.items():
            if line.strip() == listener:
                key = listener.split(":", 1)[0]
                return line.replace(listener, f"{key}: 127.0.0.1:{getattr(node, port)}")
        return line

    return "\n".join(change(line) for line in deploy.splitlines()) + "\n"


def node_conf(node: Node, nodes: list[Node]) -> str:
    """``deploy/nats/node.conf`` for ``node``: its name, its client address, and every
    node's route, on loopback."""
    routes = "\n".join(f'  "tls://127.0.0.1:{n.route_port}"' for n in nodes)
    return (
        f"server_name: {node.name}\n"
        f'client_advertise: "127.0.0.1:{node.client_port}"\n'
        f"ROUTES: [\n{routes}\n]\n"
    )


def install_fleet_conf(cluster: NatsCluster, pki_dir: Path) -> None:
    """Copy what ``pki nats --out`` wrote to every node, as the README says."""
    for node in cluster.nodes:
        shutil.copyfile(pki_dir / pki_nats.CONF, node.conf.parent / "nats-server" / pki_nats.CONF)


def deployed_cluster(pki_dir: Path, workdir: Path) -> NatsCluster:
    """Three nodes on the deploy configuration and ``pki_dir``'s nats-fleet.conf (not started)."""
    deploy = (DEPLOY / "checkpoint-edge.conf").read_text()

    def render(node: Node, nodes: list[Node]) -> str:
        included = node.conf.parent / "nats-server"
        included.mkdir(exist_ok=True)
        (included / "node.conf").write_text(node_conf(node, nodes))
        shutil.copyfile(pki_dir / pki_nats.CONF, included / pki_nats.CONF)
        return runnable_config(deploy, node, pki_dir)

    return NatsCluster(workdir, size=3, render=render)


def server_version() -> tuple[int, int, int]:
    """The installed nats-server's version, e.g. (2, 9, 10)."""
    out = subprocess.run(
        [nats_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    assert found, out
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


def fixed_in(version: tuple[int, int, int], *fixed: tuple[int, int, int]) -> bool:
    """Whether ``version`` has a fix released as ``fixed`` (one per release line, ascending).

    A line older than the first fixed one is not fixed; a line with no fix of
    its own (between two listed lines) is fixed only from the next listed line.
    """
    for release in fixed:
        if version[:2] == release[:2]:
            return version >= release
    return version[:2] > fixed[-1][:2]
