"""``checkpoint-edge pki ...``: the command line of :mod:`edge.pki.ca`.

``init``, ``device``, ``ingest``, ``operator``, ``revoke``, ``crl``, ``acl``,
``list``; see deploy/mosquitto/README.md. For a NATS cluster instead
(:mod:`edge.pki.nats`, deploy/nats/README.md): ``nats-node`` and ``nats``.
Errors are one line on stderr, exit 2 (a refusal) or 1 (a file system error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from edge.errors import InputError
from edge.files import CERTIFICATES, read_limited
from edge.pki import ca as pki
from edge.pki import nats
from edge.pki.ca import (
    ACCOUNT_DAYS,
    ACL,
    CRL,
    KINDS,
    PkiError,
    acl_text,
    init,
    issue,
    load_index,
    revoke,
    write_crl,
)
from edge.pki.crl import CRL_DAYS, REASONS

# Where deploy/mosquitto/checkpoint-edge.conf reads the access control from.
INSTALLED_ACL = f"/etc/mosquitto/checkpoint-edge/{ACL}"
# Where deploy/nats/checkpoint-edge.conf (installed as /etc/nats-server.conf) includes it from.
INSTALLED_NATS = f"/etc/nats-server/{nats.CONF}"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pki`` and its sub-commands to the main parser's sub-commands."""
    parser = subparsers.add_parser(
        "pki", help="the fleet's broker PKI: CA, certificates, CRL, ACL", description=pki.__doc__
    )
    _add_commands(parser)


def cli(argv: Sequence[str]) -> int:
    """``checkpoint-edge pki ...`` with a parser of its own (tests, scripts)."""
    parser = argparse.ArgumentParser(prog="checkpoint-edge pki", description=pki.__doc__)
    _add_commands(parser)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # usage errors: argparse has printed them
        return exc.code if isinstance(exc.code, int) else 2
    return main(args)


