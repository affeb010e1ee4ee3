"""The sections of judging codes: what is trusted, the policy and the business rules,
what a passage records of a traveller, and the online lookup of unsigned codes.

Fields as :mod:`edge.config.sections` describes them.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config.sections import (
    Parser,
    doc,
    non_negative,
    parse_existing_file,
    paths,
    positive,
)
from edge.scan import declaration, greenlane, personal_qr, registry

TRAVELLER_FIELDS = registry.TRAVELLER_FIELDS  # every field some format fills


def _subset(allowed: tuple[str, ...]) -> Parser:
    def parse(value: Any, _base: Path) -> tuple[str, ...]:
        bad = [v for v in value if v not in allowed]
        if bad:
            raise ValueError(f"unknown {', '.join(map(repr, bad))} (allowed: {', '.join(allowed)})")
        return tuple(dict.fromkeys(value))

    return parse


def _province_codes(value: Any, _base: Path) -> tuple[str, ...]:
    bad = [v for v in value if not re.fullmatch(r"[0-9]{2}", v)]
    if bad:
        raise ValueError(f"province codes are 2 digits (got {', '.join(map(repr, bad))})")
    return tuple(value)


@dataclass(frozen=True)
class TrustConfig:
    files: tuple[Path, ...] = field(
        default=(),
        metadata=doc(
            "Trust lists, DCC signer certificates (PEM/DER) and issuer public keys (PEM/DER).",
            paths,
        ),
    )


@dataclass(frozen=True)
class PolicyConfig:
    accept: tuple[str, ...] = field(
        default=(declaration.KIND, personal_qr.KIND),
        metadata=doc(
            f"Formats that can approve a passage ({', '.join(registry.AUTHORISING)}); "
            "codes that only identify (an ID card) never can.",
            _subset(registry.AUTHORISING),
        ),
    )
    issuers: tuple[str, ...] = field(
        default=(), metadata=doc("Declaration issuers (iss) accepted; empty = any trusted one.")
    )
    max_declaration_age_h: float = field(
        default=72.0,
        metadata=doc("A declaration issued longer ago than this is denied.", positive),
    )
    deny_symptoms: bool = field(default=True, metadata=doc("Deny when symptoms are declared."))
    deny_exposure: bool = field(default=True, metadata=doc("Deny when exposure is declared."))
    proof_zones: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "Origin province codes whose travellers must show a vaccination certificate "
            "or a recent negative test.",
            _province_codes,
        ),
    )
    proof_doses: int = field(
        default=2, metadata=doc("Vaccine doses that count as proof.", positive)
    )
    proof_test_max_age_h: float = field(
        default=72.0, metadata=doc("A negative test counts as proof this long.", positive)
    )
    accept_declared_health: bool = field(
        default=False,
        metadata=doc("Let doses and tests declared in the declaration count as proof."),
    )
    require_id_card: bool = field(
        default=False,
        metadata=doc("The ID card must be shown too, and match the declaration's ID number."),
    )
    replay_window_s: float = field(
        default=600.0,
        metadata=doc(
            "A credential approved at this lane within this many seconds is replayed (0 = off).",
            non_negative,
        ),
    )
    clock_skew_s: float = field(
        default=300.0,
        metadata=doc(
            "Tolerance for credentials issued slightly in the future (phone clocks).",
            non_negative,
        ),
    )


@dataclass(frozen=True)
class PassageConfig:
    fields: tuple[str, ...] = field(
        default=("declaration_id", "id_number", "name", "origin", "destination", "plate"),
        metadata=doc(
            "Traveller fields recorded in each passage (personal data: only what tracing needs).",
            _subset(TRAVELLER_FIELDS),
        ),
    )


def _country(value: Any, _base: Path) -> str:
    if not re.fullmatch(r"[A-Z]{2}", str(value)):
        raise ValueError(f"must be an ISO 3166-1 alpha-2 code, upper case (got {value!r})")
    return str(value)


@dataclass(frozen=True)
class RulesConfig:
    enabled: bool = field(
        default=True,
        metadata=doc(
            "Judge EU DCCs (vaccine passports) by business rules in CertLogic; off: by the "
            "fixed [policy] proof_* keys."
        ),
    )
    country: str = field(
        default="VN",
        metadata=doc("The country of arrival: whose acceptance rules apply.", _country),
    )
    files: tuple[Path, ...] = field(
        default=(),
        metadata=doc(
            "Rule folders (<RuleId>/rule.json) or folders of them; empty = the bundled "
            "rules of Vietnam (edge/rules/vn). A signed fleet push replaces them.",
            paths,
        ),
    )
    value_sets: Path | None = field(
        default=None,
        metadata=doc(
            "Value sets JSON the rules refer to (external.valueSets); empty = the bundled one "
            "(with the bundled rules) or none.",
            parse_existing_file,
        ),
    )


def loopback_url(url: str) -> bool:
    """A lookup URL template's host is this machine (a local proxy, a test service)."""
    host = urllib.parse.urlsplit(url.format(kind="k", key="k")).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _lookup_url(value: Any, _base: Path) -> str:
    if value == "":
        return ""
    text = str(value)
    scheme = text.partition("://")[0]
    if scheme not in ("http", "https") or "{key}" not in text:
        raise ValueError(
            "must be an http:// or https:// URL template with {key} (and optionally "
            f'{{kind}}), e.g. "https://qr.example.vn/check/{{kind}}/{{key}}" (got {text[:60]!r})'
        )
    try:
        text.format(kind="k", key="k")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"only {{kind}} and {{key}} may be filled in ({exc})") from exc
    return text


@dataclass(frozen=True)
class LookupConfig:
    url: str = field(
        default="",
        metadata=doc(
            "Online confirmation of unsigned codes: a URL template with {kind} and {key} "
            "(a personal QR's QID, a green-lane code's token); empty = off (offline only).",
            _lookup_url,
        ),
    )
    kinds: tuple[str, ...] = field(
        default=(personal_qr.KIND, greenlane.KIND),
        metadata=doc(
            "Formats looked up (those with something to look up).",
            _subset(registry.LOOKED_UP),
        ),
    )
    timeout_s: float = field(
        default=1.5,
        metadata=doc(
            "An answer later than this is unavailable: the officer decides "
            "(lookup_unavailable); the lane never waits for it.",
            positive,
        ),
    )
    cache_s: float = field(
        default=600.0,
        metadata=doc(
            "How long a confirmed or refused answer is reused (seconds; 0 = never).",
            non_negative,
        ),
    )
    token_file: Path | None = field(
        default=None,
        metadata=doc(
            "File (or credential:NAME) holding a bearer token sent with each lookup; needs an "
            "https:// url (or a loopback one).",
            parse_existing_file,
        ),
    )
    ca_file: Path | None = field(
        default=None,
        metadata=doc("CA certificate file (PEM) of the service; empty = system CAs.",
                      parse_existing_file),
    )  # fmt: skip
    cert_file: Path | None = field(
        default=None,
        metadata=doc("Client certificate file (PEM), for a service that asks for one.",
                      parse_existing_file),
    )  # fmt: skip
    key_file: Path | None = field(
        default=None,
        metadata=doc("Its private key file (PEM), or credential:NAME.", parse_existing_file),
    )
