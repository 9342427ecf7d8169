"""How fast ``branchline rebuild followup`` applies events, and where its time goes (#12).

Starts an embedded PostgreSQL only (no broker: the replayed log is a message list), generates
a history, applies it first through the live worker's path (:func:`handle_batch`, so that
followup's store holds the recorded task creations a real rebuild finds and replays), then
rebuilds the read models from the same events plus those recorded creations, with the
function the command runs (:func:`rebuild_read_models`: a fresh schema, its batches, the
swap), and COPYs the same envelopes into a table of the same shape as the raw baseline
(1,000 rows per transaction). Prints events per second of both and their ratio, the SQL
statements per event (each one round trip, counted in the client: independent of load) and
the rebuilding process's CPU per event. ``--profile FILE`` samples the rebuild with
pyinstrument (FILE: the call tree, FILE.summary.txt: shares per function); ``--cprofile FILE``
counts the rebuild's CPU time per function with cProfile (``time.process_time``: what the
process itself spent, not the wait for PostgreSQL or the scheduler; FILE: pstats, FILE.txt the
top functions).

    python -m bench.profile_rebuild [--clients 300]
                                    [--workload history|service-loop|registrations]
                                    [--batch 500] [--profile /tmp/rebuild.txt] [--sql]
                                    [--cprofile /tmp/rebuild.pstats]
                                    [--remember 2000] [--from-stores]
                                    [--gc on|off|freeze|settle] [--no-count] [--flush-parts]
                                    [--no-analyze] [--rm-triggers 004]
                                    [--indexes deferred,kept] [--writes copy,insert]
                                    [--processes 1,2,2,1]

``--remember N`` lowers the rebuild's memory bounds (``REMEMBERED_CLIENTS``,
``REMEMBERED_EVENTS``: 200,000 each) to N, so a small run takes the bounded path a rebuild of
millions of events takes (what is forgotten read back from the rebuild's schema); the line
printed ends with how much the rebuild still remembers at its end.

``--from-stores`` replays as ``branchline rebuild followup --from-stores`` does
(:class:`StoreReplay`): the generated events are first appended to an intake event store of
their own (untimed), then the rebuild reads both stores (intake's and followup's, with the
recorded creations) through the event store's log reader; the COPY ratio is against the same
envelopes.

``--gc off`` runs the timed rebuild with the garbage collector disabled, ``--gc freeze`` with
the heap built before it frozen (``gc.freeze()``: the collector no longer walks it), to tell the
collector's share (Round 9 "Followup projection and its writes"); ``--gc settle`` as the command
runs it (``settle_heap``: what survives each batch collected once and frozen, Round 11).
``--no-count`` leaves the statement counter out (it costs the process ≈ 5 % of its CPU). The
line printed also gives the PostgreSQL server's CPU per event over the rebuild (every process
of the embedded cluster, from ``/proc``) and the process's peak RSS (which includes the untimed
live apply before it).
It also prints the CPU of the rebuild's transaction-end writes (``_BulkWrites.flush``: this
process's and the rebuild connection's backend's, from ``/proc/PID/schedstat``);
``--flush-parts`` splits them by statement. ``--no-analyze``: the rebuild never analyses its
tables (as before Round 10), to compare. ``--rm-triggers 004``: the functions of the triggers
that keep the client's RM on its refusals as console migration 004 made them (a dynamic
statement per firing), to compare with 005's; ``--rm-triggers none``: without those triggers.
``--indexes`` and ``--writes`` each name one rebuild per item, in one setup (the same events and
COPY); ``--writes insert`` writes the applied record, timeline and journal rows by
``executemany`` of their ``INSERT … ON CONFLICT DO NOTHING`` (jsonb in text), as before Round 21,
``copy`` by ``COPY`` as the command does: ``--writes insert,copy,copy,insert`` alternates them.
``--processes`` names the processes of each rebuild's main phase (the command's
``--processes``, #12 Round 26): ``--processes 1,2,2,1`` alternates one and two; the CPU per event
then includes the processes' (reaped when the load ends); run it with ``--no-count`` (the
statement counter counts this process's statements only).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_followup import (  # noqa: E402
    STATEMENTS,
    CountedDeadLetters,
    count_statements,
    server_cpu_seconds,
    workload,
    write_profile,
)
from bench.scratch import raw_messages, run_in_scratch  # noqa: E402
from branchline_followup.adapters import pg_schemas, rebuild_target  # noqa: E402
from branchline_followup.adapters.partitioned_rebuild import ProcessPartitions  # noqa: E402
from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget  # noqa: E402
from branchline_followup.adapters.store_replay import StoreLog, StoreReplay  # noqa: E402
from branchline_followup.adapters.topic_replay import ReplayedMessage  # noqa: E402
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork  # noqa: E402
from branchline_followup.application.config import policy_from_settings  # noqa: E402
from branchline_followup.application.projector import Projection  # noqa: E402
from branchline_followup.application.rebuild import rebuild_read_models  # noqa: E402
from branchline_followup.bootstrap import open_read_model_pool  # noqa: E402
from branchline_followup.entrypoints.worker import handle_batch  # noqa: E402
from branchline_shared.events.envelope import RecordedEvent  # noqa: E402
from branchline_shared.eventstore.postgres import PostgresEventStore  # noqa: E402
from branchline_shared.postgres.pool import open_pool  # noqa: E402


class CollectorCpu:
    """The process's CPU time in the cyclic garbage collector (``gc.callbacks``), including
    the collections the rebuild asks for when it settles its heap."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


