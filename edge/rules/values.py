"""CertLogic's values: what counts as an integer, truthy or falsy, strictly equal;
``var`` access by a dotted path; ``extractFromUVCI``. Pure functions of JSON
values, as the specification (1.3.3) defines them; :mod:`edge.rules.certlogic`
evaluates expressions with them."""

from __future__ import annotations

import math
import re
from typing import Any

_UVCI_SEPARATORS = re.compile(r"[/#:]")


def is_int(value: Any) -> bool:
    """An integer (JSON numbers without a fraction count; booleans do not)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def boolsiness(value: Any) -> bool | None:
    """True for truthy, False for falsy, None for values that are neither."""
    if value is True or value is False:
        return value
    if value is None:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    if isinstance(value, int | float):  # (not bool: handled above)
        return value != 0
    return None


def strict_equal(left: Any, right: Any) -> bool:
    """JavaScript's ``===``: no coercion; arrays, objects and date-times only by identity."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, str) and isinstance(right, str):
        return left == right
    if left is None or right is None:
        return left is right
    return left is right


def access(data: Any, path: str) -> Any:
    """``var``: the value at a dotted path (``""``: the whole context); ``null`` when any
    step is missing. A numeric fragment indexes arrays (and strings)."""
    if path == "":
        return data
    value = data
    for fragment in path.split("."):
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get(fragment)
        elif isinstance(value, list | str):
            digits = fragment.isdecimal() and fragment.isascii() and len(fragment) <= 9
            index = int(fragment) if digits else -1
            value = value[index] if 0 <= index < len(value) else None
        else:
            return None
    return value


def extract_from_uvci(uvci: str | None, index: int) -> str | None:
    """The ``index``-th fragment of a UCI split on ``/``, ``#``, ``:`` (an initial
    ``URN:UVCI:`` ignored), or ``null``."""
    if uvci is None or index < 0:
        return None
    fragments = _UVCI_SEPARATORS.split(uvci.removeprefix("URN:UVCI:"))
    return fragments[index] if index < len(fragments) else None
