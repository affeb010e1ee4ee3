"""The national unified personal QR code (PC-Covid, VNeID, Sổ sức khỏe điện tử...).

As published by the Ministry of Information and Communications (guidance v1.1,
11 Sep 2021), every app renders the same text::

    SoGiayTo|HoTen|NgaySinh|LoaiDinhDanh|QID|EXT

- ``SoGiayTo``: the personal document number (12-digit CCCD, 9-digit CMND or a
  passport number); its first 6 characters may be masked with ``*``; empty on
  a code declared on someone's behalf who has none;
- ``HoTen``: the name, upper case without diacritics;
- ``NgaySinh``: ``YYYY-MM-DD``, day and month may be masked with ``*``;
- ``LoaiDinhDanh``: ``0`` self-declared, ``1`` declared on someone's behalf
  (children, the elderly: khai hộ);
- ``QID``: the user code issued by the national QR platform;
- ``EXT``: optional values separated by ``<``, in order: the QID of the
  person who declared on their behalf, sex (QCVN 109:2017: ``1`` male, ``2``
  female, ``0`` not given), health insurance number, phone (10 digits),
  electronic signature, others.

Example: ``001093029317|NGUYEN VAN A|1987-01-18|0|162979388586171100|<1<00<0123232422``.

The code is unsigned (its electronic signature's scheme is not published, so
it is kept, never verified): it proves nothing by itself. It identifies; an
ID card shown with it that agrees (number, name without diacritics, birth
date), or a confirmation by the optional online lookup (``[lookup]``, asked
about its QID), lets it approve; a lookup that refuses it denies it.
Detection is by shape: exactly 6 fields, the 4th ``0`` or ``1``, the 3rd a
(masked) date. Every text field is cleaned of control characters at read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from edge.errors import CredentialRejected
from edge.scan.format import Assessment, Claims, Format, Holder, Reading
from edge.scan.idcard import KIND as ID_CARD
from edge.scan.reasons import (
    BAD_FIELDS,
    LOOKUP_PENDING,
    LOOKUP_REFUSED,
    LOOKUP_UNAVAILABLE,
    PERSONAL_QR_UNCONFIRMED,
    TOO_LARGE,
)
from edge.scan.text import clean_text

if TYPE_CHECKING:
    from edge.core.model import Credential

KIND: Final = "personal_qr"
MAX_LENGTH = 1024
SELF, PROXY = "0", "1"
SEX_CODES = {"1": "M", "2": "F", "0": "", "": ""}

_BIRTH = re.compile(r"[0-9]{4}-([0-9]{2}|\*\*)-([0-9]{2}|\*\*)")
_BIRTH_SHAPE = re.compile(r"[0-9*]{4}-[0-9*]{2}-[0-9*]{2}")
_NUMBER_SHAPE = re.compile(r"[0-9A-Za-z*]{0,20}")
# CCCD (12 digits), CMND (9 digits), a passport (a letter and digits, or the
# alphanumerics of a foreign one); the first 6 characters may be masked.
_NUMBER = re.compile(r"(\*{6}|[0-9A-Z]{6})[0-9A-Z]{1,14}")
_QID = re.compile(r"[0-9A-Za-z]{6,40}")
_PHONE = re.compile(r"([0-9]{10})?")
_INSURANCE = re.compile(r"[0-9A-Z]{0,20}")


@dataclass(frozen=True, repr=False)
class PersonalQr(Claims):
    """A national personal QR: who it names, unsigned. Masked parts keep their ``*``."""

    number: str  # personal document number, "" or masked "******123456"
    name: str  # upper case, no diacritics
    birth_date: str  # YYYY-MM-DD, "YYYY-**-**" when masked
    proxy: bool  # declared on someone's behalf (LoaiDinhDanh 1)
    qid: str  # the national QR platform's user code
    declarer_qid: str = ""  # who declared on their behalf (proxy codes)
    sex: str = ""  # M, F or "" (not given)
    insurance: str = ""  # health insurance number
    phone: str = ""
    signature: str = ""  # as carried; its scheme is not published: never verified
    others: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"PersonalQr(proxy={self.proxy}, masked={self.masked})"

    @property
    def masked(self) -> bool:
        return "*" in self.number or "*" in self.birth_date


def clean(text: str) -> str:
    return text.removeprefix("\ufeff").rstrip("\r\n")


def looks_like(text: str) -> bool:
    """Six ``|``-separated fields: the 1st a document number's characters (or empty), the
    3rd a (masked) date, the 4th ``0`` or ``1``."""
    parts = clean(text).split("|")
    return (
        len(parts) == 6
        and bool(_NUMBER_SHAPE.fullmatch(parts[0].strip()))
        and parts[3].strip() in (SELF, PROXY)
        and bool(_BIRTH_SHAPE.fullmatch(parts[2].strip()))
    )


def read(text: str, reading: Reading) -> PersonalQr:
    with reading.stages.stage("fields"):
        body = clean(text)
        if len(body) > MAX_LENGTH:
            raise CredentialRejected(TOO_LARGE, "longer than a personal QR code")
        parts = body.split("|")
        if len(parts) != 6:
            raise CredentialRejected(BAD_FIELDS, f"{len(parts)} fields (6 expected)")
        number, name, born, kind, qid, ext = (clean_text(p) for p in parts)
        if number and not _NUMBER.fullmatch(number):
            raise CredentialRejected(
                BAD_FIELDS, "document number: 7-20 of 0-9 A-Z, the first 6 possibly masked"
            )
        if not _is_name(name):
            raise CredentialRejected(BAD_FIELDS, "name: 1-100 letters, spaces and . ' -")
        _birth_date(born)
        if not _QID.fullmatch(qid):
            raise CredentialRejected(BAD_FIELDS, "QID: 6-40 letters or digits")
        values = ext.split("<") if ext else []
        declarer, sex, insurance, phone, signature = (values + [""] * 5)[:5]
        others = values[5:]
        if declarer and not _QID.fullmatch(declarer):
            raise CredentialRejected(BAD_FIELDS, "EXT declarer QID: 6-40 letters or digits")
        if sex not in SEX_CODES:
            raise CredentialRejected(BAD_FIELDS, "EXT sex: 0, 1 or 2 (QCVN 109:2017)")
        if not _INSURANCE.fullmatch(insurance):
            raise CredentialRejected(BAD_FIELDS, "EXT health insurance number: 0-20 of 0-9 A-Z")
        if not _PHONE.fullmatch(phone):
            raise CredentialRejected(BAD_FIELDS, "EXT phone: 10 digits or empty")
        if not number and kind == SELF:
            raise CredentialRejected(BAD_FIELDS, "a self-declared code carries a document number")
        return PersonalQr(
            number=number,
            name=name,
            birth_date=born,
            proxy=kind == PROXY,
            qid=qid,
            declarer_qid=declarer,
            sex=SEX_CODES[sex],
            insurance=insurance,
            phone=phone,
            signature=signature[:512],
            others=tuple(o[:100] for o in others[:8] if o),
        )


def _is_name(text: str) -> bool:
    """Upper case without diacritics by the guidance; any letters are taken (apps differ)."""
    return (
        0 < len(text) <= 100 and text[0].isalpha() and all(c.isalpha() or c in " .'-" for c in text)
    )


def dependant(birth_date: str, now: datetime) -> bool:
    """Someone others declare for (khai hộ: children, the elderly): under 18 or 60 and
    over for certain, whatever a masked day and month hide."""
    year = int(birth_date[:4]) if birth_date[:4].isdigit() else None
    if year is None:
        return False
    oldest, youngest = now.year - year, now.year - year - 1  # before or after the birthday
    return oldest < 18 or youngest >= 60


def _birth_date(text: str) -> None:
    if not _BIRTH.fullmatch(text):
        raise CredentialRejected(BAD_FIELDS, "birth date: YYYY-MM-DD, day and month maskable")
    year, month, day = text.split("-")
    try:
        date(int(year), int(month) if month != "**" else 1, int(day) if day != "**" else 1)
    except ValueError as exc:
        raise CredentialRejected(BAD_FIELDS, "birth date is not a date") from exc


class PersonalQrFormat(Format[PersonalQr]):
    """Unsigned: identifies; approves only when an ID card shown with it agrees, or
    the online lookup confirms it (``[policy] accept`` must name ``personal_qr``)."""

    kind = KIND
    claims_type = PersonalQr
    authorises = True
    rank = 15
    reasons = (
        BAD_FIELDS, TOO_LARGE, PERSONAL_QR_UNCONFIRMED,
        LOOKUP_PENDING, LOOKUP_UNAVAILABLE, LOOKUP_REFUSED,
    )  # fmt: skip
    looked_up = True
    fields = ("id_number", "name", "birth_date", "sex", "phone", "qid")

    def detect(self, text: str) -> bool:
        return looks_like(text)

    def labels(self) -> tuple[str, ...]:
        # the signature (scheme unpublished) and the unnamed extras mean nothing to people
        return tuple(n for n in super().labels() if n not in ("signature", "others"))

    def read(self, text: str, reading: Reading) -> PersonalQr:
        return read(text, reading)

    def traveller(self, claims: PersonalQr) -> dict[str, Any]:
        whole = "*" not in claims.number and re.fullmatch(r"[0-9]{9}|[0-9]{12}", claims.number)
        return {
            "id_number": claims.number if whole else "",
            "name": claims.name,
            "birth_date": "" if "*" in claims.birth_date else claims.birth_date,
            "sex": claims.sex,
            "phone": claims.phone,
            "qid": claims.qid,
        }

    def holder(self, claims: PersonalQr) -> Holder:
        numbers = (claims.number,) if claims.number else ()
        return Holder(claims.name, claims.birth_date, numbers)

    def lookup_key(self, claims: PersonalQr) -> str | None:
        return claims.qid

    def voucher(self, claims: PersonalQr) -> str | None:
        return None if claims.proxy else claims.qid

    def vouched_by(self, claims: PersonalQr) -> str | None:
        return claims.declarer_qid if claims.proxy and claims.declarer_qid else None

    def matched_by_card(self, claims: PersonalQr, ctx: Assessment) -> bool:
        """An ID card shown with it agrees on number, name and birth date."""
        mine = self.holder(claims)
        for other in ctx.shown:
            if other.kind == ID_CARD and other.claims is not None:
                card = ctx.formats[ID_CARD].holder(other.claims)
                if card is not None and mine.corroborates(card):
                    return True
        return False

    def assess(self, credential: Credential, claims: PersonalQr, ctx: Assessment) -> None:
        lookup = ctx.looked_up(credential)
        if lookup == "confirmed" and not self._answer_names_it(credential, claims):
            lookup = "refused"  # the QID confirmed is someone else's: copied onto this code
        if lookup == "refused":
            ctx.deny.append(LOOKUP_REFUSED)  # the national platform says it is not valid
            return
        if not ctx.accepts(KIND):
            return  # it identifies only: the fallback refers for a declaration
        vouched = (
            claims.proxy
            and claims.declarer_qid in ctx.vouchers
            and lookup != "pending"  # a refusal may still come: wait for it
            and dependant(claims.birth_date, ctx.now)
        )
        if self.matched_by_card(claims, ctx) or lookup == "confirmed" or vouched:
            ctx.authorise()  # vouched: declared by a parent in this party whose code holds up
        else:
            ctx.unconfirmed(credential, PERSONAL_QR_UNCONFIRMED, ID_CARD)

    def _answer_names_it(self, credential: Credential, claims: PersonalQr) -> bool:
        """The confirmation names the code's holder (when it names anyone)."""
        data = credential.lookup.data if credential.lookup is not None else {}
        number = data.get("number")
        theirs = Holder(
            str(data.get("name", "")),
            str(data.get("birth_date", "")),
            (number,) if isinstance(number, str) and number else (),
        )
        return self.holder(claims).compare(theirs) != "different"


FORMAT = PersonalQrFormat()
