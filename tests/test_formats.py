"""The format table: detection is unambiguous, and every format keeps the contract.

Property tests: a sample of any format (made as its issuer or app would) is
detected as that format and no other, and reads as valid; pipe-separated text
of no format's shape is unrecognised, never mislabelled.
"""

from __future__ import annotations

import json
import string
from dataclasses import fields, is_dataclass
from datetime import date
from typing import get_args

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.scan import declaration, registry
from edge.scan.credentials import verify_payload
from edge.scan.format import Claims, Format, Holder, Kind
from edge.scan.testkit import NOW, FuzzKit, dcc_claims, sign_dcc
from edge.scan.trust import IssuerKey, TrustStore, kid_of_public_key

from .conftest import REPO
from .test_declaration import make_declaration

KIT = FuzzKit()
DECLARATION_KEY = ec.generate_private_key(ec.SECP256R1())
DECLARATION_KID = kid_of_public_key(DECLARATION_KEY.public_key())
TRUST = TrustStore(
    issuers={
        **KIT.trust.issuers,
        DECLARATION_KID: (IssuerKey(DECLARATION_KID, "VN-HN", DECLARATION_KEY.public_key()),),
    },
    dcc_signers=KIT.trust.dcc_signers,
)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VN_NAMES = st.sampled_from(
    ["Nguyễn Văn Bình", "Trần Thị Mẫu", "Lê Hoàng Long", "Tôn Nữ Thu Thảo", "Đặng Minh"]
)
ASCII_NAMES = st.sampled_from(["NGUYEN VAN A", "TRAN THI MAU", "LE HOANG LONG", "DANG MINH"])


def digits(n: int) -> st.SearchStrategy[str]:
    return st.text(string.digits, min_size=n, max_size=n)


def dates(low: date = date(1920, 1, 1), high: date = date(2020, 12, 31)) -> st.SearchStrategy[date]:
    return st.dates(min_value=low, max_value=high)


@st.composite
def declarations(draw: st.DrawFn) -> str:
    decl = make_declaration(
        declaration_id=draw(
            st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", min_size=4, max_size=20)
        ),
        name=draw(VN_NAMES),
        id_number=draw(digits(12) | digits(9)),
        plate=draw(st.sampled_from(["", "51H-123.45", "29A-000.01"])),
    )
    return declaration.issue(decl, DECLARATION_KEY, DECLARATION_KID)


@st.composite
def dccs(draw: st.DrawFn) -> str:
    family, given_name = draw(VN_NAMES).split(" ", 1)
    dob = draw(dates()).isoformat()
    return sign_dcc(dcc_claims(name=(family, given_name), dob=dob), KIT.key, KIT.cert_kid)


@st.composite
def id_cards(draw: st.DrawFn) -> str:
    born = draw(dates())
    issued = draw(dates(born, date(2024, 12, 31)))
    fields_ = [
        draw(digits(12)),
        draw(st.sampled_from(["", "123456789"])),
        draw(VN_NAMES),
        born.strftime("%d%m%Y"),
        draw(st.sampled_from(["Nam", "Nữ"])),
        draw(st.sampled_from(["Số 1 Lê Lợi, Quận 1", "Thôn 3, Xã Bản Phố, Bắc Hà, Lào Cai"])),
        issued.strftime("%d%m%Y"),
    ]
    fields_ += [f"extra {i}" for i in range(draw(st.sampled_from([0, 3, 4])))]
    return "|".join(fields_)


@st.composite
def personal_qrs(draw: st.DrawFn) -> str:
    proxy = draw(st.booleans())
    number = draw(
        st.sampled_from(["cccd", "cmnd", "passport", "masked"] + (["none"] if proxy else []))
    )
    value = {
        "cccd": draw(digits(12)),
        "cmnd": draw(digits(9)),
        "passport": "C" + draw(digits(7)),
        "masked": "******" + draw(digits(6)),
        "none": "",
    }[number]
    born = draw(dates()).isoformat()
    if draw(st.booleans()):
        born = born[:4] + draw(st.sampled_from(["-**-**", born[4:7] + "-**"]))
    qid = draw(digits(18))
    ext = draw(
        st.sampled_from(
            [
                "",
                "<1<00<0123232422",
                f"{draw(digits(18))}<2",
                "<0<DN4797915123456<0912345678<c2lnbmF0dXJl",
            ]
        )
    )
    return "|".join([value, draw(ASCII_NAMES), born, "1" if proxy else "0", qid, ext])


