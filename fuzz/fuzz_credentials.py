"""Coverage-guided fuzzing of the credential parser chain with atheris.

    .venv/bin/python fuzz/fuzz_credentials.py -max_total_time=600 [corpus_dir]

The first input byte chooses how the rest is presented: raw bytes; bytes in
the MD1:/HC1: envelope (base45 + zlib); claims CBOR signed with a trusted
key, which reaches the claims parsers past the signature check; or text after
the shape of an unsigned format (a chip ID card's 12 digits, a personal QR's
six fields, a green-lane URL), which reaches their field parsers. Any exception
escaping ``verify_payload`` (which catches only CredentialRejected) is a bug.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from edge.scan import cbor
    from edge.scan.credentials import verify_payload
    from edge.scan.testkit import NOW, PREFIXES, FuzzKit

KIT = FuzzKit()


def one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 5, data[1:]
    prefix = PREFIXES[data[0] // 5 % 2]
    if mode == 0:
        raw = body
    elif mode == 4:
        shapes = (
            b"079190012345|",
            b"001093029317|A|1987-**-**|",
            b"https://luongxanh.drvn.gov.vn/",
        )
        raw = shapes[data[0] // 10 % 3] + body
    elif mode == 1:
        raw = KIT.wrap(prefix, body)
    elif mode == 2:
        raw = KIT.wrap(prefix, body, compress=False)
    else:
        try:
            claims = cbor.loads(body)
        except ValueError:
            return  # not CBOR: nothing to sign
        raw = KIT.signed(prefix, claims)
    verify_payload(raw, KIT.trust, NOW)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
