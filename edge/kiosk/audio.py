"""The voice's clips as sound: read, measured, levelled.

WAV files (PCM, 8, 16, 24 or 32 bits, any rate, mono or more channels) are read
here with the standard library's :mod:`wave` and numpy; OGG Vorbis files are
measured by Debian's ``sox`` when it is installed (``sox FILE -n stats``),
else they are reported as not measured. A clip's measure is what a listener
meets: its length, its loudness (RMS, dBFS) and its peak.

The thresholds (:data:`MAX_S`, :data:`MIN_S`, :data:`SILENT_DB`,
:data:`QUIET_DB`) are the ones ``checkpoint-edge lang check`` applies and
docs/languages.md gives the recording translators.
"""

from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import EdgeError

MAX_S = 8.0  # a prompt longer than this holds up the lane
MIN_S = 0.2  # shorter: a click, not a word
SILENT_DB = -45.0  # RMS below this: nothing a traveller can hear
QUIET_DB = -35.0  # RMS below this: hard to hear at a road checkpoint
TARGET_PEAK_DB = -3.0  # what the made voices are levelled to
SOX_TIMEOUT_S = 20.0


class AudioError(EdgeError):
    """A clip that cannot be read as sound (the reason says why)."""


@dataclass(frozen=True)
class Measure:
    seconds: float
    rms_db: float  # -inf for digital silence
    peak_db: float


def db(level: float) -> float:
    """A level (full scale = 1.0) in dBFS."""
    return 20 * math.log10(level) if level > 0 else -math.inf


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """The samples of a PCM WAV file as floats in [-1, 1] (channels mixed down), and
    its rate; AudioError with the reason for anything else."""
    try:
        with wave.open(str(path), "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            frames = f.getnframes()
            raw = f.readframes(frames)
    except (wave.Error, EOFError, RuntimeError, struct.error, ValueError, OverflowError) as exc:
        # (the wave module's own errors, and what a damaged chunk length makes it raise)
        raise AudioError(f"not a PCM WAV file ({exc}): export 16-bit PCM WAV or OGG") from exc
    except OSError as exc:
        raise AudioError(f"cannot be read: {exc.strerror or exc}") from exc
    if rate <= 0 or channels <= 0:
        raise AudioError("not a PCM WAV file (no rate or no channels)")
    if len(raw) < frames * width * channels:
        raise AudioError(
            f"cut short: the header says {frames} frames, the file holds "
            f"{len(raw) // (width * channels)}"
        )
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128) / 128
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768
    elif width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        samples = np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2**31
    else:
        raise AudioError(f"{width * 8}-bit samples: export 16-bit PCM WAV or OGG")
    if channels > 1:
        samples = samples[: len(samples) - len(samples) % channels]
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def measure_wav(path: Path) -> Measure:
    samples, rate = read_wav(path)
    if len(samples) == 0:
        return Measure(0.0, -math.inf, -math.inf)
    rms = float(np.sqrt(np.mean(samples * samples)))
    return Measure(len(samples) / rate, db(rms), db(float(np.max(np.abs(samples)))))


_STAT = re.compile(r"^(Length s|RMS lev dB|Pk lev dB)\s+(\S+)", re.MULTILINE)


def measure_ogg(path: Path) -> Measure | None:
    """An OGG clip's measure through ``sox``; None when sox is not installed."""
    sox = shutil.which("sox")
    if sox is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program, the path as one argument
            [sox, "--", str(path), "-n", "stats"],
            capture_output=True,
            text=True,
            timeout=SOX_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioError(f"sox could not read it: {exc}") from exc
    found = dict(_STAT.findall(done.stderr))
    if done.returncode != 0 or "Length s" not in found:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise AudioError(f"not a readable OGG Vorbis file (sox: {last[0][:120]})")

    def level(name: str) -> float:
        try:
            return float(found.get(name, "-inf"))
        except ValueError:
            return -math.inf

    return Measure(float(found["Length s"]), level("RMS lev dB"), level("Pk lev dB"))


def measure(path: Path) -> Measure | None:
    """A clip's measure by its suffix (.wav or .ogg); None: not measurable here."""
    if path.suffix.lower() == ".wav":
        return measure_wav(path)
    return measure_ogg(path)


def problems(m: Measure) -> tuple[list[str], list[str]]:
    """(errors, warnings) of a measured clip, by the thresholds above."""
    errors: list[str] = []
    warnings: list[str] = []
    if m.seconds > MAX_S:
        errors.append(f"too long: {m.seconds:.1f} s (at most {MAX_S:g} s)")
    elif m.seconds < MIN_S:
        errors.append(f"too short: {m.seconds:.2f} s (at least {MIN_S:g} s)")
    if m.rms_db < SILENT_DB:
        errors.append(f"silent: {m.rms_db:.0f} dBFS RMS (speech is above {QUIET_DB:g})")
    elif m.rms_db < QUIET_DB:
        warnings.append(f"quiet: {m.rms_db:.0f} dBFS RMS (record closer or louder)")
    if m.peak_db > -0.1:
        warnings.append("clipped: peaks at full scale (record a little softer)")
    return errors, warnings


def write_levelled_wav(samples: np.ndarray, rate: int, path: Path) -> None:
    """``samples`` as a 16-bit mono WAV file, levelled so its peak is at
    :data:`TARGET_PEAK_DB` (silence stays silence)."""
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    gain = (10 ** (TARGET_PEAK_DB / 20)) / peak if peak > 0 else 1.0
    pcm = np.clip(np.round(samples * gain * 32767), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
