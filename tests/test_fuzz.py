"""Hostile input to the whole parser chain: only typed rejections come out.

``verify_payload`` catches nothing but :class:`CredentialRejected`, so any
other exception here is a bug in a parser. The atheris harness in ``fuzz/``
does the same with coverage guidance; a short run of it is part of the suite.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.scan import cbor
from edge.scan.credentials import KINDS, verify_payload
from edge.scan.testkit import NOW, PREFIXES, FuzzKit

from .conftest import REPO

KIT = FuzzKit()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.integers(-300, 10) | st.text(max_size=3), inner, max_size=5)
        | st.builds(cbor.Tag, st.sampled_from([0, 1, 18, 61, 1004]), inner)
    ),
    max_leaves=30,
)


def check(raw: bytes) -> None:
    outcome = verify_payload(raw, KIT.trust, NOW)
    assert outcome.kind in KINDS
    assert outcome.claims is not None or outcome.reasons  # never valid without claims


@FUZZ
@given(st.binary(max_size=5000))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.sampled_from(PREFIXES), st.binary(max_size=600), st.booleans())
def test_random_bytes_inside_the_envelope(prefix: str, data: bytes, compress: bool) -> None:
    check(KIT.wrap(prefix, data, compress))


@FUZZ
@given(st.sampled_from(PREFIXES), cbor_values)
def test_random_cbor_as_cose(prefix: str, value: Any) -> None:
    check(KIT.wrap(prefix, cbor.dumps(value)))


@FUZZ
@given(st.sampled_from(PREFIXES), cbor_values)
def test_signed_random_claims(prefix: str, claims: Any) -> None:
    """Past the signature check: the claims parsers meet arbitrary structures."""
    check(KIT.signed(prefix, claims))


claims_like = st.fixed_dictionaries(
    {
        1: st.text(max_size=5) | st.integers(-(2**63), 2**63),
        4: st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=3),
        6: st.integers(-(2**40), 2**40) | st.floats(),
        7: st.binary(max_size=10) | st.text(max_size=5),
        -70001: st.dictionaries(st.sampled_from(list("nibspodvmufth")), cbor_values, max_size=13),
        -260: st.dictionaries(
            st.integers(0, 2),
            st.dictionaries(
                st.sampled_from(["v", "t", "r", "nam", "dob", "ver"]), cbor_values, max_size=6
            ),
        ),
    }
)


@FUZZ
@given(st.sampled_from(PREFIXES), claims_like)
def test_signed_claims_of_the_right_shape(prefix: str, claims: Any) -> None:
    check(KIT.signed(prefix, claims))


@FUZZ
@given(st.text(alphabet="0123456789|NamNữ \ufeff\r\n-", max_size=200))
def test_id_card_shaped_text(text: str) -> None:
    check(("079190012345|" + text).encode())


PQR_FIELD = st.text(alphabet="0123456789*-<|ABCXYZ áđ\x00\x1b\ufeff\r\n", max_size=30)


@FUZZ
@given(st.lists(PQR_FIELD, min_size=6, max_size=6), st.sampled_from(["0", "1", "2", ""]))
def test_personal_qr_shaped_text(fields: list[str], kind: str) -> None:
    number, name, born, _, qid, ext = fields
    check("|".join([number, name, born or "1987-**-**", kind, qid, ext]).encode())


@FUZZ
@given(st.text(max_size=300), st.sampled_from(["https", "http", "HTTP", "ftp"]))
def test_green_lane_shaped_urls(rest: str, scheme: str) -> None:
    check(f"{scheme}://luongxanh.drvn.gov.vn{rest}".encode())


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.parametrize(
    ("harness", "runs"),
    [
        ("fuzz_credentials.py", 4000),  # the credential parsers
        ("fuzz_rules.py", 20000),  # hostile rules, payloads and bundles: only typed errors
    ],
)
def test_atheris_harness_short_run(harness: str, runs: int) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / harness), f"-runs={runs}", "-seed=1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"Done {runs} runs" in run.stderr
