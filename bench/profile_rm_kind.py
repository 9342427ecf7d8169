"""An RM's task pages filtered by kind, with and without an index (assignee, kind, status,
due_at, id), and what that index costs a task's writes (#12, Round 31).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` as
``bench.profile_owner_status`` does (``--tasks`` tasks of 50 RMs, 5% open, 0.1% cancelled,
the rest done; one in 200 a revisit, the rest satisfaction surveys). Then, in ``--pairs``
alternated pairs (ABBA) of two variants, ``without`` (the migrations' indexes) and ``with``
(those and ``fu_tasks_owner_kind_by_status (assignee, kind, status, due_at, id)``):

``page``: each page below (the API's 50 + 1), first and next, every statement
``queries.list_tasks`` runs for it under ``EXPLAIN (ANALYZE, BUFFERS)``, on its custom plan
(``plan_cache_mode = force_custom_plan``) and on its generic plan (``force_generic_plan``):
shared buffers touched and execution ms summed over the statements, median of 5;
``writes``: ``--writes`` tasks inserted open, then closed (90% done, 10% cancelled), one
statement each in transactions of 20: backend CPU and WAL bytes per insert and per close
(``full_page_writes`` off: the records, not page images).

    python -m bench.profile_rm_kind [--tasks 100000] [--pairs 2] [--writes 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.generic_plans import Recording  # noqa: E402

from bench.profile_owner_status import (  # noqa: E402
    NOW,
    WriteFigures,
    abba_write_runs,
    fill_tasks,
    live_read_model,
    page_plans,
    print_page_runs,
)
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402

INDEX = "fu_tasks_owner_kind_by_status"
DEFINITION = "(assignee, kind, status, due_at, id)"
PAGES = {
    "RM, revisit": queries.TaskFilter(assignee="rm-7", kind="revisit"),
    "RM, revisit, done": queries.TaskFilter(assignee="rm-7", kind="revisit", status="done"),
    "RM, revisit, open": queries.TaskFilter(assignee="rm-7", kind="revisit", status="open"),
    "RM, revisit, cancelled": queries.TaskFilter(
        assignee="rm-7", kind="revisit", status="cancelled"
    ),
    "RM, survey": queries.TaskFilter(assignee="rm-7", kind="satisfaction_survey"),
    "RM, no kind": queries.TaskFilter(assignee="rm-7"),
}


async def statements_of(pool: Any, where: Any, after: Any) -> tuple[list[Any], Any]:
    calls: list[tuple[str, Any]] = []

    class Spy(Recording):
        async def fetch(self, sql: str, *args: Any) -> Any:
            calls.append((sql, args))
            return await super().fetch(sql, *args)

    found = await queries.list_tasks(
        cast(Any, Spy(pool, [])),
        where=where,
        after=after,
        limit=51,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )
    return calls, found.rows


async def page_run(conn: Any, pool: Any) -> dict[str, tuple[float, float, int]]:
    async def of(where: Any, after: Any) -> tuple[list[tuple[str, Any]], list[Any]]:
        return await statements_of(pool, where, after)

    modes = {"custom": "force_custom_plan", "generic": "force_generic_plan"}
    return await page_plans(conn, of, PAGES, modes, next_when=lambda page: len(page) >= 51)


async def use(conn: Any, variant: str) -> None:
    await conn.execute(f"DROP INDEX IF EXISTS fu_read.{INDEX}")
    if variant == "with":
        await conn.execute(f"CREATE INDEX {INDEX} ON fu_read.fu_tasks {DEFINITION}")
    await conn.execute("ANALYZE fu_read.fu_tasks")


async def measure(args: argparse.Namespace, base: Path) -> None:

    async with live_read_model(base) as (conn, pool):
        pages: dict[str, list[dict[str, tuple[float, float, int]]]] = {}
        writes: dict[str, list[WriteFigures]] = {}
        order = ("without", "with", "with", "without")
        await fill_tasks(conn, args.tasks, 0.001, autovacuum=False)
        counts = await conn.fetch(
            "SELECT status, count(*) FILTER (WHERE assignee = 'rm-7') AS rm7, "
            "count(*) FILTER (WHERE assignee = 'rm-7' AND kind = 'revisit') AS rm7_revisits "
            "FROM fu_tasks GROUP BY status ORDER BY status"
        )
        print("rm-7's tasks by status (all, revisits):", [tuple(r) for r in counts])
        for pair in range(args.pairs):
            for variant in order[(pair % 2) * 2 : (pair % 2) * 2 + 2]:
                await use(conn, variant)
                pages.setdefault(variant, []).append(await page_run(conn, pool))
                print(f"page run {variant} (load {os.getloadavg()[0]:.2f})", flush=True)
        writes = await abba_write_runs(conn, order, args.pairs, args.writes, use)
    print_page_runs(pages, ("without", "with"))
    for variant, wruns in writes.items():
        print(
            f"writes {variant}: insert WAL {sorted(round(w[1]) for w in wruns)} B, "
            f"CPU {sorted(round(w[0], 1) for w in wruns)} µs; close WAL "
            f"{sorted(round(w[3]) for w in wruns)} B, "
            f"CPU {sorted(round(w[2], 1) for w in wruns)} µs"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--writes", type=int, default=5000)
    return run_in_scratch(measure, parser.parse_args(), "rm-kind-")


if __name__ == "__main__":
    raise SystemExit(main())
