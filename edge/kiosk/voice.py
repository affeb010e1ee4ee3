"""The traveller's screen, spoken: what is said, and the language packs it comes from.

A *clip* is one thing the screen says, named by a clip id: a screen
(:data:`SCREENS`: ``ready``, ``denied``, ...: its title and hint) or a reason
(``reason.<code>``, the main reason a traveller is refused, said after
``denied``). The page asks for ``GET /voice/<lang>/<clip id>`` (server.py).

A *pack* is a folder (docs/languages.md)::

    hmn/
      manifest.json    {"code": "hmn", "name": "Hmoob", "recorded_by": "...",
                        "licence": "CC-BY-4.0", "clips": {"denied": "tsis-pub.ogg"}}
      catalogue.json   the screen's texts: {"name": ..., "messages": {...}} (as i18n/)
      ready.wav, denied.ogg, reason.expired.wav, ...

A clip's file is named in the manifest's ``clips`` or, by default, ``<clip
id>.wav`` or ``<clip id>.ogg``. Packs dropped into ``[kiosk] packs`` add their
language to the screen's switch; the voices made at install time
(``checkpoint-edge lang voices``, into ``[kiosk] voices``) are packs without a
catalogue. A clip a language lacks is said by the Vietnamese voice
(:data:`FALLBACK`), and the pictograms say the rest.

Loading checks what is cheap (the manifest, the file names, each clip's first
bytes); ``checkpoint-edge lang check`` also measures every clip (langcheck.py).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_args

from edge import files
from edge.core.events import Screen
from edge.errors import EdgeError, InputError
from edge.kiosk import audio
from edge.kiosk.audio import AudioError

log = logging.getLogger(__name__)

# Every state the lane shows the traveller (the page's own "offline" is not said: the
# page cannot reach the kiosk for its clip then).
SCREENS: tuple[str, ...] = (*get_args(Screen), "reading")
FALLBACK = "vi"  # the voice of a clip a pack lacks: the one language every traveller hears
BUNDLED = ("vi", "en")  # the languages with a catalogue in the package
MANIFEST = "manifest.json"
CATALOGUE = "catalogue.json"
AUDIO_TYPES = {".wav": "audio/wav", ".ogg": "audio/ogg"}
MAX_CLIP_BYTES = 4 * 1024 * 1024  # 8 s of 48 kHz stereo WAV is 1.5 MiB
MAX_DOC_BYTES = 1024 * 1024
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")
MAX_FIELD = 200


class PackError(EdgeError):
    """A folder that is not a usable pack (the reason says why)."""


def bundled_catalogue(code: str) -> dict[str, Any]:
    """A bundled catalogue (``edge/kiosk/i18n/<code>.json``): its name and messages."""
    text = (resources.files("edge.kiosk") / "i18n" / f"{code}.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def bundled(code: str) -> dict[str, Any]:
    """A bundled catalogue's messages."""
    messages: dict[str, Any] = bundled_catalogue(code)["messages"]
    return messages


def clip_ids(messages: Mapping[str, Any] | None = None) -> list[str]:
    """Every clip the screen may ask for: the screens, then every reason of the
    English catalogue (the reference for every language)."""
    reference = bundled("en") if messages is None else messages
    return [*SCREENS, *sorted(k for k in reference if k.startswith("reason."))]


def _sentence(text: str) -> str:
    text = text.strip().rstrip("…").rstrip()
    return text if not text or text[-1] in ".!?:;" else f"{text}."


def spoken_text(messages: Mapping[str, Any], clip: str) -> str:
    """What a clip says in a catalogue: its ``speak.<clip id>`` text when given (a
    catalogue may spell a word the way a synthesiser reads it right), else a
    screen's title and hint, or the reason's text; "" when the catalogue lacks it."""
    said = messages.get(f"speak.{clip}")
    if isinstance(said, str) and said.strip():
        return said.strip()
    if clip in SCREENS:
        parts = [messages.get(f"screen.{clip}"), messages.get(f"screen.{clip}.hint")]
    else:
        parts = [messages.get(clip)]
    return " ".join(_sentence(p) for p in parts if isinstance(p, str) and p.strip())


