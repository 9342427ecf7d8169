"""The ceiling of a rebuild applied by clients in parallel (#12, Round 17 "rebuildpar").

An experiment, not the command: how many events per second N processes, each applying the
clients whose id hashes to it, reach on this machine against one process applying them all —
the most a partitioned ``branchline rebuild followup`` could gain. It leaves out what a real
one would add (every process reading and decoding every message to find its clients, the
client-less events applied by all, the swap), so it is an upper bound.

Sets up as :mod:`bench.profile_rebuild` does (an embedded PostgreSQL, the ``history``
workload applied by the live worker first so that followup's store holds the recorded task
creations), then alternates runs of ``--runs`` (e.g. ``1,2,1,2,1,2``): a run of N starts N
processes (spawned), each with its share of the replayed messages (``zlib.crc32`` of the
client id modulo N, in log order), waits until all have opened their own rebuild schema
(``PostgresRebuildTarget.open``), then releases them at once; each applies its share as
the rebuild's main phase does (``_apply_source``: batches of 500, the heap settled), and its
schema is dropped. No swap: the swap is one process's tail in either design.

Prints per run: events per second over the run (all events / from the release to the last
process's end), the processes' CPU per event, PostgreSQL's CPU per event, load average.

    python -m bench.rebuild_partitions [--clients 600] [--runs 1,2,1,2,1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
import zlib
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_followup import CountedDeadLetters, server_cpu_seconds, workload  # noqa: E402
from bench.profile_rebuild import MemorySource, raw_copy  # noqa: E402
from bench.scratch import raw_messages, run_in_scratch  # noqa: E402
from branchline_followup.adapters import pg_schemas  # noqa: E402
from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget  # noqa: E402
from branchline_followup.adapters.topic_replay import ReplayedMessage  # noqa: E402
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork  # noqa: E402
from branchline_followup.application.config import policy_from_settings  # noqa: E402
from branchline_followup.application.projector import Projection  # noqa: E402
from branchline_followup.bootstrap import open_read_model_pool  # noqa: E402
from branchline_followup.entrypoints.worker import handle_batch  # noqa: E402
from branchline_shared.postgres.pool import open_pool  # noqa: E402


def share_of(message: ReplayedMessage, parts: int) -> int | None:
    """The process whose clients the message belongs to; None: every process (no client)."""
    if message.value is None:
        return None
    client = json.loads(message.value).get("client_id")
    if client is None:
        return None
    return zlib.crc32(client.encode()) % parts


def child(
    settings: Any,
    messages: list[ReplayedMessage],
    ready: Barrier,
    results: Any,
) -> None:
    asyncio.run(_child(settings, messages, ready, results))


async def _child(
    settings: Any, messages: list[ReplayedMessage], ready: Barrier, results: Any
) -> None:
    from branchline_followup.application import rebuild

    policy = policy_from_settings(settings)
    admin = await open_pool(
        pg_schemas.with_search_path(settings.followup_database_url, "public"),
        min_size=1,
        max_size=2,
    )
    target = PostgresRebuildTarget(admin, settings.followup_database_url)
    await target.open()
    try:
        counts = rebuild._Counts(heap=rebuild._Heap(True))
        await asyncio.to_thread(ready.wait)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            await rebuild._apply_source(
                target, MemorySource(messages).messages(), Projection(policy), counts, None, 500
            )
        finally:
            counts.heap.release()
        ended, cpu = time.perf_counter(), time.process_time() - cpu
        rows = 0
        async with admin.acquire() as conn:
            for table in await conn.fetch(
                "SELECT c.oid::regclass AS name, (SELECT count(*) FROM pg_index i "
                "WHERE i.indrelid = c.oid) AS indexes FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind = 'r'",
                target.schema,
            ):
                count = await conn.fetchval(f"SELECT count(*) FROM {table['name']}")
                rows += count
                if count:
                    print(f"    {table['name']}: {count} rows, {table['indexes']} indexes")
        results.put((started, ended, cpu, counts.applied, rows))
    finally:
        await target.close()
        await target.discard()
        await admin.close()


async def setup(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("followup",)) as stack:
        server, settings = stack.server, stack.settings
        policy = policy_from_settings(settings)
        raws = raw_messages(workload("history", args.clients))
        pool = await open_read_model_pool(settings)
        live = Projection(policy, task_creations_topic="followup.events")
        for i in range(0, len(raws), 200):
            await handle_batch(
                raws[i : i + 200], PostgresUnitsOfWork(pool), CountedDeadLetters(), live
            )
        created = await pool.fetch(
            "SELECT global_position, envelope::text AS envelope FROM es_events "
            "ORDER BY global_position"
        )
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
        copy_server = server_cpu_seconds(server.pgdata)
        copy_cpu = time.process_time()
        copy_rate = await raw_copy(settings.followup_database_url, values)
        copy_cpu = time.process_time() - copy_cpu
        copy_server = server_cpu_seconds(server.pgdata) - copy_server
        print(
            f"raw COPY of the same envelopes: {copy_rate:.0f} ev/s; Python "
            f"{1e3 * copy_cpu / len(values):.3f} ms CPU/event, PostgreSQL "
            f"{1e3 * copy_server / len(values):.3f} ms CPU/event (one warm-up transaction "
            "included in both)",
            flush=True,
        )
        everyone = sum(1 for m in replayed if share_of(m, 1) is None)
        print(
            f"history, {args.clients} clients: {len(replayed)} events ({len(created)} recorded "
            f"creations, {everyone} without a client)",
            flush=True,
        )
        for parts in (int(p) for p in args.runs.split(",")):
            shares: list[list[ReplayedMessage]] = [[] for _ in range(parts)]
            for m in replayed:
                k = share_of(m, parts)
                for j in range(parts) if k is None else (k,):
                    shares[j].append(m)
            print(f"  {parts} process(es): " + run(parts, shares, settings, server.pgdata))


def run(parts: int, shares: Sequence[list[ReplayedMessage]], settings: Any, pgdata: Path) -> str:
    context = mp.get_context("spawn")
    ready = context.Barrier(parts + 1)
    results = context.Queue()
    processes = [
        context.Process(target=child, args=(settings, share, ready, results)) for share in shares
    ]
    for p in processes:
        p.start()
    ready.wait()
    server = server_cpu_seconds(pgdata)
    done = [results.get() for _ in processes]
    server = server_cpu_seconds(pgdata) - server
    for p in processes:
        p.join()
    n = sum(d[3] for d in done)
    wall = max(d[1] for d in done) - min(d[0] for d in done)
    cpu = sum(d[2] for d in done)
    rows = sum(d[4] for d in done)
    each = ", ".join(f"{d[3]} ev in {d[1] - d[0]:.2f} s" for d in done)
    return (
        f"{n / wall:.0f} ev/s ({n} events, {wall:.2f} s; {each}); Python {1e3 * cpu / n:.3f} "
        f"ms CPU/event, {rows / n:.2f} rows/event, PostgreSQL {1e3 * server / n:.3f} ms "
        f"CPU/event; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=600)
    parser.add_argument("--runs", default="1,2,1,2,1,2")
    args = parser.parse_args()
    sys.exit(run_in_scratch(setup, args, "rebuild-partitions-"))


if __name__ == "__main__":
    main()
