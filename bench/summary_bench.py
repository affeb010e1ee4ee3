"""The dashboard's summary over 30 million passages in PostgreSQL (issue 18, item 5).

A fresh schema, created by the real ``open_db``, is filled server-side with
``--checkpoints`` x ``--days`` x ``--per-day`` passages (100 x 30 x 10,000 =
30,000,000 by default: a province's month), then :func:`summary` is timed
through ``open_db(url, readonly=True)``, as the dashboard reads it: one local
day of Vietnam (UTC+7, 24 whole UTC hours), the 30 days, and one day of one
checkpoint. Goals: a day under 1 s, 30 days under 3 s.

The passages. One ``INSERT ... SELECT`` from ``generate_series`` per local day
(one transaction, like the ingest's: passages, vehicles, occupants and the two
roll-ups together), 4 lanes (devices) per checkpoint, seq 1.. per device in
time order, a day-shaped traffic (busiest 07:00-19:00 local), 25 % denied with
one or two reason codes from a weighted set of real ones, 8 % vehicles with 1-4
occupants (rows in ``vehicles`` and ``occupants``), and on one day in five per
checkpoint two surge hours (17:00-19:00 local: approved, mode surge, reason
surge). The message is a valid passage (a sample goes through the ingest's own
:func:`check_passage`) but short (about 340 bytes, ``credentials`` empty,
traveller id_number, declaration_id, name): the summary never reads it.

For speed the secondary indexes and the primary keys are dropped before the
load and made again after it: the primary keys by ``ALTER TABLE ... ADD
PRIMARY KEY`` (their names are PostgreSQL's defaults, as ``CREATE TABLE`` gives
them), the rest by ``open_db`` itself (its ``CREATE INDEX IF NOT EXISTS``);
the bench then checks that every index of the schema is defined exactly as
after the first ``open_db``. Then ANALYZE.

The roll-ups. The bulk is counted by an SQL aggregate inside each day's
statement (the ingest's Python path, ``rollup.add`` per batch, would take hours
for 30 million messages), and that aggregate is **proven equal** to the
ingest's own counting: the stored messages of a whole sample day (one with
surge hours) are read back and counted by ``rollup.Batch``, and its rows must
equal the ``hourly`` and ``hourly_reasons`` rows of those hours exactly. Then
the real path runs too: ``--real`` passages (2,000, made by the kiosk's model,
an hour after the last day) are stored by ``SqlDB.store`` in batches of 500
into the full database (each batch's time is printed: the ingest's cost at that
size), and the roll-ups of their hour must equal what Batch counts of them. The
summary's totals over each range must equal what was generated.

Disk: about 1 KB per passage in all (heap, indexes, vehicles, occupants:
1,013 bytes measured); the bench refuses to start when the free space of
PostgreSQL's data directory is under 3 times the estimate (scale down with
``--per-day``/``--days``/``--checkpoints``). ``--rollups-only`` makes the same
passages and counts them into the roll-ups without storing them: the summary
reads nothing else, so its timings are those of the full database (minus the
competition for the cache), in 4 minutes and 160 MB.

Measured (2026-12-07, a 2-core VM shared with other work, PostgreSQL 15 with
its defaults, shared_buffers 128 MB; medians of 9 runs after a first, min-max):

    22,500,000 passages (7,500 a day: 30 million want ~90 GB free, 75 GB were)
      generated 279 s (9.3 s a local day), indexes 215 s; 22.8 GB in all:
      passages 21.5 GB (heap 13.2, indexes 8.3), occupants 0.84, vehicles 0.28;
      hourly 72,003 rows (10 MB), hourly_reasons 1,037,273 rows (147 MB)
      day 4's roll-ups (750,000 passages) equal rollup.Batch's: yes;
      SqlDB.store of 500 kiosk passages into it: 83 ms (77-100), again 19 ms
      case         roll-up rows read   first    median (min-max)
      day          2,400 + 34,689      0.066 s  0.049 s (0.043-0.054)
      30 days      72,000 + 1,037,264  1.925 s  1.521 s (1.274-1.671)
      day CP042    24 + 354            0.006 s  0.005 s (0.005-0.005)
    30,000,000 passages, --rollups-only (hourly 72,000, hourly_reasons 1,070,232)
      day          2,400 + 35,662      0.048 s  0.048 s (0.041-0.053)
      30 days      72,000 + 1,070,232  1.335 s  1.558 s (1.358-1.588)
      day CP042    24 + 359            0.005 s  0.005 s (0.005-0.006)

Both goals are met (day < 1 s, 30 days < 3 s). Of the 30 days' 1.5 s, 0.83 s
was the roll-up read (SQL and fetch of a million reason rows, which the summary
sums into 16 totals) and the rest the Python of summary(). Since then the
database sums the reasons (``GROUP BY site, reason`` in ``rollup.read``: 1,600
rows instead of a million), measured again the same day, same machine:

    30,000,000 passages, --rollups-only (hourly 72,000, hourly_reasons 1,070,046)
      case         roll-up rows read   first    median (min-max)        read median
      day          2,400 + 1,600       0.030 s  0.030 s (0.025-0.031)   0.015 s
      30 days      72,000 + 1,600      0.625 s  0.899 s (0.600-0.934)   0.493 s
      day CP042    24 + 16             0.005 s  0.004 s (0.004-0.005)   0.003 s

(30 days: 1.56 -> 0.90 s; a quarter, ``MAX_RANGE``, is about three times the
hourly rows.)

Then the full size, stored (``--force``: 76 GB were free, 30 GB were used):

    30,000,000 passages in PostgreSQL: generated 361 s, indexes 244 s; passages
      28.7 GB (indexes 11.1), occupants 1.1 GB, vehicles 0.37 GB; hourly 72,003
      rows, hourly_reasons 1,070,074; day 4's roll-ups (1,000,000 passages) equal
      rollup.Batch's: yes; SqlDB.store of 500 kiosk passages: 98 ms (90-131)
      day          2,400 + 1,600       0.047 s  0.030 s (0.025-0.031)
      30 days      72,000 + 1,600      0.604 s  0.886 s (0.596-1.073)
      day CP042    24 + 16             0.005 s  0.004 s (0.004-0.005)

Run: ``.venv/bin/python bench/summary_bench.py [--checkpoints 100] [--days 30]
[--per-day 10000] [--runs 9] [--real 2000] [--rollups-only] [--postgres URL]
[--keep] [--reuse SCHEMA] [--force] [--explain] [--json]`` (``--keep`` leaves the
schema for another run with ``--reuse``; otherwise it is dropped at the end).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest_bench import POSTGRES, with_options  # noqa: E402

from edge.central import rollup  # noqa: E402
from edge.central.contract import Checked  # noqa: E402
from edge.central.db import open_db  # noqa: E402
from edge.central.summary import summary  # noqa: E402
from edge.core.model import Credential, Passage, PassageDraft, Vehicle, iso_utc  # noqa: E402
from edge.core.passage import check_passage  # noqa: E402

VIETNAM = timezone(timedelta(hours=7))
FIRST_DAY = datetime(2026, 11, 1, tzinfo=VIETNAM)  # local midnight of the first day
LANES = 4
BYTES_PER_PASSAGE = 1050  # heap + indexes + vehicles/occupants: 1,013 measured
REAL_BATCH = 500  # the ingest's default batch_size

# Local hours as a lottery of 100 tickets: the day's shape (busy 07:00-19:00).
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 6, 5, 5, 5, 6, 6, 6, 7, 7, 6, 4, 3, 2, 1)
SURGE_HOURS = (17, 18)  # local; on one day in SURGE_EVERY per checkpoint
SURGE_EVERY = 5
DENIED = 0.25
SECOND_REASON = 0.3  # of the denied, how many give a second reason
VEHICLES = 0.08
# Reason codes of a denied passage, with their weights (a lottery of 100 tickets).
REASONS = {
    "expired": 18, "no_declaration": 12, "bad_signature": 6, "unrecognised": 10,
    "replayed": 4, "proof_required": 8, "id_mismatch": 7, "no_decision": 9,
    "no_credential": 6, "revoked": 2, "symptoms_declared": 4, "test_positive": 1,
    "vaccination_incomplete": 5, "lookup_refused": 2, "rule_failed:VN-VN-0001": 3,
    "declaration_too_old": 3,
}  # fmt: skip
KINDS = ("car", "car", "car", "van", "truck", "bus", "motorbike")
NAMES = (
    "Nguyen Van An", "Tran Thi Binh", "Le Van Cuong", "Pham Thi Dung", "Hoang Van Em",
    "Vu Thi Hoa", "Dang Van Hung", "Bui Thi Lan", "Do Van Minh", "Ngo Thi Nga",
)  # fmt: skip
TABLES = ("passages", "vehicles", "occupants", "hourly", "hourly_reasons")


def lottery(weights: Sequence[int]) -> list[int]:
    """Indexes into ``weights``, each as often as its weight (100 in all)."""
    tickets = [i for i, w in enumerate(weights) for _ in range(w)]
    assert len(tickets) == 100, len(tickets)
    return tickets


def ts_sql(expr: str) -> str:
    """A timestamptz as the passage's ts: ISO 8601 UTC, milliseconds, Z."""
    return f"to_char(({expr}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"


