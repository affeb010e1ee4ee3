"""Reading the files a command is given, bounded: :func:`read_limited`.

Every file input of the command line (trust lists, keys, certificates,
configs, rule files, images, pushes) goes through here: at most ``limit + 1``
bytes are read, so ``/dev/zero`` or a FIFO cannot make a command spin or eat
the memory; only regular files are read (a FIFO is opened without blocking,
then refused); what is wrong is an :class:`~edge.errors.InputError` naming the
file and the reason in one line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge.errors import InputError

KiB = 1024
MiB = 1024 * KiB

# Limits by kind of input (bytes): far above any real file of the kind.
QR_TEXT = 8 * KiB  # a QR code holds at most 4,296 characters
KEY = 64 * KiB  # a PEM key or certificate (a CA bundle: CERTIFICATES)
CERTIFICATES = 4 * MiB  # a PEM bundle of CA certificates, a CRL
CONFIG = 1 * MiB  # a TOML config, a desired config or policy to push
DECLARATION = 64 * KiB  # the issue tool's declaration file
IMAGE = 50 * MiB  # a photo holding a QR code
SECRET = 4 * KiB  # a password or token file
PKI_INDEX = 16 * MiB  # the PKI's index.json: some 50,000 certificates
STORE_FILE = 256 * MiB  # the store's meta.json (the kiosk's own file), read by doctor


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit``; InputError otherwise.
    ``what`` names the kind of file in the message ("trust list", "private key")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(path, f"cannot read the {what}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise InputError(path, f"cannot read the {what}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise InputError(path, f"is a directory, not a {what}")
        raise InputError(path, f"a {what} must be a regular file, not a device, FIFO or socket")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(path, f"cannot read the {what}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise InputError(path, f"larger than {size(limit)}: too large for a {what}")
    return data


def read_text_limited(path: Path, limit: int, what: str) -> str:
    """:func:`read_limited`, decoded as UTF-8 (a clear InputError if it is not)."""
    return utf8(read_limited(path, limit, what), path, what)


def utf8(data: bytes, source: object, what: str) -> str:
    """``data`` as UTF-8 text; InputError naming the first bad byte otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(source, f"{what} is not UTF-8 text (byte {exc.start})") from exc


def argument_text(text: str, limit: int, what: str) -> bytes:
    """A command-line argument as UTF-8 bytes, bounded. Python hands bytes that are not
    UTF-8 over as lone surrogates: refused here with a clear message."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(what, f"not UTF-8 text (character {exc.start})") from exc
    if len(data) > limit:
        raise InputError(what, f"larger than {size(limit)}")
    return data


def size(n: int) -> str:
    """``n`` bytes for a person: 8 KiB, 16 MiB."""
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} bytes"
