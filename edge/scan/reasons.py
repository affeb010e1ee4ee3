"""Reason codes: why a credential was refused, what the policy found, why the lane
decided as it did.

Stable, machine-readable, published in passages: never rename one. Every code is
defined here once; the screens' catalogues have a text for each.
"""

from __future__ import annotations

from typing import Final

# Parsing and verification of a payload
BAD_PREFIX = "bad_prefix"  # not a format we know by its prefix/shape
BAD_BASE45 = "bad_base45"
BAD_COMPRESSION = "bad_compression"  # not zlib, or broken zlib
TOO_LARGE = "too_large"  # payload, decompressed size or CBOR counts over the limits
BAD_COSE = "bad_cose"  # CBOR or COSE_Sign1 structure
UNKNOWN_KID = "unknown_kid"
BAD_SIGNATURE = "bad_signature"
WRONG_KEY_USAGE = "wrong_key_usage"
NOT_YET_VALID = "not_yet_valid"
EXPIRED = "expired"
REVOKED = "revoked"
REPLAYED = "replayed"
BAD_FIELDS = "bad_fields"  # claims missing, of the wrong type or out of range
UNRECOGNISED: Final = "unrecognised"  # also the kind of a code of no known format

# Policy findings
FORMAT_NOT_ACCEPTED = "format_not_accepted"
ISSUER_NOT_ACCEPTED = "issuer_not_accepted"
DECLARATION_TOO_OLD = "declaration_too_old"
SYMPTOMS = "symptoms_declared"
EXPOSURE = "exposure_declared"
PROOF_REQUIRED = "proof_required"  # origin zone needs vaccination or a recent negative test
ID_CARD_REQUIRED = "id_card_required"
ID_MISMATCH = "id_mismatch"
ID_CARD_ONLY = "id_card_only"  # an ID card identifies but never approves on its own
NO_DECLARATION = "no_declaration"
DCC_ONLY = "dcc_only"
VACCINATION_INCOMPLETE = "vaccination_incomplete"  # a DCC that is not a completed series
TEST_POSITIVE = "test_positive"
TEST_TOO_OLD = "test_too_old"  # or sampled in the future
RECOVERY_NOT_VALID = "recovery_not_valid"  # outside the recovery certificate's dates
DCC_HOLDER_MISMATCH = "dcc_holder_mismatch"  # the DCC names someone else
# an unsigned personal QR not confirmed by a matching ID card or the online lookup
PERSONAL_QR_UNCONFIRMED = "personal_qr_unconfirmed"
# the optional online lookup of an unsigned code ([lookup])
LOOKUP_PENDING = "lookup_pending"  # asked; no answer yet (the lane does not wait)
LOOKUP_UNAVAILABLE = "lookup_unavailable"  # no answer in time, unreachable, or nonsense
LOOKUP_REFUSED = "lookup_refused"  # the service says the code is not valid
# vehicles ([lane] group_s): one passage for a vehicle and its occupants
GROUP_EMPTY = "group_empty"  # a vehicle group in which nobody has shown a code
GREENLANE_UNCONFIRMED = "greenlane_unconfirmed"  # no online confirmation: the officer checks
# business rules (CertLogic, edge/rules): published as "<prefix>:<rule Identifier>",
# e.g. "rule_failed:VR-VN-0003"; the screens show the rule's own description
RULE_FAILED = "rule_failed"  # the rule says the certificate does not meet it: deny
RULE_ERROR = "rule_error"  # the rule could not be evaluated on it: an officer decides
RULES_UNAVAILABLE = "rules_unavailable"  # rules are on but none could be loaded

# The lane's own (edge.core.lane): why a passage was decided the way it was
NO_DECISION = "no_decision"  # the officer did not decide in time: denied
NO_CREDENTIAL = "no_credential"  # the officer let someone through without a code
SURGE = "surge"  # recorded in surge mode (the barrier held open)
CLOSED = "closed"  # the checkpoint is closed
SHUTDOWN = "shutdown"  # the kiosk stopped while a traveller was being decided
OPERATOR_OPEN = "operator_open"  # an operator's open-barrier command
INTERNAL_ERROR = "internal_error"  # the lane, or verifying a code, failed: failsafe
NOT_VERIFIED = "not_verified"  # a policy that verifies nothing (tests, tools) refers


def fault(name: str) -> str:
    """The reason code of the lane's fault ``name`` (camera, store, ...): it went failsafe
    (``fault_camera``)."""
    return f"fault_{name}"


def is_fault(code: str) -> bool:
    """``code`` is a fault's (:func:`fault`), of any name."""
    return code.startswith(fault(""))


def of_rule(prefix: str, identifier: str) -> str:
    """The reason code ``prefix`` (RULE_FAILED, RULE_ERROR) for the rule ``identifier``."""
    return f"{prefix}:{identifier}"


def rule_of(code: str) -> tuple[str, str] | None:
    """(prefix, rule identifier) of a reason code that names a business rule, else None."""
    prefix, sep, identifier = code.partition(":")
    return (prefix, identifier) if sep else None
