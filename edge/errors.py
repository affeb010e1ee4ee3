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
