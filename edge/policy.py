"""The policy: what the kiosk recommends for a credential, and why.

Pure. In ``auto`` lane mode its outcome decides; in ``officer`` mode it is the
recommendation shown to the officer. Reason codes are machine-readable and
stable: they are published in passages.
"""

from __future__ import annotations

from typing import Protocol

from edge.model import Credential, Verdict

UNRECOGNISED = "unrecognised"


class Policy(Protocol):
    def evaluate(self, credential: Credential) -> Verdict:
        """The outcome for ``credential`` with its reasons."""
        ...


class BasicPolicy:
    """Denies whatever it cannot recognise; refers everything else to the officer.

    Recognised formats and their verification come with the credential layer;
    until a credential is verified, nothing is approved without an officer.
    """

    def evaluate(self, credential: Credential) -> Verdict:
        if credential.kind == UNRECOGNISED:
            return Verdict("deny", (UNRECOGNISED,))
        return Verdict("refer", ("not_verified",))
