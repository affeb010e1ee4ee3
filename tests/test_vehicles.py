"""A vehicle, a family: several people as one passage, judged by the real policy.

The lane is driven purely (events in, actions out), with real codes: chip ID
cards, personal QRs, green-lane URLs read by the verifier, and declarations.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from edge.config import PolicyConfig
from edge.core.lane import (
    Action,
    CredentialScanned,
    DecisionTimedOut,
    GroupWindowEnded,
    Lane,
    LookupAnswered,
    Note,
    OfficerApproved,
    OpenBarrier,
    OpenVehicle,
    RecordPassage,
    SetMode,
    SetPlate,
    Show,
    StartTimer,
    State,
    VehiclePassed,
)
from edge.core.model import Credential, Lookup, Passage, Vehicle
from edge.core.party import Party
from edge.core.policy import RulePolicy, judge_party
from edge.scan.credentials import Verifier
from edge.scan.trust import TrustStore

from .test_declaration import make_declaration
from .test_e2e import assert_valid_passage

NOW = datetime(2026, 11, 26, 8, tzinfo=UTC)
READ = Verifier(TrustStore, clock=lambda: NOW)
GREEN = "https://luongxanh.drvn.gov.vn/tra-cuu?token=GL7f3Kq9ZxT2"


def card(number: str, name: str, born: str) -> Credential:
    day, month, year = born[8:], born[5:7], born[:4]
    text = f"{number}||{name}|{day}{month}{year}|Nam|Thôn 1, Xã A|01012022"
    return READ.read(text.encode())


def pqr(
    number: str, name: str, born: str, qid: str, proxy: str = "", declarer: str = ""
) -> Credential:
    text = f"{number}|{name}|{born}|{'1' if proxy else '0'}|{qid}|{declarer}"
    return READ.read(text.encode())


def decl(number: str, name: str, declaration_id: str) -> Credential:
    claims = make_declaration(
        id_number=number, name=name, declaration_id=declaration_id, birth_date=date(1990, 1, 31)
    )
    return Credential.from_raw("declaration", declaration_id.encode(), valid=True, claims=claims)


# three occupants: A (declaration + ID card), B (personal QR + ID card), C (declaration)
A_DECL = decl("001090000001", "Nguyễn Văn An", "DECL-000A")
A_CARD = card("001090000001", "Nguyễn Văn An", "1990-01-31")
B_QR = pqr("001090000002", "TRAN THI BINH", "1985-05-05", "100000000000000002")
B_CARD = card("001090000002", "Trần Thị Bình", "1985-05-05")
C_DECL = decl("001090000003", "Lê Văn Cường", "DECL-000C")


def lane(mode: str = "auto", **policy: object) -> Lane:
    return Lane(
        RulePolicy(PolicyConfig(**policy)),  # type: ignore[arg-type]
        mode=mode,
        decision_timeout_s=20,
        open_s=5,
        failsafe_retry_s=10,
        group_s=15,
    )


def only(actions: list[Action], cls: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, cls)]


def window(actions: list[Action]) -> GroupWindowEnded:
    (started,) = [a for a in only(actions, StartTimer) if isinstance(a.event, GroupWindowEnded)]
    assert started.delay_s == 15
    return started.event


def show_all(ln: Lane, *codes: Credential) -> GroupWindowEnded:
    """Each code scanned in turn; the window timer of the last."""
    last: GroupWindowEnded | None = None
    for c in codes:
        actions = ln.handle(CredentialScanned(c), NOW)
        found = [a for a in only(actions, StartTimer) if isinstance(a.event, GroupWindowEnded)]
        if found:
            last = found[0].event
    assert last is not None
    return last


def test_a_car_and_its_occupants_are_one_passage_and_the_barrier_opens_once() -> None:
    ln = lane("auto")
    opened = ln.handle(OpenVehicle("car", "51h-123.45"), NOW)
    assert ln.state is State.GROUP
    assert Show("group", ("group_empty",), ("declaration",)) in opened
    window(opened)
    end = show_all(ln, A_DECL, A_CARD, B_QR, B_CARD, C_DECL)
    assert not only(ln.handle(DecisionTimedOut(99), NOW), RecordPassage)  # no stray timer
    done = ln.handle(end, NOW + timedelta(seconds=15))
    (record,) = only(done, RecordPassage)
    assert len(only(done, OpenBarrier)) == 1
    draft = record.draft
    assert draft.decision == "approved"
    assert draft.verdict == "approve"
    assert draft.credentials == (A_DECL, A_CARD, B_QR, B_CARD, C_DECL)
    assert draft.occupants == ((0, 1), (2, 3), (4,))
    assert draft.vehicle is not None
    assert (draft.vehicle.kind, draft.vehicle.opened_by) == ("car", "officer")
    msg = Passage("3f1c5c1e-2f5e-4d77-9d2a-6f7d1b1e2c3a", 7, "lane-1", "site", draft).to_message(
        ("id_number", "name", "plate")
    )
    assert_valid_passage(msg)
    assert msg["vehicle"] == {"kind": "car", "occupants": 3, "opened_by": "officer",
                              "plate": "51H-123.45"}  # fmt: skip
    assert [o["traveller"]["id_number"] for o in msg["occupants"]] == [
        "001090000001",
        "001090000002",
        "001090000003",
    ]
    assert msg["traveller"]["id_number"] == "001090000001"  # the first occupant


def test_one_occupant_refused_denies_the_vehicle_and_the_barrier_stays_shut() -> None:
    ln = lane("auto")
    ln.handle(OpenVehicle("bus"), NOW)
    expired = replace(C_DECL, valid=False, reasons=("expired",))
    end = show_all(ln, A_DECL, expired)
    done = ln.handle(end, NOW)
    (record,) = only(done, RecordPassage)
    assert (record.draft.decision, record.draft.reasons) == ("denied", ("expired",))
    assert not only(done, OpenBarrier)
    assert record.draft.occupants == ((0,), (1,))


def test_in_officer_mode_the_officer_decides_the_whole_vehicle() -> None:
    ln = lane("officer")
    ln.handle(OpenVehicle("truck"), NOW)
    end = show_all(ln, A_DECL, C_DECL)
    waiting = ln.handle(end, NOW)
    assert ln.state is State.AWAITING_DECISION
    assert Show("awaiting_officer", (), ()) in waiting  # recommended: approve
    ln.handle(SetPlate("29C-456.78"), NOW)
    (record,) = only(ln.handle(OfficerApproved(), NOW), RecordPassage)
    assert record.draft.decided_by == "officer"
    assert record.draft.vehicle is not None
    assert record.draft.vehicle.plate == "29C-456.78"
    # the officer may also decide before the window ends
    ln2 = lane("officer")
    ln2.handle(OpenVehicle("car"), NOW)
    ln2.handle(CredentialScanned(A_DECL), NOW)
    (early,) = only(ln2.handle(OfficerApproved(), NOW), RecordPassage)
    assert early.draft.occupants == ((0,),)
    assert ln2.handle(GroupWindowEnded(2), NOW) == []  # its window is gone with it


def test_codes_join_the_right_occupant() -> None:
    lone = Party.of(A_DECL)  # one traveller: a kind not yet shown joins; the policy judges
    assert lone.place(B_CARD) == "joined"
    assert lone.place(C_DECL) == "next"  # a second declaration: the next traveller's
    group = Party([], vehicle=Vehicle("car"))
    assert group.place(A_DECL) == "new_person"
    assert group.place(B_CARD) == "new_person"  # another person's card: not A's
    assert group.place(B_QR) == "joined"  # B's, a kind B has not shown
    assert group.place(A_CARD) == "new_person"  # A's card comes too late: its own row
    assert group.place(B_QR) == "duplicate"
    assert group.place(READ.read(b"hello")) == "ignored"  # unrecognised never joins
    assert [len(p) for p in group.people] == [1, 2, 1]


def test_an_empty_vehicle_is_referred_then_denied_without_a_decision() -> None:
    ln = lane("auto")
    opened = ln.handle(OpenVehicle("car"), NOW)
    waiting = ln.handle(window(opened), NOW)
    assert Show("awaiting_officer", ("group_empty",), ("declaration",)) in waiting
    (record,) = only(ln.handle(DecisionTimedOut(2), NOW), RecordPassage)
    assert record.draft.reasons == ("group_empty", "no_decision")
    assert record.draft.decision == "denied"


def test_a_green_lane_code_opens_the_group_and_its_lookup_fills_in_the_plate() -> None:
    ln = lane("auto")
    green = replace(READ.read(GREEN.encode()), lookup=Lookup("pending"))
    assert green.kind == "greenlane"
    opened = ln.handle(CredentialScanned(green), NOW)
    assert ln.state is State.GROUP
    assert "lookup_pending" in only(opened, Show)[0].reasons
    end = show_all(ln, A_DECL)
    answer = Lookup("confirmed", {"plate": "51C-999.99", "vehicle": "truck", "drivers": []})
    ln.handle(LookupAnswered(green.sha256, answer), NOW)
    (record,) = only(ln.handle(end, NOW), RecordPassage)
    draft = record.draft
    assert draft.decision == "approved"
    assert draft.vehicle is not None
    assert (draft.vehicle.kind, draft.vehicle.plate, draft.vehicle.opened_by) == (
        "truck",
        "51C-999.99",
        "greenlane",
    )
    assert draft.credentials[0].kind == "greenlane"
    assert draft.occupants == ((1,),)  # the vehicle's code is nobody's


@pytest.mark.parametrize(
    ("answer", "outcome", "reason"),
    [
        (Lookup("unavailable"), "refer", "lookup_unavailable"),
        (Lookup("refused"), "deny", "lookup_refused"),
        (None, "refer", "greenlane_unconfirmed"),  # no lookup configured: the officer checks
    ],
)
def test_an_unconfirmed_green_lane_code_goes_to_the_officer(
    answer: Lookup | None, outcome: str, reason: str
) -> None:
    green = replace(READ.read(GREEN.encode()), lookup=answer)
    party = Party([[A_DECL]], vehicle=Vehicle("truck"), vehicle_codes=[green])
    verdict = judge_party(RulePolicy(PolicyConfig()), party, NOW)
    assert (verdict.outcome, verdict.reasons) == (outcome, (reason,))


def test_surge_records_a_vehicle_as_one_passage_with_the_barrier_held_open() -> None:
    ln = lane("surge")
    ln.start(NOW)
    opened = ln.handle(OpenVehicle("bus"), NOW)
    window(opened)
    end = show_all(ln, A_DECL, B_QR, C_DECL)
    assert ln.state is State.SURGE
    done = ln.handle(end, NOW)
    (record,) = only(done, RecordPassage)
    assert record.draft.decision == "approved"
    assert "surge" in record.draft.reasons
    assert record.draft.occupants == ((0,), (1,), (2,))
    assert not [a for a in done if type(a).__name__ == "CloseBarrier"]
    # leaving surge mid-group still records who passed the open barrier
    ln.handle(OpenVehicle("car"), NOW)
    ln.handle(CredentialScanned(C_DECL), NOW)
    (left,) = only(ln.handle(SetMode("officer"), NOW), RecordPassage)
    assert left.draft.occupants == ((0,),)


def test_a_vehicle_group_is_refused_unless_the_lane_is_ready() -> None:
    busy = lane("officer")
    busy.handle(CredentialScanned(A_DECL), NOW)
    assert only(busy.handle(OpenVehicle("car"), NOW), Note)[0].text.startswith(
        "vehicle group refused"
    )
    closed = lane("closed")
    assert only(closed.handle(OpenVehicle("car"), NOW), Note)[0].text.startswith(
        "vehicle group refused"
    )
    ready = lane("officer")
    assert only(ready.handle(OpenVehicle("tank"), NOW), Note)[0].text.startswith("vehicle 'tank'")
    assert ready.state is State.READY
    assert only(ready.handle(SetPlate("51H-1"), NOW), Note)[0].text.startswith("plate ignored")


# -- a family: a child's proxy code declared by a parent -------------------------------

PARENT_QID = "200000000000000001"
PARENT_QR = pqr("001085000009", "PHAM VAN DUNG", "1985-03-03", PARENT_QID)
PARENT_CARD = card("001085000009", "Phạm Văn Dũng", "1985-03-03")
CHILD_QR = pqr("", "PHAM THI EM", "2016-07-**", "200000000000000002", proxy="1",
               declarer=PARENT_QID)  # fmt: skip


def test_a_proxy_code_joins_its_declarer_and_is_vouched_for() -> None:
    ln = lane("auto")
    ln.handle(CredentialScanned(PARENT_QR), NOW)
    ln.handle(CredentialScanned(CHILD_QR), NOW)  # a personal QR again, but the parent's child
    assert ln.state is State.AWAITING_DECISION  # the parent is not confirmed yet
    done = ln.handle(CredentialScanned(PARENT_CARD), NOW)
    (record,) = only(done, RecordPassage)
    assert record.draft.decision == "approved"
    assert record.draft.occupants == ((0, 1), (2,))  # the card is the parent's
    assert record.draft.vehicle is None
    msg = Passage("3f1c5c1e-2f5e-4d77-9d2a-6f7d1b1e2c3a", 1, "l", "s", record.draft).to_message(
        ("name", "qid")
    )
    assert_valid_passage(msg)
    assert [o["traveller"]["qid"] for o in msg["occupants"]] == [PARENT_QID, "200000000000000002"]


def test_the_child_may_come_first() -> None:
    ln = lane("officer")
    ln.handle(CredentialScanned(CHILD_QR), NOW)
    ln.handle(CredentialScanned(PARENT_QR), NOW)  # the declarer of the code shown
    shown = ln.handle(CredentialScanned(PARENT_CARD), NOW)
    assert Show("awaiting_officer", (), ()) in shown  # recommended: approve, both
    (record,) = only(ln.handle(OfficerApproved(), NOW), RecordPassage)
    assert record.draft.occupants == ((0,), (1, 2))


def test_a_proxy_code_alone_or_of_another_family_is_not_vouched_for() -> None:
    policy = RulePolicy(PolicyConfig())
    alone = judge_party(policy, Party([[CHILD_QR]]), NOW)
    assert (alone.outcome, alone.reasons) == ("refer", ("personal_qr_unconfirmed",))
    stranger = pqr("001085000010", "VO VAN F", "1980-01-01", "300000000000000001")
    stranger_card = card("001085000010", "Võ Văn F", "1980-01-01")
    other = judge_party(policy, Party([[stranger, stranger_card], [CHILD_QR]]), NOW)
    assert other.outcome == "refer"  # someone else's confirmed code vouches for nobody here


def test_a_lookup_answer_updates_the_code_and_auto_mode_decides() -> None:
    ln = lane("auto")
    pending = replace(B_QR, lookup=Lookup("pending"))
    shown = ln.handle(CredentialScanned(pending), NOW)
    assert Show("awaiting_officer", ("lookup_pending",), ("id_card",)) in shown
    done = ln.handle(LookupAnswered(B_QR.sha256, Lookup("confirmed")), NOW)
    (record,) = only(done, RecordPassage)
    assert record.draft.decision == "approved"
    assert record.draft.credentials[0].lookup == Lookup("confirmed")
    late = ln.handle(LookupAnswered(B_QR.sha256, Lookup("refused")), NOW)
    assert [a.text for a in only(late, Note)] == [
        "lookup answered (refused) for a code no longer shown"
    ]


# -- what a crowd, a copied code or a hostile service must not get through ------------------


def confirmed_green(**data: str) -> Credential:
    answer = {"plate": "51C-999.99", "vehicle": "bus", **data}
    return replace(READ.read(GREEN.encode()), lookup=Lookup("confirmed", answer))


def test_a_vehicle_code_never_joins_a_person() -> None:
    assert Party.of(A_DECL).place(READ.read(GREEN.encode())) == "next"
    ln = lane("officer")
    ln.handle(CredentialScanned(A_DECL), NOW)
    queued = ln.handle(CredentialScanned(READ.read(GREEN.encode())), NOW)
    assert next(a.text for a in only(queued, Note)).startswith("scan queued")
    assert [c.kind for c in ln.party().credentials] == ["declaration"]  # type: ignore[union-attr]


def test_the_same_signed_code_twice_in_one_party_is_a_replay() -> None:
    twin = Credential.from_raw("declaration", b"re-rendered", valid=True, claims=A_DECL.claims)
    assert twin.sha256 != A_DECL.sha256
    assert twin.ref == A_DECL.ref
    party = Party([[A_DECL], [twin]], vehicle=Vehicle("car", "51H-123.45"))
    verdict = judge_party(RulePolicy(PolicyConfig()), party, NOW)
    assert verdict.outcome == "deny"
    assert "replayed" in verdict.reasons


def test_the_same_green_lane_code_again_within_the_replay_window_is_a_replay() -> None:
    ln = Lane(RulePolicy(PolicyConfig()), mode="auto", decision_timeout_s=20, open_s=5,
              failsafe_retry_s=10, group_s=15, replay_window_s=600)  # fmt: skip
    end = show_all(ln, confirmed_green(), A_DECL)
    (first,) = only(ln.handle(end, NOW), RecordPassage)
    assert first.draft.decision == "approved"
    ln.handle(VehiclePassed(), NOW)
    later = NOW + timedelta(minutes=5)
    end = show_all(ln, confirmed_green(), C_DECL)
    (second,) = only(ln.handle(end, later), RecordPassage)
    assert second.draft.decision == "denied"
    assert "replayed" in second.draft.reasons


def proxy(name: str, born: str, qid: str, declarer: str = PARENT_QID) -> Credential:
    return pqr("", name, born, qid, proxy="1", declarer=declarer)


def test_vouching_is_for_dependants_only_and_a_few_of_them() -> None:
    policy = RulePolicy(PolicyConfig())
    adult = proxy("PHAM VAN LON", "1990-01-01", "200000000000000003")
    grandma = proxy("PHAM THI BA", "1950-**-**", "200000000000000004")
    verdict = judge_party(policy, Party([[PARENT_QR, PARENT_CARD], [adult]]), NOW)
    assert verdict.outcome == "refer"  # an adult of working age shows their own code
    verdict = judge_party(policy, Party([[PARENT_QR, PARENT_CARD], [grandma]]), NOW)
    assert verdict.outcome == "approve"
    children = [
        [proxy(f"PHAM THI CON {letter}", "2015-01-01", f"2000000000000001{n:02d}")]
        for n, letter in enumerate("ABCDEFG")
    ]
    verdict = judge_party(policy, Party([[PARENT_QR, PARENT_CARD], *children[:6]]), NOW)
    assert verdict.outcome == "approve"
    verdict = judge_party(policy, Party([[PARENT_QR, PARENT_CARD], *children]), NOW)
    assert verdict.outcome == "refer"  # nobody declares for seven: each must show theirs
    waiting = replace(CHILD_QR, lookup=Lookup("pending"))
    verdict = judge_party(policy, Party([[PARENT_QR, PARENT_CARD], [waiting]]), NOW)
    assert verdict.outcome == "refer"  # the platform may still refuse the child's code


def test_a_confirmation_must_be_of_this_code_and_still_valid() -> None:
    policy = RulePolicy(PolicyConfig(accept=("personal_qr",)))
    whose = {"name": "TRAN THI BINH", "number": "001090000002", "birth_date": "1985-05-05"}
    theirs = replace(B_QR, lookup=Lookup("confirmed", whose))
    assert judge_party(policy, Party([[theirs]]), NOW).outcome == "approve"
    other = {"name": "LE VAN KHAC", "number": "079190099999", "birth_date": "1970-02-02"}
    copied = replace(B_QR, lookup=Lookup("confirmed", other))  # the QID copied onto B's code
    verdict = judge_party(policy, Party([[copied]]), NOW)
    assert (verdict.outcome, verdict.reasons) == ("deny", ("lookup_refused",))
    for until, outcome in [("2026-11-26T09:00:00Z", "approve"), ("2026-11-26T07:00:00Z", "deny"),
                           ("whenever", "deny")]:  # fmt: skip
        dated = replace(B_QR, lookup=Lookup("confirmed", {"valid_until": until}))
        assert judge_party(policy, Party([[dated]]), NOW).outcome == outcome, until
    expired_green = replace(
        confirmed_green(), lookup=Lookup("confirmed", {"valid_until": "2026-11-01T00:00:00Z"})
    )
    party = Party([[A_DECL]], vehicle=Vehicle("truck"), vehicle_codes=[expired_green])
    assert judge_party(RulePolicy(PolicyConfig()), party, NOW).outcome == "deny"


def test_a_cached_confirmation_names_the_vehicle_and_only_a_vehicle_code_does() -> None:
    ln = lane("auto")
    ln.handle(CredentialScanned(confirmed_green()), NOW)
    vehicle = ln.party().vehicle  # type: ignore[union-attr]
    assert vehicle is not None
    assert (vehicle.kind, vehicle.plate) == ("bus", "51C-999.99")
    # a person's confirmation carrying a plate never names the vehicle
    typed = lane("auto")
    typed.handle(OpenVehicle("car"), NOW)
    pending = replace(B_QR, lookup=Lookup("pending"))
    typed.handle(CredentialScanned(pending), NOW)
    typed.handle(LookupAnswered(B_QR.sha256, Lookup("confirmed", {"plate": "99Z-999.99"})), NOW)
    assert typed.party().vehicle == Vehicle("car", "", "officer")  # type: ignore[union-attr]
    surge = lane("surge")
    surge.start(NOW)
    surge.handle(CredentialScanned(confirmed_green()), NOW)
    assert surge.party().vehicle.plate == "51C-999.99"  # type: ignore[union-attr]


def test_surge_records_every_vehicle_and_every_stray_code() -> None:
    ln = lane("surge")
    ln.start(NOW)
    ln.handle(CredentialScanned(READ.read(GREEN.encode())), NOW)
    ln.handle(CredentialScanned(A_DECL), NOW)
    stray = ln.handle(CredentialScanned(READ.read(b"some|random|text")), NOW)
    (single,) = only(stray, RecordPassage)  # recorded on its own, the group goes on
    assert [c.kind for c in single.draft.credentials] == ["unrecognised"]
    assert single.draft.vehicle is None
    second = READ.read(b"https://luongxanh.drvn.gov.vn/tra-cuu?token=SECONDtruck99")
    changed = ln.handle(CredentialScanned(second), NOW)
    (first_vehicle,) = only(changed, RecordPassage)  # the next vehicle: the first is done
    assert [c.kind for c in first_vehicle.draft.credentials] == ["greenlane", "declaration"]
    end = window(changed)
    (second_vehicle,) = only(ln.handle(end, NOW), RecordPassage)
    assert [c.sha256 for c in second_vehicle.draft.credentials] == [second.sha256]
    # an officer's vehicle with a typed plate and no codes passed the open barrier too
    opened = ln.handle(OpenVehicle("truck", "51C-123.45"), NOW)
    (empty,) = only(ln.handle(window(opened), NOW), RecordPassage)
    assert empty.draft.vehicle == Vehicle("truck", "51C-123.45", "officer")
    assert "group_empty" in empty.draft.reasons
    untyped = ln.handle(OpenVehicle("car"), NOW)
    assert only(ln.handle(window(untyped), NOW), RecordPassage) == []  # nothing to record


def test_an_internal_failure_in_surge_still_records_the_vehicle() -> None:
    ln = lane("surge")
    ln.start(NOW)
    ln.handle(CredentialScanned(READ.read(GREEN.encode())), NOW)
    ln.handle(CredentialScanned(B_QR), NOW)
    failed = ln.fail(NOW)
    (record,) = only(failed, RecordPassage)
    assert record.draft.decision == "approved"  # the barrier was open for them
    assert record.draft.reasons == ("surge", "internal_error")
    assert [c.kind for c in record.draft.credentials] == ["greenlane", "personal_qr"]
    assert ln.state is State.FAILSAFE


def test_a_child_shown_just_after_the_parent_is_vouched_by_that_approval() -> None:
    ln = lane("auto")
    ln.handle(CredentialScanned(PARENT_QR), NOW)
    (parent,) = only(ln.handle(CredentialScanned(PARENT_CARD), NOW), RecordPassage)
    assert parent.draft.decision == "approved"
    queued = ln.handle(CredentialScanned(CHILD_QR), NOW + timedelta(seconds=2))
    assert not only(queued, RecordPassage)  # the barrier is still open for the parent
    (child,) = only(ln.handle(VehiclePassed(), NOW + timedelta(seconds=3)), RecordPassage)
    assert (child.draft.decision, child.draft.reasons) == ("approved", ())
    assert [c.sha256 for c in child.draft.credentials] == [CHILD_QR.sha256]  # its own passage
    # a moment is the group window: a child shown later shows who vouches again
    late = lane("auto")
    late.handle(CredentialScanned(PARENT_QR), NOW)
    late.handle(CredentialScanned(PARENT_CARD), NOW)
    late.handle(VehiclePassed(), NOW)
    shown = late.handle(CredentialScanned(CHILD_QR), NOW + timedelta(seconds=16))
    assert Show("awaiting_officer", ("personal_qr_unconfirmed",), ("id_card",)) in shown
    # an officer's approval of what the policy referred vouches for nobody
    officer = lane("officer")
    officer.handle(CredentialScanned(PARENT_QR), NOW)
    officer.handle(OfficerApproved(), NOW)
    officer.handle(VehiclePassed(), NOW)
    shown = officer.handle(CredentialScanned(CHILD_QR), NOW + timedelta(seconds=1))
    assert Show("awaiting_officer", ("personal_qr_unconfirmed",), ("id_card",)) in shown
