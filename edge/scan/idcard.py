"""The QR code of a Vietnamese chip ID card (CCCD): pipe-separated, unsigned.

Forms:

- 7 fields: ``ID (12 digits) | old ID (9 or 12 digits, may be empty) | name |
  birth date DDMMYYYY | sex (Nam / Nữ) | address | issue date DDMMYYYY``;
- 10 or 11 fields (cards issued since 2024): the same 7 fields first; the
  rest (related persons' names and numbers, cancelled numbers) are accepted
  and ignored; the kiosk neither interprets nor keeps them.

A UTF-8 byte-order mark and trailing CR/LF are tolerated. It identifies its
holder; it never approves a passage on its own. The shape (12 digits, then 6, 9
or 10 more ``|``-separated fields) is its own: any other pipe-separated text is
another format's or unrecognised. Text fields are cleaned at read: control
characters (a NUL printed into a card) never reach a passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from edge.errors import CredentialRejected
from edge.scan.envelope import StageLog
from edge.scan.format import Claims, Format, Holder, Reading
from edge.scan.reasons import BAD_FIELDS, ID_CARD_ONLY, ID_MISMATCH
from edge.scan.text import clean_text

KIND: Final = "id_card"
FORMS = (7, 10, 11)
_SHAPE = re.compile(r"[0-9]{12}\|")
_ID = re.compile(r"[0-9]{12}")
_OLD_ID = re.compile(r"([0-9]{9}|[0-9]{12})?")
_SEX = {"nam": "M", "nữ": "F", "nu": "F", "khác": "X"}
MAX_LENGTH = 1024


@dataclass(frozen=True, repr=False)
class IdCard(Claims):
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


def clean(text: str) -> str:
    return text.removeprefix("\ufeff").rstrip("\r\n")


def looks_like(text: str) -> bool:
    """The shape of an ID card code: 12 digits, a ``|``, and 7, 10 or 11 fields."""
    body = clean(text)
    return bool(_SHAPE.match(body)) and body.count("|") + 1 in FORMS


def read(text: str, log: StageLog) -> IdCard:
    with log.stage("fields"):
        body = clean(text)
        if len(body) > MAX_LENGTH:
            raise CredentialRejected(BAD_FIELDS, "longer than an ID card code")
        parts = body.split("|")
        if len(parts) not in FORMS:
            raise CredentialRejected(BAD_FIELDS, f"{len(parts)} fields (7, 10 or 11 expected)")
        number, old, name, born, sex, address, issued = (clean_text(p) for p in parts[:7])
        if not _ID.fullmatch(number):
            raise CredentialRejected(BAD_FIELDS, "ID number must be 12 digits")
        if not _OLD_ID.fullmatch(old):
            raise CredentialRejected(BAD_FIELDS, "old ID number must be 9 or 12 digits or empty")
        if not name:
            raise CredentialRejected(BAD_FIELDS, "name is empty")
        if sex.lower() not in _SEX:
            raise CredentialRejected(BAD_FIELDS, "sex must be Nam or Nữ")
        birth_date, issued_on = _date(born, "birth date"), _date(issued, "issue date")
        if not birth_date <= issued_on:
            raise CredentialRejected(BAD_FIELDS, "issue date before birth date")
        return IdCard(
            id_number=number,
            old_id=old,
            name=name,
            birth_date=birth_date,
            sex=_SEX[sex.lower()],
            address=address,
            issued_on=issued_on,
            fields=len(parts),
        )


def _date(text: str, what: str) -> date:
    if not re.fullmatch(r"[0-9]{8}", text):
        raise CredentialRejected(BAD_FIELDS, f"{what} must be DDMMYYYY")
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError as exc:
        raise CredentialRejected(BAD_FIELDS, f"{what} is not a date") from exc


class IdCardFormat(Format[IdCard]):
    """The chip ID card's QR: unsigned; identifies its holder, never approves alone."""

    kind = KIND
    claims_type = IdCard
    rank = 20
    reasons = (BAD_FIELDS, ID_CARD_ONLY, ID_MISMATCH)
    fields = ("id_number", "name", "birth_date", "sex")
    alone = ID_CARD_ONLY

    def detect(self, text: str) -> bool:
        return looks_like(text)

    def read(self, text: str, reading: Reading) -> IdCard:
        return read(text, reading.stages)

    def traveller(self, claims: IdCard) -> dict[str, Any]:
        return {
            "id_number": claims.id_number,
            "name": claims.name,
            "birth_date": claims.birth_date.isoformat(),
            "sex": claims.sex,
        }

    def holder(self, claims: IdCard) -> Holder:
        numbers = (claims.id_number, claims.old_id) if claims.old_id else (claims.id_number,)
        return Holder(claims.name, claims.birth_date.isoformat(), numbers)


FORMAT = IdCardFormat()