@st.composite
def greenlane_codes(draw: st.DrawFn) -> str:
    token = draw(st.text(string.ascii_letters + string.digits + "_-", min_size=6, max_size=64))
    scheme = draw(st.sampled_from(["https", "http", "HTTPS"]))
    where = draw(st.sampled_from(["path", "token", "code", "ma"]))
    base = f"{scheme}://luongxanh.drvn.gov.vn"
    return f"{base}/xe/{token}" if where == "path" else f"{base}/tra-cuu?{where}={token}"


SAMPLES: dict[str, st.SearchStrategy[str]] = {
    "declaration": declarations(),
    "dcc": dccs(),
    "id_card": id_cards(),
    "personal_qr": personal_qrs(),
    "greenlane": greenlane_codes(),
}


def test_every_registered_format_has_a_sample_strategy() -> None:
    assert set(SAMPLES) == set(registry.BY_KIND)


@PROPERTY
@given(st.sampled_from(sorted(SAMPLES)).flatmap(lambda k: st.tuples(st.just(k), SAMPLES[k])))
def test_every_sample_is_its_own_format_and_no_other(sample: tuple[str, str]) -> None:
    kind, text = sample
    assert [f.kind for f in registry.FORMATS if f.detect(text)] == [kind]
    outcome = verify_payload(text.encode(), TRUST, NOW)
    assert (outcome.kind, outcome.reasons) == (kind, ())
    assert isinstance(outcome.claims, registry.BY_KIND[kind].claims_type)


FIELD = st.text(st.characters(codec="utf-8", exclude_characters="|"), max_size=20)


@PROPERTY
@given(st.lists(FIELD, min_size=2, max_size=14))
def test_pipe_separated_text_is_at_most_one_format(parts: list[str]) -> None:
    text = "|".join(parts)
    found = [f.kind for f in registry.FORMATS if f.detect(text)]
    assert len(found) <= 1
    if len(parts) not in (6, 7, 10, 11):  # no pipe-separated format has that many fields
        assert found == []
        assert verify_payload(text.encode(), TRUST, NOW).kind == "unrecognised"


def test_every_format_keeps_the_contract() -> None:
    for fmt in registry.FORMATS:
        assert isinstance(fmt, Format)
        assert fmt.kind not in ("", "unrecognised")
        assert issubclass(fmt.claims_type, Claims)
        assert is_dataclass(fmt.claims_type)
        assert set(fmt.labels()) <= {f.name for f in fields(fmt.claims_type)}
        assert fmt.reasons, fmt.kind
        assert set(fmt.fields) <= set(registry.TRAVELLER_FIELDS)
    assert len({f.kind for f in registry.FORMATS}) == len(registry.FORMATS)
    assert len({f.rank for f in registry.FORMATS}) == len(registry.FORMATS)  # no ties


def test_the_kind_type_is_the_registry_s_kinds() -> None:
    """``Kind`` (what mypy holds a format's kind to) and the registry (what detection,
    the policy and the passage check read) name the same kinds."""
    assert set(get_args(Kind)) == set(registry.KINDS)


def test_holders_compare_by_number_first_then_name_and_birth() -> None:
    card = Holder("Nguyễn Văn Bình", "1990-08-15", ("079190012345", "123456789"))
    assert card.compare(Holder("BINH NGUYEN VAN", "1990-08", ())) == "same"  # a DCC's way
    assert card.compare(Holder("Nguyen Van Binh", "1991", ())) == "different"
    assert card.compare(Holder("", "", ("123456789",))) == "same"  # the old card's number
    assert card.compare(Holder("Someone Else", "", ("079190012345",))) == "same"  # number rules
    assert card.compare(Holder("", "", ("079190012346",))) == "different"
    assert card.compare(Holder("Nguyen Van Binh", "", ())) == "unknown"
    masked = Holder("NGUYEN VAN BINH", "1990-**-**", ("******012345",))
    assert masked.corroborates(card)
    assert not Holder("NGUYEN VAN BINH", "1990-**-**", ("******012346",)).corroborates(card)
    assert not Holder("TRAN VAN BINH", "1990-**-**", ("******012345",)).corroborates(card)
    assert not Holder("NGUYEN VAN BINH", "", ()).corroborates(card)  # no number, no proof


def test_the_passage_schema_knows_every_format_and_field() -> None:
    schema = json.loads((REPO / "docs" / "passage.schema.json").read_text())
    kinds = schema["properties"]["credentials"]["items"]["properties"]["kind"]["enum"]
    assert set(kinds) == set(registry.KINDS)
    assert set(registry.TRAVELLER_FIELDS) <= set(schema["$defs"]["traveller"]["properties"])
