"""``checkpoint-edge lang``: the screen's languages and voices, for installers and translators.

``lang voices``  makes the Vietnamese and English voices (voicegen.py) into
                 ``[kiosk] voices`` of the config (or ``--out``)
``lang check``   a pack folder (or a folder of packs): what it lacks and what
                 is wrong with it, clip by clip, and what the kiosk does about it
``lang phrases`` the list a translator records: clip id, file name, and what
                 it says in Vietnamese and English (text or CSV)

``lang check`` exits 0 when a pack is complete (warnings aside), 1 when the
kiosk can use it with fallbacks (missing or bad clips: the Vietnamese voice
says those and the pictograms show them; missing texts: Vietnamese is shown), 2
when it is not a pack the kiosk can load at all.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge import config as config_mod
from edge.errors import ConfigError
from edge.kiosk import audio, voice, voicegen
from edge.kiosk.audio import AudioError

# the keys of the traveller's screen a pack's catalogue should have (the officer's
# view stays in Vietnamese or English)
TRAVELLER_KEYS = re.compile(
    r"(page\.traveller|lang\.choose|screen\..*|needs?\..*|reason\..*|"
    r"traveller\..*|group\..*)"
)
PLACEHOLDER = re.compile(r"\{\w+\}")
FALLS_BACK = "(left out: the Vietnamese voice says it)"


def register(sub: Any) -> None:
    lang = sub.add_parser("lang", help="the screen's languages: voices, packs, phrases")
    lang_sub = lang.add_subparsers(dest="lang_command", required=True)
    voices = lang_sub.add_parser("voices", help="make the vi and en voices with espeak-ng")
    voices.add_argument("-c", "--config", type=Path, help="put them in its [kiosk] voices")
    voices.add_argument("--out", type=Path, help="put them here instead")
    voices.add_argument("--force", action="store_true", help="make them even if up to date")
    check = lang_sub.add_parser("check", help="check a language pack (or a folder of packs)")
    check.add_argument("dir", type=Path)
    phrases = lang_sub.add_parser("phrases", help="the phrases a translator records")
    phrases.add_argument("--format", choices=("text", "csv"), default="text")


def main(args: argparse.Namespace) -> int:
    if args.lang_command == "voices":
        return _voices(args)
    if args.lang_command == "check":
        return check_command(args.dir)
    return _phrases(args.format)


def _voices(args: argparse.Namespace) -> int:
    out = args.out
    if out is None:
        from edge.cli import simulation_config_path  # noqa: PLC0415 - no import cycle at load

        try:
            out = config_mod.load(args.config or simulation_config_path()).kiosk.voices
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    try:
        for code in voicegen.ESPEAK_VOICES:
            made = voicegen.make(code, out, force=args.force)
            what = f"made: {made.clips} clips, {made.seconds:.0f} s" if made.fresh else "up to date"
            print(f"voice {code}: {made.folder}: {what}")
    except (voicegen.VoiceError, OSError) as exc:
        print(f"lang voices: {exc}", file=sys.stderr)
        return 1
    return 0


@dataclass
class Report:
    """What ``lang check`` found in one pack."""

    folder: Path
    pack: voice.Pack | None = None
    fatal: str = ""
    errors: list[str] = field(default_factory=list)  # the kiosk falls back for these
    warnings: list[str] = field(default_factory=list)  # worth fixing, used as they are
    missing_clips: list[str] = field(default_factory=list)
    missing_texts: list[str] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # clips found but not usable

    @property
    def status(self) -> int:
        if self.fatal:
            return 2
        return 1 if self.errors or self.missing_clips or self.missing_texts else 0


def check_pack(folder: Path) -> Report:
    report = Report(folder)
    try:
        pack = voice.read_pack(folder, need_catalogue=False)
        if pack.catalogue is None and pack.code not in voice.BUNDLED:
            raise voice.PackError(f"{voice.CATALOGUE}: missing (a new language needs its texts)")
    except voice.PackError as exc:
        report.fatal = str(exc)
        return report
    report.pack = pack
    report.errors += [f"{p} {FALLS_BACK}" for p in pack.problems]
    reference = voice.bundled("en")
    catalogue = pack.catalogue or voice.bundled_catalogue(pack.code)  # a voice of vi or en
    messages = catalogue["messages"]
    for key, text in reference.items():
        if not TRAVELLER_KEYS.fullmatch(key) or key.startswith("speak."):
            continue
        own = messages.get(key)
        if not isinstance(own, str) or not own.strip():
            report.missing_texts.append(key)
        elif set(PLACEHOLDER.findall(text)) != set(PLACEHOLDER.findall(own)):
            want = ", ".join(sorted(PLACEHOLDER.findall(text)))
            report.errors.append(f"text {key}: must keep {want} as they are (shown as it is)")
    for clip in voice.clip_ids():
        path = pack.clips.get(clip)
        if path is None:
            if not any(p.startswith(f"{clip}:") for p in pack.problems):
                report.missing_clips.append(clip)
            continue
        try:
            measured = audio.measure(path)
        except AudioError as exc:
            report.errors.append(f"{clip}: {path.name}: {exc} {FALLS_BACK}")
            report.refused.add(clip)
            continue
        if measured is None:
            report.warnings.append(f"{clip}: {path.name}: not measured (install sox)")
            continue
        errors, warnings = audio.problems(measured)
        report.errors += [f"{clip}: {path.name}: {e} {FALLS_BACK}" for e in errors]
        if errors:
            report.refused.add(clip)
        report.warnings += [f"{clip}: {path.name}: {w}" for w in warnings]
    return report


def _listed(title: str, items: Sequence[str]) -> list[str]:
    """Every item: what a translator still has to do, in full."""
    if not items:
        return []
    return textwrap.wrap(
        f"{title} ({len(items)}): {', '.join(items)}",
        width=100,
        initial_indent="  ",
        subsequent_indent="      ",
        break_on_hyphens=False,
    )


def describe(report: Report) -> list[str]:
    if report.fatal:
        return [f"{report.folder}: not a language pack the kiosk can load: {report.fatal}"]
    pack = report.pack
    assert pack is not None
    clips = len(voice.clip_ids())
    lines = [
        f"{report.folder}: {pack.code} ({pack.name}), recorded by {pack.recorded_by or '?'}, "
        f"licence {pack.licence or '?'}: {len(pack.clips) - len(report.refused)} of {clips} "
        "clips usable"
    ]
    lines += _listed("missing texts (the screen shows Vietnamese for them)", report.missing_texts)
    lines += _listed(
        "missing clips (the Vietnamese voice says them; the pictograms show them)",
        report.missing_clips,
    )
    lines += [f"  error: {e}" for e in report.errors]
    lines += [f"  warning: {w}" for w in report.warnings]
    verdict = {
        0: "complete",
        1: "usable, with the fallbacks above",
    }[report.status]
    lines.append(f"  {verdict}")
    return lines


def check_command(folder: Path) -> int:
    if not folder.is_dir():
        print(f"lang check: {folder}: not a folder", file=sys.stderr)
        return 2
    if (folder / voice.MANIFEST).exists():
        folders = [folder]
    else:
        folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            print(f"lang check: {folder}: no {voice.MANIFEST} and no pack folders", file=sys.stderr)
            return 2
    status = 0
    for one in folders:
        report = check_pack(one)
        print("\n".join(describe(report)))
        status = max(status, report.status)
    return status


def _phrases(fmt: str) -> int:
    said = {code: voicegen.phrases(code) for code in ("vi", "en")}  # what the made voices say
    rows = [
        (clip, f"{clip}.wav", said["vi"].get(clip, ""), said["en"].get(clip, ""))
        for clip in voice.clip_ids()
    ]
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(("clip", "file", "vi", "en"))
        writer.writerows(rows)
    else:
        for _clip, name, vi, en in rows:
            print(f"{name}\n  vi: {vi}\n  en: {en}")
    return 0
