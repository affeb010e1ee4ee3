"""Outbox append cost, bytes written per passage and store opening time, against anchors.

Append cases: 0, 1,000 and 20,000 passages waiting (never acknowledged), and
20,000 waiting with 50,000 in the archive. Each append is fsynced, as before a
barrier moves. Two anchors are measured in the same run, on the same disk,
with the same message text: a SQLite insert in WAL mode with
``synchronous=FULL`` (one transaction per passage) and a JSON-lines append
followed by fsync. The cases and the anchors are interleaved: ``--rounds``
rounds, each running a slice of every case in turn, so that a slow moment of
the disk hits all of them alike. For each case: the median and 99th
percentile append time, the spread (lowest and highest median of a round),
the ratio of its median to each anchor's, and the bytes written per passage
(the store's own count, and the kernel's count of bytes handed to write()).

Bytes over 150 passages: a fresh store, 150 appends of a usual passage
(about 800 B of JSON): bytes written per passage, the whole cost included
(segment, second record, compaction).

Opening: the time to open a store (``Outbox(...)``) with 0, 1,000, 5,000 and
20,000 passages waiting, rounds interleaved, median and spread.

Goals (issue 15): <= 8 KiB written per passage over 150 passages; append
median <= 1.5x the SQLite anchor's; opening with 20,000 waiting under 100 ms.

Run: ``.venv/bin/python bench/outbox_bench.py [--appends N] [--waiting N] [--archived N]
[--rounds N]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from verify_bench import make_declaration  # bench/ is on the path of a bench script

from edge.config import PassageConfig
from edge.core.model import Credential, Passage, PassageDraft, iso_utc
from edge.store import journal, seglog, storage
from edge.store.outbox import SENT, STORED, Outbox
from edge.store.records import doc_of

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SEGMENT = 100


TRAVELLER = make_declaration()  # a declaration of typical size


def draft() -> PassageDraft:
    """A passage of the usual size: a verified declaration, the default traveller fields."""
    cred = Credential.from_raw("declaration", uuid.uuid4().bytes, valid=True, claims=TRAVELLER)
    return PassageDraft(T0, "approved", "policy", (), (cred,), "auto", "approve")


def sample_message(seq: int) -> dict[str, object]:
    """A passage as the outbox stores it."""
    passage = Passage(str(uuid.uuid4()), seq, "bench", "QL1", draft())
    return passage.to_message(PassageConfig().fields)


def prefill(directory: Path, waiting: int, archived: int) -> None:
    """Write the store's files directly, as the outbox leaves them when it is closed (each
    segment a compacted log, each passage also in the journal, which ends with a
    checkpoint): faster than appending one by one."""
    (directory / "outbox").mkdir(parents=True)
    (directory / "archive").mkdir()
    (directory / "journal").mkdir()
    seq = 0
    lines = []
    for _ in range(archived):
        seq += 1
        lines.append(json.dumps({"msg": sample_message(seq), "acked_at": iso_utc(T0)}))
    if lines:
        (directory / "archive" / "2026-11-26.jsonl").write_text("\n".join(lines) + "\n")
    first = seq + 1
    segments: dict[int, dict[str, dict[str, object]]] = {}
    journal_lines = []
    for seq in range(first, first + waiting):
        msg = sample_message(seq)
        text = json.dumps(msg, separators=(",", ":"))  # stored as published
        doc = doc_of(text, msg, SENT if seq % 2 else STORED)
        segments.setdefault((seq - 1) // SEGMENT, {})[str(seq)] = doc
        journal_lines.append(journal.line_of(seq, text))
    for index, docs in segments.items():
        seglog.write_compacted(directory / "outbox" / f"seg-{index:08d}.log", docs)
    journal_lines.append(journal.checkpoint_line(first + waiting - 1))  # closed cleanly
    (directory / "journal" / "2026-11-26.jsonl").write_bytes(b"".join(journal_lines))
    (directory / "meta.json").write_text(json.dumps({"last_seq": first + waiting - 1}))


def open_box(directory: Path) -> Outbox:
    return Outbox(directory, "bench", "QL1", PassageConfig().fields, segment_size=SEGMENT)


def wchar() -> int:
    """Bytes this process has handed to write() so far (the kernel's count)."""
    with open("/proc/self/io", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


@dataclass
class Case:
    """One thing measured: its name, one step (a timed append), its figures."""

    name: str
    step: Callable[[], None]
    counted: Callable[[], int] = lambda: storage.written.bytes
    times: list[float] = field(default_factory=list)  # ms, every append
    round_medians: list[float] = field(default_factory=list)
    own_bytes: int = 0
    kernel_bytes: int = 0

    def run(self, n: int) -> None:
        times = []
        own, kernel = self.counted(), wchar()
        for _ in range(n):
            t = time.perf_counter()
            self.step()
            times.append((time.perf_counter() - t) * 1000)
        self.own_bytes += self.counted() - own
        self.kernel_bytes += wchar() - kernel
        self.times += times
        self.round_medians.append(statistics.median(times))

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.times, n=100)[-1] if len(self.times) > 1 else self.median


def _append(box: Outbox) -> None:
    box.append(draft())


def sqlite_anchor(directory: Path, text: str) -> tuple[Case, Callable[[], None]]:
    db = sqlite3.connect(directory / "anchor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE passages (seq INTEGER PRIMARY KEY, pid TEXT UNIQUE, msg TEXT)")
    seq = [0]

    def insert() -> None:
        seq[0] += 1
        db.execute("INSERT INTO passages VALUES (?, ?, ?)", (seq[0], str(uuid.uuid4()), text))

    return Case("sqlite WAL FULL", insert, counted=lambda: 0), db.close


def jsonl_anchor(directory: Path, text: str) -> tuple[Case, Callable[[], None]]:
    fh = open(directory / "anchor.jsonl", "ab")  # noqa: SIM115 - closed by the caller
    line = (text + "\n").encode()

    def append() -> None:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())

    return Case("jsonl append+fsync", append, counted=lambda: 0), fh.close


