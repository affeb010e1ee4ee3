"""The made voices, heard by a machine: how well a speech recogniser understands them.

A person must understand what the kiosk says. No Vietnamese speech recogniser
can be installed offline here, but an English one can (CMU PocketSphinx, whose
PyPI wheel carries its en-us model): as a stand-in for a listener, this bench
makes the English clips with espeak-ng exactly as ``checkpoint-edge lang
voices`` does (voicegen.py) at several speaking rates, decodes each with
PocketSphinx, and prints the word error rate against the text spoken. It also
prints each clip's length and levels (audio.py, as ``lang check``), for the
Vietnamese voice too.

The recogniser is far harsher than a person (it knows no context, and
espeak-ng's formant voice is far from the voices it was trained on), so the
figure is a relative one: which rate is understood better, and which phrases
are worst (those may want a ``speak.<clip>`` text).

Run: ``.venv/bin/pip install pocketsphinx && .venv/bin/python bench/voice_bench.py
[--rates 130,150,175]``

Measured (2026-12-07, espeak-ng 1.51, x86): the recogniser gets the screens'
short phrases partly right ("Approved. Please go ahead." heard as "true please
go ahead", WER 0.25; "Not approved. Please see the officer." 0.33) and most
reasons wrong: WER median 0.96 / 0.92 / 0.89 at 130 / 150 / 175 words a
minute (mean 0.93 / 0.90 / 0.87); other espeak-ng settings tried by hand at
150 (word gap ``-g 4``, variants ``+m3``, ``+f3``, voice ``en``) gave 0.87 to
0.94: differences within the spread, none worth a change. 150 stays (slower
for people hearing it over engines; the machine's small preference for 175 is
no reason to speed up). What this says: a formant voice is a fallback; a pack
recorded by a person (docs/languages.md), Vietnamese included, replaces it
clip by clip, and a person who speaks the language must listen to it on the
kiosk before a pack or a made voice goes to the lanes.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
from pathlib import Path

import numpy as np

from edge.kiosk import audio, voicegen

SPHINX_RATE = 16000


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("qr", "q r"))


def wer(reference: list[str], heard: list[str]) -> float:
    """Word error rate: edits (substitutions, insertions, deletions) per reference word."""
    rows = list(range(len(heard) + 1))
    for i, word in enumerate(reference, 1):
        prev, rows[0] = rows[0], i
        for j, other in enumerate(heard, 1):
            prev, rows[j] = rows[j], min(rows[j] + 1, rows[j - 1] + 1, prev + (word != other))
    return rows[-1] / max(1, len(reference))


def to_16k(samples: np.ndarray, rate: int) -> bytes:
    n = round(len(samples) * SPHINX_RATE / rate)
    resampled = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    return (np.clip(resampled, -1, 1) * 32767).astype("<i2").tobytes()


def heard(decoder: object, pcm: bytes) -> str:
    decoder.start_utt()  # type: ignore[attr-defined]
    decoder.process_raw(pcm, full_utt=True)  # type: ignore[attr-defined]
    decoder.end_utt()  # type: ignore[attr-defined]
    hyp = decoder.hyp()  # type: ignore[attr-defined]
    return str(hyp.hypstr) if hyp is not None else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="130,150,175", help="words a minute to compare")
    args = parser.parse_args()
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SPHINX_RATE, logfn="/dev/null")
    program, version = voicegen.espeak()
    print(f"{version}; PocketSphinx en-us; clips as `lang voices` makes them")
    with tempfile.TemporaryDirectory() as tmp:
        for lang in ("vi", "en"):
            said = voicegen.phrases(lang)
            for rate in (int(r) for r in args.rates.split(",")):
                errors, lengths, levels, worst = [], [], [], []
                for clip, text in said.items():
                    path = Path(tmp) / f"{lang}-{rate}-{clip}.wav"
                    voicegen.WORDS_PER_MINUTE = rate
                    voicegen._speak(program, voicegen.ESPEAK_VOICES[lang], text, path)
                    samples, sr = audio.read_wav(path)
                    audio.write_levelled_wav(samples, sr, path)
                    m = audio.measure_wav(path)
                    lengths.append(m.seconds)
                    levels.append(m.rms_db)
                    if lang == "en":
                        e = wer(words(text), words(heard(decoder, to_16k(samples, sr))))
                        errors.append(e)
                        worst.append((e, clip))
                line = (
                    f"{lang} {rate} wpm: {len(said)} clips, length median "
                    f"{statistics.median(lengths):.1f} s (max {max(lengths):.1f}), RMS "
                    f"{min(levels):.0f} to {max(levels):.0f} dBFS"
                )
                if errors:
                    worst.sort(reverse=True)
                    line += (
                        f"; word error rate median {statistics.median(errors):.2f}, mean "
                        f"{statistics.mean(errors):.2f}; worst: "
                        + ", ".join(f"{c} {e:.2f}" for e, c in worst[:3])
                    )
                print(line)


if __name__ == "__main__":
    main()
