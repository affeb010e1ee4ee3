"""The Vietnamese and English voices, made offline at install time with espeak-ng.

``checkpoint-edge lang voices`` (run by ``deploy/install.sh`` and
``tools/setup``) speaks every clip (voice.py: each screen's title and hint,
each reason) of the bundled catalogues with Debian's ``espeak-ng`` (voices
``vi`` and ``en-us``, 150 words a minute: slower than its default, for
travellers hearing it through road noise), levels each clip to a -3 dBFS peak
(espeak-ng's Vietnamese reaches full scale) and writes a pack per language
(``<out>/vi``, ``<out>/en``: ``manifest.json`` and ``<clip id>.wav``),
replaced whole so that a kiosk never serves half of a voice. Nothing is
fetched from anywhere: espeak-ng and its voice data are a Debian package.

A voice already made from the same texts, by the same espeak-ng at the same
settings, is left as it is (the manifest's ``made_from``), so running it again
costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge.errors import EdgeError
from edge.kiosk import audio, voice

# language -> espeak-ng voice
ESPEAK_VOICES = {"vi": "vi", "en": "en-us"}
WORDS_PER_MINUTE = 150
ESPEAK_TIMEOUT_S = 30.0
# the clips are speech made from checkpoint-edge's own texts (espeak-ng itself is GPL-3.0+)
LICENCE = "Apache-2.0 (as checkpoint-edge)"


class VoiceError(EdgeError):
    """A voice could not be made (the reason says what to do)."""


@dataclass(frozen=True)
class Made:
    code: str
    folder: Path
    clips: int
    seconds: float
    fresh: bool  # False: it was up to date already


def espeak() -> tuple[str, str]:
    """The espeak-ng program and its version line; VoiceError if not installed."""
    program = shutil.which("espeak-ng")
    if program is None:
        raise VoiceError(
            "espeak-ng is not installed: apt-get install espeak-ng (tools/setup and "
            "deploy/install.sh do)"
        )
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program
            [program, "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise VoiceError(f"espeak-ng does not run: {exc}") from exc
    return program, done.stdout.split("  Data at:")[0].strip()


def _speak(program: str, espeak_voice: str, text: str, path: Path) -> None:
    try:
        subprocess.run(  # noqa: S603 - a fixed program; the text goes in on stdin
            [program, "-v", espeak_voice, "-s", str(WORDS_PER_MINUTE), "-w", str(path), "--stdin"],
            input=text,
            capture_output=True,
            text=True,
            timeout=ESPEAK_TIMEOUT_S,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise VoiceError(f"espeak-ng -v {espeak_voice} failed: {exc.stderr.strip()[:200]}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VoiceError(f"espeak-ng -v {espeak_voice} failed: {exc}") from exc


def _readable_dirs(out: Path) -> None:
    """``out`` and the parents it lacks, made readable by everyone (the service's user
    reads the voices whatever the installer's umask)."""
    missing = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    for folder in missing:
        folder.chmod(0o755)


def phrases(code: str) -> dict[str, str]:
    """clip id -> what the made voice says, from the bundled catalogue of ``code``."""
    messages = voice.bundled(code)
    said = {clip: voice.spoken_text(messages, clip) for clip in voice.clip_ids()}
    return {clip: text for clip, text in said.items() if text}


def make(code: str, out: Path, *, force: bool = False) -> Made:
    """The voice of ``code`` (vi or en) in ``out/<code>``, made unless up to date."""
    if code not in ESPEAK_VOICES:
        raise VoiceError(f"no voice is made for {code!r} (only {', '.join(ESPEAK_VOICES)})")
    program, version = espeak()
    said = phrases(code)
    settings = {"espeak": version, "voice": ESPEAK_VOICES[code], "wpm": WORDS_PER_MINUTE}
    digest = hashlib.sha256(
        json.dumps([settings, said, audio.TARGET_PEAK_DB], sort_keys=True).encode()
    ).hexdigest()
    folder = out / code
    try:
        done = voice.read_pack(folder, need_catalogue=False)
        if not force and done.manifest.get("made_from") == digest and set(done.clips) == set(said):
            return Made(code, folder, len(said), 0.0, fresh=False)
    except voice.PackError:
        pass  # not made yet, or damaged: made again
    _readable_dirs(out)
    work = Path(tempfile.mkdtemp(prefix=f".{code}.", dir=out))
    try:
        seconds = 0.0
        for clip, text in said.items():
            raw = work / f".{clip}.raw.wav"
            _speak(program, ESPEAK_VOICES[code], text, raw)
            samples, rate = audio.read_wav(raw)
            raw.unlink()
            audio.write_levelled_wav(samples, rate, work / f"{clip}.wav")
            (work / f"{clip}.wav").chmod(0o644)  # the service reads them, whatever the umask
            seconds += len(samples) / rate
        manifest = {
            "code": code,
            "name": voice.bundled_catalogue(code)["name"],
            "recorded_by": f"espeak-ng {version.rsplit(':', 1)[-1].strip()} (synthesised)",
            "licence": LICENCE,
            "made_from": digest,
        }
        text = json.dumps(manifest, ensure_ascii=False, indent=2)
        (work / voice.MANIFEST).write_text(text, encoding="utf-8")
        (work / voice.MANIFEST).chmod(0o644)
        work.chmod(0o755)
        old = out / f".{code}.old"
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        work.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return Made(code, folder, len(said), seconds, fresh=True)
