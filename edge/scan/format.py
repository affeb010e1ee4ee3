"""The contract every credential format keeps.

A format is one module (``declaration``, ``dcc``, ``idcard``, ``personal_qr``,
``greenlane``) holding its parsed content (a :class:`Claims` subclass) and one
:class:`Format` object, listed in the one table of :mod:`edge.scan.registry`.
Everything else asks that table: detection and verification
(``credentials.py``), replay references and traveller fields (``model.py``),
the policy's rules (``policy.py``), the screens (``kiosk/screen.py``) and the
config's allowed values (``edge/config``). A new format is one module, its
kind in :data:`Kind`, its tests and its catalogue keys (``kind.<kind>``,
``field.<name>``, ``reason.<code>`` in ``edge/kiosk/i18n/``).

Pure: no I/O. ``read`` raises :class:`~edge.errors.CredentialRejected` with a
reason code at the first check that fails; it never raises anything else on
any input (the fuzz tests hold it to that).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from edge.core.times import parse_iso
from edge.scan.envelope import StageLog
from edge.scan.reasons import LOOKUP_PENDING, LOOKUP_UNAVAILABLE
from edge.scan.trust import TrustStore

# What a credential is: a format's kind (Format.kind, the registry's formats), or
# unrecognised (edge.scan.reasons.UNRECOGNISED). Stable: published in passages.
Kind = Literal["declaration", "dcc", "id_card", "personal_qr", "greenlane", "unrecognised"]

if TYPE_CHECKING:
    from edge.config import PolicyConfig
    from edge.core.model import Credential
    from edge.core.passage import LookupStatus
    from edge.rules.book import RuleBook
    from edge.rules.rules import Result


class Claims:
    """Base of every format's parsed content.

    It holds personal data: each subclass is a ``@dataclass(frozen=True,
    repr=False)`` whose ``__repr__`` names only non-identifying fields, so a
    stray log line or exception message cannot leak it.
    """

    __slots__ = ()


C = TypeVar("C", bound=Claims)

Match = Literal["same", "different", "unknown"]


def plain_name(name: str) -> list[str]:
    """A name as sorted, accent-free, upper-case words: "Nguyễn Văn Bình", "NGUYEN VAN
    BINH" and "BINH NGUYEN VAN" are the same name (codes write names differently)."""
    text = unicodedata.normalize("NFD", name.replace("đ", "d").replace("Đ", "D"))
    letters = "".join(ch for ch in text if not unicodedata.combining(ch))
    return sorted("".join(ch if ch.isalnum() else " " for ch in letters.upper()).split())


def _masked_equal(a: str, b: str) -> bool:
    """Equal character by character, ``*`` matching anything (masked codes)."""
    return len(a) == len(b) and all(x == y or "*" in (x, y) for x, y in zip(a, b, strict=True))


def _dates_agree(a: str, b: str) -> bool:
    """Birth dates as written (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``, ``*`` masking a
    digit) agree when the shorter is a prefix of the longer, masks aside."""
    n = min(len(a), len(b))
    return _masked_equal(a[:n], b[:n])


@dataclass(frozen=True)
class Holder:
    """Who a code names, for telling whether several codes are one person's.

    ``birth_date`` as written by the code (``YYYY-MM-DD``, ``YYYY-MM`` or
    ``YYYY``, a ``*`` masking a digit); ``numbers`` the personal document
    numbers it carries (ID card, old ID card, passport; ``*`` masks a
    character). Empty means "not said".
    """

    name: str = ""
    birth_date: str = ""
    numbers: tuple[str, ...] = ()

    def _numbers(self) -> list[str]:
        return [n for n in self.numbers if n.strip("*")]

    def _agreement(self, other: Holder) -> tuple[bool | None, bool | None, bool | None]:
        """(number, name, birth date): True/False where both state it, else None."""
        number = name = born = None
        mine, theirs = self._numbers(), other._numbers()
        if mine and theirs:
            number = any(_masked_equal(a, b) for a in mine for b in theirs)
        if self.name and other.name:
            name = plain_name(self.name) == plain_name(other.name)
        if self.birth_date and other.birth_date:
            born = _dates_agree(self.birth_date, other.birth_date)
        return number, name, born

    def compare(self, other: Holder) -> Match:
        """Whether two codes name the same person. A document number both state
        decides (a typo in a name does not make someone else); without one, name
        and birth date both must agree."""
        number, name, born = self._agreement(other)
        if number is not None:
            return "same" if number else "different"
        if False in (name, born):
            return "different"
        return "same" if name and born else "unknown"

    def corroborates(self, other: Holder) -> bool:
        """``other`` (an identity document) confirms this unsigned code: the number
        and every other attribute both state agree (masks aside)."""
        number, name, born = self._agreement(other)
        return bool(number) and name is not False and born is not False


@dataclass(frozen=True)
class Reading:
    """What a format reads against: the trust store, the verification time (UTC) and
    the tolerance for codes issued slightly in the future; ``stages`` records each
    check passed or failed."""

    trust: TrustStore
    now: datetime
    skew: timedelta = timedelta(0)
    stages: StageLog = field(default_factory=StageLog)


