"""From the raw bytes of a QR code to a :class:`~edge.model.Credential`.

Format recognition is the plug-in point of the credential layer: each format
will be detected by prefix or shape, parsed and verified here. Until a format
is implemented, every payload is ``unrecognised`` (shown to the officer, never
auto-approved).
"""

from __future__ import annotations

from edge.model import Credential
from edge.policy import UNRECOGNISED


def read_credential(raw: bytes) -> Credential:
    """Recognise the payload's format; the payload itself is kept out of repr and logs."""
    return Credential.from_raw(UNRECOGNISED, raw)
