"""Render the sample camera frames bundled for the kiosk simulation (edge/samples/).

Run from the repository root: ``.venv/bin/python tools/make_samples.py``.

Each sample is a 1280x720 grayscale scene with a phone showing a code, the
way a traveller holds it to the kiosk; one holds no code. The declarations
are signed with a demo issuer key made for the occasion: only its public half
is kept, in ``edge/samples/demo-trust.json``, which the simulation config
trusts. The people in them do not exist.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import segno
from cryptography.hazmat.primitives.asymmetric import ed25519

from edge.scan import declaration
from edge.scan.declaration import Declaration, Place
from edge.scan.trust import kid_of_public_key, trust_list

OUT = Path(__file__).resolve().parent.parent / "edge" / "samples"
SIZE = (720, 1280)
ISSUER = "VN-DEMO"
# The demo keeps working until then (tests/test_samples.py checks it at this
# instant and just after); a real declaration lives for hours, not decades.
VALID_UNTIL = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)

TRAVELLER = Declaration(
    issuer=ISSUER,
    issued_at=datetime(2026, 11, 1, tzinfo=UTC),
    # Long-lived on purpose, so that the simulation keeps working; the
    # simulation config accepts old declarations for the same reason.
    expires_at=VALID_UNTIL,
    declaration_id="DEMO-0001-VALID",
    name="Trần Thị Mẫu",
    id_number="001190099999",
    birth_date=date(1990, 5, 17),
    sex="F",
    phone="+84900000000",
    origin=Place("79", "760", "Số 1 Đường Mẫu, Phường Bến Nghé, Quận 1"),
    destination=Place("01", "001", "Số 2 Phố Mẫu, Phường Hàng Bài, Quận Hoàn Kiếm"),
    plate="51H-000.00",
    transport="car",
    purpose="Thăm gia đình",
    travel_from=date(2026, 11, 1),
    travel_to=VALID_UNTIL.date(),
    symptoms=False,
    exposure=False,
    vaccine_doses=2,
    test_result="",
    test_date=None,
)

EXPIRED = Declaration(
    **{
        **TRAVELLER.__dict__,
        "declaration_id": "DEMO-0002-EXPIRED",
        "name": "Lê Văn Mẫu",
        "id_number": "001090088888",
        "sex": "M",
        "issued_at": datetime(2026, 1, 1, tzinfo=UTC),
        "expires_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=72),
        "travel_from": date(2026, 1, 1),
        "travel_to": date(2026, 1, 3),
    }
)

ID_CARD = (
    "001190099999|123999999|Trần Thị Mẫu|17051990|Nữ|"
    "Số 1 Đường Mẫu, Phường Bến Nghé, Quận 1, TP Hồ Chí Minh|01012022"
)
# Her national personal QR as PC-Covid showed it: number and birth date masked.
PERSONAL_QR = "******099999|TRAN THI MAU|1990-**-**|0|100000000000009999|<2<<0900000000"


def scene(seed: int) -> np.ndarray:
    """A plain, slightly uneven background, like a lane seen by the kiosk camera."""
    y, x = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    base = 120 + 40 * np.sin(x / 300.0 + seed) + 20 * np.cos(y / 200.0)
    return np.clip(base, 0, 255).astype(np.uint8)


def with_code(payload: str, seed: int, scale: int, at: tuple[int, int]) -> np.ndarray:
    qr = segno.make_qr(payload, error="m")
    buf = io.BytesIO()
    qr.save(buf, kind="png", scale=scale, border=4)
    code = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_GRAYSCALE)
    # a phone: a dark bezel around a bright screen showing the code
    frame = scene(seed)
    top, left = at
    h, w = code.shape
    frame[top - 30 : top + h + 30, left - 20 : left + w + 20] = 25
    frame[top : top + h, left : left + w] = code
    return frame


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    key = ed25519.Ed25519PrivateKey.generate()  # the private half is never written
    kid = kid_of_public_key(key.public_key())
    trust = trust_list(issuers=[(ISSUER, key.public_key())], issued_at=datetime.now(UTC))
    (OUT / "demo-trust.json").write_text(json.dumps(trust, indent=2) + "\n")
    valid, expired = (declaration.issue(d, key, kid) for d in (TRAVELLER, EXPIRED))
    samples = {
        "01-declaration.png": with_code(valid, 1, 4, (120, 380)),
        "02-id-card.png": with_code(ID_CARD, 2, 5, (180, 600)),
        "03-no-code.png": scene(3),
        "04-expired-declaration.png": with_code(expired, 4, 4, (140, 500)),
        "05-not-a-declaration.png": with_code("https://example.vn/not-a-code", 5, 6, (220, 640)),
        "06-personal-qr.png": with_code(PERSONAL_QR, 6, 6, (160, 420)),
        "07-id-card.png": with_code(ID_CARD, 7, 5, (200, 560)),
    }
    for name, image in samples.items():
        cv2.imwrite(str(OUT / name), image, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(OUT / name)


if __name__ == "__main__":
    main()
