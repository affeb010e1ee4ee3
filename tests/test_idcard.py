"""The chip ID card QR: its forms, what it tolerates, and what it refuses."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from edge.scan.credentials import verify_payload
from edge.scan.idcard import IdCard
from edge.scan.trust import TrustStore

NOW = datetime(2026, 11, 26, tzinfo=UTC)
ADDRESS = "Số 1 Lê Lợi, Phường Bến Nghé, Quận 1, TP Hồ Chí Minh"
SEVEN = f"079190012345|123456789|Nguyễn Văn Bình|15081990|Nam|{ADDRESS}|20042021"


def read(text: str | bytes) -> tuple[str, object, tuple[str, ...]]:
    raw = text.encode() if isinstance(text, str) else text
    outcome = verify_payload(raw, TrustStore(), NOW)
    return outcome.kind, outcome.claims, outcome.reasons


def test_seven_field_form() -> None:
    kind, card, reasons = read(SEVEN)
    assert (kind, reasons) == ("id_card", ())
    assert card == IdCard(
        id_number="079190012345",
        old_id="123456789",
        name="Nguyễn Văn Bình",
        birth_date=date(1990, 8, 15),
        sex="M",
        address=ADDRESS,
        issued_on=date(2021, 4, 20),
        fields=7,
    )
    assert "Bình" not in repr(card)


@pytest.mark.parametrize("extra", [3, 4])
def test_newer_ten_and_eleven_field_forms(extra: int) -> None:
    text = SEVEN + "".join(f"|extra {i}" for i in range(extra))
    kind, card, reasons = read(text)
    assert (kind, reasons) == ("id_card", ())
    assert isinstance(card, IdCard)
    assert card.fields == 7 + extra
    assert card.id_number == "079190012345"


def test_empty_old_id_female_bom_and_line_endings() -> None:
    text = "\ufeff" + SEVEN.replace("|123456789|", "||").replace("|Nam|", "|Nữ|") + "\r\n"
    kind, card, reasons = read(text)
    assert (kind, reasons) == ("id_card", ())
    assert isinstance(card, IdCard)
    assert (card.old_id, card.sex) == ("", "F")


@pytest.mark.parametrize(
    "text",
    [
        SEVEN.replace("|123456789|", "|12345|"),  # old id length
        SEVEN.replace("15081990", "31021990"),  # 31 February
        SEVEN.replace("15081990", "1990-08-15"),
        SEVEN.replace("|Nam|", "|Male|"),
        SEVEN.replace("|Nguyễn Văn Bình|", "||"),
        SEVEN.replace("20042021", "01011980"),  # issued before birth
        SEVEN.replace("|123456789|", "|12345678\uff19|"),  # a full-width digit
    ],
)
def test_malformed_cards_are_bad_fields(text: str) -> None:
    kind, card, reasons = read(text)
    assert (kind, card, reasons) == ("id_card", None, ("bad_fields",))


def test_other_pipe_text_is_unrecognised() -> None:
    """Only the card's own shapes (12 digits, 7, 10 or 11 fields) are ID cards: any
    other count of fields is no card at all, never a card with bad fields."""
    assert read(SEVEN + "|one more")[0] == "unrecognised"  # 8 fields
    assert read(SEVEN.rsplit("|", 1)[0])[0] == "unrecognised"  # 6 fields
    assert read("hello|world")[0] == "unrecognised"
    assert read("07919001234|a|b|c|d|e|f")[0] == "unrecognised"  # 11 digits
    assert read(b"\xff\xfe not utf-8")[2] == ("unrecognised",)
