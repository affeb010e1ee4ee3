"""The envelope shared by DCC and our declarations: ``PREFIX`` base45(zlib(COSE_Sign1(CWT))).

Each step is a named stage recorded in a :class:`StageLog`, so a caller (the
``verify`` command, the conformance tests) can see how far a payload got.
Sizes are bounded before any work: the text, the decompressed bytes (no zlib
bomb) and the CBOR structure (see :mod:`edge.scan.cbor`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from edge.errors import CredentialRejected
from edge.scan import base45, cbor, cose
from edge.scan.reasons import BAD_COMPRESSION, BAD_COSE, BAD_FIELDS, BAD_PREFIX, TOO_LARGE

# A QR code holds at most 4296 alphanumeric characters (version 40-L).
MAX_TEXT = 4296
# A genuine payload inflates to a few kilobytes at most.
MAX_INFLATED = 16 * 1024

CWT_ISS = 1
CWT_EXP = 4
CWT_IAT = 6
CWT_CTI = 7


class StageLog:
    """Which stages a payload passed (True) or failed (False), in order."""

    def __init__(self) -> None:
        self.stages: dict[str, bool] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        try:
            yield
        except CredentialRejected:
            self.stages[name] = False
            raise
        self.stages[name] = True


def unprefix(text: str, prefix: str, log: StageLog) -> str:
    with log.stage("prefix"):
        if len(text) > MAX_TEXT:
            raise CredentialRejected(TOO_LARGE, f"payload of {len(text)} characters")
        if not text.startswith(prefix):
            raise CredentialRejected(BAD_PREFIX, f"does not start with {prefix}")
        return text[len(prefix) :]


def inflate(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    """zlib-decompress at most ``limit`` bytes; refuse anything that is not complete zlib."""
    if len(data) < 2 or data[0] & 0x0F != 8 or (data[0] << 8 | data[1]) % 31:
        raise CredentialRejected(BAD_COMPRESSION, "not zlib-compressed")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise CredentialRejected(BAD_COMPRESSION, f"broken zlib stream: {exc}") from exc
    if len(out) > limit:
        raise CredentialRejected(TOO_LARGE, f"inflates to more than {limit} bytes")
    if not inflater.eof:
        raise CredentialRejected(BAD_COMPRESSION, "truncated zlib stream")
    if inflater.unused_data:
        raise CredentialRejected(BAD_COMPRESSION, "data after the zlib stream")
    return out


def deflate(data: bytes) -> bytes:
    return zlib.compress(data, 9)


def open_text(text: str, prefix: str, log: StageLog) -> tuple[cose.Sign1, dict[Any, Any]]:
    """Prefix, base45, zlib, then the COSE structure and its CWT claims (not yet verified)."""
    body = unprefix(text, prefix, log)
    with log.stage("base45"):
        compressed = base45.decode(body)
    with log.stage("decompress"):
        data = inflate(compressed)
    return open_cose(data, log)


def open_cose(data: bytes, log: StageLog) -> tuple[cose.Sign1, dict[Any, Any]]:
    with log.stage("decode"):
        sign1 = cose.parse_sign1(data)
        claims = cbor.loads(sign1.payload)
        if not isinstance(claims, dict):
            raise CredentialRejected(BAD_COSE, "CWT claims are not a map")
        return sign1, claims


def timestamp(claims: dict[Any, Any], key: int) -> datetime | None:
    """A CWT NumericDate claim (seconds since the epoch), or None when absent."""
    value = claims.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CredentialRejected(BAD_FIELDS, f"CWT claim {key} is not a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise CredentialRejected(BAD_FIELDS, f"CWT claim {key} out of range") from exc
