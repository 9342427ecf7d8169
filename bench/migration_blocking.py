"""How long a migration's index build stops writes to the table it indexes (#12), before and
after index builds ran CONCURRENTLY.

Starts an embedded PostgreSQL only. For each pair, two fresh followup databases migrated up to
followup migration 010 with ``--events`` rows in ``es_events`` (a quarter of them
``followup.task_created``, the rows followup 011's partial index holds); then followup 011 is
applied, in its former text (``CREATE INDEX`` in a transaction) in one and as shipped
(``CREATE INDEX CONCURRENTLY``, outside a transaction) in the other, alternately first, while
a writer inserts one event every ``--interval-ms`` into ``es_events`` (each its own
transaction). Prints, per database, the migration's wall time, how many writes completed
while it ran, and the longest of the writes that overlapped it.

    python -m bench.migration_blocking [--events 400000] [--pairs 3] [--interval-ms 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import asyncpg
from tests.support.migration_texts import as_formerly_shipped

from bench.probe_stack import probe_stack
from bench.scratch import run_in_scratch
from branchline_followup.adapters.pg_schemas import with_search_path
from branchline_shared.postgres.migrations import Migration, load_migrations, migrate

FOLLOWUP = "branchline_followup.migrations"
VERSION = 11

_FILL = """
INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, occurred_at,
                       recorded_at, envelope)
SELECT gen_random_uuid(), 'client-' || g, 1,
       CASE WHEN g % 4 = 0 THEN 'followup.task_created' ELSE 'client.registered' END,
       'client-' || g, now(), now(),
       jsonb_build_object('causation_id', gen_random_uuid()::text, 'data',
                          jsonb_build_object('note', repeat('x', 300), 'n', g))
FROM generate_series(1, $1) AS g
"""
_WRITE = """
INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, occurred_at,
                       recorded_at, envelope)
VALUES (gen_random_uuid(), $1, 1, 'client.registered', $1, now(), now(), '{"data": {}}')
"""


async def _prepare(url: str, events: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(
            conn, "followup", [m for m in load_migrations(FOLLOWUP) if m.version < VERSION]
        )
        await conn.execute(_FILL, events)
        await conn.execute("VACUUM ANALYZE es_events")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def _writer(url: str, interval: float, stop: asyncio.Event) -> list[tuple[float, float]]:
    """(start, latency) of each write until ``stop``."""
    conn = await asyncpg.connect(url)
    done: list[tuple[float, float]] = []
    try:
        n = 0
        while not stop.is_set():
            n += 1
            start = time.perf_counter()
            await conn.execute(_WRITE, f"w-{n}")
            done.append((start, time.perf_counter() - start))
            await asyncio.sleep(max(0.0, interval - (time.perf_counter() - start)))
    finally:
        await conn.close()
    return done


async def _one(url: str, series: list[Migration], interval: float) -> dict[str, float]:
    stop = asyncio.Event()
    writes = asyncio.create_task(_writer(url, interval, stop))
    await asyncio.sleep(0.5)
    conn = await asyncpg.connect(url)
    try:
        began = time.perf_counter()
        assert await migrate(conn, "followup", series) == 1
        ended = time.perf_counter()
    finally:
        await conn.close()
    await asyncio.sleep(0.2)
    stop.set()
    done = await writes
    # Writes whose time overlapped the migration's: a blocked one started before it ended.
    overlapping = [lat for start, lat in done if start <= ended and start + lat >= began]
    return {
        "migration_s": ended - began,
        "writes": sum(1 for start, lat in done if began <= start + lat <= ended),
        "max_ms": 1000 * max(overlapping, default=0.0),
    }


def pair_order(names: list[str], pair: int) -> list[str]:
    """The variants in the order pair ``pair`` (from 0) runs them: alternately first."""
    return names if pair % 2 == 0 else names[::-1]


async def measure(args: argparse.Namespace, base: Path) -> None:
    former = [m for m in as_formerly_shipped(FOLLOWUP) if m.version <= VERSION]
    shipped = [m for m in load_migrations(FOLLOWUP) if m.version <= VERSION]
    assert former[-1].sql != shipped[-1].sql
    variants = {"blocking": former, "concurrent": shipped}
    async with probe_stack(base) as stack:
        server = stack.server
        for pair in range(args.pairs):
            order = pair_order(list(variants), pair)
            for name in order:
                url = with_search_path(
                    await stack.database(f"mb_{name}_{pair}", "eventstore"), "public"
                )
                await _prepare(url, args.events)
                result = await _one(url, variants[name], args.interval_ms / 1000)
                load = os.getloadavg()[0]
                print(
                    f"pair {pair + 1} {name:10s} migration {result['migration_s']:.2f} s, "
                    f"writes completed during it {result['writes']:.0f}, "
                    f"longest write {result['max_ms']:.0f} ms (load {load:.1f})",
                    flush=True,
                )
                admin = await asyncpg.connect(server.url("postgres"))
                try:
                    await admin.execute(f'DROP DATABASE "mb_{name}_{pair}"')
                finally:
                    await admin.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=400_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    return run_in_scratch(measure, parser.parse_args(), "bench-migration-")


if __name__ == "__main__":
    sys.exit(main())