class MemorySource:
    """The replayed log, from memory."""

    def __init__(self, messages: Sequence[ReplayedMessage]) -> None:
        self._messages = list(messages)
        self._read = False

    async def start(self) -> int:
        return len(self._messages)

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        if self._read:
            return
        self._read = True
        for message in self._messages:
            yield message

    async def extend_to_current_end(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


async def raw_copy(dsn: str, values: Sequence[bytes], per_transaction: int = 1000) -> float:
    """COPY of the same envelopes into a table of the raw baseline's shape (bench/baselines)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS raw_copy; CREATE TABLE raw_copy (id uuid PRIMARY KEY, "
            "stream text, version int, body jsonb)"
        )
        rows = [(uuid.uuid4(), f"s-{i}", 1, v.decode()) for i, v in enumerate(values)]
        async with conn.transaction():  # warm-up, untimed
            await conn.copy_records_to_table("raw_copy", records=rows[:per_transaction])
        await conn.execute("TRUNCATE raw_copy")
        started = time.perf_counter()
        for i in range(0, len(rows), per_transaction):
            async with conn.transaction():
                await conn.copy_records_to_table("raw_copy", records=rows[i : i + per_transaction])
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


async def intake_store(
    url: str, events: Sequence[RecordedEvent], per_transaction: int = 500
) -> None:
    """``events`` appended to the new intake event store at ``url`` (migrated: ``measure``),
    untimed."""
    pool = await open_pool(url, min_size=1, max_size=1)
    try:
        store = PostgresEventStore(pool)
        for i in range(0, len(events), per_transaction):
            batch = events[i : i + per_transaction]
            async with store.unit_of_work() as uow:
                await uow.lock_streams(sorted({e.stream_id for e in batch}))
                for event in batch:
                    uow.stage(event, topic="intake.events", submission_hash=None)
                await uow.commit()
    finally:
        await pool.close()


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("followup",)) as stack:
        server, settings = stack.server, stack.settings
        if args.rm_triggers is not None:
            await install_rm_trigger_functions(settings.followup_database_url, args.rm_triggers)
        policy = policy_from_settings(settings)
        events = workload(args.workload, args.clients)
        raws = raw_messages(events)
        # The live worker first: followup's store then holds the recorded task creations.
        pool = await open_read_model_pool(settings)
        units = PostgresUnitsOfWork(pool)
        live = Projection(policy, task_creations_topic="followup.events")
        dead = CountedDeadLetters()
        for i in range(0, len(raws), 200):
            await handle_batch(raws[i : i + 200], units, dead, live)
        created = await pool.fetch(
            "SELECT global_position, envelope::text AS envelope FROM es_events "
            "ORDER BY global_position"
        )
        live_tasks = await pool.fetchval("SELECT count(*) FROM fu_tasks")
        await pool.close()
        replayed = [
            ReplayedMessage("intake.events", 0, r.offset, 0, r.value, r.headers) for r in raws
        ] + [
            ReplayedMessage(
                "followup.events",
                0,
                n,
                0,
                r["envelope"].encode(),
                (("source", b"followup"), ("global_position", str(r["global_position"]).encode())),
            )
            for n, r in enumerate(created)
        ]
        values = [m.value for m in replayed if m.value is not None]
        copy_rate = await raw_copy(settings.followup_database_url, values)
        source: MemorySource | StoreReplay = MemorySource(replayed)
        if args.from_stores:
            await intake_store(await stack.database("intake", migrated="eventstore"), events)
            source = StoreReplay(
                [
                    StoreLog("intake", settings.intake_database_url),
                    StoreLog("followup", settings.followup_database_url),
                ]
            )

        indexes, writes = args.indexes.split(","), args.writes.split(",")
        processes = [int(p) for p in args.processes.split(",")]
        runs = max(len(indexes), len(writes), len(processes))
        if len(indexes) == 1:
            indexes *= runs
        if len(writes) == 1:
            writes *= runs
        if len(processes) == 1:
            processes *= runs
        for mode, written, parts in zip(indexes, writes, processes, strict=True):
            print(
                f"-- indexes {mode}, writes {written}, processes {parts}, "
                f"{time.strftime('%H:%M:%S', time.gmtime())} UTC"
            )
            use_writes(written)
            admin = await open_pool(
                pg_schemas.with_search_path(settings.followup_database_url, "public"),
                min_size=1,
                max_size=2,
            )
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001, async_mode="enabled")
                profiler.start()
            cpu_profiler = None
            if args.cprofile:
                import cProfile

                cpu_profiler = cProfile.Profile(time.process_time)
                cpu_profiler.enable()
            STATEMENTS.clear()
            if args.no_analyze:
                rebuild_target.FIRST_ANALYZE = sys.maxsize
            if args.remember is not None:
                rebuild_target.REMEMBERED_CLIENTS = args.remember
                rebuild_target.REMEMBERED_EVENTS = args.remember
            if not args.from_stores:
                source = MemorySource(replayed)  # read once per rebuild
            FLUSHES.update(python=0.0, server=0.0, count=0.0)
            target = PostgresRebuildTarget(
                admin,
                settings.followup_database_url,
                deferred_indexes=(
                    frozenset() if mode == "kept" else rebuild_target.DEFERRED_INDEXES
                ),
            )
            time_flushes(target)
            index_build = time_loaded(target, unlogged=mode == "unlogged")
            tracked = len(gc.get_objects())
            if args.gc == "off":
                gc.disable()
            elif args.gc == "freeze":
                gc.collect()
                gc.freeze()
            collections = [g["collections"] for g in gc.get_stats()]
            collector = CollectorCpu()
            gc.callbacks.append(collector)
            server_started = server_cpu_seconds(server.pgdata)
            started, cpu_started = time.perf_counter(), time.process_time()
            children_started = children_cpu_seconds()
            result = await rebuild_read_models(
                target=target,
                source=source,
                policy=policy,
                batch_size=args.batch,
                keep_retired=True,
                settle_heap=args.gc == "settle",
                partitioned=(ProcessPartitions(settings, parts, args.batch) if parts > 1 else None),
            )
            wall = time.perf_counter() - started
            # the partitioned load's processes' too (reaped when the load ends)
            cpu = time.process_time() - cpu_started + children_cpu_seconds() - children_started
            server_cpu = server_cpu_seconds(server.pgdata) - server_started
            collected = [
                g["collections"] - c for g, c in zip(gc.get_stats(), collections, strict=True)
            ]
            gc.callbacks.remove(collector)
            gc.enable()
            gc.unfreeze()
            statements = sum(STATEMENTS.values())
            if profiler is not None:
                profiler.stop()
                write_profile(profiler, Path(args.profile))
            if cpu_profiler is not None:
                cpu_profiler.disable()
                write_cpu_profile(cpu_profiler, Path(args.cprofile))
            rebuilt_tasks = await admin.fetchval("SELECT count(*) FROM fu_read.fu_tasks")
            if result.retired is not None:  # the next run clones the rebuilt schema
                async with admin.acquire() as conn:
                    await pg_schemas.drop_schema(conn, result.retired)
            await admin.close()
            n = len(replayed)
            rate = n / wall
            print(
                f"{args.workload}{' from stores' if args.from_stores else ''}, "
                f"{args.clients} clients: "
                f"{n} events ({len(created)} recorded "
                f"creations) in batches of {args.batch}: rebuild {rate:.0f} ev/s, raw COPY "
                f"{copy_rate:.0f} ev/s, ratio {rate / copy_rate:.4f}; {statements / n:.4f} "
                f"statements/event ({statements}), {1000 * cpu / n:.3f} ms CPU/event "
                f"({100 * cpu / wall:.0f}% of the wall time), "
                f"PostgreSQL {1000 * server_cpu / n:.2f} ms CPU/event; gc {args.gc}; "
                f"peak RSS {peak_rss_mb():.0f} MB; tasks live {live_tasks} "
                f"rebuilt {rebuilt_tasks}; "
                f"applied {result.applied} skipped {result.skipped}; load average "
                f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs; "
                f"{tracked} objects tracked at the start, collections of generations 0/1/2 during "
                f"the rebuild {'/'.join(map(str, collected))}, the collector's CPU "
                f"{1e6 * collector.seconds / n:.1f} µs/event"
            )
            print(
                f"  transaction-end writes ({FLUSHES['count']:.0f}): Python "
                f"{1e6 * FLUSHES['python'] / n:.1f} µs/event, the rebuild's backend "
                f"{1e6 * FLUSHES['server'] / n:.1f} µs/event"
            )
            print(
                f"  deferred indexes built after the load ({len(target.indexes_built)}): "
                f"{index_build[0]:.3f} s"
            )
            for text, (python, backend, calls) in sorted(
                FLUSH_PARTS.items(), key=lambda kv: -kv[1][1]
            ):
                print(
                    f"    {1e6 * python / n:5.1f} / {1e6 * backend / n:5.1f} µs/event "
                    f"({calls:.0f}) {text}"
                )
            bulk = target._bulk
            print(
                f"  remembered at the end: {len(bulk.applied)} applied ids, "
                f"{len(bulk.facts)} clients' facts, {len(bulk.open)} clients' open tasks, "
                f"{len(bulk.task_clients)} task clients, "
                f"{len(bulk.latest)} journal places"
            )
            if args.sql:
                for sql, count in STATEMENTS.most_common(25):
                    print(f"  {count / n:7.4f}/event ({count:5d})  {sql}")


COPY_ROWS = rebuild_target.copy_rows
BINARY_JSONB = rebuild_target.binary_jsonb


def use_writes(mode: str) -> None:
    """``--writes copy``: the applied record, timeline and journal rows by COPY, as the
    command writes them (Round 21); ``insert``: by ``executemany`` of their ``INSERT … ON
    CONFLICT DO NOTHING`` and jsonb in text, as before, to compare in one setup."""
    if mode == "copy":
        rebuild_target.copy_rows = COPY_ROWS
        rebuild_target.binary_jsonb = BINARY_JSONB
        return
    if mode != "insert":
        raise SystemExit(f"--writes: copy or insert, not {mode!r}")

    async def inserted(conn: Any, copy: Any, rows: list[tuple[Any, ...]]) -> None:
        await conn.executemany(copy.insert, rows)

    async def text_jsonb(conn: Any) -> None:
        return None

    rebuild_target.copy_rows = inserted
    rebuild_target.binary_jsonb = text_jsonb


def time_loaded(target: PostgresRebuildTarget, *, unlogged: bool = False) -> list[float]:
    """Times :meth:`PostgresRebuildTarget.loaded` (the deferred indexes' build): [seconds].
    ``unlogged``: the rebuild's tables are made UNLOGGED once opened (empty) and SET LOGGED
    after the build (timed with it): the bulk load without WAL, to compare (not the command's)."""
    spent = [0.0]
    original_open, original = target.open, target.loaded

    async def each_table(change: str) -> None:
        conn = target._connection()
        for table in await pg_schemas.read_model_tables(conn, target.schema):
            await conn.execute(f"ALTER TABLE {target.schema}.{table} SET {change}")

    async def opened() -> None:
        await original_open()
        if unlogged:
            await each_table("UNLOGGED")

    async def loaded() -> None:
        started = time.perf_counter()
        await original()
        if unlogged:
            await each_table("LOGGED")
        spent[0] += time.perf_counter() - started

    target.open = opened  # type: ignore[method-assign]
    target.loaded = loaded  # type: ignore[method-assign]
    return spent


FLUSHES = {"python": 0.0, "server": 0.0, "count": 0.0}
"""The CPU the rebuild's transaction-end writes (:meth:`_BulkWrites.flush`) cost: this process
and the rebuild connection's backend (each flush is all the backend does meanwhile)."""


def on_cpu_seconds(pid: int) -> float:
    """Time on the CPU from /proc/PID/schedstat (nanoseconds: finer than /proc/PID/stat's ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


FLUSH_PARTS: dict[str, list[float]] = {}
"""With ``--flush-parts``: per statement text of the transaction-end writes, [Python s,
backend s, calls]."""


def time_flush_parts() -> None:
    import asyncpg

    for name in ("execute", "executemany", "copy_records_to_table"):
        original = getattr(asyncpg.Connection, name)

        async def timed(
            self: Any, first: str, *args: Any, __original: Any = original, **kwargs: Any
        ) -> Any:
            if not FLUSHING:
                return await __original(self, first, *args, **kwargs)
            backend = self.get_server_pid()
            python, server = time.process_time(), on_cpu_seconds(backend)
            try:
                return await __original(self, first, *args, **kwargs)
            finally:
                part = FLUSH_PARTS.setdefault(" ".join(first.split())[:70], [0.0, 0.0, 0.0])
                part[0] += time.process_time() - python
                part[1] += on_cpu_seconds(backend) - server
                part[2] += 1

        setattr(asyncpg.Connection, name, timed)


FLUSHING = False


def time_flushes(target: PostgresRebuildTarget) -> None:
    bulk = target._bulk
    flush = bulk.flush

    async def timed(conn: Any) -> None:
        backend = conn.get_server_pid()
        python, server = time.process_time(), on_cpu_seconds(backend)
        global FLUSHING
        FLUSHING = True
        try:
            await flush(conn)
        finally:
            FLUSHING = False
        FLUSHES["python"] += time.process_time() - python
        FLUSHES["server"] += on_cpu_seconds(backend) - server
        FLUSHES["count"] += 1

    bulk.flush = timed  # type: ignore[method-assign]


async def install_rm_trigger_functions(dsn: str, migration: str) -> None:
    """The functions of the triggers that keep the client's RM on its refusals as console
    migration ``migration`` created them (``--rm-triggers 004``: before 005), to compare;
    ``none``: no such trigger (what the rebuild costs without them)."""
    import asyncpg

    from bench.profile_refusal_rm import functions_of

    conn = await asyncpg.connect(dsn)
    try:
        if migration == "none":
            # the floor: no trigger to copy onto the rebuild's tables (refusals keep no RM)
            for table, trigger in (
                ("fu_refusals", "fu_refusals_rm"),
                ("fu_clients", "fu_clients_rm_inserted"),
                ("fu_clients", "fu_clients_rm_changed"),
                ("fu_clients", "fu_clients_rm_deleted"),
            ):
                await conn.execute(f"DROP TRIGGER {trigger} ON fu_read.{table}")
            return
        for statement in functions_of(migration):
            await conn.execute(statement)
    finally:
        await conn.close()


def children_cpu_seconds() -> float:
    """The CPU of this process's ended (and waited for) child processes."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_cpu_profile(profiler: Any, path: Path) -> None:
    import io
    import pstats

    profiler.dump_stats(str(path))
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(60)
    stats.sort_stats("tottime").print_stats(60)
    Path(f"{path}.txt").write_text(text.getvalue())
    print(f"CPU profile: {path} (top functions: {path}.txt)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument(
        "--workload", choices=("history", "service-loop", "registrations"), default="history"
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", help="write a pyinstrument profile here")
    parser.add_argument("--sql", action="store_true", help="statements per event by text")
    parser.add_argument("--cprofile", help="write a cProfile (CPU time) of the rebuild here")
    parser.add_argument("--remember", type=int, help="the rebuild's memory bounds (test scale)")
    parser.add_argument(
        "--from-stores", action="store_true", help="replay from the event stores (StoreReplay)"
    )
    parser.add_argument("--gc", choices=("on", "off", "freeze", "settle"), default="on")
    parser.add_argument("--no-count", action="store_true", help="no statement counter")
    parser.add_argument(
        "--flush-parts", action="store_true", help="the transaction-end writes by statement"
    )
    parser.add_argument("--no-analyze", action="store_true", help="the rebuild never analyses")
    parser.add_argument(
        "--rm-triggers", help="the RM triggers' functions of this console migration (004, 005)"
    )
    parser.add_argument(
        "--indexes",
        default="deferred",
        help="runs, comma-separated, each a rebuild: deferred (built after the load, as the "
        "command does), kept (every index kept up while loading, as before Round 18) or "
        "unlogged (deferred, and the tables UNLOGGED while loading, SET LOGGED after)",
    )
    parser.add_argument(
        "--writes",
        default="copy",
        help="runs, comma-separated (paired with --indexes'): copy (the applied record, "
        "timeline and journal rows by COPY, as the command does) or insert (executemany, as "
        "before Round 21)",
    )
    parser.add_argument(
        "--processes",
        default="1",
        help="runs, comma-separated (paired with --indexes' and --writes'): the processes of "
        "the rebuild's main phase (--processes of the command; e.g. 1,2,2,1,1,2)",
    )
    args = parser.parse_args()
    if args.flush_parts:
        time_flush_parts()
    if not args.no_count:
        count_statements()
    return run_in_scratch(measure, args, "bench-rebuild-")


if __name__ == "__main__":
    sys.exit(main())