# One local day of passages, vehicles, occupants and their roll-ups, in one statement.
# {per_day}, {rows}, {lanes}, {per_lane}, {day} are integers; the rest are parameters;
# {store} is STORE_SQL (or nothing, for the roll-ups alone).
DAY_SQL = """
WITH base AS MATERIALIZED (
    SELECT g / {per_day} AS s, mod(g, {per_day}) AS k,
           random() AS a, random() AS b, random() AS c, random() AS e, random() AS f,
           random() AS f2, random() AS h, random() AS i, random() AS i2, random() AS j,
           random() AS n1, random() AS n2
    FROM generate_series(0, {rows} - 1) AS g
), hours AS (
    SELECT *, mod(k, {lanes}) AS lane,
           (%(hours)s::int[])[1 + floor(a * 100)::int] AS lh
    FROM base
), timed AS (
    SELECT *,
        %(midnight)s::timestamptz + lh * interval '1 hour'
            + floor(b * 3600000) * interval '1 millisecond' AS at,
        (mod(s * 7919 + {day} * 104729, %(surge_every)s) = 0
            AND lh = ANY(%(surge_hours)s::int[])) AS surge,
        (%(reasons)s::int[])[1 + floor(e * 100)::int] AS r1
    FROM hours
), decided AS (
    SELECT *,
        CASE WHEN surge THEN 'surge' WHEN j < 0.3 THEN 'officer' ELSE 'auto' END AS mode,
        (NOT surge AND c < %(denied)s) AS denied,
        (NOT surge AND c < %(denied)s AND f < %(second)s) AS two,
        (h < %(vehicles)s) AS vehicle,
        1 + floor(i * 4)::int AS n
    FROM timed
), q AS MATERIALIZED (
    SELECT
        gen_random_uuid()::text AS pid,
        'cp' || lpad(s::text, 3, '0') || '-' || lane AS device,
        {day} * {per_lane} + row_number() OVER (PARTITION BY s, lane ORDER BY at) AS seq,
        'CP' || lpad(s::text, 3, '0') AS site,
        {ts} AS ts,
        {received} AS received_at,
        CASE WHEN denied THEN 'denied' ELSE 'approved' END AS decision,
        CASE WHEN mode = 'officer' THEN 'officer' ELSE 'policy' END AS decided_by,
        mode,
        CASE WHEN denied AND mode = 'officer' THEN 'refer'
             WHEN denied THEN 'deny' ELSE 'approve' END AS verdict,
        denied, surge, vehicle, n,
        CASE WHEN denied THEN (%(codes)s::text[])[1 + r1] END AS reason1,
        CASE WHEN two THEN (%(codes)s::text[])[
            1 + mod(r1 + 1 + floor(f2 * (cardinality(%(codes)s::text[]) - 1))::int,
                    cardinality(%(codes)s::text[]))] END AS reason2,
        lpad(floor(n1 * 1e12)::bigint::text, 12, '0') AS id_number,
        CASE WHEN n2 < 0.6 THEN upper(substr(md5(n2::text), 1, 4) || '-'
            || substr(md5(n2::text), 5, 4) || '-' || substr(md5(n2::text), 9, 4)) END
            AS declaration_id,
        (%(names)s::text[])[1 + floor(n2 * cardinality(%(names)s::text[]))::int] AS name,
        (%(kinds)s::text[])[1 + floor(i2 * cardinality(%(kinds)s::text[]))::int] AS kind,
        '51H-' || lpad(floor(i2 * 100000)::int::text, 5, '0') AS plate
    FROM decided
), m AS MATERIALIZED (
    SELECT *,
        '{{"id_number":"' || id_number || '"'
            || coalesce(',"declaration_id":"' || declaration_id || '"', '')
            || ',"name":"' || name || '"}}' AS traveller
    FROM q
{store}), ins_hourly AS (
    INSERT INTO hourly (hour, site, passages, approved, denied, vehicles, occupants, surge)
    SELECT substr(ts, 1, 13), site, count(*), count(*) FILTER (WHERE NOT denied),
        count(*) FILTER (WHERE denied), count(*) FILTER (WHERE vehicle),
        coalesce(sum(n) FILTER (WHERE vehicle), 0), count(*) FILTER (WHERE surge)
    FROM m GROUP BY 1, 2
)
INSERT INTO hourly_reasons (hour, site, reason, count)
SELECT hour, site, reason, count(*) FROM (
    SELECT substr(ts, 1, 13) AS hour, site, reason1 AS reason FROM m WHERE denied
    UNION ALL
    SELECT substr(ts, 1, 13), site, reason2 FROM m WHERE reason2 IS NOT NULL
) AS given GROUP BY 1, 2, 3
"""


