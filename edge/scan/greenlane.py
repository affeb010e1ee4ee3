"""The green-lane vehicle code of the Ministry of Transport (luồng xanh, 2021).

Transport operators registered cargo vehicles at ``luongxanh.drvn.gov.vn``
(the Directorate for Roads of Vietnam) and received a QR code per vehicle:
a URL carrying a token, looked up by the checkpoint. Its layout beyond that
is not published, so this module recognises a URL (http or https) on a known
green-lane host with a token in the path or the query (``token``, ``code``,
``id``, ``ma`` or ``qr``), 6-128 of ``A-Z a-z 0-9 _ -``.

The code names a vehicle, not a person: showing it opens a vehicle group
(``[lane] group_s``) that every occupant's code joins. It is unsigned: the
plate and the registered drivers come from the optional online lookup
(``[lookup]``, asked about the token); without one, the officer checks the
vehicle and types its plate on the screen (``greenlane_unconfirmed``).
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from edge.errors import CredentialRejected
from edge.scan.format import Assessment, Claims, Format, Reading
from edge.scan.reasons import (
    BAD_FIELDS,
    GREENLANE_UNCONFIRMED,
    LOOKUP_PENDING,
    LOOKUP_REFUSED,
    LOOKUP_UNAVAILABLE,
    TOO_LARGE,
)

if TYPE_CHECKING:
    from edge.core.model import Credential

KIND: Final = "greenlane"
HOSTS = ("luongxanh.drvn.gov.vn",)
TOKEN_PARAMS = ("token", "code", "id", "ma", "qr")
MAX_LENGTH = 2048
_TOKEN = re.compile(r"[A-Za-z0-9_-]{6,128}")
_SHAPE = re.compile(r"https?://([A-Za-z0-9.-]+)(:[0-9]{1,5})?(/|\?|$)", re.IGNORECASE)


@dataclass(frozen=True, repr=False)
class GreenLane(Claims):
    """A green-lane vehicle code: where it was issued and its token."""

    host: str
    token: str

    def __repr__(self) -> str:
        return f"GreenLane(host={self.host!r})"


def looks_like(text: str) -> bool:
    """An http(s) URL on a known green-lane host."""
    found = _SHAPE.match(text.strip())
    return found is not None and found.group(1).lower() in HOSTS


def read(text: str, reading: Reading) -> GreenLane:
    with reading.stages.stage("fields"):
        body = text.strip()
        if len(body) > MAX_LENGTH:
            raise CredentialRejected(TOO_LARGE, "longer than a green-lane code")
        try:
            url = urllib.parse.urlsplit(body)
        except ValueError as exc:
            raise CredentialRejected(BAD_FIELDS, "not a URL") from exc
        query = urllib.parse.parse_qs(url.query)
        candidates = [v for p in TOKEN_PARAMS for v in query.get(p, [])]
        last = url.path.rstrip("/").rsplit("/", 1)[-1]
        candidates += [last] if last else []
        token = next((c for c in candidates if _TOKEN.fullmatch(c)), None)
        if token is None:
            raise CredentialRejected(BAD_FIELDS, "no token: 6-128 of A-Z a-z 0-9 _ -")
        return GreenLane((url.hostname or "").lower(), token)


class GreenLaneFormat(Format[GreenLane]):
    """A vehicle's code: opens a vehicle group; confirmed (plate, drivers) online."""

    kind = KIND
    claims_type = GreenLane
    authorises = False
    vehicle = True
    looked_up = True
    rank = 5
    reasons = (
        BAD_FIELDS, TOO_LARGE, GREENLANE_UNCONFIRMED,
        LOOKUP_PENDING, LOOKUP_UNAVAILABLE, LOOKUP_REFUSED,
    )  # fmt: skip

    def detect(self, text: str) -> bool:
        return looks_like(text)

    def read(self, text: str, reading: Reading) -> GreenLane:
        return read(text, reading)

    def lookup_key(self, claims: GreenLane) -> str | None:
        return claims.token

    def reference(self, claims: GreenLane) -> str | None:
        # a permission, not a person: the same code again within the replay window is
        # another vehicle using it
        return hashlib.sha256(f"greenlane/{claims.host}/{claims.token}".encode()).hexdigest()

    def labels(self) -> tuple[str, ...]:
        return ("host",)  # the token is a secret of sorts: the officer needs only where from

    def assess(self, credential: Credential, claims: GreenLane, ctx: Assessment) -> None:
        """The vehicle holds up when the lookup confirms it; the officer decides otherwise."""
        lookup = ctx.looked_up(credential)  # (a confirmation past its valid_until: refused)
        if lookup == "confirmed":
            ctx.authorise()
        elif lookup == "refused":
            ctx.deny.append(LOOKUP_REFUSED)
        else:
            ctx.unconfirmed(credential, GREENLANE_UNCONFIRMED, "plate")


FORMAT = GreenLaneFormat()
