"""The lane state machine, exhaustively, without any I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.lane import (
    Action,
    CloseBarrier,
    CloseDue,
    CredentialScanned,
    DecisionTimedOut,
    FailsafeRetryDue,
    FaultCleared,
    FaultRaised,
    Lane,
    Note,
    OfficerApproved,
    OfficerDenied,
    OpenBarrier,
    RecordPassage,
    Show,
    Signal,
    StartTimer,
    State,
)
from edge.model import Credential, Verdict
from edge.policy import BasicPolicy

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class FixedPolicy:
    def __init__(self, outcome: str, reasons: tuple[str, ...] = ("r",)) -> None:
        self.verdict = Verdict(outcome, reasons)  # type: ignore[arg-type]

    def evaluate(self, credential: Credential) -> Verdict:
        return self.verdict


def lane(mode: str = "officer", policy: object = None) -> Lane:
    return Lane(
        policy or BasicPolicy(),  # type: ignore[arg-type]
        mode=mode,
        decision_timeout_s=20,
        open_s=5,
        failsafe_retry_s=10,
    )


def cred(text: bytes = b"payload", kind: str = "unrecognised") -> Credential:
    return Credential.from_raw(kind, text)


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, Note)]


def only(actions: list[Action], cls: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, cls)]


def timer(actions: list[Action]) -> StartTimer:
    (t,) = only(actions, StartTimer)
    return t


def test_officer_mode_scan_waits_for_officer_with_policy_recommendation() -> None:
    ln = lane("officer")
    actions = ln.handle(CredentialScanned(cred()), T0)
    assert ln.state is State.AWAITING_DECISION
    assert Show("awaiting_officer", ("unrecognised",)) in actions
    assert Signal("reading") in actions
    t = timer(actions)
    assert isinstance(t.event, DecisionTimedOut)
    assert t.delay_s == 20
    assert not only(actions, RecordPassage)
    assert not only(actions, OpenBarrier)


def test_officer_approval_records_before_opening_and_schedules_close() -> None:
    ln = lane("officer")
    c = cred()
    ln.handle(CredentialScanned(c), T0)
    actions = ln.handle(OfficerApproved(), T0 + timedelta(seconds=3))
    assert kinds(actions)[:2] == [RecordPassage, OpenBarrier]
    (rec,) = only(actions, RecordPassage)
    assert rec.draft.decision == "approved"
    assert rec.draft.decided_by == "officer"
    assert rec.draft.reasons == ("unrecognised",)
    assert rec.draft.credential == c
    assert rec.draft.ts == T0 + timedelta(seconds=3)
    assert rec.draft.mode == "officer"
    close = timer(actions)
    assert isinstance(close.event, CloseDue)
    assert close.delay_s == 5
    assert ln.state is State.OPEN
    after = ln.handle(close.event, T0 + timedelta(seconds=8))
    assert kinds(after) == [CloseBarrier, Signal, Show]
    assert ln.state is State.READY


def test_officer_denial_records_and_never_opens() -> None:
    ln = lane("officer")
    ln.handle(CredentialScanned(cred()), T0)
    actions = ln.handle(OfficerDenied(), T0)
    (rec,) = only(actions, RecordPassage)
    assert (rec.draft.decision, rec.draft.decided_by) == ("denied", "officer")
    assert not only(actions, OpenBarrier)
    assert Signal("denied") in actions
    assert ln.state is State.READY


def test_no_decision_in_time_is_denied_no_decision() -> None:
    ln = lane("officer")
    t = timer(ln.handle(CredentialScanned(cred()), T0))
    actions = ln.handle(t.event, T0 + timedelta(seconds=20))
    (rec,) = only(actions, RecordPassage)
    assert rec.draft.decision == "denied"
    assert rec.draft.decided_by == "policy"
    assert rec.draft.reasons == ("unrecognised", "no_decision")
    assert not only(actions, OpenBarrier)
    assert ln.state is State.READY


def test_stale_decision_timer_after_officer_decided_does_nothing() -> None:
    ln = lane("officer")
    t = timer(ln.handle(CredentialScanned(cred()), T0))
    ln.handle(OfficerDenied(), T0)
    ln.handle(CredentialScanned(cred(b"next")), T0)  # a new decision is pending
    assert ln.handle(t.event, T0 + timedelta(seconds=20)) == []
    assert ln.state is State.AWAITING_DECISION


def test_stale_close_timer_cannot_close_a_later_opening() -> None:
    ln = lane("auto", FixedPolicy("approve"))
    first = timer(ln.handle(CredentialScanned(cred(b"a")), T0))
    ln.handle(first.event, T0)  # closes, READY
    second = timer(ln.handle(CredentialScanned(cred(b"b")), T0))
    assert ln.handle(first.event, T0) == []
    assert ln.state is State.OPEN
    assert second.event != first.event


def test_auto_mode_denies_unrecognised_alone() -> None:
    ln = lane("auto")
    actions = ln.handle(CredentialScanned(cred()), T0)
    (rec,) = only(actions, RecordPassage)
    assert (rec.draft.decision, rec.draft.decided_by) == ("denied", "policy")
    assert rec.draft.reasons == ("unrecognised",)
    assert not only(actions, OpenBarrier)
    assert not only(actions, StartTimer)
    assert ln.state is State.READY


def test_auto_mode_approves_when_policy_approves() -> None:
    ln = lane("auto", FixedPolicy("approve", ("ok",)))
    actions = ln.handle(CredentialScanned(cred()), T0)
    assert kinds(actions)[:2] == [RecordPassage, OpenBarrier]
    assert only(actions, RecordPassage)[0].draft.decided_by == "policy"
    assert ln.state is State.OPEN


def test_auto_mode_refers_to_officer_when_policy_refers() -> None:
    ln = lane("auto", FixedPolicy("refer", ("not_verified",)))
    actions = ln.handle(CredentialScanned(cred()), T0)
    assert ln.state is State.AWAITING_DECISION
    assert not only(actions, RecordPassage)
    assert Show("awaiting_officer", ("not_verified",)) in actions


def test_scan_while_busy_is_queued_and_handled_after() -> None:
    ln = lane("officer")
    ln.handle(CredentialScanned(cred(b"first")), T0)
    second = cred(b"second")
    queued = ln.handle(CredentialScanned(second), T0)
    assert kinds(queued) == []
    actions = ln.handle(OfficerDenied(), T0)
    # the first is decided, then the queued one is presented to the officer
    assert only(actions, RecordPassage)[0].draft.credential == cred(b"first")
    assert ln.state is State.AWAITING_DECISION
    approve = ln.handle(OfficerApproved(), T0)
    assert only(approve, RecordPassage)[0].draft.credential == second


def test_scan_while_open_waits_for_close() -> None:
    ln = lane("auto", FixedPolicy("approve"))
    close = timer(ln.handle(CredentialScanned(cred(b"a")), T0))
    assert kinds(ln.handle(CredentialScanned(cred(b"b")), T0)) == []
    actions = ln.handle(close.event, T0)
    assert kinds(actions)[:3] == [CloseBarrier, Signal, Show]
    assert RecordPassage in kinds(actions)  # b decided right after the barrier closed
    assert ln.state is State.OPEN


def test_officer_approve_without_scan_is_a_recorded_passage() -> None:
    ln = lane("officer")
    actions = ln.handle(OfficerApproved(), T0)
    (rec,) = only(actions, RecordPassage)
    assert rec.draft.credential is None
    assert rec.draft.reasons == ("no_credential",)
    assert OpenBarrier() in actions


def test_officer_deny_while_ready_does_nothing() -> None:
    ln = lane("officer")
    assert kinds(ln.handle(OfficerDenied(), T0)) == []
    assert ln.state is State.READY


def test_officer_deny_while_open_closes_early() -> None:
    ln = lane("auto", FixedPolicy("approve"))
    close = timer(ln.handle(CredentialScanned(cred()), T0))
    actions = ln.handle(OfficerDenied(), T0)
    assert CloseBarrier() in actions
    assert not only(actions, RecordPassage)
    assert ln.state is State.READY
    assert ln.handle(close.event, T0) == []


def test_fault_goes_failsafe_closes_and_ignores_scans_until_cleared() -> None:
    ln = lane("auto", FixedPolicy("approve"))
    ln.handle(CredentialScanned(cred()), T0)  # barrier open
    actions = ln.handle(FaultRaised("camera", "gone"), T0)
    assert CloseBarrier() in actions
    assert Signal("fault") in actions
    assert ln.state is State.FAILSAFE
    assert kinds(ln.handle(CredentialScanned(cred(b"x")), T0)) == []
    assert kinds(ln.handle(OfficerApproved(), T0)) == []
    ln.handle(FaultRaised("store", "disk"), T0)
    assert kinds(ln.handle(FaultCleared("camera"), T0)) == []
    assert ln.state is State.FAILSAFE  # store still faulty
    back = ln.handle(FaultCleared("store"), T0)
    assert ln.state is State.READY
    assert Signal("ready") in back


def test_fault_while_officer_decides_records_the_traveller_as_denied() -> None:
    ln = lane("officer")
    ln.handle(CredentialScanned(cred()), T0)
    actions = ln.handle(FaultRaised("camera", "gone"), T0)
    (rec,) = only(actions, RecordPassage)
    assert rec.draft.decision == "denied"
    assert rec.draft.reasons == ("unrecognised", "fault_camera")
    assert not only(actions, OpenBarrier)


def test_clearing_an_unknown_fault_is_a_no_op() -> None:
    ln = lane()
    assert ln.handle(FaultCleared("camera"), T0) == []
    assert ln.state is State.READY


def test_internal_failure_is_failsafe_then_retries() -> None:
    ln = lane("officer")
    ln.handle(CredentialScanned(cred()), T0)
    actions = ln.fail(T0)
    assert ln.state is State.FAILSAFE
    assert CloseBarrier() in actions
    assert Signal("fault") in actions
    retry = timer(actions)
    assert isinstance(retry.event, FailsafeRetryDue)
    back = ln.handle(retry.event, T0 + timedelta(seconds=10))
    assert ln.state is State.READY
    assert Signal("ready") in back


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="lane mode"):
        lane("party")


def test_credential_repr_never_shows_the_payload() -> None:
    c = cred(b"NGUYEN VAN A|012345678901")
    assert "NGUYEN" not in repr(c)
    assert "012345678901" not in repr(c)
    ln = lane("officer")
    notes = only(ln.handle(CredentialScanned(c), T0), Note)
    assert notes
    assert all("NGUYEN" not in n.text and "0123456789" not in n.text for n in notes)