STORE_SQL = """), ins_passages AS (
    INSERT INTO passages (pid, device, seq, site, ts, decision, decided_by, mode, verdict,
                          id_number, declaration_id, name, message, received_at)
    SELECT pid, device, seq, site, ts, decision, decided_by, mode, verdict,
        id_number, declaration_id, name,
        '{"v":1,"pid":"' || pid || '","seq":' || seq || ',"device":"' || device
        || '","site":"' || site || '","ts":"' || ts || '","decision":"' || decision
        || '","decided_by":"' || decided_by || '","reasons":'
        || CASE WHEN surge THEN '["surge"]'
                WHEN reason2 IS NOT NULL THEN '["' || reason1 || '","' || reason2 || '"]'
                WHEN denied THEN '["' || reason1 || '"]' ELSE '[]' END
        || ',"mode":"' || mode || '","verdict":"' || verdict
        || '","credentials":[],"traveller":' || traveller
        || CASE WHEN vehicle THEN ',"occupants":[{"credentials":[],"traveller":'
            || traveller || '}' || repeat(',{"credentials":[],"traveller":{}}', n - 1)
            || '],"vehicle":{"kind":"' || kind || '","plate":"' || plate
            || '","occupants":' || n || ',"opened_by":"officer"}' ELSE '' END
        || '}',
        received_at
    FROM m
), ins_vehicles AS (
    INSERT INTO vehicles (pid, kind, plate, occupants)
    SELECT pid, kind, plate, n FROM m WHERE vehicle
), ins_occupants AS (
    INSERT INTO occupants (pid, idx, id_number, declaration_id, name)
    SELECT pid, idx, CASE WHEN idx = 0 THEN id_number END,
        CASE WHEN idx = 0 THEN declaration_id END, CASE WHEN idx = 0 THEN name END
    FROM m, generate_series(0, n - 1) AS idx WHERE vehicle
"""


