"""A task page's time over a scope of N unreadable rows, with the read's cap and without it
(#12, Round 32; Round 31 capped ``queries.list_tasks`` at ``READ_PAGES`` x limit rows read).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` as
``bench.profile_owner_status`` does (``--tasks`` tasks of 50 RMs). Then, per N of ``--unreadable``
(default 0, 1000, 10000), an RM of their own (``rm-uN``) gets N open tasks of a kind that is no
task kind (``survey``: each row skipped by ``queries.task_row``, logged and counted, as in
production) due before 60 readable open revisits. For each N, in ``--pairs`` alternated pairs
(A B B A) of two variants, ``capped`` (``READ_PAGES`` as shipped) and ``uncapped``
(``READ_PAGES`` set past any scope: Round 30's read to the scope's end):

``page``: the RM's first page (the API's 50 + 1, no status), wall ms of ``list_tasks``
through a one-connection asyncpg pool, median of ``--repeat`` (after one unmeasured read);
``walk``: the pages from the first until one holds a readable task (following
``resume_after`` when capped), wall ms summed, median of ``--repeat``.
Printed per run, then per N and variant the runs' medians as ranges. The unreadable rows'
warnings are logged to a null handler (the logging call is made, its output dropped).

    python -m bench.profile_unreadable_pages [--tasks 20000] [--pairs 2] [--repeat 9]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile_owner_status import NOW, fill_tasks, live_read_model  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402

SHIPPED = queries.READ_PAGES
PLANT = """
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status)
SELECT gen_random_uuid(), $1, $2, 'C-' || (n % 10000), 'BR-1', $3, 's',
       timestamptz '2025-01-01', timestamptz '2026-01-01' + (n + $4) * interval '1 minute',
       'calendar', gen_random_uuid(), 'open'
FROM generate_series(1, $5) AS n
"""


async def read_page(pool: Any, assignee: str, after: Any) -> queries.TaskRows:
    return await queries.list_tasks(
        pool,
        where=queries.TaskFilter(assignee=assignee),
        after=after,
        limit=51,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )


async def timed_page(pool: Any, assignee: str) -> tuple[float, int]:
    start = time.perf_counter()
    found = await read_page(pool, assignee, None)
    return (time.perf_counter() - start) * 1000, len(found.rows)


async def timed_walk(pool: Any, assignee: str) -> tuple[float, int]:
    """Wall ms of the pages until one holds a task, and how many pages that took."""
    start = time.perf_counter()
    after = None
    pages = 0
    while True:
        found = await read_page(pool, assignee, after)
        pages += 1
        if found.rows or found.resume_after is None:
            return (time.perf_counter() - start) * 1000, pages
        after = found.resume_after


def use(variant: str) -> None:
    queries.READ_PAGES = SHIPPED if variant == "capped" else 10**9


async def measure(args: argparse.Namespace, base: Path) -> None:
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    logging.getLogger().setLevel(logging.WARNING)
    order = ("capped", "uncapped", "uncapped", "capped")
    async with live_read_model(base) as (conn, pool):
        await fill_tasks(conn, args.tasks, 0.001)
        for n in args.unreadable:
            await conn.execute(PLANT, "survey", "D-07", f"rm-u{n}", 0, n)
            await conn.execute(PLANT, "revisit", "D-08", f"rm-u{n}", n + 1, 60)
        await conn.execute("VACUUM ANALYZE fu_read.fu_tasks")
        figures: dict[tuple[int, str, str], list[float]] = {}
        for pair in range(args.pairs):
            for variant in order[(pair % 2) * 2 : (pair % 2) * 2 + 2]:
                use(variant)
                for n in args.unreadable:
                    rm = f"rm-u{n}"
                    await timed_page(pool, rm)  # warm: plans, buffers
                    pages = [await timed_page(pool, rm) for _ in range(args.repeat)]
                    walks = [await timed_walk(pool, rm) for _ in range(args.repeat)]
                    page_ms = statistics.median(p[0] for p in pages)
                    walk_ms = statistics.median(w[0] for w in walks)
                    figures.setdefault((n, variant, "page"), []).append(page_ms)
                    figures.setdefault((n, variant, "walk"), []).append(walk_ms)
                    print(
                        f"pair {pair + 1} {variant} N={n}: first page {page_ms:.2f} ms "
                        f"({pages[0][1]} tasks), walk to a task {walk_ms:.2f} ms "
                        f"({walks[0][1]} pages) (load {os.getloadavg()[0]:.2f})",
                        flush=True,
                    )
        use("capped")
    for n in args.unreadable:
        for what in ("page", "walk"):
            line = " | ".join(
                f"{v} median {statistics.median(figures[(n, v, what)]):.2f} ms "
                f"[{min(figures[(n, v, what)]):.2f}-{max(figures[(n, v, what)]):.2f}]"
                for v in ("capped", "uncapped")
            )
            print(f"N={n} {what}: {line}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--unreadable", type=int, nargs="+", default=[0, 1000, 10000])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    return run_in_scratch(measure, parser.parse_args(), "unreadable-pages-")


if __name__ == "__main__":
    raise SystemExit(main())
