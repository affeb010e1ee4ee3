"""The national unified personal QR (PC-Covid, VNeID): its forms, what it refuses, and
what the policy makes of it alone, with an ID card, or as a proxy code."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import PolicyConfig
from edge.core.model import Credential, Passage, PassageDraft
from edge.core.policy import RulePolicy
from edge.credtools import render_qr
from edge.scan.credentials import Verifier, verify_payload
from edge.scan.decoder import PyzbarDecoder, ZxingDecoder
from edge.scan.idcard import IdCard
from edge.scan.personal_qr import PersonalQr
from edge.scan.trust import TrustStore

from .conftest import REPO
from .test_e2e import assert_valid_passage

NOW = datetime(2026, 11, 26, 8, tzinfo=UTC)
# The example of the guidance (MIC v1.1, 11 Sep 2021).
EXAMPLE = "001093029317|NGUYEN VAN A|1987-01-18|0|162979388586171100|<1<00<0123232422"
MASKED = "******029317|NGUYEN VAN A|1987-**-**|0|162979388586171100|"
CHILD = "|NGUYEN THI B|2015-03-**|1|162979388586171101|162979388586171100<2"


def read(text: str | bytes) -> tuple[str, object, tuple[str, ...]]:
    raw = text.encode() if isinstance(text, str) else text
    outcome = verify_payload(raw, TrustStore(), NOW)
    return outcome.kind, outcome.claims, outcome.reasons


def test_the_guidance_example_reads_field_by_field() -> None:
    kind, claims, reasons = read(EXAMPLE)
    assert (kind, reasons) == ("personal_qr", ())
    assert claims == PersonalQr(
        number="001093029317",
        name="NGUYEN VAN A",
        birth_date="1987-01-18",
        proxy=False,
        qid="162979388586171100",
        declarer_qid="",
        sex="M",
        insurance="00",
        phone="0123232422",
    )
    assert "NGUYEN" not in repr(claims)
    assert "001093029317" not in repr(claims)


def test_masked_and_proxy_forms() -> None:
    _, masked, reasons = read(MASKED)
    assert reasons == ()
    assert isinstance(masked, PersonalQr)
    assert (masked.number, masked.birth_date, masked.masked) == ("******029317", "1987-**-**", True)
    _, child, reasons = read(CHILD + "\r\n")
    assert reasons == ()
    assert isinstance(child, PersonalQr)
    assert (child.number, child.proxy, child.declarer_qid, child.sex) == (
        "",
        True,
        "162979388586171100",
        "F",
    )


def test_read_from_a_rendered_qr_image_by_both_decoders(tmp_path: Path) -> None:
    png = tmp_path / "pqr.png"
    render_qr(EXAMPLE, png, None, scale=4)
    image = np.ascontiguousarray(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
    verifier = Verifier(TrustStore, clock=lambda: NOW)
    for decoder in (ZxingDecoder(), PyzbarDecoder()):
        (raw,) = decoder.decode(image)
        credential = verifier.read(raw)
        assert (credential.kind, credential.valid) == ("personal_qr", True), decoder.name


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (EXAMPLE.replace("001093029317", "0010930"), ""),  # 7 characters: fine
        (EXAMPLE.replace("001093029317", "00109"), "document number"),
        (EXAMPLE.replace("NGUYEN VAN A", ""), "name"),
        (EXAMPLE.replace("NGUYEN VAN A", "NGUYEN 4"), "name"),
        (EXAMPLE.replace("1987-01-18", "1987-02-30"), "not a date"),
        (EXAMPLE.replace("1987-01-18", "198*-01-18"), "birth date"),
        (EXAMPLE.replace("162979388586171100", "16297"), "QID"),
        (EXAMPLE.replace("<1<00<", "<7<00<"), "sex"),
        (EXAMPLE.replace("0123232422", "012323242"), "phone"),
        (EXAMPLE.replace("|<1<", "|bad qid!<1<"), "declarer"),
        ("|NGUYEN VAN A|1987-01-18|0|162979388586171100|", "carries a document number"),
    ],
)
def test_bad_fields_name_the_field(text: str, why: str) -> None:
    from edge.errors import CredentialRejected
    from edge.scan import personal_qr
    from edge.scan.format import Reading

    kind, _, reasons = read(text)
    assert kind == "personal_qr"
    if not why:
        assert reasons == ()
        return
    assert reasons == ("bad_fields",)
    with pytest.raises(CredentialRejected, match=why):
        personal_qr.read(text, Reading(TrustStore(), NOW))


def test_control_characters_never_reach_what_is_kept() -> None:
    """A NUL or an escape sequence typed into a code: cleaned at read."""
    _, claims, reasons = read(EXAMPLE.replace("NGUYEN VAN A", "NGUYEN\x00VAN\x1b A"))
    assert reasons == ()
    assert isinstance(claims, PersonalQr)
    assert claims.name == "NGUYEN VAN A"


def test_pipe_text_of_other_shapes_is_unrecognised_never_mislabelled() -> None:
    assert read(EXAMPLE.replace("|0|", "|2|"))[0] == "unrecognised"  # not 0 or 1
    assert read(EXAMPLE + "|more|fields")[0] == "unrecognised"  # 8 fields
    assert read(EXAMPLE.replace("1987-01-18", "18011987"))[0] == "unrecognised"
    assert read("a|b|c|d|e|f")[0] == "unrecognised"
    # a first field that is no document number's: some other app's record, not ours
    assert read("hello world|NGUYEN VAN A|1987-01-18|0|162979388586171100|")[0] == "unrecognised"
    assert read("Xin chào|x|1987-01-18|1|y|")[0] == "unrecognised"


# -- the policy ---------------------------------------------------------------------


def pqr(text: str = EXAMPLE) -> Credential:
    outcome = verify_payload(text.encode(), TrustStore(), NOW)
    return Credential.from_raw(outcome.kind, text.encode(), valid=not outcome.reasons,
                               claims=outcome.claims)  # fmt: skip


def card(
    number: str = "001093029317", name: str = "Nguyễn Văn A", born: date | None = None
) -> Credential:
    claims = IdCard(number, "", name, born or date(1987, 1, 18), "M", "", date(2021, 4, 20), 7)
    return Credential.from_raw("id_card", b"card" + number.encode(), valid=True, claims=claims)


def verdict(*creds: Credential, **cfg: object) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    v = RulePolicy(PolicyConfig(**cfg)).evaluate(list(creds), NOW)  # type: ignore[arg-type]
    return v.outcome, v.reasons, v.needs


def test_alone_it_is_referred_to_the_officer_with_the_id_card() -> None:
    assert verdict(pqr()) == ("refer", ("personal_qr_unconfirmed",), ("id_card",))


def test_a_matching_id_card_confirms_it_even_masked() -> None:
    assert verdict(pqr(), card()) == ("approve", (), ())
    assert verdict(pqr(MASKED), card()) == ("approve", (), ())  # masked number and birth date
    assert verdict(card(), pqr()) == ("approve", (), ())  # in either order


def test_an_id_card_of_someone_else_denies_or_leaves_it_unconfirmed() -> None:
    assert verdict(pqr(), card(number="001093029318"))[:2] == ("deny", ("id_mismatch",))
    # the same number, another birth date: not confirmed (an officer looks)
    other = card(born=date(1988, 1, 18))
    assert verdict(pqr(), other)[:2] == ("refer", ("personal_qr_unconfirmed",))
    assert verdict(pqr(), card(name="Trần Văn A"))[:2] == ("refer", ("personal_qr_unconfirmed",))


def test_not_accepted_it_only_identifies() -> None:
    assert verdict(pqr(), card(), accept=("declaration",)) == (
        "refer",
        ("id_card_only",),
        ("declaration",),
    )
    assert verdict(pqr(), accept=("declaration",)) == (
        "refer",
        ("no_declaration",),
        ("declaration",),
    )


def test_in_a_passage_and_the_schema(tmp_path: Path) -> None:
    credential = pqr()
    draft = PassageDraft(NOW, "approved", "officer", (), (credential, card()), "officer", "approve")
    msg = Passage("3f1c5c1e-2f5e-4d77-9d2a-6f7d1b1e2c3a", 1, "lane-1", "site", draft).to_message(
        ("id_number", "name", "qid")
    )
    assert msg["credentials"][0]["kind"] == "personal_qr"
    assert msg["credentials"][0]["ref"] is None  # a person, not a permission
    # the ID card's spelling of the name wins (it ranks above the personal QR)
    assert msg["traveller"] == {
        "id_number": "001093029317",
        "name": "Nguyễn Văn A",
        "qid": "162979388586171100",
    }
    assert_valid_passage(msg)


def test_verify_json_names_the_kind(tmp_path: Path) -> None:
    png = tmp_path / "pqr.png"
    render_qr(MASKED, png, None, scale=4)
    run = subprocess.run(
        [sys.executable, "-m", "edge", "verify", "--image", str(png), "--json"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    doc = json.loads(run.stdout)
    assert doc["kind"] == "personal_qr"
    assert doc["valid"] is True