def day_sql(day: int, checkpoints: int, per_day: int, *, store: bool = True) -> str:
    return DAY_SQL.format(
        store=STORE_SQL if store else "",
        per_day=per_day,
        rows=checkpoints * per_day,
        lanes=LANES,
        per_lane=math.ceil(per_day / LANES),
        day=day,
        ts=ts_sql("at"),
        received=ts_sql("at + interval '2 seconds'"),
    )


def day_params(day: int) -> dict[str, Any]:
    return {
        "hours": lottery(HOUR_WEIGHTS),
        "midnight": FIRST_DAY + timedelta(days=day),
        "surge_every": SURGE_EVERY,
        "surge_hours": list(SURGE_HOURS),
        "reasons": lottery(list(REASONS.values())),
        "codes": list(REASONS),
        "denied": DENIED,
        "second": SECOND_REASON,
        "vehicles": VEHICLES,
        "names": list(NAMES),
        "kinds": list(KINDS),
    }


# -- the schema ----------------------------------------------------------------

PRIMARY_KEYS = {"passages": "(pid)", "vehicles": "(pid)", "occupants": "(pid, idx)"}


def connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True)


def indexes(conn: Any, schema: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)
    ).fetchall()
    return dict(rows)


def drop_indexes(conn: Any, schema: str) -> None:
    """Every index of the passage tables, primary keys too (made again after the load)."""
    for table in PRIMARY_KEYS:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey")
    for name in indexes(conn, schema):
        if name.startswith(("passages_", "occupants_", "vehicles_")):
            conn.execute(f"DROP INDEX {name}")


