"""The delivery state machine, exhaustively, without a broker, a store or a thread.

Driven by :class:`~tests.delivery_rig.Rig`, which answers as the publisher thread
does, with a clock the test moves.
"""

from __future__ import annotations

import logging

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge.mqtt.delivery import SENT_MARK_S
from edge.mqtt.delivery_events import (
    Acked,
    Acknowledged,
    AlertRejected,
    AwaitReadAhead,
    Batch,
    Booked,
    BookFailed,
    Bookkeep,
    CentralStatus,
    Connected,
    Log,
    Puback,
    Pubacks,
    Publish,
    ReadAhead,
    ReadFailed,
    ReadNow,
    Stored,
)

from .delivery_rig import Rig, kinds, logged, of, payload, pid, published

# -- what goes, in which order ------------------------------------------------------


def test_a_fresh_passage_is_read_and_handed_to_paho_at_once() -> None:
    rig = Rig()
    assert rig.feed(Stored(1)) == []
    assert rig.tick() == [ReadNow((1,)), Publish((payload(1),))]
    assert rig.machine.backlog == 1
    assert rig.machine.busy  # in flight
    assert rig.machine.published == 0  # until the PUBACK


def test_nothing_is_handed_to_paho_while_the_link_is_down() -> None:
    rig = Rig()
    rig.feed(Stored(1))
    assert rig.tick(link_up=False) == []
    assert rig.tick() == [ReadNow((1,)), Publish((payload(1),))]


def test_fresh_passages_go_first_then_the_backlog_oldest_first() -> None:
    rig = Rig(stored=[1, 2, 3])
    rig.feed(Stored(5), Stored(4))
    rig.tick()
    assert rig.published == [4, 5, 1, 2, 3]


def test_a_passage_stored_twice_is_sent_once() -> None:
    rig = Rig()
    rig.feed(Stored(1), Stored(1))
    rig.tick()
    rig.tick()
    assert rig.published == [1]


def test_the_backlog_waits_for_the_ingest_but_fresh_passages_do_not() -> None:
    rig = Rig(stored=[1, 2], online=None)
    assert rig.machine.central_online is None  # no status seen yet
    rig.round(Stored(3))
    assert rig.published == [3]
    actions = rig.round(CentralStatus(online=True))
    assert logged(actions) == ["publisher: central ingest online; backlog 3"]
    assert rig.machine.central_online is True
    assert rig.published == [3, 1, 2]
    actions = rig.round(CentralStatus(online=False), Stored(4))
    assert logged(actions) == ["publisher: central ingest offline; holding the backlog"]
    assert rig.published == [3, 1, 2, 4]


def test_an_ingest_said_offline_holds_the_backlog_when_the_kiosk_starts() -> None:
    rig = Rig(stored=[1], online=False)
    rig.tick()
    assert rig.published == []
    assert rig.machine.central_online is False


def test_in_broker_mode_the_backlog_never_waits_for_an_ingest() -> None:
    rig = Rig(stored=[1, 2], online=None, ack_mode="broker")
    rig.tick()
    assert rig.published == [1, 2]
    assert logged(rig.feed(CentralStatus(online=False))) == []
    assert rig.machine.central_online is False  # shown, not waited for


# -- the window ---------------------------------------------------------------------


def test_at_most_a_window_is_in_flight_topped_up_by_half_windows() -> None:
    rig = Rig(stored=range(1, 21), window=4)
    rig.tick()
    assert rig.published == [1, 2, 3, 4]
    rig.round(rig.pubacks(1))
    assert rig.published == [1, 2, 3, 4]  # one free: paho still holds more than half
    rig.round(rig.pubacks(2))
    assert rig.published == [1, 2, 3, 4, 5, 6]


def test_a_fresh_passage_goes_as_soon_as_one_place_is_free() -> None:
    rig = Rig(stored=range(1, 21), window=4)
    rig.tick()
    rig.round(Stored(21))
    assert rig.published == [1, 2, 3, 4]  # the window is full
    assert rig.machine.busy
    rig.round(rig.pubacks(1))
    assert rig.published == [1, 2, 3, 4, 21]  # not behind the backlog


