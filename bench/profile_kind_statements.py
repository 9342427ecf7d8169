"""What a task page's kind written into its statement costs a connection: one prepared
statement per kind and page shape where a parameter made one per shape (#12, Round 33; the
kind's word since Round 32, ``bench.profile_kind_plans``).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` as
``bench.profile_owner_status`` does (``--tasks`` tasks of 50 RMs). Then, for ``new`` (this
tree's ``queries``) and ``old`` (``--old``: the commit before the kind's word, the kind a
parameter), alternated (A B B A over ``--pairs``), each on a fresh one-connection asyncpg pool
(the API's statement cache, 100 statements):

the page shapes below (an RM's page by kind, with a status, a team's, a kind's, a client's;
an RM's overdue and due soon pages, a team's on track; first and next pages) are read
for one kind, then for all 20 kinds, each page ``--uses``
times. After each, on the same connection: the statements it holds prepared
(``pg_prepared_statements``), its backend's memory (``pg_backend_memory_contexts``: all
contexts' bytes, and those of the plan cache: ``CachedPlanSource``, ``CachedPlanQuery``,
``CachedPlan``). Timed per page: its first read (asyncpg's prepare, PostgreSQL's parse and
plan, the run) against the median of its later reads, summed per kind. Last, every kind
in turn once more, each shape's first page once (``kinds in turn``): with more statements
than asyncpg's cache holds, each read prepares its statement again.

Round 34 added the SLA filters on owner pages; ``--old`` then the commit before the SLA
filter became an owner's kind page's range (its own text per kind and filter before).

    python -m bench.profile_kind_statements [--tasks 100000] [--pairs 2] [--uses 8] [--old REV]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_owner_status import NOW, fill_tasks, old_queries  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402
from branchline_followup.domain import TaskKind  # noqa: E402

BEFORE_WORD = "0f4eaa66~1"
"""The commit before a kind's page wrote the kind's word (Round 32)."""
TIMEOUT_S = 600.0
TEAM = frozenset({"rm-7", "rm-8", "rm-9"})
SHAPES: dict[str, dict[str, Any]] = {
    "RM": {"assignee": "rm-7"},
    "RM, done": {"assignee": "rm-7", "status": "done"},
    "team": {"assignee_in": TEAM},
    "kind": {},
    "client": {"client_id": "C-7"},
    # the SLA filters on owner pages (#12, Round 34): before, each its own text per kind
    "RM, overdue": {"assignee": "rm-7", "status": "overdue"},
    "RM, due soon": {"assignee": "rm-7", "status": "due_soon"},
    "team, on track": {"assignee_in": TEAM, "status": "on_track"},
}
MEMORY = """
SELECT sum(total_bytes)::bigint,
       coalesce(sum(total_bytes) FILTER (WHERE name IN
           ('CachedPlanSource', 'CachedPlanQuery', 'CachedPlan')), 0)::bigint,
       (SELECT count(*) FROM pg_prepared_statements)::int
FROM pg_backend_memory_contexts
"""


@asynccontextmanager
async def database(base: Path) -> AsyncIterator[tuple[str, Any]]:
    async with probe_stack(base, migrated=("followup",)) as stack:
        dsn = stack.live_dsn
        conn = await asyncpg.connect(dsn)
        try:
            yield dsn, conn
        finally:
            await conn.close()


async def page(module: Any, pool: Any, kind: str, shape: dict[str, Any], after: Any) -> Any:
    return await module.list_tasks(
        pool,
        where=module.TaskFilter(kind=kind, **shape),
        after=after,
        limit=51,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )


async def timed(module: Any, pool: Any, kind: str, shape: dict[str, Any], after: Any) -> Any:
    start = time.perf_counter()
    found = await page(module, pool, kind, shape, after)
    return 1e3 * (time.perf_counter() - start), getattr(found, "rows", found)


async def read_kind(module: Any, pool: Any, kind: str, uses: int) -> tuple[float, float]:
    """(ms of the pages' first reads, ms of their later reads' medians), each summed over
    the kind's pages: the first and, where there is one, the next page of every shape."""
    first_ms = later_ms = 0.0
    for shape in SHAPES.values():
        after: Any = None
        while True:
            ms, rows = await timed(module, pool, kind, shape, after)
            later = [(await timed(module, pool, kind, shape, after))[0] for _ in range(uses)]
            first_ms += ms
            later_ms += statistics.median(later)
            if after is not None or len(rows) < 51:
                break
            after = (rows[49]["due_at"], rows[49]["id"])
    return first_ms, later_ms