@dataclass
class Assessment:
    """The policy's findings for one person's codes, filled in by each format's
    :meth:`Format.assess`. ``shown`` holds every valid code of that person;
    ``formats`` the format table by kind."""

    cfg: PolicyConfig
    now: datetime
    shown: list[Credential]
    formats: Mapping[str, Format[Any]]
    deny: list[str] = field(default_factory=list)
    refer: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    authorised: bool = False
    # identities (Format.voucher) of people in the same party whose codes hold up: a
    # proxy code one of them declared is vouched for
    vouchers: frozenset[str] = frozenset()
    # the business rules in use (CertLogic, edge/rules), None: off; and what they said of
    # each certificate already judged in this assessment (by id of its claims)
    rules: RuleBook | None = None
    judged: dict[int, list[Result]] = field(default_factory=dict)

    def first(self, kind: str) -> Claims | None:
        """The claims of the first valid code of ``kind`` shown, if any."""
        return next((c.claims for c in self.shown if c.kind == kind), None)

    def has(self, kind: str) -> bool:
        return any(c.kind == kind for c in self.shown)

    def health_proven(self) -> bool:
        """A code shown proves vaccination, a recent negative test or recovery."""
        return any(
            c.claims is not None and self.formats[c.kind].proves_health(c.claims, self)
            for c in self.shown
            if c.kind in self.formats
        )

    def accepts(self, kind: str) -> bool:
        """``[policy] accept`` lets codes of ``kind`` approve a passage."""
        return kind in self.cfg.accept

    def refer_for(self, reason: str, need: str) -> None:
        """An officer must look, or the traveller show ``need`` (id_card, proof, ...)."""
        self.refer.append(reason)
        self.needs.append(need)

    def authorise(self) -> None:
        """A code that may approve the passage was shown and holds up."""
        self.authorised = True

    def looked_up(self, credential: Credential) -> LookupStatus | None:
        """What the online lookup said of it (pending, confirmed, refused,
        unavailable), or None when it was not asked. A confirmation whose
        ``valid_until`` has passed is a refusal."""
        found = credential.lookup
        if found is None:
            return None
        until = found.data.get("valid_until")
        if found.status == "confirmed" and isinstance(until, str):
            try:
                ends = parse_iso(until)
            except ValueError:
                return "refused"  # a confirmation that cannot say until when (in which zone)
            if ends < self.now:
                return "refused"
        return found.status

    def unconfirmed(self, credential: Credential, otherwise: str, need: str) -> None:
        """Refer an unsigned code that nothing confirmed: waiting for the lookup, the
        lookup unavailable, or (not asked) ``otherwise``."""
        status = self.looked_up(credential)
        reason = {"pending": LOOKUP_PENDING, "unavailable": LOOKUP_UNAVAILABLE}.get(
            status or "", otherwise
        )
        self.refer_for(reason, need)


class Format(Generic[C]):
    """One credential format. Subclasses set the class attributes and override
    :meth:`detect`, :meth:`read` and, as the format needs, the others."""

    kind: ClassVar[Kind]  # stable: published in passages, never renamed
    claims_type: ClassVar[type[Claims]]
    signed: ClassVar[bool] = False  # verified against the trust store
    authorises: ClassVar[bool] = False  # may approve a passage, when [policy] accept names it
    rank: ClassVar[int] = 0  # whose traveller fields win when several codes give one
    reasons: ClassVar[tuple[str, ...]] = ()  # the reason codes read and assess give
    fields: ClassVar[tuple[str, ...]] = ()  # the [passage] fields it can fill
    mismatch: ClassVar[str] = "id_mismatch"  # the reason when it names someone else
    alone: ClassVar[str | None] = None  # the reason when nothing shown with it can approve
    looked_up: ClassVar[bool] = False  # the optional online lookup can confirm it
    vehicle: ClassVar[bool] = False  # a vehicle's code (it opens a vehicle group), not a person's

    def detect(self, text: str) -> bool:
        """Whether ``text`` has this format's shape (prefix, field count...). Shapes of
        different formats never overlap: each payload is one format's or none's."""
        raise NotImplementedError

    def read(self, text: str, reading: Reading) -> C:
        """Parse and verify; raise CredentialRejected (with ``claims`` set when the
        content is authentic but a later check failed, such as expiry)."""
        raise NotImplementedError

    def reference(self, claims: C) -> str | None:
        """What makes two codes the same code for replay checks (issuer and id of a
        signed code; the same for every encoding), or None (a person, not a
        permission: ID cards)."""
        return None

    def traveller(self, claims: C) -> dict[str, Any]:
        """The :data:`fields` it fills, by name (places as province/district/text)."""
        return {}

    def lookup_key(self, claims: C) -> str | None:
        """What the online lookup is asked about ({key} in ``[lookup] url``), or None."""
        return None

    def voucher(self, claims: C) -> str | None:
        """An identity others' codes may name as the one who declared for them (a
        personal QR's QID), or None."""
        return None

    def vouched_by(self, claims: C) -> str | None:
        """The identity that declared this code on its holder's behalf (a proxy
        personal QR's declarer QID), or None."""
        return None

    def holder(self, claims: C) -> Holder | None:
        """Who it names, for matching codes of one person; None when it names nobody."""
        return None

    def proves_health(self, claims: C, ctx: Assessment) -> bool:
        """Whether it proves vaccination, a recent negative test or recovery (what
        ``[policy] proof_zones`` ask of travellers from there)."""
        return False

    def assess(self, credential: Credential, claims: C, ctx: Assessment) -> None:
        """Its policy rules for a valid code among ``ctx.shown``: deny, refer or
        authorise through ``ctx``. The default: it identifies, never approves."""

    def labels(self) -> tuple[str, ...]:
        """The names of its fields on the officer's screen (``field.<name>``)."""
        assert is_dataclass(self.claims_type)
        return tuple(f.name for f in fields(self.claims_type))