@dataclass(frozen=True)
class Pack:
    folder: Path
    code: str
    name: str
    recorded_by: str
    licence: str
    clips: Mapping[str, Path]  # clip id -> its file (found, with a sound file's first bytes)
    catalogue: Mapping[str, Any] | None  # {"name", "messages"}, or None (a voice only)
    problems: tuple[str, ...] = ()  # clips named but left out, and why
    manifest: Mapping[str, Any] = field(default_factory=dict)


def _read_doc(path: Path) -> Any:
    if not path.exists():
        raise PackError(f"{path.name}: missing")
    try:
        return json.loads(files.read_text_limited(path, MAX_DOC_BYTES, "pack file"))
    except InputError as exc:
        raise PackError(f"{path.name}: {exc.reason}") from exc
    except (ValueError, RecursionError) as exc:
        raise PackError(f"{path.name}: not valid JSON: {exc}") from exc


def _printable(text: str) -> bool:
    """No control, format or unpaired surrogate characters (they would reach the log,
    a terminal and file system calls)."""
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in text)


def _text_field(manifest: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = manifest.get(name, "")
    if (
        not isinstance(value, str)
        or len(value) > MAX_FIELD
        or (required and not value.strip())
        or not _printable(value)
    ):
        raise PackError(
            f'{MANIFEST}: "{name}" must be a text of 1 to {MAX_FIELD} printable characters'
        )
    return value.strip()


def sound_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a clip, from its name, kind, size and first bytes; None: it can."""
    kind = path.suffix.lower()
    if kind not in AUDIO_TYPES:
        return f"{path.name}: not a .wav or .ogg file"
    try:
        head = read_clip(path)[:64]
    except InputError as exc:
        return f"{path.name}: {exc.reason}"
    headers = {".wav": head[:4] == b"RIFF" and head[8:12] == b"WAVE", ".ogg": head[:4] == b"OggS"}
    if not headers[kind]:
        return f"{path.name}: not a {kind[1:].upper()} file (its first bytes)"
    if b"OpusHead" in head:
        return f"{path.name}: Opus, not Vorbis: make it OGG Vorbis (sox in.wav -C 3 out.ogg) or WAV"
    return None


def read_clip(path: Path) -> bytes:
    """A clip's bytes: a regular file of at most :data:`MAX_CLIP_BYTES` (InputError)."""
    try:
        return files.read_limited(path, MAX_CLIP_BYTES, "clip")
    except ValueError as exc:  # a name the file system cannot take (NUL)
        if isinstance(exc, InputError):
            raise
        raise InputError(path, f"not a file name: {exc}") from exc


def _safe_name(name: Any) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_FIELD
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and _printable(name)
    )


def _clips(folder: Path, named: Any, known: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    if named is None:
        named = {}
    if not isinstance(named, dict):
        raise PackError(f'{MANIFEST}: "clips" must be an object of clip id -> file name')
    found: dict[str, Path] = {}
    problems: list[str] = []
    for clip, name in sorted(named.items()):
        if clip not in known:
            problems.append(f'"clips": {clip!r} is not a clip the screen says')
        elif not _safe_name(name):
            problems.append(f'"clips": {clip}: a file name in the pack\'s folder, not {name!r}')
    for clip in known:
        if clip in named:
            if not _safe_name(named[clip]):
                continue
            path: Path | None = folder / named[clip]
        else:
            defaults = (folder / f"{clip}{kind}" for kind in AUDIO_TYPES)
            path = next((p for p in defaults if p.exists()), None)
        if path is None:
            continue  # a missing clip: the Vietnamese voice says it
        problem = sound_problem(path)
        if problem is None:
            found[clip] = path
        else:
            problems.append(f"{clip}: {problem}")
    return found, problems


def read_pack(folder: Path, *, need_catalogue: bool = True) -> Pack:
    """The pack in ``folder``; PackError when its manifest (or, with ``need_catalogue``,
    its catalogue) is missing or wrong. A clip that cannot be used is left out and
    named in ``problems``."""
    manifest = _read_doc(folder / MANIFEST)
    if not isinstance(manifest, dict):
        raise PackError(f"{MANIFEST}: must be a JSON object")
    code = manifest.get("code")
    if not isinstance(code, str) or not LANGUAGE_CODE.fullmatch(code):
        raise PackError(f'{MANIFEST}: "code" must be a language code such as "hmn" or "vi"')
    name = _text_field(manifest, "name", required=True)
    catalogue: dict[str, Any] | None = None
    # a vi or en pack may bring clips alone: the bundled texts are there
    if (need_catalogue and code not in BUNDLED) or (folder / CATALOGUE).exists():
        doc = _read_doc(folder / CATALOGUE)
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), dict):
            raise PackError(f'{CATALOGUE}: must be {{"name": ..., "messages": {{...}}}}')
        catalogue = {"name": name, "messages": doc["messages"]}
    known = clip_ids()
    clips, problems = _clips(folder, manifest.get("clips"), known)
    return Pack(
        folder=folder,
        code=code,
        name=name,
        recorded_by=_text_field(manifest, "recorded_by", required=False),
        licence=_text_field(manifest, "licence", required=False),
        clips=clips,
        catalogue=catalogue,
        problems=tuple(problems),
        manifest=manifest,
    )


