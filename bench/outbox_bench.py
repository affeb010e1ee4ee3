"""Outbox insert time and bytes written per passage, however long the outage.

For 0, 1,000 and 20,000 passages waiting (never acknowledged) and 50,000 in
the archive, appends passages one at a time (each fsynced, as before a barrier
moves) and prints the median and 99th percentile time, and the bytes written
per passage. The target: with 20,000 waiting, the median stays within 1.5x
of the median with none, and under 256 KiB are written per passage.

Run: ``.venv/bin/python bench/outbox_bench.py [--appends N] [--waiting N] [--archived N]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from verify_bench import make_declaration  # bench/ is on the path of a bench script

from edge import storage
from edge.model import Credential, Passage, PassageDraft, iso_utc
from edge.sections import PassageConfig
from edge.store import SENT, STORED, Outbox

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
    """Write the store's files directly: faster than appending one by one."""
    (directory / "outbox").mkdir(parents=True)
    (directory / "archive").mkdir()
    seq = 0
    lines = []
    for _ in range(archived):
        seq += 1
        lines.append(json.dumps({"msg": sample_message(seq), "acked_at": iso_utc(T0)}))
    if lines:
        (directory / "archive" / "2026-11-26.jsonl").write_text("\n".join(lines) + "\n")
    first = seq + 1
    segments: dict[int, dict[str, object]] = {}
    for seq in range(first, first + waiting):
        text = json.dumps(sample_message(seq), separators=(",", ":"))  # stored as published
        doc = {"msg": text, "state": SENT if seq % 2 else STORED}
        segments.setdefault((seq - 1) // SEGMENT, {})[str(seq)] = doc
    for index, docs in segments.items():
        path = directory / "outbox" / f"seg-{index:08d}.json"
        path.write_text(json.dumps({"passages": docs}))
    (directory / "meta.json").write_text(json.dumps({"last_seq": first + waiting - 1}))


def measure(waiting: int, archived: int, appends: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "store"
        prefill(directory, waiting, archived)
        box = Outbox(directory, "bench", "QL1", PassageConfig().fields, segment_size=SEGMENT)
        times = []
        storage.written.bytes = 0
        for _ in range(appends):
            t = time.perf_counter()
            box.append(draft())
            times.append((time.perf_counter() - t) * 1000)
        written = storage.written.bytes / appends
        assert box.status().depth == waiting + appends
        box.close()
    p99 = statistics.quantiles(times, n=100)[-1]
    return statistics.median(times), p99, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--waiting", type=int, default=20_000, help="the large backlog")
    parser.add_argument("--archived", type=int, default=50_000)
    args = parser.parse_args()
    big, archived_n = args.waiting, args.archived
    print(f"outbox benchmark: {args.appends} appends per case, segments of {SEGMENT}")
    print(f"{'waiting':>8} {'archived':>9} {'median ms':>10} {'p99 ms':>8} {'KiB/passage':>12}")
    medians = {}
    for waiting, archived in ((0, 0), (min(1_000, big), 0), (big, 0), (big, archived_n)):
        median, p99, written = measure(waiting, archived, args.appends)
        medians[(waiting, archived)] = median
        print(f"{waiting:8d} {archived:9d} {median:10.2f} {p99:8.2f} {written / 1024:12.1f}")
    ratio = medians[(big, 0)] / medians[(0, 0)]
    print(f"median with {big:,} waiting / median with none: {ratio:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()
