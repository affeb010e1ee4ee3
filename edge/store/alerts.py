"""What the store found wrong when it opened, for an operator to see.

The outbox collects these while it opens (:attr:`edge.store.outbox.Outbox.alerts`):
a damaged file repaired or moved aside, passages stored under another device id.
The kiosk logs each in its text form and raises its alert (``store-corrupt``,
``store-foreign``: :mod:`edge.service.alerts`) with the detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# store_corrupt: a file was damaged (what was restored, what is missing);
# store_foreign: passages of another device id are kept, not sent
StoreAlertKind = Literal["store_corrupt", "store_foreign"]


@dataclass(frozen=True)
class StoreAlert:
    """One finding: its ``kind`` and a ``detail`` that never holds personal data."""

    kind: StoreAlertKind
    detail: str

    def __str__(self) -> str:
        """The text form logs have always shown: ``store_corrupt: seg-... damaged, ...``."""
        return f"{self.kind}: {self.detail}"
