"""The lane state machine, exhaustively, without any I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from edge.core.lane import (
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
    SetMode,
    Show,
    Signal,
    StartTimer,
    State,
)
from edge.core.model import Credential, Verdict
from edge.core.policy import BasicPolicy

from .test_declaration import make_declaration

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


class FixedPolicy:
    def __init__(self, outcome: str, reasons: tuple[str, ...] = ("r",)) -> None:
        self.verdict = Verdict(outcome, reasons)  # type: ignore[arg-type]
        self.seen: list[tuple[Sequence[Credential], list[str]]] = []

    def evaluate(
        self, credentials: Sequence[Credential], now: datetime, replayed: Iterable[str] = ()
    ) -> Verdict:
        self.seen.append((list(credentials), list(replayed)))
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


def signed_declaration(raw: bytes) -> Credential:
    """A verified declaration (claims present): replay checks know it by its issuer and id."""
    claims = make_declaration()
    return Credential.from_raw("declaration", raw, valid=True, claims=claims)


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
    assert rec.draft.credentials == (c,)
    assert rec.draft.verdict == "deny"
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
    first = cred(b"first", "declaration")
    ln.handle(CredentialScanned(first), T0)
    second = cred(b"second", "declaration")
    queued = ln.handle(CredentialScanned(second), T0)
    assert kinds(queued) == []
    actions = ln.handle(OfficerDenied(), T0)
    # the first is decided, then the queued one is presented to the officer
    assert only(actions, RecordPassage)[0].draft.credentials == (first,)
    assert ln.state is State.AWAITING_DECISION
    approve = ln.handle(OfficerApproved(), T0)
    assert only(approve, RecordPassage)[0].draft.credentials == (second,)


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
    assert rec.draft.credentials == ()
    assert rec.draft.verdict is None
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


class ScriptedPolicy:
    """Approves once a credential of each kind in ``needed`` has been shown."""

    def __init__(self, needed: set[str]) -> None:
        self.needed = needed

    def evaluate(
        self, credentials: Sequence[Credential], now: datetime, replayed: Iterable[str] = ()
    ) -> Verdict:
        if set(replayed):
            return Verdict("deny", ("replayed",))
        missing = self.needed - {c.kind for c in credentials}
        if missing:
            return Verdict("refer", ("id_card_required",), tuple(sorted(missing)))
        return Verdict("approve", ())


def test_start_closes_the_barrier_or_holds_it_open_in_surge() -> None:
    assert kinds(lane("officer").start(T0)) == [CloseBarrier, Signal, Show]
    surge = lane("surge")
    assert kinds(surge.start(T0)) == [OpenBarrier, Signal, Show]
    assert surge.state is State.SURGE


def test_auto_mode_waits_for_the_missing_code_then_decides() -> None:
    ln = lane("auto", ScriptedPolicy({"declaration", "id_card"}))
    decl, card = cred(b"decl", "declaration"), cred(b"card", "id_card")
    first = ln.handle(CredentialScanned(decl), T0)
    assert ln.state is State.AWAITING_DECISION
    assert Show("awaiting_officer", ("id_card_required",), ("id_card",)) in first
    assert ln.handle(CredentialScanned(decl), T0) == []  # the same code again: nothing new
    second = ln.handle(CredentialScanned(card), T0)
    (rec,) = only(second, RecordPassage)
    assert rec.draft.credentials == (decl, card)
    assert rec.draft.decision == "approved"
    assert rec.draft.verdict == "approve"
    assert OpenBarrier() in second


def test_a_second_code_of_the_same_kind_is_the_next_traveller() -> None:
    ln = lane("auto", ScriptedPolicy({"declaration", "id_card"}))
    first, other = cred(b"d1", "declaration"), cred(b"d2", "declaration")
    ln.handle(CredentialScanned(first), T0)
    assert kinds(ln.handle(CredentialScanned(other), T0)) == []  # queued
    timed_out = ln.handle(DecisionTimedOut(1), T0 + timedelta(seconds=20))
    records = only(timed_out, RecordPassage)
    assert records[0].draft.credentials == (first,)
    assert records[0].draft.reasons == ("id_card_required", "no_decision")
    assert ln.state is State.AWAITING_DECISION  # the queued traveller is up


def test_officer_mode_merges_codes_and_waits_for_the_officer() -> None:
    ln = lane("officer", ScriptedPolicy({"declaration", "id_card"}))
    ln.handle(CredentialScanned(cred(b"decl", "declaration")), T0)
    merged = ln.handle(CredentialScanned(cred(b"card", "id_card")), T0)
    assert Show("awaiting_officer", (), ()) in merged  # now recommended: approve
    assert not only(merged, RecordPassage)  # the officer decides
    (rec,) = only(ln.handle(OfficerApproved(), T0), RecordPassage)
    assert len(rec.draft.credentials) == 2
    assert rec.draft.verdict == "approve"
    assert rec.draft.decided_by == "officer"


def test_replay_within_the_window_is_flagged_and_expires() -> None:
    policy = FixedPolicy("approve")
    ln = Lane(
        policy,
        mode="auto",
        decision_timeout_s=20,
        open_s=5,
        failsafe_retry_s=10,
        replay_window_s=600,
    )
    decl = signed_declaration(b"original encoding")
    close = timer(ln.handle(CredentialScanned(decl), T0))
    ln.handle(close.event, T0 + timedelta(seconds=5))
    # the same declaration, encoded differently (other bytes, same issuer and id)
    again = signed_declaration(b"re-encoded copy")
    assert again.sha256 != decl.sha256
    ln.handle(CredentialScanned(again), T0 + timedelta(seconds=60))
    assert policy.seen[-1][1] == [decl.ref]
    ln.handle(OfficerDenied(), T0 + timedelta(seconds=61))  # close early
    ln.handle(CredentialScanned(decl), T0 + timedelta(seconds=700))
    assert policy.seen[-1][1] == []  # outside the window


def test_a_replay_window_of_zero_is_off() -> None:
    policy = FixedPolicy("approve")
    ln = Lane(policy, mode="auto", decision_timeout_s=20, open_s=5, failsafe_retry_s=10)
    decl = signed_declaration(b"original encoding")
    close = timer(ln.handle(CredentialScanned(decl), T0))
    ln.handle(close.event, T0 + timedelta(seconds=5))
    ln.handle(CredentialScanned(decl), T0 + timedelta(seconds=60))
    assert policy.seen[-1][1] == []  # not replayed: the check is off


def test_replay_memory_survives_a_restart_through_remember() -> None:
    policy = FixedPolicy("approve")
    ln = Lane(
        policy,
        mode="auto",
        decision_timeout_s=20,
        open_s=5,
        failsafe_retry_s=10,
        replay_window_s=600,
    )
    decl = signed_declaration(b"decl")
    assert decl.ref is not None
    ln.remember(decl.ref, T0)
    ln.handle(CredentialScanned(decl), T0 + timedelta(seconds=30))
    assert policy.seen[-1][1] == [decl.ref]


def test_id_cards_are_not_replay_checked() -> None:
    policy = FixedPolicy("approve")
    ln = Lane(
        policy,
        mode="auto",
        decision_timeout_s=20,
        open_s=5,
        failsafe_retry_s=10,
        replay_window_s=600,
    )
    card = cred(b"card", "id_card")
    ln.remember(card.sha256, T0)
    ln.handle(CredentialScanned(card), T0 + timedelta(seconds=30))
    assert policy.seen[-1][1] == []


def test_surge_records_every_scan_and_keeps_the_barrier_open() -> None:
    ln = lane("officer", FixedPolicy("deny", ("expired",)))
    ln.handle(CredentialScanned(cred(b"waiting")), T0)
    to_surge = ln.handle(SetMode("surge", by="officer"), T0)
    (rec,) = only(to_surge, RecordPassage)  # the traveller being decided is recorded
    assert rec.draft.reasons == ("expired", "surge")
    assert OpenBarrier(hold=True) in to_surge
    assert ln.state is State.SURGE
    scan = ln.handle(CredentialScanned(cred(b"next")), T0)
    (rec,) = only(scan, RecordPassage)
    assert (rec.draft.decision, rec.draft.verdict, rec.draft.mode) == ("approved", "deny", "surge")
    assert rec.draft.reasons == ("expired", "surge")
    assert not only(scan, CloseBarrier)
    assert only(ln.handle(OfficerDenied(), T0), Note)  # buttons do nothing in surge
    back = ln.handle(SetMode("officer"), T0)
    assert CloseBarrier() in back
    assert ln.state is State.READY


def test_unknown_mode_change_is_refused() -> None:
    ln = lane("officer")
    (note,) = ln.handle(SetMode("party"), T0)
    assert isinstance(note, Note)
    assert ln.mode == "officer"


def test_fault_in_surge_closes_and_clearing_reopens() -> None:
    ln = lane("surge")
    ln.start(T0)
    assert CloseBarrier() in ln.handle(FaultRaised("camera", "gone"), T0)
    assert OpenBarrier(hold=True) in ln.handle(FaultCleared("camera"), T0)
    assert ln.state is State.SURGE


def test_a_stray_unrecognised_code_does_not_spoil_a_presentation() -> None:
    ln = lane("officer", ScriptedPolicy({"declaration"}))
    decl = cred(b"decl", "declaration")
    ln.handle(CredentialScanned(decl), T0)
    assert kinds(ln.handle(CredentialScanned(cred(b"shop app")), T0)) == []
    (rec,) = only(ln.handle(OfficerApproved(), T0), RecordPassage)
    assert rec.draft.credentials == (decl,)
    assert ln.state is State.OPEN  # and no phantom traveller queued behind


def test_the_right_code_after_a_wrong_one_replaces_it() -> None:
    ln = lane("auto", ScriptedPolicy({"declaration"}))
    first = ln.handle(CredentialScanned(cred(b"shop app")), T0)
    assert ln.state is State.AWAITING_DECISION  # scripted policy refers the lone wrong code
    assert not only(first, RecordPassage)
    decl = cred(b"decl", "declaration")
    (rec,) = only(ln.handle(CredentialScanned(decl), T0), RecordPassage)
    assert rec.draft.credentials == (decl,)
    assert rec.draft.decision == "approved"


def test_internal_failure_records_the_traveller_being_decided() -> None:
    ln = lane("officer")
    decl = cred(b"decl", "declaration")
    ln.handle(CredentialScanned(decl), T0)
    actions = ln.fail(T0)
    (rec,) = only(actions, RecordPassage)
    assert rec.draft.credentials == (decl,)
    assert rec.draft.decision == "denied"
    assert rec.draft.reasons[-1] == "internal_error"
    assert kinds(actions).index(CloseBarrier) < kinds(actions).index(RecordPassage)


def test_log_handles_do_not_reveal_the_payload_hash() -> None:
    c = cred(b"079190012345|...")
    assert c.short_id == cred(b"079190012345|...").short_id  # stable within a run
    assert c.short_id not in c.sha256


# -- closed mode and the operator's remote opening (issue 5) -------------------------


def test_closed_mode_keeps_the_barrier_shut_and_records_scans_as_denied() -> None:
    ln = lane("closed")
    start = ln.start(T0)
    assert CloseBarrier() in start
    assert Show("closed") in start
    acts = ln.handle(CredentialScanned(cred(b"a")), T0)
    assert OpenBarrier() not in acts
    (rec,) = only(acts, RecordPassage)
    assert rec.draft.decision == "denied"
    assert "closed" in rec.draft.reasons
    assert rec.draft.mode == "closed"
    assert ln.state is State.READY
    # the officer cannot let anyone through a closed checkpoint
    acts = ln.handle(OfficerApproved(), T0)
    assert not only(acts, RecordPassage)
    assert OpenBarrier() not in acts


def test_closing_while_a_traveller_is_decided_denies_them_and_closes() -> None:
    ln = lane("officer")
    ln.handle(CredentialScanned(cred(b"a")), T0)
    assert ln.state is State.AWAITING_DECISION
    acts = ln.handle(SetMode("closed"), T0)
    (rec,) = only(acts, RecordPassage)
    assert rec.draft.decision == "denied"
    assert "closed" in rec.draft.reasons
    assert CloseBarrier() in acts
    assert ln.state is State.READY
    assert Show("closed") in acts


def test_closing_an_open_barrier_shuts_it_and_reopening_the_lane_shows_ready() -> None:
    ln = lane("officer")
    ln.handle(OfficerApproved(), T0)
    assert ln.state is State.OPEN
    acts = ln.handle(SetMode("closed"), T0)
    assert CloseBarrier() in acts
    assert ln.state is State.READY
    acts = ln.handle(SetMode("officer"), T0)
    assert Show("ready") in acts
    assert Signal("ready") in acts


def test_surge_to_closed_closes_the_barrier() -> None:
    ln = lane("surge")
    ln.start(T0)
    assert ln.state is State.SURGE
    acts = ln.handle(SetMode("closed"), T0)
    assert CloseBarrier() in acts
    assert ln.state is State.READY


def test_operator_open_records_before_opening_then_closes_on_time() -> None:
    from edge.core.lane import OperatorOpen

    ln = lane("closed")
    acts = ln.handle(OperatorOpen(by="command 1"), T0)
    assert kinds(acts).index(RecordPassage) < kinds(acts).index(OpenBarrier)
    (rec,) = only(acts, RecordPassage)
    assert rec.draft.decided_by == "operator"
    assert rec.draft.reasons == ("operator_open",)
    assert rec.draft.credentials == ()
    assert ln.state is State.OPEN
    close = timer(acts)
    assert close.delay_s == 5
    acts = ln.handle(close.event, T0 + timedelta(seconds=5))
    assert CloseBarrier() in acts
    assert Show("closed") in acts  # back to the closed checkpoint


@pytest.mark.parametrize("setup", ["awaiting", "open", "surge", "failsafe"])
def test_operator_open_is_refused_unless_the_lane_is_ready(setup: str) -> None:
    from edge.core.lane import OperatorOpen

    ln = lane("surge" if setup == "surge" else "officer")
    ln.start(T0)
    if setup == "awaiting":
        ln.handle(CredentialScanned(cred(b"a")), T0)
    elif setup == "open":
        ln.handle(OfficerApproved(), T0)
    elif setup == "failsafe":
        ln.handle(FaultRaised("camera", "gone"), T0)
    before = ln.state
    acts = ln.handle(OperatorOpen(), T0)
    assert not only(acts, RecordPassage)
    assert OpenBarrier() not in acts
    assert ln.state is before
    assert any("refused" in n.text for n in only(acts, Note))
