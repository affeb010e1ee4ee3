"""The bundled samples (edge/samples/) and the simulation stay valid for decades.

The demo (``tools/demo``, ``checkpoint-edge run``) shows the sample traveller's
declaration, valid **until 2099-12-31 23:59:59 UTC**, and an expired one. This
test reads every sample image as the kiosk does, with the simulation's own
config (trust list, policy), at fixed instants from the day the samples were
made to that end, and just after it: no wall clock is involved. Before 2099,
make new ones with ``tools/make_samples.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from edge import config as config_mod
from edge.cli import simulation_config_path
from edge.core.model import Credential
from edge.core.policy import RulePolicy
from edge.scan.credentials import Verifier
from edge.scan.declaration import Declaration
from edge.scan.decoder import ZxingDecoder
from edge.scan.trust import load_trust

VALID_UNTIL = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)
MADE = datetime(2026, 11, 1, tzinfo=UTC)
SIMULATION = config_mod.load(simulation_config_path())
SAMPLES = simulation_config_path().parent.parent / "samples"


def read_sample(name: str, at: datetime) -> list[Credential]:
    image = cv2.imread(str(SAMPLES / name), cv2.IMREAD_GRAYSCALE)
    assert image is not None, name
    trust = load_trust(SIMULATION.trust.files)
    verifier = Verifier(lambda: trust, clock=lambda: at)
    return [verifier.read(raw) for raw in ZxingDecoder().decode(np.ascontiguousarray(image))]


@pytest.mark.parametrize(
    "at",
    [MADE + timedelta(hours=1), datetime(2029, 7, 1, 8, tzinfo=UTC), VALID_UNTIL],
    ids=["made", "2029", "last-second"],
)
def test_the_demo_traveller_is_approved_until_the_end_of_2099(at: datetime) -> None:
    (decl,) = read_sample("01-declaration.png", at)
    (card,) = read_sample("02-id-card.png", at)
    assert (decl.kind, decl.valid, decl.reasons) == ("declaration", True, ())
    assert isinstance(decl.claims, Declaration)
    assert decl.claims.expires_at == VALID_UNTIL  # what this module's docstring promises
    assert card.kind == "id_card"
    verdict = RulePolicy(SIMULATION.policy).evaluate([decl, card], at)
    assert (verdict.outcome, verdict.reasons) == ("approve", ())
    (expired,) = read_sample("04-expired-declaration.png", at)
    assert expired.reasons == ("expired",)
    assert read_sample("03-no-code.png", at) == []
    (other,) = read_sample("05-not-a-declaration.png", at)
    assert other.kind == "unrecognised"
    # then her personal QR (masked) and her card again: confirmed by the card
    (pqr,) = read_sample("06-personal-qr.png", at)
    (again,) = read_sample("07-id-card.png", at)
    assert (pqr.kind, pqr.valid, again.kind) == ("personal_qr", True, "id_card")
    verdict = RulePolicy(SIMULATION.policy).evaluate([pqr, again], at)
    assert (verdict.outcome, verdict.reasons) == ("approve", ())


def test_after_2099_the_demo_declaration_has_expired() -> None:
    (decl,) = read_sample("01-declaration.png", VALID_UNTIL + timedelta(minutes=10))
    assert decl.reasons == ("expired",)


def test_the_samples_and_the_simulation_config_agree() -> None:
    """The simulation reads the images and trust list shipped beside its config."""
    source = SIMULATION.camera.source
    assert (source.kind, source.path) == ("images", SAMPLES.resolve())
    assert [p.resolve() for p in SIMULATION.trust.files] == [SAMPLES / "demo-trust.json"]
    assert sorted(p.name for p in SAMPLES.glob("*.png")) == [
        "01-declaration.png",
        "02-id-card.png",
        "03-no-code.png",
        "04-expired-declaration.png",
        "05-not-a-declaration.png",
        "06-personal-qr.png",
        "07-id-card.png",
    ]
