"""A small CBOR (RFC 8949) decoder and encoder, bounded for hostile input.

The payload of a QR code comes from anyone. This decoder never allocates more
than the input justifies: every declared length must fit in the bytes that
remain, nesting depth and the total number of items are capped, and any
malformed or over-limit input raises :class:`~edge.errors.CredentialRejected`
(``bad_cose`` or ``too_large``), never another exception.

Decoded values: int, bytes, str, list, dict, bool, None, float, :class:`Tag`,
and :data:`UNDEFINED`. Map keys must be int, str or bytes, each at most once.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from edge.errors import CredentialRejected
from edge.scan.reasons import BAD_COSE, TOO_LARGE

MAX_DEPTH = 16
MAX_ITEMS = 4096


@dataclass(frozen=True)
class Tag:
    tag: int
    value: Any


class _Undefined:
    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()
_BREAK = object()


def loads(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> Any:
    """Decode exactly one CBOR item that fills ``data``."""
    dec = _Decoder(data, max_depth, max_items)
    value = dec.item(0)
    if value is _BREAK:
        raise CredentialRejected(BAD_COSE, "unexpected CBOR break")
    if dec.pos != len(data):
        raise CredentialRejected(BAD_COSE, f"{len(data) - dec.pos} bytes after the CBOR item")
    return value


class _Decoder:
    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = 0
        self.max_depth = max_depth
        self.items_left = max_items

    def _take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise CredentialRejected(BAD_COSE, "CBOR item runs past the end of the data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _argument(self, info: int) -> int | None:
        if info < 24:
            return info
        if info == 31:
            return None  # indefinite length (or break)
        if info > 27:
            raise CredentialRejected(BAD_COSE, f"reserved CBOR additional information {info}")
        return int.from_bytes(self._take(1 << (info - 24)), "big")

    def _fits(self, count: int, min_size: int = 1) -> None:
        if count * min_size > len(self.data) - self.pos:
            raise CredentialRejected(BAD_COSE, "CBOR length larger than the data")

    def item(self, depth: int) -> Any:  # noqa: PLR0911 - one return per major type
        if depth > self.max_depth:
            raise CredentialRejected(TOO_LARGE, f"CBOR nesting deeper than {self.max_depth}")
        self.items_left -= 1
        if self.items_left < 0:
            raise CredentialRejected(TOO_LARGE, "too many CBOR items")
        initial = self._take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            return self._simple(info)
        arg = self._argument(info)
        if major == 0:
            return self._definite(arg)
        if major == 1:
            return -1 - self._definite(arg)
        if major in (2, 3):
            raw = self._string(major, arg, depth)
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CredentialRejected(BAD_COSE, "CBOR text is not UTF-8") from exc
        if major == 4:
            return self._array(arg, depth)
        if major == 5:
            return self._map(arg, depth)
        tag = self._definite(arg)
        value = self.item(depth + 1)
        if value is _BREAK:
            raise CredentialRejected(BAD_COSE, "CBOR tag without content")
        return Tag(tag, value)

    @staticmethod
    def _definite(arg: int | None) -> int:
        if arg is None:
            raise CredentialRejected(BAD_COSE, "indefinite length where none is allowed")
        return arg

    def _string(self, major: int, arg: int | None, depth: int) -> bytes:
        if arg is not None:
            return self._take(arg)
        chunks: list[bytes] = []
        while True:
            initial = self._take(1)[0]
            if initial == 0xFF:
                return b"".join(chunks)
            if initial >> 5 != major:
                raise CredentialRejected(BAD_COSE, "bad chunk in an indefinite-length string")
            self.items_left -= 1
            if self.items_left < 0:
                raise CredentialRejected(TOO_LARGE, "too many CBOR items")
            chunks.append(self._take(self._definite(self._argument(initial & 0x1F))))

    def _array(self, arg: int | None, depth: int) -> list[Any]:
        out = []
        if arg is not None:
            self._fits(arg)
            for _ in range(arg):
                value = self.item(depth + 1)
                if value is _BREAK:
                    raise CredentialRejected(BAD_COSE, "unexpected CBOR break in an array")
                out.append(value)
            return out
        while (value := self.item(depth + 1)) is not _BREAK:
            out.append(value)
        return out

    def _map(self, arg: int | None, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        count = 0
        if arg is not None:
            self._fits(arg, 2)
        while arg is None or count < arg:
            key = self.item(depth + 1)
            if key is _BREAK:
                if arg is None:
                    return out
                raise CredentialRejected(BAD_COSE, "unexpected CBOR break in a map")
            if not isinstance(key, int | str | bytes) or isinstance(key, bool):
                raise CredentialRejected(BAD_COSE, "CBOR map key of an unsupported type")
            if key in out:
                raise CredentialRejected(BAD_COSE, "duplicate CBOR map key")
            value = self.item(depth + 1)
            if value is _BREAK:
                raise CredentialRejected(BAD_COSE, "CBOR map key without a value")
            out[key] = value
            count += 1
        return out

    def _simple(self, info: int) -> Any:  # noqa: PLR0911 - one return per simple value
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 23:
            return UNDEFINED
        if info == 25:
            return _half(self._take(2))
        if info == 26:
            return struct.unpack(">f", self._take(4))[0]
        if info == 27:
            return struct.unpack(">d", self._take(8))[0]
        if info == 31:
            return _BREAK
        raise CredentialRejected(BAD_COSE, f"unsupported CBOR simple value {info}")


def _half(raw: bytes) -> float:
    half = int.from_bytes(raw, "big")
    exp, mant = (half >> 10) & 0x1F, half & 0x3FF
    if exp == 0:
        value = math.ldexp(mant, -24)
    elif exp != 31:
        value = math.ldexp(mant + 1024, exp - 25)
    else:
        value = math.inf if mant == 0 else math.nan
    return -value if half & 0x8000 else value


# -- encoding (for issuing declarations and for tests) -----------------------


def dumps(value: Any) -> bytes:
    """Encode with the shortest headers; maps keep their insertion order."""
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _head(major: int, n: int, out: bytearray) -> None:
    if n < 24:
        out.append(major << 5 | n)
    elif n < 1 << 8:
        out += bytes([major << 5 | 24, n])
    elif n < 1 << 16:
        out.append(major << 5 | 25)
        out += n.to_bytes(2, "big")
    elif n < 1 << 32:
        out.append(major << 5 | 26)
        out += n.to_bytes(4, "big")
    else:
        out.append(major << 5 | 27)
        out += n.to_bytes(8, "big")


def _encode(value: Any, out: bytearray) -> None:  # noqa: PLR0912 - one branch per type
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif value is UNDEFINED:
        out.append(0xF7)
    elif isinstance(value, int):
        if value >= 0:
            _head(0, value, out)
        else:
            _head(1, -1 - value, out)
    elif isinstance(value, bytes):
        _head(2, len(value), out)
        out += value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _head(3, len(raw), out)
        out += raw
    elif isinstance(value, list | tuple):
        _head(4, len(value), out)
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        _head(5, len(value), out)
        for k, v in value.items():
            _encode(k, out)
            _encode(v, out)
    elif isinstance(value, Tag):
        _head(6, value.tag, out)
        _encode(value.value, out)
    elif isinstance(value, float):
        out.append(0xFB)
        out += struct.pack(">d", value)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as CBOR")
