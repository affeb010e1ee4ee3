"""Business rules: the full rule set of one country against one DCC (target: median
under 2 ms on this machine).

Measures :meth:`RuleBook.judge`, what the kiosk's policy runs for every DCC shown:
rule selection (country of arrival, certificate type, validity, highest version), the
``external`` data, then every selected rule's CertLogic on the payload of a real signed
DCC, read and verified first by ``verify_payload``. Rule sets: Vietnam's bundled rules,
and each country of ``../shared/testdata/business-rules`` (with the EU value sets) when
that folder is present.

The machine is shared and noisy, so each round times the rule set and, interleaved, an
anchor (``verify_payload`` of the same DCC: base45, zlib, CBOR, COSE, ES256) and the
report gives the median over rounds of each, the spread (min-max of the round medians)
and the ratio rules / anchor.

Run: ``.venv/bin/python bench/rules_bench.py [--rounds N] [--runs N]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from edge.rules.book import RuleBook, bundled_rules
from edge.rules.rules import RuleSet
from edge.scan.credentials import verify_payload
from edge.scan.dcc import Dcc
from edge.scan.testkit import certificate, dcc_claims, sign_dcc
from edge.scan.trust import DccSigner, TrustStore, kid_of_certificate

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
TARGET_MS = 2.0
SHARED = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "business-rules"


def books() -> dict[str, RuleBook]:
    found = {"VN": RuleBook(RuleSet.load([bundled_rules()], bundled_rules() / "valueSets.json"),
                            "VN", "bundled")}  # fmt: skip
    if SHARED.is_dir():
        sets = SHARED / "valuesets" / "valueSets.json"
        for country in sorted(p for p in SHARED.iterdir() if p.is_dir() and len(p.name) == 2):
            found[country.name] = RuleBook(RuleSet.load([country], sets), country.name, "EU")
    return found


def signed_dcc() -> tuple[bytes, TrustStore]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(key)
    kid = kid_of_certificate(cert)
    claims = dcc_claims(iat=NOW - timedelta(days=30), exp=NOW + timedelta(days=300))
    trust = TrustStore(dcc_signers={kid: (DccSigner(kid, cert),)})
    return sign_dcc(claims, key, kid).encode(), trust


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=200, help="evaluations per round")
    args = parser.parse_args()
    raw, trust = signed_dcc()
    outcome = verify_payload(raw, trust, NOW)
    if outcome.reasons or not isinstance(outcome.claims, Dcc):
        raise SystemExit(f"the DCC did not verify: {outcome.reasons}")
    dcc = outcome.claims
    print(f"checkpoint-edge rules benchmark: {platform.machine()}, {platform.python_version()}")
    print(f"{'country':8} {'rules':>5} {'median ms':>10} {'spread ms':>15} "
          f"{'anchor ms':>10} {'ratio':>6} {'target':>7}")  # fmt: skip
    worst = 0.0
    for country, book in books().items():

        def judge(book: RuleBook = book) -> object:
            return book.judge(
                dcc.type, dcc.issuer, dcc.payload, NOW, iat=dcc.issued_at, exp=dcc.expires_at
            )

        results = judge()
        assert isinstance(results, list)
        judged, anchors = [], []
        judge()  # warm-up
        for _ in range(args.rounds):  # interleaved: the machine's mood hits both alike
            judged.append(median_ms(judge, args.runs))
            anchors.append(median_ms(lambda: verify_payload(raw, trust, NOW), args.runs))
        median, anchor = statistics.median(judged), statistics.median(anchors)
        worst = max(worst, median)
        spread = f"{min(judged):.3f}-{max(judged):.3f}"
        ok = "met" if median < TARGET_MS else "MISSED"
        print(f"{country:8} {len(results):>5} {median:>10.3f} {spread:>15} "
              f"{anchor:>10.3f} {median / anchor:>6.2f} {ok:>7}")  # fmt: skip
    print(f"slowest country: median {worst:.3f} ms (target < {TARGET_MS} ms)")


if __name__ == "__main__":
    main()
