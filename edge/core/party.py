"""Who a passage is for: one traveller, a family, or a vehicle and its occupants.

Pure data and rules, owned by the lane. A :class:`Party` holds each person's
codes and, for a vehicle group, the vehicle and its own codes (a green-lane
code). Where a newly scanned code goes (:meth:`Party.place`):

- the same code again: nowhere (it is already there);
- a vehicle's code (green lane) in a vehicle group without one: the vehicle;
- in a vehicle group, a person's code joins the person last seen when that
  person has no code of its kind and names nobody else; otherwise it is the
  next occupant;
- otherwise: a proxy code declared by someone in the party, or the declarer of
  a proxy code in it, is another member of the family; for one traveller, a
  code of a kind not yet shown joins (the policy then judges whether it names
  the same person); in a family, it joins the member it names (a kind they
  have not shown, naming nobody else); anything else is the next traveller's.

Unrecognised codes never join a group; shown first by a lone traveller, they
are replaced by the first recognised code that follows. A vehicle's own code
confirmed online names the vehicle: its plate and kind (:meth:`Party.seed_vehicle`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from edge.core.model import Credential, Lookup, PassageDraft, Vehicle, normal_plate
from edge.core.passage import VEHICLE_KINDS
from edge.scan import registry
from edge.scan.format import Holder, Match
from edge.scan.reasons import UNRECOGNISED

Placement = Literal["joined", "new_person", "vehicle", "duplicate", "ignored", "next"]


@dataclass
class Party:
    """The codes being decided together: ``people`` (each a list of codes, in the order
    shown) and, for a vehicle group, ``vehicle`` and ``vehicle_codes``."""

    people: list[list[Credential]] = field(default_factory=list)
    vehicle: Vehicle | None = None
    vehicle_codes: list[Credential] = field(default_factory=list)

    @classmethod
    def of(cls, credential: Credential) -> Party:
        return cls([[credential]])

    @classmethod
    def green_lane(cls, codes: list[Credential] | None = None) -> Party:
        """A vehicle group a vehicle's own code opens (green lane, with ``codes``): a
        truck until the code's confirmation names its kind (:meth:`seed_vehicle`)."""
        return cls([], Vehicle("truck", "", "greenlane"), codes or [])

    @property
    def credentials(self) -> list[Credential]:
        """Every code, the vehicle's first, then each person's, in order."""
        return [*self.vehicle_codes, *(c for person in self.people for c in person)]

    @property
    def is_group(self) -> bool:
        return self.vehicle is not None

    def place(self, credential: Credential) -> Placement:
        """Put a newly scanned code where it belongs (see the module's docstring)."""
        if any(c.sha256 == credential.sha256 for c in self.credentials):
            return "duplicate"
        if credential.kind == UNRECOGNISED:
            return "ignored"  # a stray code never joins (one shown first is replaced)
        if self.is_group:
            return self._in_group(credential)
        if is_vehicle(credential):
            return "next"  # a vehicle's code: it opens a vehicle group, never joins a person
        return self._in_party(credential)

    def _in_group(self, credential: Credential) -> Placement:
        if is_vehicle(credential):
            if self.vehicle_codes:
                return "next"  # another vehicle's code
            self.vehicle_codes.append(credential)
            return "vehicle"
        last = self.people[-1] if self.people else None
        if last is not None and _fits(last, credential):
            last.append(credential)
            return "joined"
        self.people.append([credential])
        return "new_person"

    def _in_party(self, credential: Credential) -> Placement:
        if self.people and all(c.kind == UNRECOGNISED for c in self.people[0]):
            self.people[0] = [credential]  # the wrong code first, then the right one
            return "joined"
        if _family(self.people, credential):
            self.people.append([credential])
            return "new_person"
        if len(self.people) == 1:  # one traveller: the policy judges whether it is theirs
            if all(c.kind != credential.kind for c in self.people[0]):
                self.people[0].append(credential)
                return "joined"
            return "next"  # another of a kind shown: the next traveller's (or vehicle's)
        for person in sorted(self.people, key=lambda p: not _names_same(p, credential)):
            if _fits(person, credential):  # a family: the member it names
                person.append(credential)
                return "joined"
        return "next"

    def update(self, sha256: str, lookup: Lookup) -> Credential | None:
        """Put an online answer on the code it is for: that code now, None when it is not
        here."""
        for codes in (self.vehicle_codes, *self.people):
            for i, c in enumerate(codes):
                if c.sha256 == sha256:
                    codes[i] = replace(c, lookup=lookup)
                    return codes[i]
        return None

    def set_plate(self, plate: str) -> None:
        if self.vehicle is not None:
            self.vehicle = replace(self.vehicle, plate=plate)

    def seed_vehicle(self, credential: Credential) -> None:
        """A vehicle's own code confirmed online (now, or from the cache) names the
        vehicle: its plate (unless typed already) and, for a group the code opened, its
        kind. Only a vehicle's code: a person's confirmation never sets a plate."""
        lookup, vehicle = credential.lookup, self.vehicle
        if vehicle is None or lookup is None or lookup.status != "confirmed":
            return
        if not is_vehicle(credential):
            return
        plate = normal_plate(lookup.data.get("plate", ""))
        kind = str(lookup.data.get("vehicle", ""))
        if plate and not vehicle.plate:
            self.set_plate(plate)
        if kind in VEHICLE_KINDS and vehicle.opened_by == "greenlane":
            self.vehicle = replace(self.vehicle or vehicle, kind=kind)

    def draft_fields(self) -> tuple[tuple[Credential, ...], tuple[tuple[int, ...], ...]]:
        """(credentials, occupants) for a :class:`PassageDraft`: occupants are listed for a
        vehicle group or a party of several, as indexes into credentials."""
        credentials = tuple(self.credentials)
        if not self.is_group and len(self.people) <= 1:
            return credentials, ()
        start = len(self.vehicle_codes)
        occupants = []
        for person in self.people:
            occupants.append(tuple(range(start, start + len(person))))
            start += len(person)
        return credentials, tuple(occupants)

    def apply(self, draft: PassageDraft) -> PassageDraft:
        """``draft`` (made with :attr:`credentials`) with the party's occupants and vehicle."""
        credentials, occupants = self.draft_fields()
        return replace(draft, credentials=credentials, occupants=occupants, vehicle=self.vehicle)


