"""What every config section is made of: the description of a field and the parsers
of its values.

Each field's metadata (:func:`doc`) holds its description (for
``docs/configuration.md`` and ``describe_keys``) and an optional parser that
converts and checks the TOML value, raising ValueError with a message that the
loader prefixes with the key (:mod:`edge.config`). Here are the parsers the
sections share: numbers, paths, files and systemd credentials, the device id.
The sections, by subject: :mod:`edge.config.device` (device, camera, scan,
gpio, lane, kiosk), :mod:`edge.config.delivery` (mqtt, store, fleet, ingest,
log), :mod:`edge.config.judging` (trust, policy, passage, rules, lookup).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEVICE_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
Parser = Callable[[Any, Path], Any]


def doc(text: str, parse: Parser | None = None) -> dict[str, Any]:
    """A field's metadata: its description, and the parser of its TOML value (if any)."""
    return {"doc": text, "parse": parse}


def parse_device_id(value: Any, _base: Path) -> str:
    if not isinstance(value, str) or not DEVICE_ID_RE.fullmatch(value):
        raise ValueError(
            "must be 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit"
        )
    return value


def resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def parse_existing_dir(value: Any, base: Path) -> Path | None:
    if value == "":
        return None
    path = parse_path(value, base)
    if not path.is_dir():
        raise ValueError(f"folder not found: {path}")
    return path


def parse_path(value: Any, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty path")
    return resolve(value, base)


CREDENTIAL = "credential:"
# where the unit's LoadCredential= lines read the secrets from (root only, 0700)
INSTALLED_CREDENTIALS = Path("/etc/checkpoint-edge/credentials")


def parse_existing_file(value: Any, base: Path) -> Path | None:
    if value == "":
        return None
    if isinstance(value, str) and value.startswith(CREDENTIAL):
        return _credential(value.removeprefix(CREDENTIAL))
    path = parse_path(value, base)
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


def _credential(name: str) -> Path:
    """``credential:NAME``: a secret systemd hands the service (``LoadCredential=NAME:...``)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"credential:{name}: not a credential name")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory and os.access(INSTALLED_CREDENTIALS, os.R_OK | os.X_OK):
        directory = str(INSTALLED_CREDENTIALS)  # root's tools (doctor) read them in place
    if not directory:
        raise ValueError(
            f"credential:{name}: no systemd credentials here: CREDENTIALS_DIRECTORY is not "
            f"set and {INSTALLED_CREDENTIALS} is not readable (run as root, or inside the "
            f"service, whose LoadCredential={name}:... hands it over)"
        )
    path = Path(directory) / name
    if not path.is_file():
        raise ValueError(f"credential:{name}: not among the service's credentials ({path})")
    return path


MAX_NUMBER = 1_000_000  # no duration, rate or size here is sensibly larger


def positive(value: Any, _base: Path) -> Any:
    if not 0 < value <= MAX_NUMBER:  # also refuses nan
        raise ValueError(f"must be greater than 0 and at most {MAX_NUMBER} (got {value})")
    return value


def non_negative(value: Any, _base: Path) -> Any:
    if not 0 <= value <= MAX_NUMBER:  # also refuses nan
        raise ValueError(f"must be 0 to {MAX_NUMBER} (got {value})")
    return value


def at_least_1(value: Any, _base: Path) -> Any:
    if not 1 <= value <= MAX_NUMBER:
        raise ValueError(f"must be 1 to {MAX_NUMBER} (got {value})")
    return value


def paths(value: Any, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of file paths")
    return tuple(resolve(v, base) for v in value)