def make_indexes(conn: Any, url: str) -> None:
    conn.execute("SET maintenance_work_mem = '1GB'")
    for table, columns in PRIMARY_KEYS.items():
        conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY {columns}")
    db = open_db(url.replace("options=", "options=-cmaintenance_work_mem%3D1GB%20"))
    db.close()  # its CREATE INDEX IF NOT EXISTS made the rest


@contextmanager
def fresh_schema(base: str, keep: bool) -> Iterator[tuple[str, str]]:
    schema = f"bench_summary_{uuid.uuid4().hex[:8]}"
    with connect(base) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema, with_options(base, schema)
    finally:
        if keep:
            print(f"schema kept: {schema} (--reuse {schema}; DROP SCHEMA {schema} CASCADE)")
        else:
            with connect(base) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def free_bytes(conn: Any) -> int | None:
    """Free space where PostgreSQL keeps its data (None when it is not readable here)."""
    try:
        where = conn.execute("SHOW data_directory").fetchone()[0]
        return shutil.disk_usage(where).free
    except Exception:  # noqa: BLE001 - not a superuser, or another machine
        return None


def fill(conn: Any, url: str, schema: str, args: argparse.Namespace) -> dict[str, Any]:
    """The schema as open_db makes it, filled; what it took."""
    open_db(url).close()
    made = indexes(conn, schema)
    drop_indexes(conn, schema)
    timings: dict[str, Any] = {"days": []}
    start = time.perf_counter()
    for day in range(args.days):
        t = time.perf_counter()
        sql = day_sql(day, args.checkpoints, args.per_day, store=not args.rollups_only)
        conn.execute(sql, day_params(day))
        timings["days"].append(time.perf_counter() - t)
        print(f"  day {day + 1:>2}/{args.days}: {timings['days'][-1]:5.1f} s", flush=True)
    timings["load_s"] = time.perf_counter() - start
    t = time.perf_counter()
    make_indexes(conn, url)
    timings["indexes_s"] = time.perf_counter() - t
    again = indexes(conn, schema)
    if again != made:
        raise SystemExit(f"indexes differ from open_db's: {sorted(set(made) ^ set(again))}")
    t = time.perf_counter()
    for table in TABLES:
        conn.execute(f"ANALYZE {table}")
    timings["analyze_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - start
    return timings


# -- proofs --------------------------------------------------------------------


def hour_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H")


def rollup_rows(conn: Any, first: str, end: str) -> tuple[list[tuple[Any, ...]], list[Any]]:
    """The roll-ups of hours first .. end, in Batch's order."""
    where = "WHERE hour >= %s AND hour < %s ORDER BY 1, 2"
    hours = conn.execute(
        f"SELECT hour, site, {', '.join(rollup.COUNTS)} FROM hourly {where}", (first, end)
    ).fetchall()
    reasons = conn.execute(
        f"SELECT hour, site, reason, count FROM hourly_reasons {where}, 3", (first, end)
    ).fetchall()
    return [tuple(r) for r in hours], [tuple(r) for r in reasons]


def counted(conn: Any, start: datetime, end: datetime) -> tuple[rollup.Batch, int]:
    """Batch's counts of the stored messages from start to end (and how many checked)."""
    batch = rollup.Batch()
    checked = 0
    with conn.transaction(), conn.cursor(name="messages") as cur:  # a day: 1M rows
        cur.itersize = 20000
        cur.execute(
            "SELECT message FROM passages WHERE ts >= %s AND ts < %s",
            (iso_utc(start), iso_utc(end)),
        )
        for (text,) in cur:
            msg = json.loads(text)
            if checked < 20000:  # a sample through the ingest's own check
                check_passage(msg)
                checked += 1
            batch.add(msg)
    return batch, checked


def prove_day(conn: Any, day: int) -> dict[str, Any]:
    """The SQL aggregate's roll-ups of a whole local day equal rollup.Batch's."""
    start = FIRST_DAY + timedelta(days=day)
    end = start + timedelta(days=1)
    t = time.perf_counter()
    batch, checked = counted(conn, start, end)
    hours, reasons = rollup_rows(conn, hour_key(start), hour_key(end))
    equal = hours == batch.rows() and reasons == batch.reason_rows()
    if not equal:
        raise SystemExit(f"day {day + 1}: the SQL roll-ups differ from rollup.Batch's")
    total = sum(r[2] for r in hours)
    return {
        "day": day + 1, "passages": total, "hourly_rows": len(hours),
        "reason_rows": len(reasons), "checked": checked, "equal": equal,
        "seconds": time.perf_counter() - t,
    }  # fmt: skip


def kiosk_passages(n: int, at: datetime) -> list[dict[str, Any]]:
    """``n`` passages as kiosks make them (the model's to_message), in the hour from
    ``at``: approved, denied with reasons, vehicles with occupants, surge."""
    out = []
    for i in range(n):
        creds = tuple(
            Credential.from_raw("declaration", uuid.uuid4().bytes, valid=i % 4 != 1)
            for _ in range(1 + (i % 7 == 0))
        )
        denied = i % 4 == 1
        reasons = ("expired", "id_mismatch")[: 1 + (i % 8 == 1)] if denied else ()
        mode = "surge" if i % 10 == 9 else "auto"
        draft = PassageDraft(
            at + timedelta(seconds=i * 3599 / n), "denied" if denied else "approved",
            "policy", ("surge",) if mode == "surge" else reasons, creds, mode,
            "deny" if denied else "approve",
            occupants=((0,), (1,)) if len(creds) == 2 else (),
            vehicle=Vehicle("car", "51H-123.45") if len(creds) == 2 else None,
        )  # fmt: skip
        device = f"cp{i % 3:03d}-real"
        msg = Passage(str(uuid.uuid4()), 1 + i // 3, device, f"CP{i % 3:03d}", draft)
        out.append(check_passage(msg.to_message(("id_number", "name"))))
    return out


def real_path(conn: Any, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Passages an hour after the range, through SqlDB.store into the full database:
    the time of each batch, and the roll-ups of that hour equal Batch's."""
    at = FIRST_DAY + timedelta(days=args.days, hours=1)
    messages = kiosk_passages(args.real, at)
    db = open_db(url)
    seconds = []
    try:
        for i in range(0, len(messages), REAL_BATCH):
            batch = [Checked.of(m) for m in messages[i : i + REAL_BATCH]]
            t = time.perf_counter()
            db.store(batch)
            seconds.append(time.perf_counter() - t)
        again = time.perf_counter()
        db.store([Checked.of(m) for m in messages[:REAL_BATCH]])  # sent again: no change
        resent = time.perf_counter() - again
    finally:
        db.close()
    expected = rollup.Batch()
    for msg in messages:
        expected.add(msg)
    hours, reasons = rollup_rows(conn, hour_key(at), hour_key(at + timedelta(hours=1)))
    if hours != expected.rows() or reasons != expected.reason_rows():
        raise SystemExit("the ingest's own roll-ups differ from rollup.Batch's")
    return {"passages": len(messages), "batch": REAL_BATCH, "store_s": seconds,
            "resent_s": resent, "equal": True}  # fmt: skip


# -- the timings -----------------------------------------------------------------


def surge_day(args: argparse.Namespace) -> int:
    """A day on which the checkpoint of the one-checkpoint case had surge hours."""
    site = min(42, args.checkpoints - 1)
    surged = (d for d in range(args.days) if (site * 7919 + d * 104729) % SURGE_EVERY == 0)
    return next(surged, 0)


def cases(args: argparse.Namespace) -> list[tuple[str, datetime, datetime, str | None]]:
    middle = FIRST_DAY + timedelta(days=args.days // 2)
    site = f"CP{min(42, args.checkpoints - 1):03d}"
    return [
        ("day", middle, middle + timedelta(days=1), None),
        (f"{args.days} days", FIRST_DAY, FIRST_DAY + timedelta(days=args.days), None),
        (f"day {site}", middle, middle + timedelta(days=1), site),
    ]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": median(values), "min": min(values), "max": max(values)}


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = call()
    return time.perf_counter() - t, result


def time_summaries(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Each case's first call apart, then ``runs`` rounds of every case in turn;
    the roll-up read alone (db.hourly: SQL and fetch) timed the same way."""
    opened, db = timed(lambda: open_db(url, readonly=True))
    report: dict[str, Any] = {"open_s": opened, "cases": {}}
    expect = {"day": args.checkpoints * args.per_day, "site": args.per_day}
    try:
        runs: dict[str, list[float]] = {name: [] for name, *_ in cases(args)}
        reads: dict[str, list[float]] = {name: [] for name, *_ in cases(args)}
        for round_ in range(args.runs + 1):
            for name, start, end, site in cases(args):
                seconds, answer = timed(lambda s=start, e=end, w=site: summary(db, s, e, w))
                first_hour, end_hour = hour_key(start), hour_key(end)
                read, rows = timed(lambda f=first_hour, e=end_hour, w=site: db.hourly(f, e, w))
                if round_ == 0:
                    want = expect["site"] if site else expect["day"] * ((end - start).days)
                    if answer["passages"] != want:
                        raise SystemExit(
                            f"{name}: {answer['passages']} passages, not {want} (with --reuse,"
                            " give the sizes the schema was filled with)"
                        )
                    report["cases"][name] = {
                        "first_s": seconds, "hourly_rows": len(rows.hours),
                        "reason_rows": len(rows.reasons), "passages": answer["passages"],
                    }  # fmt: skip
                    continue
                runs[name].append(seconds)
                reads[name].append(read)
        for name, values in runs.items():
            report["cases"][name].update(
                {"runs": values, "summary_s": spread(values), "read_s": spread(reads[name])}
            )
    finally:
        db.close()
    return report


def explain(conn: Any, args: argparse.Namespace) -> None:
    """EXPLAIN ANALYZE of the roll-up reads of the longest case."""
    _name, start, end, _site = cases(args)[1]
    for table, columns in (("hourly", "*"), ("hourly_reasons", "*")):
        plan = conn.execute(
            f"EXPLAIN (ANALYZE, BUFFERS) SELECT {columns} FROM {table} "
            "WHERE hour >= %s AND hour < %s",
            (hour_key(start), hour_key(end)),
        ).fetchall()
        print(f"  {table}:")
        for (line,) in plan:
            print(f"    {line}")


def sizes(conn: Any) -> dict[str, dict[str, int]]:
    out = {}
    for table in TABLES:
        row = conn.execute(
            "SELECT pg_total_relation_size(%s), pg_relation_size(%s), pg_indexes_size(%s),"
            " (SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass)",
            (table, table, table, table),
        ).fetchone()
        out[table] = dict(zip(("total", "heap", "indexes", "rows"), row, strict=True))
    for table in ("hourly", "hourly_reasons"):  # small: counted exactly
        out[table]["rows"] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return out


def vacuuming(conn: Any) -> list[str]:
    """Tables an autovacuum is working on now (noise for the timings)."""
    rows = conn.execute(
        "SELECT relid::regclass::text FROM pg_stat_progress_vacuum"
        " WHERE datname = current_database()"
    ).fetchall()
    return [r[0] for r in rows]


# -- main ------------------------------------------------------------------------


def mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def print_report(report: dict[str, Any]) -> None:
    fill_ = report.get("fill")
    if fill_:
        print(
            f"generated {report['passages']:,} passages in {fill_['load_s']:.0f} s"
            f" (day median {median(fill_['days']):.1f} s), indexes {fill_['indexes_s']:.0f} s,"
            f" ANALYZE {fill_['analyze_s']:.0f} s; total {fill_['total_s']:.0f} s"
        )
    for table, s in report["sizes"].items():
        print(
            f"  {table:<15} {s['rows']:>12,} rows  total {mb(s['total']):>10}"
            f"  heap {mb(s['heap']):>10}  indexes {mb(s['indexes']):>10}"
        )
    for proof in report.get("proofs", []):
        print(
            f"roll-ups of day {proof['day']} ({proof['passages']:,} passages,"
            f" {proof['hourly_rows']} hourly and {proof['reason_rows']} reason rows) equal"
            f" rollup.Batch's of the stored messages ({proof['checked']:,} of them through"
            f" check_passage): {proof['equal']}"
        )
    real = report.get("real")
    if real:
        s = spread(real["store_s"])
        print(
            f"SqlDB.store into the full database: {real['passages']} kiosk passages in batches"
            f" of {real['batch']}: median {s['median'] * 1000:.0f} ms a batch (min"
            f" {s['min'] * 1000:.0f}, max {s['max'] * 1000:.0f}); sent again"
            f" {real['resent_s'] * 1000:.0f} ms; its roll-ups equal Batch's: {real['equal']}"
        )
    timings = report["timings"]
    print(
        f"summary() through open_db(readonly=True) (opened in {timings['open_s'] * 1000:.0f}"
        f" ms); {report['runs']} runs after a first; autovacuum at work on:"
        f" {', '.join(report['vacuuming']) or 'nothing'}"
    )
    print(f"  {'case':<14} {'rows read':>16} {'first':>8} {'median':>8} {'min-max':>14}"
          f" {'read median':>12}")  # fmt: skip
    for name, c in timings["cases"].items():
        s, r = c["summary_s"], c["read_s"]
        goal = 3.0 if "days" in name else 1.0
        verdict = "PASS" if s["median"] < goal else "FAIL"
        print(
            f"  {name:<14} {c['hourly_rows']:>7}+{c['reason_rows']:>8} {c['first_s']:>7.3f}s"
            f" {s['median']:>7.3f}s {s['min']:>6.3f}-{s['max']:.3f}s {r['median']:>11.3f}s"
            f"  goal < {goal:.0f} s: {verdict}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=100)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=10000, help="passages per checkpoint")
    parser.add_argument("--runs", type=int, default=9, help="timed runs after the first")
    parser.add_argument("--real", type=int, default=2000, help="passages through SqlDB.store")
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--reuse", metavar="SCHEMA", help="a schema filled before (--keep)")
    parser.add_argument("--keep", action="store_true", help="leave the schema for --reuse")
    parser.add_argument(
        "--rollups-only", action="store_true", help="the roll-ups of the passages, not them"
    )
    parser.add_argument("--force", action="store_true", help="even with little free disk")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the reads")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    passages = args.checkpoints * args.days * args.per_day
    report: dict[str, Any] = {"passages": passages, "runs": args.runs}
    with connect(args.postgres) as conn:
        free = free_bytes(conn)
    need = 3 * passages * BYTES_PER_PASSAGE
    fills = args.reuse is None
    if fills and not args.rollups_only and free is not None and free < need and not args.force:
        raise SystemExit(
            f"{passages:,} passages take about {mb(passages * BYTES_PER_PASSAGE)}; only"
            f" {mb(free)} free (3 times that wanted): scale down with --per-day or --days"
        )
    with schema_for(args) as (schema, url), connect(url) as conn:
        if fills:
            print(
                f"filling {schema}{' (roll-ups only)' if args.rollups_only else ''}:"
                f" {args.checkpoints} checkpoints x {args.days} days x {args.per_day:,}"
                f" passages = {passages:,}",
                flush=True,
            )
            report["fill"] = fill(conn, url, schema, args)
        if fills and not args.rollups_only:
            report["proofs"] = [prove_day(conn, surge_day(args))]
            report["real"] = real_path(conn, url, args) if args.real else None
        report["sizes"] = sizes(conn)
        report["vacuuming"] = vacuuming(conn)
        report["timings"] = time_summaries(url, args)
        if args.explain:
            explain(conn, args)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report)
    return 0


@contextmanager
def schema_for(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The reused schema as it is, or a fresh one (dropped at the end unless kept)."""
    if args.reuse:
        yield args.reuse, with_options(args.postgres, args.reuse)
        return
    with fresh_schema(args.postgres, args.keep) as made:
        yield made


if __name__ == "__main__":
    sys.exit(main())