def is_vehicle(credential: Credential) -> bool:
    """A vehicle's own code (a green-lane code), valid or not: it opens a vehicle group."""
    fmt = registry.get(credential.kind)
    return fmt is not None and fmt.vehicle


def _holder(credential: Credential) -> Holder | None:
    fmt = registry.get(credential.kind)
    if fmt is None or credential.claims is None:
        return None
    return fmt.holder(credential.claims)


def _matches(person: list[Credential], credential: Credential) -> set[Match]:
    """How ``credential`` compares with the person each of ``person``'s codes names."""
    holder = _holder(credential)
    if holder is None:
        return set()
    return {holder.compare(h) for h in map(_holder, person) if h is not None}


def _fits(person: list[Credential], credential: Credential) -> bool:
    """``credential`` is this person's (a kind they have not shown, naming nobody else)."""
    if any(c.kind == credential.kind for c in person):
        return False
    return "different" not in _matches(person, credential)


def _names_same(person: list[Credential], credential: Credential) -> bool:
    """``credential`` names the same person as one of ``person``'s codes."""
    return "same" in _matches(person, credential)


def _family(people: list[list[Credential]], credential: Credential) -> bool:
    """A proxy code declared by someone in the party, or the declarer of one in it."""
    fmt = registry.get(credential.kind)
    if fmt is None or credential.claims is None:
        return False
    mine_by, mine = fmt.vouched_by(credential.claims), fmt.voucher(credential.claims)
    for person in people:
        for c in person:
            other = registry.get(c.kind)
            if other is None or c.claims is None:
                continue
            if mine_by is not None and other.voucher(c.claims) == mine_by:
                return True
            if mine is not None and other.vouched_by(c.claims) == mine:
                return True
    return False
