"""The EU DCC test vectors (tests/data/dcc) through the project's own pipeline.

Each case runs with its ``TESTCTX.CERTIFICATE`` as the only trust anchor and
its ``VALIDATIONCLOCK`` as the clock, entering the pipeline at the earliest
data it provides (2D code image, prefixed text, or COSE bytes). For every
``EXPECTED...`` flag of the stages below:

- ``true``: the stage ran and passed;
- ``false``: the stage did not pass, and the first failing stage is this one
  or one the case does not expect to pass (a case expecting ``UNPREFIX`` true
  and ``B45DECODE`` false must fail exactly at base45).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography import x509

from edge.errors import CredentialRejected
from edge.scan import dcc
from edge.scan.decoder import PyzbarDecoder, ZxingDecoder
from edge.scan.envelope import StageLog
from edge.scan.trust import DccSigner, TrustStore, kid_of_certificate

from .conftest import DCC_VECTORS

STAGES = {
    "UNPREFIX": "prefix",
    "B45DECODE": "base45",
    "COMPRESSION": "decompress",
    "DECODE": "decode",
    "VERIFY": "verify",
    "EXPIRATIONCHECK": "validity",
    "KEYUSAGE": "key_usage",
}
ORDER = list(STAGES.values())

# Cases whose data contradicts their own expectations, with the reason. None so far.
KNOWN_DATA_DEFECTS: dict[str, str] = {}

CASES = sorted(DCC_VECTORS.glob("*/*.json"))


def case_id(path: Path) -> str:
    return f"{path.parts[-2]}/{path.stem}"


def trust_for(ctx: dict[str, Any]) -> TrustStore:
    if not ctx.get("CERTIFICATE"):
        return TrustStore()
    cert = x509.load_der_x509_certificate(base64.b64decode(ctx["CERTIFICATE"]))
    kid = kid_of_certificate(cert)
    return TrustStore(dcc_signers={kid: (DccSigner(kid, cert),)})


def run_case(case: dict[str, Any]) -> StageLog:
    ctx = case.get("TESTCTX", {})
    now = datetime.fromisoformat(ctx["VALIDATIONCLOCK"].replace("Z", "+00:00"))
    log = StageLog()
    try:
        if case.get("PREFIX"):
            dcc.read(case["PREFIX"], trust_for(ctx), now, log)
        elif case.get("COSE"):
            dcc.read_cose(bytes.fromhex(case["COSE"]), trust_for(ctx), now, log)
    except CredentialRejected:
        pass  # the stage log says where
    return log


@pytest.mark.parametrize("path", CASES, ids=case_id)
def test_dcc_vector(path: Path) -> None:
    if case_id(path) in KNOWN_DATA_DEFECTS:
        pytest.xfail(KNOWN_DATA_DEFECTS[case_id(path)])
    case = json.loads(path.read_text())
    expected = {
        STAGES[k.removeprefix("EXPECTED")]: v
        for k, v in case.get("EXPECTEDRESULTS", {}).items()
        if k.removeprefix("EXPECTED") in STAGES
    }
    log = run_case(case)
    failed_at = next((s for s in ORDER if log.stages.get(s) is False), None)
    for stage, want in expected.items():
        got = log.stages.get(stage)
        if want:
            assert got is True, f"{stage} should pass; stages: {log.stages}"
        else:
            assert got is not True, f"{stage} should not pass; stages: {log.stages}"
            assert failed_at is not None
            assert expected.get(failed_at) is not True, (
                f"failed at {failed_at}, which the case expects to pass; stages: {log.stages}"
            )


@pytest.mark.parametrize("decoder", [ZxingDecoder, PyzbarDecoder], ids=lambda d: d.name)
def test_dcc_pictures_decode(decoder: type) -> None:
    """EXPECTEDPICTUREDECODE: the 2D code image holds exactly the prefixed text, or not."""
    checked = 0
    for path in CASES:
        case = json.loads(path.read_text())
        want = case.get("EXPECTEDRESULTS", {}).get("EXPECTEDPICTUREDECODE")
        if want is None or not case.get("2DCODE"):
            continue
        png = np.frombuffer(base64.b64decode(case["2DCODE"]), np.uint8)
        image = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
        codes = decoder().decode(np.ascontiguousarray(image)) if image is not None else []
        assert (case["PREFIX"].encode() in codes) is want, case_id(path)
        checked += 1
    assert checked > 50


def test_every_vector_is_here() -> None:
    assert len(CASES) == 100