def load_packs(folder: Path | None, *, need_catalogue: bool = True) -> list[Pack]:
    """Every pack in the folders under ``folder`` (sorted by name); a folder that is
    no usable pack is left out with an error in the log, the others still load."""
    if folder is None:
        return []
    try:
        entries = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            log.error("kiosk: language packs in %s not read: %s", folder, exc)  # noqa: TRY400
        return []
    packs: list[Pack] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            pack = read_pack(entry, need_catalogue=need_catalogue)
        except PackError as exc:
            log.error("kiosk: language pack %r left out: %s", entry.name, exc)  # noqa: TRY400
            continue
        except Exception:  # a pack never costs the screen
            log.exception("kiosk: language pack %r left out", entry.name)
            continue
        if any(p.code == pack.code for p in packs):
            log.error("kiosk: language pack %r left out: %s twice", entry.name, pack.code)
            continue
        for problem in pack.problems:
            log.warning("kiosk: language pack %r: %s", entry.name, problem)
        packs.append(pack)
    return packs


class Voices:
    """Where each clip is found: the packs in order (recorded ones before the made
    voices), a language's own clip first, then the Vietnamese one. A clip is
    measured the first time it is asked for (audio.py): one ``lang check`` calls
    unreadable, silent, too short or too long is left out (a warning in the log)."""

    def __init__(self, packs: Sequence[Pack]) -> None:
        self.packs = list(packs)
        self._usable: dict[Path, bool] = {}
        self._lock = threading.Lock()

    def find(self, language: str, clip: str) -> tuple[Path, str] | None:
        """(file, the language it speaks) of ``clip`` in ``language``; None: no voice has it."""
        for code in dict.fromkeys((language, FALLBACK)):
            for pack in self.packs:
                path = pack.clips.get(clip) if pack.code == code else None
                if path is not None and self.usable(path):
                    return path, code
        return None

    def usable(self, path: Path) -> bool:
        with self._lock:
            known = self._usable.get(path)
        if known is not None:
            return known
        try:
            measured = audio.measure(path)  # None: an OGG without sox to measure it
            errors = audio.problems(measured)[0] if measured is not None else []
        except AudioError as exc:
            errors = [str(exc)]
        except Exception as exc:  # noqa: BLE001 - a clip never costs the screen
            errors = [f"cannot be measured: {type(exc).__name__}: {exc}"]
        if errors:
            log.warning("kiosk: clip %s left out: %s", path, errors[0])
        with self._lock:
            self._usable[path] = not errors
        return not errors

    def languages(self) -> set[str]:
        """The languages with a voice of their own."""
        return {pack.code for pack in self.packs if pack.clips}


def catalogues_of(packs: Sequence[Pack]) -> dict[str, dict[str, Any]]:
    """The packs' catalogues, as server.catalogues() gives the bundled ones: a text a
    pack lacks is the bundled one of its language (a recorded vi or en), else the
    Vietnamese one (as its voice), not English."""
    return {
        p.code: {
            "name": p.name,
            "messages": {
                **bundled(p.code if p.code in BUNDLED else FALLBACK),
                **p.catalogue["messages"],
            },
        }
        for p in packs
        if p.catalogue is not None
    }