def main(args: argparse.Namespace) -> int:
    """Run a parsed ``pki`` command; errors are one line on stderr."""
    command: str = args.pki_command
    try:
        return _run(command, args)
    except PkiError as exc:
        print(f"checkpoint-edge pki {command}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"checkpoint-edge pki {command}: {exc}", file=sys.stderr)
        return 1


def _add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pki_command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--dir", type=Path, required=True, help="the PKI directory")
        return p

    p = command("init", "a new CA, broker certificate, CRL, index and fleet signing key")
    p.add_argument("--broker-name", action="append", help="DNS name of the broker (repeat)")
    p.add_argument("--broker-ip", action="append", help="IP address of the broker (repeat)")
    p.add_argument(
        "--force", action="store_true", help="overwrite a PKI: a new CA, nothing issued stays valid"
    )
    for kind, text in (
        ("device", "a kiosk certificate; CN = the device id"),
        ("ingest", "an ingest worker certificate; CN = ingest-NAME"),
        ("operator", "an operator certificate; CN = op-NAME"),
    ):
        p = command(kind, text)
        p.add_argument("name", metavar="ID" if kind == "device" else "NAME")
        p.add_argument("--days", type=int, default=ACCOUNT_DAYS, help="validity in days")
        p.add_argument("--force", action="store_true", help="overwrite the account's files")
    p = command("revoke", "revoke an account's certificate and rewrite crl.pem")
    p.add_argument("name", metavar="ACCOUNT", help="the certificate CN (lane-1, op-alice...)")
    p.add_argument("--reason", choices=REASONS, default="unspecified")
    p = command("crl", "sign a fresh crl.pem (run before the current one expires)")
    p.add_argument("--days", type=int, default=CRL_DAYS, help="days until the next update")
    p = command("acl", "the broker's access control (dynamic-security JSON) for every live account")
    p.add_argument("--out", type=Path, help="write it here (default: standard output)")
    command("list", "every certificate issued, and the CRL")
    p = command("nats-node", "a NATS cluster node's certificate (server and route), nats-nodes/")
    p.add_argument("name", metavar="NODE", help="the node's name (its server_name), e.g. nats-1")
    p.add_argument("--dns", action="append", help="a DNS name of the node (repeat)")
    p.add_argument("--ip", action="append", help="an IP address of the node (repeat)")
    p.add_argument("--force", action="store_true", help="overwrite the node's files")
    p = command("nats", "the NATS cluster's users, permissions and pinned certificates")
    p.add_argument("--out", type=Path, help="write it here (default: standard output)")
    default = nats.Consumer()
    p.add_argument(
        "--stream",
        default=default.stream,
        help="the ingest's [nats] stream, if not the default (%(default)s): give it every time",
    )
    p.add_argument(
        "--durable",
        default=default.durable,
        help="the ingest's [nats] durable, if not the default (%(default)s): give it every time",
    )
    p.add_argument(
        "--ingest-setup",
        action="store_true",
        help="ingest workers may also create the stream and create or change the consumer: "
        "for their first start, or a new ack_wait_s / max_ack_pending; then run it again without",
    )


def _run(command: str, args: argparse.Namespace) -> int:
    directory: Path = args.dir
    if command == "init":
        init(
            directory,
            args.broker_name or ["localhost"],
            args.broker_ip or ["127.0.0.1"],
            force=args.force,
        )
        print(
            f"PKI created in {directory}; the broker needs ca.pem broker.pem broker.key crl.pem "
            f"and, from 'pki acl', {ACL}"
        )
    elif command in KINDS:
        issued = issue(directory, command, args.name, days=args.days, force=args.force)
        print(
            f"{issued.name}: {directory / issued.name}.pem and .key (serial {issued.serial:x}); "
            "the broker lets it in after 'pki acl' and a restart of mosquitto"
        )
    elif command == "revoke":
        done = revoke(directory, args.name, reason=args.reason)
        print(
            f"{done.name}: revoked; copy {directory / CRL} to the broker, restart mosquitto "
            "(and run 'pki acl' to drop the account from its access control)"
        )
    elif command == "crl":
        path = write_crl(directory, days=args.days)
        print(f"{path} written; copy it to the broker, reload mosquitto")
    elif command == "acl":
        _write_or_print(
            acl_text(directory),
            args.out,
            f"install it as {INSTALLED_ACL} on the broker and "
            "restart mosquitto (a reload does not read it again)",
        )
    elif command == "nats-node":
        names: list[str] = args.dns or []
        path = nats.issue_node(directory, args.name, names, args.ip or [], force=args.force)
        print(
            f"{path} and .key written; install them on node {args.name} as node.pem and "
            f"node.key, then run 'pki nats' and install {nats.CONF} on every node"
        )
    elif command == "nats":
        consumer = nats.Consumer(args.stream, args.durable, setup=args.ingest_setup)
        then = (
            "; once an ingest worker is online, run 'pki nats' again without --ingest-setup "
            "and install that"
            if consumer.setup
            else ""
        )
        _write_or_print(
            nats.conf_text(directory, consumer),
            args.out,
            f"install it as {INSTALLED_NATS} on every node and restart the nodes one "
            f"at a time (nats-server 2.9 does not reload changed certificates){then}",
        )
    else:
        _list(directory)
    return 0


def _write_or_print(text: str, out: Path | None, then: str) -> None:
    """``text`` to standard output, or to ``out`` with what to do with it next."""
    if out is None:
        sys.stdout.write(text)
    else:
        pki.write_file(out, text.encode(), 0o644, force=True)
        print(f"{out} written; {then}")


def _list(directory: Path) -> None:
    index = load_index(directory)
    for c in index.certificates:
        state = f"revoked {c.revoked_at:%Y-%m-%d} ({c.reason})" if c.revoked_at else "live"
        print(f"{c.name:<32} {c.kind:<8} {c.serial:040x} {c.not_after:%Y-%m-%d} {state}")
    try:
        crl = x509.load_pem_x509_crl(read_limited(directory / CRL, CERTIFICATES, "CRL"))
    except InputError as exc:
        raise PkiError(str(exc)) from exc
    except ValueError as exc:
        raise PkiError(f"{directory / CRL}: not a PEM CRL ({exc})") from exc
    next_update = crl.next_update_utc or datetime.now(UTC)
    days = (next_update - datetime.now(UTC)).days
    warn = (
        "; renew it NOW with 'pki crl': an expired CRL locks out every client" if days < 30 else ""
    )
    print(
        f"{CRL}: number {index.crl_number}, {len(crl)} revoked, next update "
        f"{next_update:%Y-%m-%d %H:%M} UTC (in {days} days){warn}"
    )