async def memory(pool: Any) -> tuple[int, int, int]:
    """(backend bytes, plan cache bytes, prepared statements) of the pool's connection."""
    row = await pool.fetchrow(MEMORY)
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def one_run(dsn: str, module: Any, uses: int) -> dict[str, float]:
    kinds = [k.value for k in TaskKind]
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        found: dict[str, float] = {}
        await page(module, pool, kinds[0], {"assignee": "rm-1"}, None)  # catalogs warm
        await pool.fetchrow(MEMORY)
        total, plans, prepared = await memory(pool)
        base = (total, plans, prepared)
        firsts, lasts = [], []
        for n, kind in enumerate(kinds, 1):
            first_ms, later_ms = await read_kind(module, pool, kind, uses)
            firsts.append(first_ms)
            lasts.append(later_ms)
            if n in (1, len(kinds)):
                total, plans, prepared = await memory(pool)
                found[f"{n} kinds: statements"] = prepared - base[2]
                found[f"{n} kinds: backend KiB"] = (total - base[0]) / 1024
                found[f"{n} kinds: plan cache KiB"] = (plans - base[1]) / 1024
        # every kind again in turn, each shape's first page once: a statement the cache
        # dropped (asyncpg's 100, least recently used first) is prepared again
        cycles = []
        for kind in kinds:
            cycles.append(0.0)
            for shape in SHAPES.values():
                cycles[-1] += (await timed(module, pool, kind, shape, None))[0]
        found[f"kinds in turn ms per kind ({len(SHAPES)} pages)"] = statistics.median(cycles)
        # the kinds after the first: their statements new (new) or already prepared (old)
        found["first reads ms per kind"] = statistics.median(firsts[1:])
        found["later reads ms per kind"] = statistics.median(lasts[1:])
        found["first - later ms per kind"] = statistics.median(
            f - later for f, later in zip(firsts[1:], lasts[1:], strict=True)
        )
        return found
    finally:
        await pool.close()


async def measure(args: argparse.Namespace, base: Path) -> None:
    modules = {"old": old_queries(args.old), "new": queries}
    figures: dict[tuple[str, str], list[float]] = {}
    async with asyncio.timeout(TIMEOUT_S), database(base) as (dsn, conn):
        await fill_tasks(conn, args.tasks, 0.001)
        order = ("old", "new", "new", "old")
        for pair in range(args.pairs):
            for variant in order[(pair % 2) * 2 : (pair % 2) * 2 + 2]:
                found = await one_run(dsn, modules[variant], args.uses)
                for name, value in found.items():
                    figures.setdefault((variant, name), []).append(value)
                print(
                    f"{variant}: "
                    + ", ".join(f"{k} {v:.1f}" for k, v in found.items())
                    + f" (load {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    names = list(dict.fromkeys(name for _, name in figures))
    for name in names:
        line = " | ".join(
            f"{v} {statistics.median(figures[(v, name)]):.1f} "
            f"[{min(figures[(v, name)]):.1f}-{max(figures[(v, name)]):.1f}]"
            for v in ("old", "new")
        )
        print(f"{name}: {line}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--uses", type=int, default=8)
    parser.add_argument("--old", default=BEFORE_WORD)
    return run_in_scratch(measure, parser.parse_args(), "kind-statements-")


if __name__ == "__main__":
    raise SystemExit(main())
