"""Base45 (RFC 9285), strict: the alphabet of QR alphanumeric mode.

Every character outside the alphabet, an impossible length, or a group whose
value overflows is refused with ``bad_base45``.
"""

from __future__ import annotations

from edge.errors import CredentialRejected
from edge.scan.reasons import BAD_BASE45

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out.append(ALPHABET[c] + ALPHABET[d] + ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(ALPHABET[c] + ALPHABET[d])
    return "".join(out)


def decode(text: str) -> bytes:
    if len(text) % 3 == 1:
        raise CredentialRejected(BAD_BASE45, f"impossible length {len(text)}")
    try:
        values = [_VALUE[c] for c in text]
    except KeyError as exc:
        raise CredentialRejected(BAD_BASE45, "character outside the base45 alphabet") from exc
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        if len(group) == 3:
            n = group[0] + group[1] * 45 + group[2] * 2025
            if n > 0xFFFF:
                raise CredentialRejected(BAD_BASE45, "group value over 65535")
            out += n.to_bytes(2, "big")
        else:
            n = group[0] + group[1] * 45
            if n > 0xFF:
                raise CredentialRejected(BAD_BASE45, "final group value over 255")
            out.append(n)
    return bytes(out)
