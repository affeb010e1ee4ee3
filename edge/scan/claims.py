"""What a credential says about its holder, once parsed: pure data.

These values hold personal data (names, ID numbers, addresses, plates). Their
``repr`` shows only non-identifying fields, so a stray log line or exception
message cannot leak them; what a passage records is chosen field by field in
``[passage] fields``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, repr=False)
class Place:
    province: str  # province code (2 digits, Vietnam's administrative codes)
    district: str = ""  # district code (3 digits), optional
    text: str = ""  # free text: commune, street, landmark

    def __repr__(self) -> str:
        return f"Place(province={self.province!r})"


@dataclass(frozen=True, repr=False)
class Declaration:
    """Our signed movement and health declaration (``docs/formats.md``)."""

    issuer: str
    issued_at: datetime
    expires_at: datetime
    declaration_id: str
    name: str
    id_number: str
    birth_date: date
    sex: str  # M, F or X
    phone: str
    origin: Place
    destination: Place
    plate: str
    transport: str  # car, motorbike, truck, bus, bicycle, foot, other
    purpose: str
    travel_from: date
    travel_to: date
    symptoms: bool
    exposure: bool
    vaccine_doses: int
    test_result: str  # "negative", "positive" or "" (none declared)
    test_date: date | None

    def __repr__(self) -> str:
        return f"Declaration(issuer={self.issuer!r}, origin={self.origin!r})"


@dataclass(frozen=True, repr=False)
class Dcc:
    """An EU Digital COVID Certificate (the payload of an ``HC1:`` code)."""

    issuer: str  # CWT iss: ISO 3166-1 country
    issued_at: datetime | None
    expires_at: datetime | None
    type: str  # "v" vaccination, "t" test, "r" recovery
    certificate_id: str  # UVCI (``ci``)
    name: str
    birth_date: str  # as written: YYYY, YYYY-MM or YYYY-MM-DD
    dose: int = 0  # v: dose number
    doses: int = 0  # v: total doses in the series
    vaccinated_on: str = ""  # v: date of the dose
    test_negative: bool = False  # t: result "not detected"
    sampled_at: datetime | None = None  # t: sample collection time
    recovery_from: str = ""  # r: valid from
    recovery_until: str = ""  # r: valid until

    def __repr__(self) -> str:
        return f"Dcc(issuer={self.issuer!r}, type={self.type!r})"


@dataclass(frozen=True, repr=False)
class IdCard:
    """The QR code on a Vietnamese chip ID card (CCCD). Unsigned: identifies only."""

    id_number: str  # 12 digits
    old_id: str  # the 9-digit CMND, may be empty
    name: str
    birth_date: date
    sex: str
    address: str
    issued_on: date
    fields: int  # 7, 10 or 11: the form of the code

    def __repr__(self) -> str:
        return f"IdCard(form={self.fields})"


Claims = Declaration | Dcc | IdCard
