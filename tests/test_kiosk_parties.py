"""A real kiosk (camera frames, mock pins, store, broker, screen) with the online lookup
and vehicles: the lookup never blocks the lane; a vehicle is one passage at the
broker, traceable by each occupant and by its plate."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.central.db import Checked, Query, open_db
from edge.config import Config
from edge.core.lane import (
    LookupAnswered,
    OfficerDenied,
    OpenVehicle,
    RecordPassage,
    SetPlate,
    State,
)

from . import test_e2e, test_lookup
from .conftest import Mosquitto, Subscriber, make_config, write_frame
from .test_e2e import Kiosk, assert_valid_passage
from .test_kiosk_server import PIN, Client, screen_config
from .test_lookup import CODE, QID, Service

kiosks = test_e2e.kiosks  # the fixtures
service = test_lookup.service


def show(frames: Path, name: str, payload: bytes) -> None:
    """A code in front of the camera at once (written aside, then renamed into view)."""
    hidden = write_frame(frames / f".{name}", payload)
    hidden.rename(frames / name)


def test_an_online_confirmation_approves_a_personal_qr_alone(
    tmp_path: Path, frames_dir: Path, service: Service, kiosks: Callable[[Config], Kiosk]
) -> None:
    service.answer(QID, 200, {"status": "confirmed"})
    cfg = make_config(tmp_path, lane={"mode": "auto"}, lookup={"url": service.url})
    show(frames_dir, "01.png", CODE)
    kiosk = kiosks(cfg).start()
    draft = kiosk.wait_recorded()
    assert draft.decision == "approved"
    assert draft.verdict == "approve"
    assert draft.credentials[0].kind == "personal_qr"
    assert draft.credentials[0].lookup is not None
    assert draft.credentials[0].lookup.status == "confirmed"
    assert kiosk.relay.wait_for(True), "the barrier did not open"


def test_a_service_that_hangs_never_holds_up_the_lane(
    tmp_path: Path, frames_dir: Path, service: Service, kiosks: Callable[[Config], Kiosk]
) -> None:
    service.answer(QID, 200, {"status": "confirmed"})
    service.hold = threading.Event()  # the national platform does not answer
    cfg = make_config(
        tmp_path,
        lane={"mode": "auto", "decision_timeout_s": 60},
        lookup={"url": service.url, "timeout_s": 0.5},
    )
    show(frames_dir, "01.png", CODE)
    kiosk = kiosks(cfg).start()
    kiosk.wait_state(State.AWAITING_DECISION)  # pending: the officer may already decide
    presentation = kiosk.app.runner.lane.presentation()
    assert presentation is not None
    assert presentation[1].reasons == ("lookup_pending",)
    # the deadline answers for the service: still the officer's to decide
    kiosk.wait(lambda e, _a, _s: isinstance(e, LookupAnswered), timeout=5)
    presentation = kiosk.app.runner.lane.presentation()
    assert presentation is not None
    assert presentation[1].reasons == ("lookup_unavailable",)
    kiosk.app.runner.post(OfficerDenied())  # while the request still hangs
    draft = kiosk.wait_recorded()
    assert (draft.decision, draft.decided_by) == ("denied", "officer")
    assert draft.credentials[0].lookup is not None
    assert draft.credentials[0].lookup.status == "unavailable"


def test_a_vehicle_is_one_passage_at_the_broker_and_traced_by_occupant_and_plate(
    tmp_path: Path,
    frames_dir: Path,
    broker: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    kiosks: Callable[[Config], Kiosk],
) -> None:
    sub = subscriber_factory(broker.port, ["cp/v1/+/passage"])
    cfg = make_config(
        tmp_path,
        mqtt={"port": broker.port},
        lane={"mode": "officer", "group_s": 30, "decision_timeout_s": 60},
        passage={"fields": ["id_number", "name", "plate", "qid"]},
        camera={"loop": True, "hold_s": 0.3, "gap_s": 0.2},
    )
    write_frame(frames_dir / "zz-nobody.png", None)  # the lane, empty: the camera opens
    kiosk = kiosks(cfg).start()
    kiosk.app.runner.post(OpenVehicle("car"))
    kiosk.wait_state(State.GROUP)
    occupants = [
        b"001090000001||Nguyen Van An|31011990|Nam|Thon 1|01012022",
        b"001090000002|TRAN THI BINH|1985-05-05|0|100000000000000002|",
        b"001090000003||Le Van Cuong|01011970|Nam|Thon 2|01012022",
    ]
    for i, payload in enumerate(occupants):
        show(frames_dir, f"{i:02}.png", payload)
        kiosk.wait(
            lambda e, _a, _s, raw=payload: (
                getattr(getattr(e, "credential", None), "raw", b"") == raw
            ),
            timeout=10,
        )
        (frames_dir / f"{i:02}.png").unlink()  # the next person steps up
    kiosk.app.runner.post(SetPlate("51h 123.45"))
    kiosk.press(kiosk.cfg.gpio.approve_pin)
    kiosk.wait(lambda _e, a, _s: any(isinstance(x, RecordPassage) for x in a), timeout=10)
    assert kiosk.relay.wait_for(True)
    msg = sub.get(timeout=20).json()
    assert_valid_passage(msg)
    assert msg["vehicle"] == {"kind": "car", "plate": "51H-123.45", "occupants": 3,
                              "opened_by": "officer"}  # fmt: skip
    assert [o["credentials"] for o in msg["occupants"]] == [[0], [1], [2]]
    assert msg["occupants"][1]["traveller"] == {
        "id_number": "001090000002",
        "name": "TRAN THI BINH",
        "qid": "100000000000000002",
    }
    assert msg["decided_by"] == "officer"
    assert msg["verdict"] == "refer"  # the personal QR alone was not confirmed
    assert "personal_qr_unconfirmed" in msg["reasons"]

    db = open_db(f"sqlite:///{tmp_path / 'central.db'}")
    try:
        assert db.store([Checked.of(msg)]).new == 1
        assert db.store([Checked.of(msg)]).new == 0  # idempotent, occupants and vehicle too
        for query in (
            Query(id_number="001090000003"),  # the third occupant
            Query(id_number="001090000001"),  # the first: the passage's traveller too
            Query(plate="51H-123.45"),
        ):
            assert [m["pid"] for m in db.find(query)] == [msg["pid"]], query
        assert db.find(Query(id_number="001090000009")) == []
    finally:
        db.close()


def test_the_officer_opens_a_vehicle_and_types_its_plate_on_the_screen(
    tmp_path: Path, kiosks: Callable[[Config], Kiosk]
) -> None:
    kiosk = kiosks(screen_config(tmp_path, lane={"group_s": 30})).start()
    assert kiosk.app.kiosk is not None
    url = kiosk.app.kiosk.address
    browser = Client(url)
    csrf = browser.login(PIN)

    def act(path: str, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
        return browser.request("POST", path, body, **{"X-CSRF-Token": csrf, **headers})

    assert act("/officer/vehicle", {"kind": "tank"})[1]["code"] == "kind"
    assert act("/officer/vehicle", {"kind": "car", "plate": "<script>"})[1]["code"] == "plate"
    assert act("/officer/vehicle", [1, 2])[0] == 400
    assert browser.request("POST", "/officer/vehicle", {"kind": "car"})[0] == 403  # no token
    assert act("/officer/vehicle", {"kind": "bus"}) == (202, {"accepted": "vehicle"})
    kiosk.wait_state(State.GROUP)
    assert act("/officer/plate", {"plate": ""})[1]["code"] == "plate"
    assert act("/officer/plate", {"plate": "29b-555.66"}) == (202, {"accepted": "plate"})
    kiosk.wait(lambda e, _a, _s: isinstance(e, SetPlate), timeout=5)
    status, state = browser.request("GET", "/state?view=officer")
    assert status == 200
    assert state["officer"]["vehicle"]["kind"] == "bus"
    assert state["officer"]["vehicle"]["plate"] == "29B-555.66"
    assert state["group"] == {"kind": "bus", "people": 0}  # the traveller's view: no plate
    _, traveller = browser.request("GET", "/state")
    assert "29B" not in json.dumps(traveller)
    conn = http.client.HTTPConnection(*urlsplit(url).netloc.split(":"), timeout=10)
    conn.request("GET", "/")
    page = conn.getresponse().read().decode()
    conn.close()
    assert 'data-screen="group"' in page
