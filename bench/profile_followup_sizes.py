"""The followup worker's PostgreSQL cost per event at several table sizes, statement by statement
and part by part (#12).

Starts an embedded PostgreSQL only (as :mod:`bench.profile_followup`), fills the read models with
the benchmark's steady load (a new client registered: one task, two timers, one recorded task
creation each) up to each of ``--sizes`` through the worker's own path (:func:`handle_batch`,
batches of 500), runs ``VACUUM (ANALYZE)`` as the benchmark does before its steady measure, then
applies ``--measure`` more registrations in batches of ``--batch`` and prints PostgreSQL's CPU
per event, and one more batch with every statement the worker sends run under ``EXPLAIN
(ANALYZE, BUFFERS)`` first (on its generic plan, as the live worker runs it; writes in a
savepoint rolled back, then the statement itself): the shared buffers each scan and each write
part touched per event.

    python -m bench.profile_followup_sizes [--sizes 10000,100000] [--batch 10] [--measure 3000]
        [--plans /tmp/plans]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_followup import CountedDeadLetters, server_cpu_seconds  # noqa: E402
from bench.scratch import raw_messages, run_in_scratch  # noqa: E402
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork  # noqa: E402
from branchline_followup.application.config import policy_from_settings  # noqa: E402
from branchline_followup.application.projector import Projection  # noqa: E402
from branchline_followup.bootstrap import open_read_model_pool  # noqa: E402
from branchline_followup.entrypoints.worker import handle_batch  # noqa: E402
from branchline_shared.events.envelope import RecordedEvent  # noqa: E402

PLANS: list[tuple[str, list[str]]] | None = None
"""While set, each statement the worker sends is explained first: (statement, plan lines)."""

_NODE = re.compile(
    r"(Insert on \S+|Delete on \S+|Update on \S+|Seq Scan on \S+|Bitmap Heap Scan on \S+"
    r"|Index (?:Only )?Scan(?: Backward)? using \S+ on \S+)"
)
_HITS = re.compile(r"Buffers: shared hit=(\d+)(?: read=(\d+))?")


def explain_every_statement() -> None:
    """Explain what the worker's connections send while :data:`PLANS` is set (each of the
    calls the worker's statements go through)."""
    __original_execute = asyncpg.Connection.execute
    for name in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.Connection, name)

        async def explained(
            self: asyncpg.Connection, *args: Any, __original: Any = original, **kwargs: Any
        ) -> Any:
            if PLANS is not None and len(args) > 1 and not str(args[0]).startswith("EXPLAIN"):
                sql = str(args[0])
                # The explained writes are undone. The worker's unit of work sends its own
                # BEGIN (with the swap lock), in which asyncpg's transaction() refuses to
                # nest: there the savepoint is plain SQL (this probe looped on that refusal).
                inside = self.is_in_transaction()
                await __original_execute(self, "SAVEPOINT bench_explain" if inside else "BEGIN")
                try:
                    rows = await self.fetch(
                        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, *args[1:]
                    )
                    PLANS.append((" ".join(sql.split()), [r[0] for r in rows]))
                finally:
                    if inside:
                        await __original_execute(self, "ROLLBACK TO SAVEPOINT bench_explain")
                        await __original_execute(self, "RELEASE SAVEPOINT bench_explain")
                    else:
                        await __original_execute(self, "ROLLBACK")
            return await __original(self, *args, **kwargs)

        setattr(asyncpg.Connection, name, explained)


def registrations(first: int, count: int, end: datetime) -> list[RecordedEvent]:
    from tests.integration.followup.harness import History

    history = History()
    for n in range(first, first + count):
        history.registered(f"C-{n}", end - timedelta(milliseconds=first + count - n), "rm-1")
    return history.events


def parts(plan: list[str]) -> list[tuple[str, int, int]]:
    """Each scan and write node of a plan with the shared buffers it hit and read."""
    found: list[tuple[str, int, int]] = []
    for i, line in enumerate(plan):
        node = _NODE.search(line)
        if node is None:
            continue
        for after in plan[i + 1 : i + 12]:
            if after.lstrip().startswith("->"):
                break
            hits = _HITS.search(after)
            if hits is not None:
                found.append((node.group(1), int(hits.group(1)), int(hits.group(2) or 0)))
                break
    return found


async def measure(args: argparse.Namespace, base: Path) -> None:
    global PLANS
    async with probe_stack(base, migrated=("followup",)) as stack:
        server, settings = stack.server, stack.settings
        pool = await open_read_model_pool(settings)
        units = PostgresUnitsOfWork(pool)
        projection = Projection(policy_from_settings(settings), task_creations_topic="bench")
        dead = CountedDeadLetters()
        admin = await asyncpg.connect(settings.followup_database_url)
        end, written, offset = datetime.now(UTC), 0, 10_000_000
        for size in (int(s) for s in args.sizes.split(",")):
            while written < size:
                step = min(5000, size - written)
                raws = raw_messages(registrations(written, step, end))
                for i in range(0, len(raws), 500):
                    await handle_batch(raws[i : i + 500], units, dead, projection)
                written += step
            await admin.execute("VACUUM (ANALYZE)")
            raws = raw_messages(registrations(offset, args.measure, end))
            offset += args.measure
            cpu = server_cpu_seconds(server.pgdata)
            started = time.perf_counter()
            for i in range(0, len(raws), args.batch):
                await handle_batch(raws[i : i + args.batch], units, dead, projection)
            wall = time.perf_counter() - started
            cpu = server_cpu_seconds(server.pgdata) - cpu
            PLANS = []
            await handle_batch(
                raw_messages(registrations(offset, args.batch, end)), units, dead, projection
            )
            plans, PLANS = PLANS, None
            offset += args.batch
            print(
                f"{size} registrations applied: {args.measure} more in batches of {args.batch}: "
                f"{1000 * cpu / args.measure:.3f} ms PostgreSQL CPU/event, "
                f"{args.measure / wall:.0f} ev/s; load average {os.getloadavg()[0]:.1f}"
            )
            for sql, plan in plans:
                nodes = parts(plan)
                if not nodes:
                    continue
                print(f"  {sql[:70]}")
                for node, hits, read in nodes:
                    print(f"    {hits / args.batch:7.1f} hit {read / args.batch:5.1f} read  {node}")
            if args.plans:
                text = "\n\n".join(sql + "\n" + "\n".join(plan) for sql, plan in plans)
                with open(f"{args.plans}-{size}.txt", "w") as out:  # noqa: ASYNC230 - a bench's end
                    out.write(text)
        await admin.close()
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000", help="registrations applied first")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--measure", type=int, default=3000)
    parser.add_argument("--plans", help="write each size's plans to PLANS-<size>.txt")
    args = parser.parse_args()
    explain_every_statement()
    return run_in_scratch(measure, args, "bench-followup-sizes-")


if __name__ == "__main__":
    sys.exit(main())