# -- PUBACKs ------------------------------------------------------------------------


def test_a_successful_puback_counts_and_the_sent_mark_waits_a_second() -> None:
    rig = Rig()
    rig.round(Stored(1))
    actions = rig.feed(rig.pubacks(1))
    assert logged(actions) == ["passage(s) published: seq 1"]
    assert rig.machine.published == 1
    assert rig.machine.backlog == 1  # until the ingest acknowledges it
    rig.now += SENT_MARK_S - 0.01
    assert rig.tick() == []  # the ingest's acknowledgement usually comes first
    rig.now += 0.01
    assert rig.tick() == [Bookkeep(Batch(sent=(1,), acked=(), rejected=(), finished=()))]


def test_pubacks_of_other_messages_are_ignored() -> None:
    rig = Rig()
    assert rig.feed(Pubacks((Puback(99, True, "Success"),))) == []
    assert rig.machine.published == 0


@pytest.mark.parametrize(
    ("code", "ok"),
    [(0x00, True), (0x10, True), (0x80, False), (0x87, False), (0x97, False)],
)
def test_puback_codes_from_0x80_are_failures_0x10_no_matching_subscribers_a_success(
    code: int, ok: bool
) -> None:
    reason = ReasonCode(PacketTypes.PUBACK, identifier=code)
    # the link hands the machine what paho says: ok = not reason.is_failure
    assert reason.is_failure is not ok
    rig = Rig()
    rig.round(Stored(1))
    rig.feed(Pubacks((Puback(rig.inflight.pop(1), not reason.is_failure, str(reason)),)))
    assert (rig.machine.published, rig.machine.refused) == ((1, 0) if ok else (0, 1))


def test_a_refused_passage_is_held_back_for_retry_s_then_sent_again() -> None:
    rig = Rig(stored=[1])
    rig.tick()
    actions = rig.feed(rig.pubacks(1, ok=False, reason="Not authorized"))
    assert actions == [
        Log(logging.WARNING, "publisher: broker refused passage seq=%d: %s", (1, "Not authorized"))
    ]
    assert rig.machine.refused == 1
    assert rig.later(4.99) == [1]
    assert rig.later(0.01) == [1, 1]


def test_a_refused_fresh_passage_is_held_back_too() -> None:
    rig = Rig(online=False)
    rig.round(Stored(1))
    rig.round(rig.pubacks(1, ok=False, reason="Quota exceeded"))
    assert rig.published == [1]
    assert rig.later(5.0) == [1, 1]  # fresh: it goes though the ingest is offline


# -- due again ----------------------------------------------------------------------


def test_a_reconnect_makes_sent_passages_due_again_as_backlog() -> None:
    rig = Rig(online=False)
    rig.sent(1)
    rig.sent(2)
    rig.round(Connected())
    assert rig.published == [1, 2]  # due again, but backlog now: the ingest is away
    rig.round(CentralStatus(online=True))
    assert rig.published == [1, 2, 1, 2]


def test_a_reconnect_makes_unsent_fresh_passages_backlog() -> None:
    rig = Rig(online=False)
    rig.feed(Stored(1))
    rig.round(Connected())
    assert rig.published == []


def test_pubacks_of_a_round_count_after_its_reconnect() -> None:
    rig = Rig()
    rig.round(Stored(1))
    rig.round(rig.pubacks(1), Connected())  # one batch: PUBACKs are recorded last
    assert rig.published == [1]


def test_sent_passages_not_acknowledged_in_ack_timeout_s_go_again_once() -> None:
    rig = Rig(ack_timeout_s=120.0)
    rig.sent(1)
    assert rig.later(120.0) == [1]
    assert rig.later(1.0) == [1, 1]
    rig.feed(rig.pubacks(1))
    assert rig.later(60.0) == [1, 1]  # not at every look: ack_timeout_s from the last time
    assert rig.later(61.0) == [1, 1, 1]


