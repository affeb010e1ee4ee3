"""One exception tree for the package.

Every error the package raises on purpose derives from :class:`EdgeError`;
leaves also derive from the builtin that best describes them, so callers can
catch either.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of all checkpoint-edge errors."""


class ConfigError(EdgeError, ValueError):
    """A configuration is invalid; ``problems`` lists each one, naming the key."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:  # one line: an unreadable file, a bad key
            super().__init__(f"{source}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s):\n{lines}")


class StoreError(EdgeError, OSError):
    """The passage store cannot be read or written."""


class StoreCorrupt(StoreError):
    """The store file exists but does not hold a valid store."""


class CameraError(EdgeError, OSError):
    """A camera source cannot be opened or stopped delivering frames."""


class DecoderUnavailable(EdgeError, ImportError):
    """The configured QR decoder cannot be loaded on this machine."""


class HardwareError(EdgeError, RuntimeError):
    """GPIO hardware (pin factory, pins) cannot be set up."""


class CredentialRejected(EdgeError, ValueError):
    """A QR payload was refused; ``reason`` is a stable code (``edge.scan.reasons``).

    ``detail`` explains it for a developer; it never holds personal data.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        # Set when the payload was authentic and parsed but failed a later
        # check (expired, revoked...): its content can still be recorded.
        self.claims: object | None = None
        super().__init__(f"{reason}: {detail}" if detail else reason)


class TrustError(EdgeError, ValueError):
    """A trust file (keys, certificates, trust list) cannot be loaded."""


class InputError(EdgeError, ValueError):
    """An input file cannot be used: missing, not a regular file, too large, not UTF-8.

    ``path`` and ``reason`` apart, for callers that wrap it in their own error.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
