"""What the followup database does per applied event at a steady load (#12).

Starts an embedded PostgreSQL and the tansu broker, the followup worker as it runs (its
consumer, batches, timer runner, relay) in this process, and publishes the benchmark's steady
load (one ``client.registered`` of a new client per event, :func:`bench.followup_steady
.registration`) at ``--rate`` events per second for ``--seconds``, then waits until every event
is applied. Around that load it reads, per event:

- PostgreSQL's CPU (the postmaster and every backend, the probe's own connection's backend
  taken out) and WAL: bytes (``pg_current_wal_lsn`` delta over the load, the whole cluster:
  intake's store is there, empty), records and full-page images (``pg_stat_wal``);
- per table of followup's database: rows inserted, updated (of them HOT), deleted
  (``pg_stat_user_tables``), the table's indexes and the index entries the writes maintained
  (an insert or a non-HOT update one entry in each index whose predicate holds: counted as
  every index, an upper bound for the partial ones), and the tables' reads by index
  (``pg_stat_user_indexes.idx_scan``: which indexes the load reads);
- with ``--statements``: ``pg_stat_statements`` preloaded, each statement's calls, rows and
  execution time per event (the load's and its drain's; the extension's own cost is in the
  CPU figure then, so take the CPU from a run without it);
- with ``--waits``: ``pg_stat_activity`` sampled every ``--wait-interval-ms`` (10) from the
  load's start to its drain's end on a connection of its own (its backend's CPU taken out
  too): for the backends of followup's database that are not idle, the share of samples in
  each wait event (``CPU`` when none: running or runnable) per statement's first words, what
  a statement's execution time that is not CPU waits on (#12, Round 37).

Statistics are flushed by each backend at most once a second while it works, and ~10 s after it
went idle: the probe waits ``--settle`` seconds (11) before each read of the tables' figures
(the idle worker's few writes in that wait, e.g. its relay's polls, are counted in).

    python -m bench.profile_followup_pg [--rate 1089] [--seconds 20] [--statements]
                                        [--settle 11] [--waits [--wait-interval-ms 10]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.followup_steady import applied, registration  # noqa: E402
from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_followup import server_cpu_seconds  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402

TABLES_SQL = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables"
)
INDEXES_SQL = "SELECT relname, indexrelname, idx_scan FROM pg_stat_user_indexes"
WAL_SQL = "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"
WAITS_SQL = (
    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), left(query, $1) "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND state NOT IN ('idle')"
)
WAIT_QUERY_CHARS = 60
STATEMENTS_SQL = (
    "SELECT queryid, query, calls, rows, total_exec_time FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@dataclass
class Snapshot:
    tables: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    """relname -> (inserted, updated, of them HOT, deleted)"""
    indexes: dict[str, dict[str, int]] = field(default_factory=dict)
    """relname -> {index name: scans}"""
    wal: tuple[int, int, int] = (0, 0, 0)
    statements: dict[int, tuple[str, int, int, float]] = field(default_factory=dict)


@dataclass
class TableRow:
    table: str
    inserted: float
    updated: float
    hot: float
    deleted: float
    indexes: int
    entries: float
    """index entries maintained per event: (inserted + non-HOT updated) * indexes"""
    scanned: dict[str, float]
    """index -> scans per event (the indexes read during the load)"""


def table_rows(before: Snapshot, after: Snapshot, events: int) -> list[TableRow]:
    """Per event, each table written (or read by index) between the two snapshots, the most
    index entries first."""
    rows = []
    for name, now in after.tables.items():
        was = before.tables.get(name, (0, 0, 0, 0))
        ins, upd, hot, dele = (a - b for a, b in zip(now, was, strict=True))
        indexes = after.indexes.get(name, {})
        old = before.indexes.get(name, {})
        scanned = {
            index: (scans - old.get(index, 0)) / events
            for index, scans in indexes.items()
            if scans - old.get(index, 0)
        }
        if not (ins or upd or dele or scanned):
            continue
        rows.append(
            TableRow(
                name,
                ins / events,
                upd / events,
                hot / events,
                dele / events,
                len(indexes),
                (ins + upd - hot) * len(indexes) / events,
                scanned,
            )
        )
    return sorted(rows, key=lambda r: (-r.entries, -r.inserted, r.table))


def table_text(rows: list[TableRow]) -> list[str]:
    lines = [
        "| table | inserted | updated (HOT) | deleted | indexes | index entries | index scans |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        scans = ", ".join(f"{i} {n:.2f}" for i, n in sorted(r.scanned.items())) or "-"
        lines.append(
            f"| {r.table} | {r.inserted:.2f} | {r.updated:.2f} ({r.hot:.2f}) | {r.deleted:.2f} "
            f"| {r.indexes} | {r.entries:.2f} | {scans} |"
        )
    total = sum(r.inserted + r.updated + r.deleted for r in rows)
    entries = sum(r.entries for r in rows)
    lines.append(f"| all | rows written {total:.2f} | | | | {entries:.2f} | |")
    return lines


def statement_text(before: Snapshot, after: Snapshot, events: int, top: int = 30) -> list[str]:
    deltas = []
    for qid, (query, calls, rows, ms) in after.statements.items():
        _, calls0, rows0, ms0 = before.statements.get(qid, ("", 0, 0, 0.0))
        if calls - calls0:
            deltas.append((ms - ms0, calls - calls0, rows - rows0, " ".join(query.split())))
    deltas.sort(reverse=True)
    total = sum(d[0] for d in deltas)
    lines = [
        f"statements: {sum(d[1] for d in deltas) / events:.2f} per event, "
        f"execution {1000 * total / events:.1f} µs per event",
        "| µs/event | calls/event | rows/event | statement |",
        "|---|---|---|---|",
    ]
    for ms, calls, rows, query in deltas[:top]:
        lines.append(
            f"| {1000 * ms / events:.1f} | {calls / events:.3f} | {rows / events:.2f} "
            f"| {query[:150]} |"
        )
    return lines


def wait_text(samples: list[list[tuple[str, str]]], top: int = 20) -> list[str]:
    """What the busy backends were doing in ``samples`` (each a list of (wait, statement)
    per backend not idle): per (wait, statement's first words), the backends seen so per
    sample on average and the share of every busy backend seen, the most first."""
    counts: dict[tuple[str, str], int] = {}
    for sample in samples:
        for wait, query in sample:
            key = (wait, " ".join(query.split()))
            counts[key] = counts.get(key, 0) + 1
    busy = sum(counts.values())
    lines = [
        f"waits: {len(samples)} samples, {busy / max(1, len(samples)):.2f} busy backends a sample",
        "| backends/sample | share | wait | statement |",
        "|---|---|---|---|",
    ]
    for (wait, query), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]:
        lines.append(f"| {n / len(samples):.3f} | {100 * n / busy:.1f} % | {wait} | {query} |")
    return lines


async def sample_waits(conn: Any, every_s: float, samples: list[list[tuple[str, str]]]) -> None:
    """Appends a sample of :data:`WAITS_SQL` to ``samples`` every ``every_s`` until
    cancelled."""
    while True:
        rows = await conn.fetch(WAITS_SQL, WAIT_QUERY_CHARS)
        samples.append([(r[0], r[1] or "") for r in rows])
        await asyncio.sleep(every_s)


async def snapshot(conn: Any, statements: bool) -> Snapshot:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    snap = Snapshot()
    for r in await conn.fetch(TABLES_SQL):
        snap.tables[r[0]] = (r[1], r[2], r[3], r[4])
    for r in await conn.fetch(INDEXES_SQL):
        snap.indexes.setdefault(r[0], {})[r[1]] = r[2]
    snap.wal = tuple(int(v) for v in await conn.fetchrow(WAL_SQL))  # type: ignore[assignment]
    if statements:
        for r in await conn.fetch(STATEMENTS_SQL):
            snap.statements[r[0]] = (r[1], r[2], r[3], r[4])
    return snap


async def lsn(conn: Any) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))


async def measure(args: argparse.Namespace, base: Path) -> None:
    import asyncpg
    from aiokafka import AIOKafkaProducer

    from branchline_followup.bootstrap import running_worker
    from branchline_shared.kafka.starting import closed, start_or_close
    from branchline_shared.kafka.topics import declare_topics
    from branchline_shared.kafka.wire import event_headers

    extra = {"shared_preload_libraries": "pg_stat_statements"} if args.statements else {}
    if args.auto_explain is not None:
        # The plans the worker's sessions really run (cached generic plans included, and the
        # PL/pgSQL function's nested query), not a fresh EXPLAIN's: the log is kept at the end.
        extra["shared_preload_libraries"] = ",".join(
            [*filter(None, [extra.get("shared_preload_libraries")]), "auto_explain"]
        )
        extra |= {
            "auto_explain.log_min_duration": f"{args.auto_explain:g}ms",
            "auto_explain.log_nested_statements": "on",
            "auto_explain.log_analyze": "on",
            "auto_explain.log_timing": "off",
        }
    async with probe_stack(
        base, broker=True, migrated=("followup", "eventstore"), server_settings=extra
    ) as stack:
        server, settings = stack.server, stack.settings
        topic = declare_topics(settings).intake_events.name
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await start_or_close(producer)
        conn = await asyncpg.connect(settings.followup_database_url)
        if args.statements:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        position = 0
        run = uuid.uuid4().hex[:6]

        async def publish(n: int) -> uuid.UUID:
            nonlocal position
            position += 1
            event = registration(n, run)
            await producer.send(
                topic,
                value=event.model_dump_json().encode(),
                key=event.subject_id.encode(),
                headers=event_headers(event, position),
            )
            return event.event_id

        try:
            async with running_worker(settings):
                await applied(conn, [await publish(0)], 60)  # warm-up: the agent assigned
                await asyncio.sleep(args.settle)
                before = await snapshot(conn, args.statements)
                wal0 = await lsn(conn)
                own = [conn.get_server_pid()]
                samples: list[list[tuple[str, str]]] = []
                sampler = None
                waits_conn: Any = None
                if args.waits:
                    waits_conn = await asyncpg.connect(settings.followup_database_url)
                    own.append(waits_conn.get_server_pid())
                own0 = sum(process_cpu_seconds(p) for p in own)
                cpu0 = server_cpu_seconds(server.pgdata)
                if args.waits:
                    sampler = asyncio.create_task(
                        sample_waits(waits_conn, args.wait_interval_ms / 1000, samples)
                    )
                total = int(args.rate * args.seconds)
                ids = []
                loop = asyncio.get_running_loop()
                start = loop.time()
                for n in range(1, total + 1):
                    await asyncio.sleep(max(0.0, start + n / args.rate - loop.time()))
                    ids.append(await publish(n))
                await producer.flush()
                done = await applied(conn, ids, 180)
                took = loop.time() - start
                if sampler is not None:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                cpu = server_cpu_seconds(server.pgdata) - cpu0
                cpu -= sum(process_cpu_seconds(p) for p in own) - own0
                if waits_conn is not None:
                    await waits_conn.close()
                wal = await lsn(conn) - wal0
                load = os.getloadavg()[0]
                await asyncio.sleep(args.settle)
                after = await snapshot(conn, args.statements)
        finally:
            await conn.close()
            await closed(producer)
            if args.explain_log is not None:
                shutil.copyfile(server.log_file, args.explain_log)
        records, fpi, _ = (a - b for a, b in zip(after.wal, before.wal, strict=True))
        print(
            f"{args.rate:.0f} ev/s for {args.seconds:.0f} s: {len(done)} of {total} applied in "
            f"{took:.1f} s; per event: PostgreSQL CPU {1e6 * cpu / total:.0f} µs "
            f"(the probe's own backend apart), WAL {wal / total:.0f} bytes "
            f"({records / total:.1f} records, {fpi / total:.2f} full-page images); "
            f"load average {load:.2f}{' (pg_stat_statements loaded)' if args.statements else ''}"
        )
        print("\n".join(table_text(table_rows(before, after, total))))
        if args.statements:
            print("\n".join(statement_text(before, after, total)))
        if args.waits:
            print("\n".join(wait_text(samples)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1089)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--settle", type=float, default=11.0)
    parser.add_argument("--statements", action="store_true", help="pg_stat_statements")
    parser.add_argument("--waits", action="store_true", help="pg_stat_activity's wait events")
    parser.add_argument("--wait-interval-ms", type=float, default=10.0)
    parser.add_argument(
        "--auto-explain",
        type=float,
        metavar="MS",
        help="auto_explain (analyzed, nested statements) of the statements over MS",
    )
    parser.add_argument("--explain-log", type=Path, help="where the server's log is copied")
    args = parser.parse_args()
    started = time.time()
    code = run_in_scratch(measure, args, "bench-followup-pg-")
    print(f"took {time.time() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