def test_the_ack_timeout_counts_from_when_the_ingest_came_online() -> None:
    rig = Rig(online=False, ack_timeout_s=120.0)
    rig.sent(1)  # fresh, while the ingest is away: its acknowledgement cannot come
    rig.now += 500.0
    rig.round(CentralStatus(online=True))
    assert rig.later(100.0) == [1]
    assert rig.later(21.0) == [1, 1]


def test_in_broker_mode_a_puback_is_the_end() -> None:
    rig = Rig(ack_mode="broker", ack_timeout_s=1.0)
    rig.sent(1)
    assert rig.machine.backlog == 0
    assert rig.machine.published == 1
    assert rig.tick() == [Bookkeep(Batch(sent=(), acked=(), rejected=(), finished=(1,)))]
    rig.now += 10.0
    rig.feed(Booked((1,)), Connected())
    rig.tick()
    assert rig.published == [1]
    assert not rig.machine.busy


# -- acknowledgements ---------------------------------------------------------------


def test_an_acknowledged_passage_leaves_the_outbox_without_a_sent_mark() -> None:
    rig = Rig()
    rig.sent(1)
    actions = rig.feed(Acked((pid(1),)))
    assert actions == [Acknowledged((1,), outbox_empty=True)]
    assert (rig.machine.backlog, rig.machine.acknowledged) == (0, 1)
    rig.now += 10.0
    assert rig.tick() == [Bookkeep(Batch(sent=(), acked=(pid(1),), rejected=(), finished=()))]
    assert rig.machine.busy  # until the store has written it
    rig.round(Booked((1,)))
    assert not rig.machine.busy


def test_acknowledgements_come_in_runs_and_say_when_the_outbox_is_empty() -> None:
    rig = Rig(stored=[9])
    rig.sent(1, 2, 3)
    actions = rig.feed(Acked((pid(3), pid(1), pid(2))))
    assert actions == [Acknowledged((1, 2, 3), outbox_empty=False)]  # 9 waits for the ingest


def test_an_acknowledgement_before_its_puback_is_not_sent_again() -> None:
    rig = Rig()
    rig.round(Stored(1))
    rig.round(Acked((pid(1),)), rig.pubacks(1))
    rig.now += 200.0
    rig.round(Connected())
    assert rig.published == [1]
    assert rig.machine.backlog == 0


def test_a_passage_of_an_earlier_run_is_known_by_its_seq_once_the_store_has_it() -> None:
    rig = Rig(sent=[7])
    assert rig.feed(Acked(("pid-7",))) == []  # this process never published it
    assert rig.tick() == [Bookkeep(Batch(sent=(), acked=("pid-7",), rejected=(), finished=()))]
    assert rig.feed(Booked((7,))) == [Acknowledged((7,), outbox_empty=True)]
    assert rig.machine.acknowledged == 1


def test_a_rejected_passage_is_archived_marked_alerted_and_never_sent_again() -> None:
    rig = Rig()
    rig.sent(1)
    actions = rig.feed(Acked((), rejected=((pid(1), "schema"),)))
    assert logged(actions) == [
        "publisher: the ingest rejected passage seq=1: schema; kept in the archive, marked"
    ]
    assert of(actions, AlertRejected) == [AlertRejected(1, "schema")]
    assert of(actions, Acknowledged) == [Acknowledged((1,), outbox_empty=True)]
    assert rig.machine.rejected == 1
    (book,) = of(rig.tick(), Bookkeep)
    assert book == Bookkeep(
        Batch(sent=(), acked=(pid(1),), rejected=((pid(1), "schema"),), finished=())
    )
    rig.round(Connected())
    assert rig.published == [1]


def test_a_rejection_said_twice_counts_once_and_one_of_an_earlier_run_is_named_so() -> None:
    rig = Rig()
    rig.feed(Acked((), rejected=(("old", "duplicate seq"),)))
    actions = rig.feed(Acked((), rejected=(("old", "duplicate seq"),)))
    assert (actions, rig.machine.rejected) == ([], 1)
    rig.now += 1.0
    rig.tick()
    actions = rig.feed(Acked((), rejected=(("older", "bad"),)))
    assert "(from an earlier run)" in logged(actions)[0]
    assert of(actions, AlertRejected) == [AlertRejected(2, "bad")]


