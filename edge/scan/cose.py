"""COSE_Sign1 (RFC 9052): parse, verify with ES256 / PS256 / EdDSA, sign.

Accepted envelopes: tag 18 (COSE_Sign1), tag 61 around tag 18 (the CWT
double tag), or the untagged array. ``kid`` is read from the protected header
first, then the unprotected one, and so is ``alg`` (the EU test vectors carry
both in the unprotected header; the algorithm must still fit the trusted
key's type, so moving it there gains an attacker nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from edge.errors import CredentialRejected
from edge.scan import cbor
from edge.scan.reasons import BAD_COSE, BAD_SIGNATURE

ES256 = -7
EDDSA = -8
PS256 = -37
ALG_NAMES = {ES256: "ES256", EDDSA: "EdDSA", PS256: "PS256"}

HEADER_ALG = 1
HEADER_KID = 4

TAG_SIGN1 = 18
TAG_CWT = 61

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Sign1:
    protected_raw: bytes
    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> Any:
        """The algorithm: the protected header's, else the unprotected header's."""
        if HEADER_ALG in self.protected:
            return self.protected[HEADER_ALG]
        return self.unprotected.get(HEADER_ALG)

    @property
    def kid(self) -> bytes | None:
        """The key id: the protected header's, else the unprotected header's."""
        for header in (self.protected, self.unprotected):
            kid = header.get(HEADER_KID)
            if isinstance(kid, bytes):
                return kid
        return None

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected_raw, self.payload)


def sig_structure(protected_raw: bytes, payload: bytes) -> bytes:
    return cbor.dumps(["Signature1", protected_raw, b"", payload])


def parse_sign1(data: bytes) -> Sign1:
    """The COSE_Sign1 structure in ``data``; raise ``bad_cose`` when it is not one."""
    obj = cbor.loads(data)
    if isinstance(obj, cbor.Tag) and obj.tag == TAG_CWT:
        obj = obj.value
    if isinstance(obj, cbor.Tag):
        if obj.tag != TAG_SIGN1:
            raise CredentialRejected(BAD_COSE, f"CBOR tag {obj.tag} is not COSE_Sign1")
        obj = obj.value
    if not isinstance(obj, list) or len(obj) != 4:
        raise CredentialRejected(BAD_COSE, "COSE_Sign1 must be an array of 4")
    protected_raw, unprotected, payload, signature = obj
    if not isinstance(protected_raw, bytes) or not isinstance(unprotected, dict):
        raise CredentialRejected(BAD_COSE, "COSE headers have the wrong types")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise CredentialRejected(BAD_COSE, "COSE payload or signature is not a byte string")
    protected = cbor.loads(protected_raw) if protected_raw else {}
    if not isinstance(protected, dict):
        raise CredentialRejected(BAD_COSE, "COSE protected header is not a map")
    for header in (protected, unprotected):
        alg = header.get(HEADER_ALG)
        if alg is not None and (not isinstance(alg, int) or isinstance(alg, bool)):
            raise CredentialRejected(BAD_COSE, "COSE alg must be an integer")
        kid = header.get(HEADER_KID)
        if kid is not None and not isinstance(kid, bytes):
            raise CredentialRejected(BAD_COSE, "COSE kid must be a byte string")
    both = HEADER_ALG in protected and HEADER_ALG in unprotected
    if both and protected[HEADER_ALG] != unprotected[HEADER_ALG]:
        raise CredentialRejected(BAD_COSE, "COSE alg differs between the headers")
    return Sign1(protected_raw, protected, unprotected, payload, signature)


def verify(sign1: Sign1, key: PublicKey) -> None:
    """Check the signature with ``key``; raise ``bad_signature`` if it does not hold."""
    alg = sign1.alg
    data = sign1.to_be_signed()
    try:
        if alg == ES256 and isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1) or len(sign1.signature) != 64:
                raise CredentialRejected(BAD_SIGNATURE, "ES256 needs P-256 and a 64-byte signature")
            r = int.from_bytes(sign1.signature[:32], "big")
            s = int.from_bytes(sign1.signature[32:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        elif alg == PS256 and isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
            key.verify(sign1.signature, data, pss, hashes.SHA256())
        elif alg == EDDSA and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sign1.signature, data)
        else:
            raise CredentialRejected(
                BAD_SIGNATURE,
                f"algorithm {ALG_NAMES.get(alg, alg)!r} does not fit a {type(key).__name__}",
            )
    except InvalidSignature as exc:
        raise CredentialRejected(BAD_SIGNATURE, "signature does not verify") from exc


def sign(payload: bytes, key: PrivateKey, kid: bytes) -> bytes:
    """A tagged COSE_Sign1 over ``payload`` (ES256 for P-256 keys, EdDSA for Ed25519)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        alg = EDDSA
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        alg = ES256
    else:
        raise TypeError("signing keys must be P-256 (ES256) or Ed25519 (EdDSA)")
    protected_raw = cbor.dumps({HEADER_ALG: alg, HEADER_KID: kid})
    data = sig_structure(protected_raw, payload)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(data)
    else:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor.dumps(cbor.Tag(TAG_SIGN1, [protected_raw, {}, payload, signature]))