def measure_appends(
    root: Path, big: int, archived_n: int, appends: int, rounds: int
) -> tuple[list[tuple[int, int, Case]], Case, Case]:
    """Every case and both anchors, interleaved round by round."""
    boxes: list[Outbox] = []
    cases: list[tuple[int, int, Case]] = []
    for waiting, archived in ((0, 0), (min(1_000, big), 0), (big, 0), (big, archived_n)):
        directory = root / f"append-{len(cases)}"
        prefill(directory, waiting, archived)
        open_box(directory).close()  # meta.json as a kiosk that ran leaves it
        box = open_box(directory)
        boxes.append(box)
        case = Case(f"{waiting} waiting", lambda box=box: _append(box))
        cases.append((waiting, archived, case))
    text = json.dumps(sample_message(1), separators=(",", ":"))
    sqlite_case, close_sqlite = sqlite_anchor(root, text)
    jsonl_case, close_jsonl = jsonl_anchor(root, text)
    everything = [c for _, _, c in cases] + [sqlite_case, jsonl_case]
    per_round = max(1, appends // rounds)
    for r in range(rounds):
        shift = r % len(everything)  # each round starts with another case
        for case in everything[shift:] + everything[:shift]:
            case.run(per_round)
    for (waiting, _, _), box in zip(cases, boxes, strict=True):
        assert box.status().depth == waiting + per_round * rounds
        box.close()
    close_sqlite()
    close_jsonl()
    return cases, sqlite_case, jsonl_case


def bytes_over(root: Path, passages: int) -> tuple[float, float]:
    """Bytes written per passage over ``passages`` appends to a fresh store (own, kernel)."""
    box = open_box(root / f"fresh-{passages}")
    own, kernel = storage.written.bytes, wchar()
    for _ in range(passages):
        box.append(draft())
    result = (storage.written.bytes - own) / passages, (wchar() - kernel) / passages
    box.close()
    return result


def measure_opening(root: Path, backlogs: list[int], rounds: int) -> dict[int, list[float]]:
    """Milliseconds to open a store with each backlog waiting, rounds interleaved."""
    dirs = {}
    for waiting in backlogs:
        directory = root / f"open-{waiting}"
        prefill(directory, waiting, 0)
        open_box(directory).close()  # meta.json as a kiosk that ran leaves it
        dirs[waiting] = directory
    times: dict[int, list[float]] = {w: [] for w in backlogs}
    for r in range(rounds):
        shift = r % len(backlogs)
        for waiting in backlogs[shift:] + backlogs[:shift]:
            t = time.perf_counter()
            box = open_box(dirs[waiting])
            times[waiting].append((time.perf_counter() - t) * 1000)
            assert box.status().depth == waiting
            box.close()
    return times


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=300, help="per case, over all rounds")
    parser.add_argument("--waiting", type=int, default=20_000, help="the large backlog")
    parser.add_argument("--archived", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    big, archived_n = args.waiting, args.archived
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        cases, sqlite_case, jsonl_case = measure_appends(
            root, big, archived_n, args.appends, args.rounds
        )
        fresh_own, fresh_kernel = bytes_over(root, 150)
        backlogs = sorted({0, min(1_000, big), min(5_000, big), big})
        opening = measure_opening(root, backlogs, args.rounds)
        shutil.rmtree(root, ignore_errors=True)
    appended = len(sqlite_case.times)
    print(
        f"outbox benchmark: {appended} appends per case in {args.rounds} interleaved rounds, "
        f"segments of {SEGMENT}"
    )
    print(
        f"{'waiting':>8} {'archived':>9} {'median ms':>10} {'p99 ms':>8} {'KiB/passage':>12}"
        f" {'kernel KiB':>11} {'round medians':>14} {'/sqlite':>8} {'/jsonl':>7}"
    )
    medians = {}
    for waiting, archived, case in cases:
        medians[(waiting, archived)] = case.median
        print(
            f"{waiting:8d} {archived:9d} {case.median:10.2f} {case.p99:8.2f}"
            f" {case.own_bytes / appended / 1024:12.1f} {case.kernel_bytes / appended / 1024:11.1f}"
            f" {spread(case.round_medians):>14} {case.median / sqlite_case.median:8.2f}"
            f" {case.median / jsonl_case.median:7.2f}"
        )
    for anchor in (sqlite_case, jsonl_case):
        print(
            f"anchor {anchor.name:<19} {anchor.median:7.2f} {anchor.p99:8.2f} {'-':>12}"
            f" {anchor.kernel_bytes / appended / 1024:11.1f} {spread(anchor.round_medians):>14}"
        )
    ratio = medians[(big, 0)] / medians[(0, 0)]
    print(f"median with {big:,} waiting / median with none: {ratio:.2f} (target <= 1.5)")
    worst = max(c.median for _, _, c in cases) / sqlite_case.median
    print(f"slowest case median / sqlite WAL FULL median: {worst:.2f} (target <= 1.5)")
    print(
        f"bytes over 150 passages: {fresh_own / 1024:.1f} KiB/passage by the store's count, "
        f"{fresh_kernel / 1024:.1f} KiB by the kernel's (target <= 8)"
    )
    print(f"{'opening':<8} {'waiting':>8} {'median ms':>10} {'spread ms':>14}")
    for waiting, times in opening.items():
        print(f"{'opening':<8} {waiting:8d} {statistics.median(times):10.1f} {spread(times):>14}")
    print(f"opening with {big:,} waiting: {statistics.median(opening[big]):.1f} ms (target < 100)")


if __name__ == "__main__":
    main()