# -- bookkeeping --------------------------------------------------------------------


def test_bookkeeping_goes_one_batch_at_a_time_gathering_meanwhile() -> None:
    rig = Rig()
    rig.sent(1, 2, 3)
    rig.round(Acked((pid(1),)))
    rig.round(Acked((pid(2),)))
    rig.round(Acked((pid(3),)))
    assert [b.acked for b in rig.books] == [(pid(1),)]  # the store has not answered
    rig.round(Booked((1,)))
    assert [b.acked for b in rig.books] == [(pid(1),), (pid(2), pid(3))]


def test_a_bookkeeping_batch_holds_at_most_bookkeep_max_oldest_first() -> None:
    rig = Rig(bookkeep_max=3)
    rig.sent(*range(1, 8))
    rig.round(Acked(tuple(pid(s) for s in (7, 5, 3, 1, 2, 4, 6))))
    rig.round(Booked())
    rig.round(Booked())
    assert [b.acked for b in rig.books] == [
        (pid(1), pid(2), pid(3)),
        (pid(4), pid(5), pid(6)),
        (pid(7),),
    ]


def test_a_failed_batch_is_written_again_a_second_later_with_what_came_since() -> None:
    rig = Rig()
    rig.sent(1, 2)
    rig.now += SENT_MARK_S
    rig.round(Acked((), rejected=((pid(1), "schema"),)))
    assert rig.books == [
        Batch(sent=(2,), acked=(pid(1),), rejected=((pid(1), "schema"),), finished=())
    ]
    rig.sent(3)
    actions = rig.round(BookFailed("No space left on device"))
    assert logged(actions) == [
        "publisher: could not record delivery: No space left on device; retrying"
    ]
    assert len(rig.books) == 1
    rig.now += 0.99
    rig.tick()
    assert len(rig.books) == 1
    rig.now += 0.01
    rig.tick()
    assert rig.books[1] == Batch(
        sent=(2, 3), acked=(pid(1),), rejected=((pid(1), "schema"),), finished=()
    )


def test_close_writes_everything_in_one_batch_whatever_its_age_and_size() -> None:
    rig = Rig(bookkeep_max=1)
    rig.sent(1, 2, 3)
    rig.feed(Acked((pid(1), pid(2))))
    rig.round(BookFailed("busy"))  # nothing was being written: nothing to retry
    assert rig.books == [Batch(sent=(), acked=(pid(1),), rejected=(), finished=())]
    assert rig.machine.close(rig.now) == []  # not while a batch is with the store
    rig.feed(Booked((1,)))
    assert rig.machine.close(rig.now) == [
        Bookkeep(Batch(sent=(3,), acked=(pid(2),), rejected=(), finished=()))
    ]


# -- reading ahead ------------------------------------------------------------------


def test_a_drain_reads_ahead_in_chunks_asked_before_they_are_needed() -> None:
    rig = Rig(stored=range(1, 13), window=2, read_ahead=5)
    # the first two, with the next chunk of the walk: one read
    assert rig.tick() == [ReadNow((1, 2, 3, 4, 5, 6, 7)), Publish((payload(1), payload(2)))]
    # fewer than a chunk left: the next is asked for, before it is needed, then the top-up
    actions = rig.round(rig.pubacks(1, 2))
    assert kinds(actions) == [ReadAhead, Publish]
    assert rig.ahead == ReadAhead((8, 9, 10, 11, 12))
    assert published(actions) == [3, 4]
    assert of(rig.round(rig.pubacks(3, 4)), ReadAhead) == []  # one read ahead at a time
    # 8 is needed and is on its way: the publisher waits for it rather than reading again
    actions = rig.round(rig.pubacks(5, 6))
    assert kinds(actions) == [AwaitReadAhead, Publish]
    assert published(actions) == [7, 8]
    assert of(actions, ReadNow) == []


