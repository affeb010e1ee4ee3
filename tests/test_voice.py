"""The screen's voice over real HTTP: the Vietnamese and English voices made by the real
espeak-ng (``checkpoint-edge lang voices``), every screen and reason served as a real
audio file and measured, language packs in folders (their clips, the Vietnamese
fallback, broken ones left out), and ``checkpoint-edge lang check`` on packs with
every kind of fault. (The page playing them in a real browser: test_voice_browser.py.)
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import logging
import os
import shutil
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge import cli
from edge.config import KioskConfig
from edge.kiosk import audio, voice
from edge.kiosk.screen import ScreenModel
from edge.kiosk.server import KioskServer

ESPEAK = shutil.which("espeak-ng")
RATE = 22050


def tone(path: Path, seconds: float, level: float = 0.3, rate: int = RATE) -> Path:
    """A real WAV clip: a 440 Hz tone (``level`` 0: digital silence)."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = np.round(level * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def write_pack(
    folder: Path, code: str, clips: dict[str, float], messages: dict[str, str] | None = None
) -> Path:
    """A pack: manifest, catalogue (``messages``, else every traveller text of the
    Vietnamese one), and a tone of the given length per clip id."""
    folder.mkdir(parents=True)
    manifest = {"code": code, "name": f"Lang {code}", "recorded_by": "Test", "licence": "CC0-1.0"}
    (folder / voice.MANIFEST).write_text(json.dumps(manifest))
    texts = voice.bundled("vi") if messages is None else messages
    (folder / voice.CATALOGUE).write_text(json.dumps({"name": code, "messages": texts}))
    for clip, seconds in clips.items():
        tone(folder / f"{clip}.wav", seconds)
    return folder


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vi and en voices, made by the real command."""
    # not a skip: every screen must have its voice (the test), and tools/setup
    # installs espeak-ng wherever the tests run
    assert ESPEAK is not None, "espeak-ng is not installed: tools/setup installs it"
    out = tmp_path_factory.mktemp("voices")
    assert cli.main(["lang", "voices", "--out", str(out)]) == 0
    return out


def serve(tmp_path: Path, **kiosk: Any) -> Iterator[KioskServer]:
    server = KioskServer(
        KioskConfig(listen="127.0.0.1:0", **kiosk),
        ScreenModel(),
        on_approve=lambda: None,
        on_deny=lambda: None,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(server: KioskServer, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def measured(body: bytes, tmp_path: Path, name: str) -> audio.Measure:
    path = tmp_path / name
    path.write_bytes(body)
    return audio.measure_wav(path)


def test_every_screen_and_reason_is_spoken_in_vietnamese_and_english(
    tmp_path: Path, voices: Path
) -> None:
    clips = voice.clip_ids()
    assert set(voice.SCREENS) <= set(clips)
    assert {"ready", "reading", "approved", "denied", "awaiting_officer", "closed"} <= set(clips)
    assert "reason.expired" in clips
    for server in serve(tmp_path, voices=voices):
        for clip in clips:
            bodies = {}
            for lang in ("vi", "en"):
                status, headers, body = get(server, f"/voice/{lang}/{clip}")
                assert status == 200, (lang, clip)
                assert headers["content-type"] == "audio/wav"
                assert headers["content-language"] == lang
                m = measured(body, tmp_path, f"{lang}-{clip}.wav")
                # a prompt a traveller hears and that does not hold up the lane
                assert audio.MIN_S < m.seconds <= audio.MAX_S, (lang, clip, m)
                assert m.rms_db > audio.QUIET_DB, (lang, clip, m)
                assert m.peak_db == pytest.approx(audio.TARGET_PEAK_DB, abs=0.1)
                bodies[lang] = body
            assert bodies["vi"] != bodies["en"], clip


def test_voices_are_made_once_and_again_only_when_their_texts_change(
    tmp_path: Path, voices: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "voices"
    shutil.copytree(voices, out)
    ready = out / "vi" / "ready.wav"
    before = ready.stat().st_mtime_ns
    assert cli.main(["lang", "voices", "--out", str(out)]) == 0
    assert "voice vi: " in capsys.readouterr().out
    assert ready.stat().st_mtime_ns == before  # up to date: not made again
    manifest = json.loads((out / "vi" / voice.MANIFEST).read_text())
    assert manifest["code"] == "vi"
    assert manifest["recorded_by"].startswith("espeak-ng ")
    manifest["made_from"] = "other texts"
    (out / "vi" / voice.MANIFEST).write_text(json.dumps(manifest))
    assert cli.main(["lang", "voices", "--out", str(out)]) == 0
    assert "voice vi: " in capsys.readouterr().out
    assert ready.stat().st_mtime_ns != before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no work folder left
    assert cli.main(["lang", "check", str(out)]) == 0
    assert capsys.readouterr().out.count("complete") == 2


def test_unknown_languages_screens_and_escapes_are_404(tmp_path: Path) -> None:
    pack = write_pack(tmp_path / "packs" / "vi", "vi", {"denied": 1.0})
    for server in serve(tmp_path, packs=pack.parent, voices=tmp_path / "none"):
        assert get(server, "/voice/vi/denied")[0] == 200
        for path in (
            "/voice/xx/denied",
            "/voice/vi/nonsense",
            "/voice/vi/reason.not_a_reason",
            "/voice/vi/../server.py",
            "/voice/vi/denied.wav",
            "/voice/vi/",
            "/voice//denied",
            "/voice/vi/denied/x",
        ):
            status, headers, body = get(server, path)
            assert status == 404, path
            assert headers["content-type"].startswith("application/json")
        status, _, body = get(server, "/voice/vi/approved")  # no clip in any voice
        assert status == 404
        assert json.loads(body)["error"] == "no voice for this screen"


def test_a_pack_adds_its_language_and_the_vietnamese_voice_says_what_it_lacks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    packs = tmp_path / "packs"
    hmong = write_pack(
        packs / "hmong", "hmn", {"denied": 1.5, "ready": 2.0}, {"screen.ready": "Tos ntawm no"}
    )
    tone(hmong / "closed.wav", 2.0, level=0.0)  # silent: the kiosk leaves it out
    write_pack(packs / "vietnamese", "vi", {"denied": 1.0, "approved": 1.0, "closed": 1.0})
    broken = packs / "broken"
    broken.mkdir()
    (broken / voice.MANIFEST).write_text("{")
    not_sound = write_pack(packs / "dao", "ium", {})
    (not_sound / "denied.wav").write_text("hello")
    caplog.set_level(logging.WARNING)
    for server in serve(tmp_path, packs=packs, voices=tmp_path / "none", language="hmn"):
        status, _, body = get(server, "/i18n/index.json")
        index = json.loads(body)
        codes = {lang["code"]: lang["name"] for lang in index["languages"]}
        assert codes["hmn"] == "Lang hmn"
        assert "ium" in codes
        assert index["default"] == "hmn"
        assert (index["voice"]["on"], index["voice"]["volume"]) == (True, 80)
        assert index["voice"]["clips"] == sorted(voice.clip_ids())
        texts = json.loads(get(server, "/i18n/hmn.json")[2])["messages"]
        assert texts["screen.ready"] == "Tos ntawm no"
        assert texts["screen.denied"] == voice.bundled("vi")["screen.denied"]  # as its voice
        assert 'lang="hmn"' in get(server, "/")[2].decode()  # the first render, in hmn
        status, headers, body = get(server, "/voice/hmn/denied")
        assert (status, headers["content-language"]) == (200, "hmn")
        assert measured(body, tmp_path, "a.wav").seconds == pytest.approx(1.5)
        status, headers, body = get(server, "/voice/hmn/approved")  # not in the pack
        assert (status, headers["content-language"]) == (200, "vi")
        assert body == (packs / "vietnamese" / "approved.wav").read_bytes()
        status, headers, _ = get(server, "/voice/hmn/closed")
        assert (status, headers["content-language"]) == (200, "vi")
        status, headers, _ = get(server, "/voice/ium/denied")  # its clip is no sound
        assert (status, headers["content-language"]) == (200, "vi")
        assert get(server, "/voice/en/ready")[0] == 404  # no English voice, no vi ready
    assert "language pack 'broken' left out: manifest.json: not valid JSON" in caplog.text
    assert "language pack 'dao': denied: denied.wav: not a WAV file" in caplog.text
    assert f"clip {hmong / 'closed.wav'} left out: silent" in caplog.text


def test_without_the_made_voices_the_screen_says_why_it_is_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    for server in serve(tmp_path, voices=tmp_path / "none", voice_volume=35, language="hmn"):
        assert get(server, "/voice/vi/denied")[0] == 404
        index = json.loads(get(server, "/i18n/index.json")[2])
        # no voice at all: the page asks for no clip (it would only get 404s)
        assert (index["voice"]["on"], index["voice"]["volume"]) == (False, 35)
        assert index["default"] == "vi"  # no pack of hmn here: Vietnamese, and a warning
    assert "language 'hmn': no catalogue or pack has it" in caplog.text
    assert "no Vietnamese voice" in caplog.text
    assert "checkpoint-edge lang voices" in caplog.text


def _ogg(wav: Path) -> Path:
    ogg = wav.with_suffix(".ogg")
    subprocess.run(["sox", str(wav), "-C", "3", str(ogg)], check=True, capture_output=True)
    wav.unlink()
    return ogg


def test_lang_check_names_each_fault_and_what_the_kiosk_does_about_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = {k: v for k, v in voice.bundled("vi").items() if k != "screen.approved"}
    messages["traveller.masked"] = "{initials} · CCCD"  # {id} lost in translation
    pack = write_pack(
        tmp_path / "hmn",
        "hmn",
        {"ready": 2.0, "approved": 9.5, "closed": 0.1, "reason.expired": 1.0},
        messages,
    )
    tone(pack / "denied.wav", 2.0, level=0.0)  # recorded with the microphone off
    truncated = tone(tmp_path / "t.wav", 2.0)
    (pack / "surge.wav").write_bytes(truncated.read_bytes()[:20000])  # copied half-way
    (pack / "group.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    quiet = tone(pack / "failsafe.wav", 2.0, level=0.02)
    if shutil.which("sox"):
        _ogg(tone(pack / "offline.wav", 1.5))
    manifest = json.loads((pack / voice.MANIFEST).read_text())
    manifest["clips"] = {"reading": "../escape.wav", "wave": "x.wav"}
    (pack / voice.MANIFEST).write_text(json.dumps(manifest))

    assert cli.main(["lang", "check", str(pack)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{pack}: hmn (Lang hmn), recorded by Test, licence CC0-1.0")

    def line(start: str) -> str:
        found = [x for x in lines if x.strip().startswith(start)]
        assert found, (start, out)
        return found[0]

    assert "screen.approved" in line("missing texts")
    assert "reason.not_yet_valid" in out.split("missing clips")[1].split("error:")[0]
    assert "the Vietnamese voice says them" in line("missing clips")
    assert "too long: 9.5 s" in line("error: approved: approved.wav")
    assert "too short" in line("error: closed: closed.wav")
    assert "silent" in line("error: denied: denied.wav")
    assert "cut short" in line("error: surge: surge.wav")
    assert "not a PCM WAV file" in line("error: group: group.wav")
    assert "must keep {id}, {initials}" in line("error: text traveller.masked")
    assert "'wave' is not a clip" in out
    assert "reading: a file name in the pack's folder" in out
    assert "quiet" in line(f"warning: failsafe: {quiet.name}")
    assert not [x for x in lines if x.strip().startswith(("error: ready", "error: reason.exp"))]
    if shutil.which("sox"):
        assert not [x for x in lines if "offline.ogg" in x]  # a good OGG clip: no remark
    assert lines[-1].strip() == "usable, with the fallbacks above"


def test_lang_check_passes_a_complete_pack_and_refuses_what_is_no_pack(
    tmp_path: Path, voices: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "packs" / "vi-recorded"
    shutil.copytree(voices / "vi", pack)
    catalogue = voice.bundled_catalogue("vi")
    (pack / voice.CATALOGUE).write_text(json.dumps(catalogue, ensure_ascii=False))
    manifest = json.loads((pack / voice.MANIFEST).read_text())
    (pack / voice.MANIFEST).write_text(json.dumps({**manifest, "code": "vi-x-south"}))
    if shutil.which("sox"):
        _ogg(pack / "denied.wav")
    assert cli.main(["lang", "check", str(pack)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].strip() == "complete"

    (pack / voice.CATALOGUE).unlink()  # a new language without its texts
    assert cli.main(["lang", "check", str(pack)]) == 2
    assert "catalogue.json: missing" in capsys.readouterr().out
    (pack / voice.MANIFEST).write_text(json.dumps({"code": "Not A Code", "name": "x"}))
    assert cli.main(["lang", "check", str(pack)]) == 2
    assert '"code" must be a language code' in capsys.readouterr().out
    assert cli.main(["lang", "check", str(tmp_path / "nowhere")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["lang", "check", str(empty)]) == 2


def test_lang_phrases_lists_every_clip_with_its_file_and_texts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["lang", "phrases", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["clip"] for r in rows] == voice.clip_ids()
    for row in rows:
        assert row["file"] == f"{row['clip']}.wav"
        assert row["vi"], row
        assert row["en"], row
    denied = next(r for r in rows if r["clip"] == "denied")
    assert denied["en"] == "Not approved. Please see the officer."


def test_the_voice_settings_are_checked_like_the_rest_of_the_config(tmp_path: Path) -> None:
    from edge import config as config_mod

    for bad, problem in (
        ({"voice_volume": 101}, "kiosk.voice_volume"),
        ({"voice_volume": "loud"}, "kiosk.voice_volume"),
        ({"voice": "yes"}, "kiosk.voice"),
        ({"packs": 3}, "kiosk.packs"),
    ):
        with pytest.raises(config_mod.ConfigError) as caught:
            config_mod.from_mapping({"kiosk": bad}, base_dir=tmp_path)
        assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_hostile_packs_are_left_out_or_their_clips_refused_never_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    packs = tmp_path / "packs"
    names = write_pack(packs / "names", "hmn", {"ready": 1.0})
    manifest = json.loads((names / voice.MANIFEST).read_text())
    manifest["clips"] = {"denied": "a\u0000.wav", "approved": "\ud800.wav", "closed": "x\u202e.wav"}
    (names / voice.MANIFEST).write_text(json.dumps(manifest))  # (escaped: valid JSON)
    bad_wav = write_pack(packs / "chunks", "ium", {"ready": 1.0})
    raw = bytearray((bad_wav / "ready.wav").read_bytes())
    raw[16:20] = (0x7FFFFFF0).to_bytes(4, "little")  # the fmt chunk's length, mangled
    (bad_wav / "ready.wav").write_bytes(bytes(raw))
    opus = write_pack(packs / "opus", "tyz", {})
    (opus / "ready.ogg").write_bytes(b"OggS\x00\x02" + bytes(22) + b"\x01\x13OpusHead" + bytes(40))
    fifo = packs / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / voice.MANIFEST)  # would block a plain open() for ever
    endless = write_pack(packs / "endless", "nut", {})
    (endless / voice.CATALOGUE).unlink()
    (endless / voice.CATALOGUE).symlink_to("/dev/zero")
    control = write_pack(packs / "control", "rad", {})
    (control / voice.MANIFEST).write_text(json.dumps({"code": "rad", "name": "\x1b[2Jx"}))
    caplog.set_level(logging.WARNING)

    loaded = {p.code: p for p in voice.load_packs(packs)}
    assert set(loaded) == {"hmn", "ium", "tyz"}
    assert set(loaded["hmn"].clips) == {"ready"}
    assert len(loaded["hmn"].problems) == 3  # each bad name refused by itself
    assert loaded["tyz"].clips == {}
    assert "Opus, not Vorbis" in loaded["tyz"].problems[0]
    assert "'fifo' left out: manifest.json: a pack file must be a regular file" in caplog.text
    assert "'endless' left out: catalogue.json: a pack file must be a regular file" in caplog.text
    assert "'control' left out" in caplog.text
    assert "\x1b" not in caplog.text

    # the mangled WAV: refused when first asked for (a warning), never an error
    voices = voice.Voices(list(loaded.values()))
    assert voices.find("ium", "ready") is None
    assert "left out: not a PCM WAV file" in caplog.text
    assert cli.main(["lang", "check", str(bad_wav)]) == 1
    assert "error: ready: ready.wav: not a PCM WAV file" in capsys.readouterr().out
    assert cli.main(["lang", "check", str(names)]) == 1
    out = capsys.readouterr().out
    assert "\x00" not in out
    assert "\u202e" not in out


def test_a_recorded_vi_or_en_pack_needs_no_catalogue_and_keeps_its_languages_texts(
    tmp_path: Path,
) -> None:
    packs = tmp_path / "packs"
    vi = write_pack(packs / "vi-recorded", "vi", {"denied": 1.0})
    (vi / voice.CATALOGUE).unlink()  # clips alone: the bundled texts stay
    write_pack(packs / "en-partial", "en", {"denied": 1.2}, {"screen.ready": "Show your code"})
    for server in serve(tmp_path, packs=packs, voices=tmp_path / "none"):
        status, headers, _ = get(server, "/voice/vi/denied")
        assert (status, headers["content-language"]) == (200, "vi")
        en = json.loads(get(server, "/i18n/en.json")[2])["messages"]
        assert en["screen.ready"] == "Show your code"
        assert en["screen.denied"] == voice.bundled("en")["screen.denied"]  # not Vietnamese
        vi_texts = json.loads(get(server, "/i18n/vi.json")[2])["messages"]
        assert vi_texts == voice.bundled("vi")
