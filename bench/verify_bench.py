"""Parse + verify time per credential kind (targets: signed codes under 2 ms, the
unsigned pipe-separated ones under 0.2 ms, median, on this machine).

Prints the median and 95th percentile of ``verify_payload`` (detection over the
whole format table, base45, zlib, CBOR, COSE, signature, claims, validity) for:
our declaration signed with ES256 and with EdDSA, a DCC signed with ES256 and
with PS256 (RSA 2048), a chip ID card code, and a national personal QR (whole
and masked), with the target and whether it is met.

Run: ``.venv/bin/python bench/verify_bench.py [--runs N]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from edge.scan import declaration
from edge.scan.credentials import verify_payload
from edge.scan.declaration import Declaration, Place
from edge.scan.testkit import certificate, dcc_claims, sign_dcc
from edge.scan.trust import (
    DccSigner,
    IssuerKey,
    TrustStore,
    kid_of_certificate,
    kid_of_public_key,
)

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def make_declaration() -> Declaration:
    """A declaration of typical size: full Vietnamese name and addresses."""
    return Declaration(
        issuer="VN-HN",
        issued_at=NOW - timedelta(hours=2),
        expires_at=NOW + timedelta(hours=70),
        declaration_id="ABCD-EFGH-JKLM",
        name="Nguyễn Thị Minh Khai",
        id_number="079190012345",
        birth_date=date(1990, 1, 31),
        sex="F",
        phone="+84901234567",
        origin=Place("79", "760", "Số 123 Nguyễn Thị Minh Khai, P. Bến Nghé, Q.1"),
        destination=Place("01", "001", "Số 45 Lý Thường Kiệt, P. Hàng Bài, Q. Hoàn Kiếm"),
        plate="51H-123.45",
        transport="car",
        purpose="Thăm gia đình",
        travel_from=date(2026, 11, 26),
        travel_to=date(2026, 11, 30),
        symptoms=False,
        exposure=False,
        vaccine_doses=2,
        test_result="",
        test_date=None,
    )


def cases() -> tuple[TrustStore, dict[str, bytes]]:
    issuers: dict[bytes, tuple[IssuerKey, ...]] = {}
    signers: dict[bytes, tuple[DccSigner, ...]] = {}
    payloads: dict[str, bytes] = {}
    for name, key in (
        ("declaration ES256", ec.generate_private_key(ec.SECP256R1())),
        ("declaration EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ):
        kid = kid_of_public_key(key.public_key())
        issuers[kid] = (IssuerKey(kid, "VN-HN", key.public_key()),)
        payloads[name] = declaration.issue(make_declaration(), key, kid).encode()
    for name, dkey in (
        ("DCC ES256", ec.generate_private_key(ec.SECP256R1())),
        ("DCC PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ):
        cert = certificate(dkey)
        kid = kid_of_certificate(cert)
        signers[kid] = (DccSigner(kid, cert),)
        payloads[name] = sign_dcc(dcc_claims(), dkey, kid).encode()
    payloads["ID card"] = (
        "079190012345|123456789|Nguyễn Văn Bình|15081990|Nam|"
        "Số 1 Lê Lợi, Phường Bến Nghé, Quận 1, TP Hồ Chí Minh|20042021"
    ).encode()
    payloads["personal QR"] = (
        b"001093029317|NGUYEN VAN A|1987-01-18|0|162979388586171100|<1<00<0123232422"
    )
    payloads["personal QR masked"] = b"******029317|NGUYEN VAN A|1987-**-**|0|162979388586171100|"
    return TrustStore(issuers=issuers, dcc_signers=signers), payloads


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    trust, payloads = cases()
    machine = f"{platform.machine()}, {platform.python_version()}"
    print(f"checkpoint-edge verification benchmark: {machine}")
    print(f"{'credential':18} {'bytes':>6} {'median ms':>10} {'p95 ms':>8} {'target':>7}")
    for name, raw in payloads.items():
        outcome = verify_payload(raw, trust, NOW)
        if outcome.reasons:
            raise SystemExit(f"{name} did not verify: {outcome.reasons}")
        times = timed(lambda raw=raw: verify_payload(raw, trust, NOW), args.runs)
        p95 = statistics.quantiles(times, n=20)[-1]
        median = statistics.median(times)
        target = 0.2 if b"|" in raw else 2.0
        verdict = "ok" if median < target else "OVER"
        print(f"{name:18} {len(raw):6d} {median:10.3f} {p95:8.3f} {target:7.1f} {verdict}")


if __name__ == "__main__":
    main()