def test_a_read_ahead_answered_in_a_later_round_spares_a_read() -> None:
    rig = Rig(stored=range(1, 9), window=2, read_ahead=3)
    rig.tick()
    rig.round(rig.pubacks(1, 2))
    assert rig.ahead == ReadAhead((6, 7, 8))
    actions = rig.round(rig.read_ahead(), rig.pubacks(3, 4))
    actions += rig.round(rig.pubacks(5, 6))
    assert of(actions, ReadNow) == []
    assert rig.published == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_failed_read_ahead_is_read_again_when_needed() -> None:
    rig = Rig(stored=range(1, 9), window=2, read_ahead=3)
    rig.tick()
    rig.round(rig.pubacks(1, 2))
    assert rig.ahead == ReadAhead((6, 7, 8))
    rig.ahead = None
    actions = rig.round(ReadFailed("store stopped"), rig.pubacks(3, 4))
    assert of(actions, ReadNow) == [ReadNow((6, 7, 8))]  # 6 is needed now
    rig.round(rig.pubacks(5, 6))
    assert rig.published == [1, 2, 3, 4, 5, 6, 7, 8]


def test_a_read_ahead_that_fails_while_awaited_is_read_at_once() -> None:
    rig = Rig(stored=range(1, 13), window=2, read_ahead=5)
    rig.tick()
    rig.round(rig.pubacks(1, 2))
    rig.round(rig.pubacks(3, 4))
    rig.ahead_fails = True
    actions = rig.round(rig.pubacks(5, 6))
    assert kinds(actions) == [AwaitReadAhead, ReadNow, Publish]
    assert of(actions, ReadNow) == [ReadNow((8, 9, 10, 11, 12))]  # with the next chunk
    assert rig.published == list(range(1, 9))


def test_nothing_is_read_ahead_while_the_backlog_waits_or_nothing_is_left() -> None:
    rig = Rig(stored=range(1, 5), online=False, window=2, read_ahead=3)
    rig.round(Stored(5))
    assert rig.ahead is None  # the backlog waits: nothing to read it for
    rig = Rig(stored=[1, 2], window=2, read_ahead=3)
    rig.tick()
    rig.round(rig.pubacks(1, 2))
    assert rig.ahead is None  # all read


def test_a_read_ahead_answer_outside_a_fill_only_fills_the_read_ahead() -> None:
    rig = Rig(stored=range(1, 9), window=2, read_ahead=3)
    rig.tick()
    rig.round(rig.pubacks(1, 2))
    answer = rig.read_ahead()
    assert rig.feed(answer) == []
    assert rig.feed(answer) == []  # not asked for any more: ignored


def test_a_fill_whose_read_failed_is_chosen_afresh() -> None:
    rig = Rig(online=False)
    rig.feed(Stored(1))
    assert rig.machine.tick(rig.now, link_up=True) == [ReadNow((1,))]  # and the read fails
    rig.tick()
    assert rig.published == [1]


# -- paho refusing ------------------------------------------------------------------


def test_what_paho_refuses_goes_with_the_next_round_without_being_read_again() -> None:
    rig = Rig(stored=range(1, 7), window=4)
    rig.paho_takes = 2
    actions = rig.tick()
    assert rig.published == [1, 2]
    rig.paho_takes = None
    actions += rig.tick()
    assert rig.published == [1, 2, 3, 4]
    assert of(actions, ReadNow) == [ReadNow((1, 2, 3, 4, 5, 6))]


def test_a_fresh_passage_paho_refuses_is_still_fresh() -> None:
    rig = Rig(online=False)
    rig.paho_takes = 0
    rig.round(Stored(1))
    assert rig.machine.busy
    rig.paho_takes = None
    rig.tick()
    assert rig.published == [1]


# -- idle ---------------------------------------------------------------------------


def test_busy_until_everything_is_with_the_ingest_and_written() -> None:
    rig = Rig()
    assert not rig.machine.busy
    rig.feed(Stored(1))
    assert rig.machine.busy  # fresh, not yet sent
    rig.tick()
    rig.feed(rig.pubacks(1))
    assert rig.machine.busy  # the sent mark is not written
    rig.feed(Acked((pid(1),)))
    assert rig.machine.busy  # the acknowledgement is not written
    rig.tick()
    rig.feed(Booked((1,)))
    assert not rig.machine.busy
