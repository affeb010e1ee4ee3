"""The lane's vocabulary: its states, the events it takes and the actions it answers with.

Frozen dataclasses, pure. The state machine itself is :class:`edge.core.lane.Lane`;
every event and action here is also importable from :mod:`edge.core.lane`. Its
modes are the passage model's (:data:`edge.core.passage.Mode`: a passage records
the mode), its reason codes are in :mod:`edge.scan.reasons`; the signal patterns
(LEDs and buzzer) and the screens it shows are typed here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from edge.core.model import Credential, Lookup, PassageDraft
from edge.core.passage import Mode

# What the panel's LEDs and buzzer show (edge.devices.gpio.Panel.signal).
Pattern = Literal["ready", "reading", "approved", "denied", "fault", "surge", "closed"]
# What the screen shows (edge.kiosk: each has a title and a hint in the catalogues).
Screen = Literal[
    "ready", "group", "awaiting_officer", "approved", "denied", "closed", "surge", "failsafe"
]


class State(enum.Enum):
    READY = "ready"
    GROUP = "group"  # a vehicle's occupants are showing their codes
    AWAITING_DECISION = "awaiting_decision"
    OPEN = "open"
    SURGE = "surge"
    FAILSAFE = "failsafe"


# --- events ---------------------------------------------------------------


@dataclass(frozen=True)
class CredentialScanned:
    credential: Credential


@dataclass(frozen=True)
class OfficerApproved:
    pass


@dataclass(frozen=True)
class OfficerDenied:
    pass


@dataclass(frozen=True)
class SetMode:
    """Switch the lane's mode (officer, auto, surge, closed); ``by`` says who, for the log."""

    mode: Mode
    by: str = "operator"


@dataclass(frozen=True)
class OperatorOpen:
    """An operator opens the barrier remotely for one passage (a pulse of ``open_s``)."""

    by: str = "operator"


@dataclass(frozen=True)
class VehiclePassed:
    """The vehicle-loop detector says the vehicle has left: close without waiting."""


@dataclass(frozen=True)
class OpenVehicle:
    """The officer opens a vehicle group: every occupant's code joins one passage.
    ``kind`` one of :data:`~edge.core.passage.VEHICLE_KINDS`; ``plate`` may be typed later."""

    kind: str = "car"
    plate: str = ""
    by: str = "officer"


@dataclass(frozen=True)
class SetPlate:
    """The officer types the plate of the vehicle being decided."""

    plate: str


@dataclass(frozen=True)
class LookupAnswered:
    """The online lookup's answer for the code whose payload hashes to ``sha256``."""

    sha256: str
    lookup: Lookup


@dataclass(frozen=True)
class Shutdown:
    """The kiosk is stopping: finish the passage in progress and close the barrier."""


@dataclass(frozen=True)
class DecisionTimedOut:
    token: int


@dataclass(frozen=True)
class CloseDue:
    token: int


@dataclass(frozen=True)
class FailsafeRetryDue:
    token: int


@dataclass(frozen=True)
class GroupWindowEnded:
    """No occupant's code for ``group_s``: the vehicle group is complete."""

    token: int


@dataclass(frozen=True)
class FaultRaised:
    """Something the lane depends on failed; ``name`` is stable (camera, store, ...)."""

    name: str
    reason: str


@dataclass(frozen=True)
class FaultCleared:
    name: str


TimerEvent = DecisionTimedOut | CloseDue | FailsafeRetryDue | GroupWindowEnded
Event = (
    CredentialScanned
    | OfficerApproved
    | OfficerDenied
    | SetMode
    | OperatorOpen
    | OpenVehicle
    | SetPlate
    | LookupAnswered
    | Shutdown
    | VehiclePassed
    | TimerEvent
    | FaultRaised
    | FaultCleared
)

# --- actions --------------------------------------------------------------


@dataclass(frozen=True)
class RecordPassage:
    draft: PassageDraft


@dataclass(frozen=True)
class OpenBarrier:
    """Open for one passage (a pulse the panel bounds), or ``hold`` it open (surge)."""

    hold: bool = False


@dataclass(frozen=True)
class CloseBarrier:
    pass


@dataclass(frozen=True)
class Signal:
    """LED and buzzer pattern."""

    pattern: Pattern


@dataclass(frozen=True)
class Show:
    """What the screen shows: a lane state, reason codes, and what more to present."""

    screen: Screen
    reasons: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class StartTimer:
    """Post ``event`` back to the lane after ``delay_s`` seconds, replacing any
    pending timer of the same event type."""

    event: TimerEvent
    delay_s: float


@dataclass(frozen=True)
class Note:
    """A line for the log: what the lane did and why (never personal data)."""

    text: str


Action = RecordPassage | OpenBarrier | CloseBarrier | Signal | Show | StartTimer | Note
