"""The followup task list by a rare status, and what followup 017's indexes cost a task's
writes (#12).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` with
``--tasks`` tasks (5% open, ``--cancelled`` of them cancelled, spread over the due order, the
rest done). Then, in ``--pairs`` alternated pairs:

- ``page``: the list by status (``queries.list_tasks``, no RM, client or team; the API's
  page of 50 + 1), a first page and a next page (its cursor after the 50th cancelled task),
  as the statement was before 017 (``status = $1``: fu_tasks_by_due walked, filtered) and as it
  is now (``status = 'cancelled'``: fu_tasks_cancelled_by_due), on their generic plans
  (``EXPLAIN (ANALYZE, BUFFERS)``, ``plan_cache_mode = force_generic_plan``): buffers touched
  and execution time, median of 5;
- ``writes``: ``--writes`` tasks inserted open and then closed (90% done, 10% cancelled), by
  one statement each in transactions of 20, without 017's two indexes (dropped) and with
  them (built again): the backend's CPU (``/proc/PID/schedstat``) and WAL bytes per task
  (``full_page_writes`` off on this scratch server: the records, not the page images).

    python -m bench.profile_status_page [--tasks 100000] [--cancelled 0.001] [--pairs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.generic_plans import Recording  # noqa: E402

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_rebuild import on_cpu_seconds  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402

INDEXES = {
    "fu_tasks_done_by_due": "CREATE INDEX fu_tasks_done_by_due ON fu_read.fu_tasks "
    "(due_at, id) WHERE status = 'done'",
    "fu_tasks_cancelled_by_due": "CREATE INDEX fu_tasks_cancelled_by_due ON fu_read.fu_tasks "
    "(due_at, id) WHERE status = 'cancelled'",
}
FILL = """
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status, closed_at)
SELECT gen_random_uuid(), 'satisfaction_survey', 'D-01b', 'C-' || (n % 10000),
       'BR-' || (n % 20), 'rm-' || (n % 50), 's', timestamptz '2025-01-01',
       timestamptz '2026-01-01' + n * interval '5 minutes', 'calendar', gen_random_uuid(),
       CASE WHEN n % 20 = 0 THEN 'open' WHEN random() < $2 THEN 'cancelled' ELSE 'done' END,
       CASE WHEN n % 20 = 0 THEN NULL ELSE timestamptz '2026-01-01' + n * interval '5 minutes' END
FROM generate_series(1, $1) AS n
"""
INSERT = (
    "INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at, "
    "due_at, deadline_profile, source_event_id, status) VALUES ($1, 'satisfaction_survey', "
    "'D-01b', $2, 'BR-1', 'rm-1', 's', $3, $3, 'calendar', $4, 'open')"
)
CLOSE = "UPDATE fu_tasks SET status = $2, closed_at = $3 WHERE id = $1"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


async def statement_of(pool: Any, status: str, after: tuple[datetime, uuid.UUID] | None) -> str:
    """The statement ``list_tasks`` runs for the page (its first)."""
    statements: list[str] = []
    await queries.list_tasks(
        cast(Any, Recording(pool, statements)),
        where=queries.TaskFilter(status=status),
        after=after,
        limit=51,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )
    return statements[0]


def as_before(statement: str, status: str) -> str:
    """The statement as it was before 017: the status bound as $1, the rest after it."""
    renumbered = re.sub(r"\$(\d+)", lambda m: f"${int(m[1]) + 1}", statement)
    return renumbered.replace(f"status = '{status}'", "status = $1", 1)


async def explained(conn: Any, statement: str, values: list[Any]) -> tuple[int, float, str]:
    """Buffers touched, execution ms and the plan's first scan, on the generic plan."""
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE page_probe AS {statement}")
        try:
            args = ", ".join(values)
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE page_probe({args})"
            )
        finally:
            await conn.execute("DEALLOCATE page_probe")
    tree = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    plan = tree["Plan"]
    scan = plan
    while "Index Name" not in scan and scan.get("Plans"):
        scan = scan["Plans"][0]
    return (
        plan["Shared Hit Blocks"] + plan["Shared Read Blocks"],
        float(tree["Execution Time"]),
        str(scan.get("Index Name", scan["Node Type"])),
    )


async def page_run(conn: Any, pool: Any, variant: str, cursor: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for page, after in (("first", None), ("next", cursor)):
        statement = await statement_of(pool, "cancelled", after)
        values = [] if after is None else [f"'{after[0].isoformat()}'", f"'{after[1]}'"]
        values.append("51")
        if variant == "old":
            statement = as_before(statement, "cancelled")
            values = ["'cancelled'", *values]
        runs = [await explained(conn, statement, values) for _ in range(5)]
        found[page] = (
            statistics.median(r[0] for r in runs),
            statistics.median(r[1] for r in runs),
            runs[0][2],
        )
    return found


async def write_run(conn: Any, variant: str, run: int, n: int) -> tuple[float, float]:
    for name, create in INDEXES.items():
        await conn.execute(f"DROP INDEX IF EXISTS fu_read.{name}")
        if variant == "new":
            await conn.execute(create)
    await conn.execute("CHECKPOINT")
    ids = [uuid.uuid4() for _ in range(n)]
    pid = conn.get_server_pid()
    lsn0 = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
    cpu0 = on_cpu_seconds(pid)
    at = NOW + timedelta(days=run)
    for i in range(0, n, 20):
        async with conn.transaction():
            await conn.executemany(
                INSERT, [(t, f"C-w{run}-{t.int % 500}", at, uuid.uuid4()) for t in ids[i : i + 20]]
            )
    for i in range(0, n, 20):
        async with conn.transaction():
            await conn.executemany(
                CLOSE,
                [(t, "cancelled" if t.int % 10 == 0 else "done", at) for t in ids[i : i + 20]],
            )
    cpu = on_cpu_seconds(pid) - cpu0
    wal = await conn.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)", lsn0
    )
    return 1e6 * cpu / n, float(wal) / n


async def measure(args: argparse.Namespace, base: Path) -> None:
    import asyncpg

    # WAL records only: a full-page image after a checkpoint, for pages an index of random
    # keys (id, source_event_id) touches more of as it grows, drifts run by run
    async with probe_stack(
        base, migrated=("followup",), server_settings={"full_page_writes": "off"}
    ) as stack:
        dsn = stack.live_dsn
        conn = await asyncpg.connect(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            await conn.execute(FILL, args.tasks, args.cancelled)
            await conn.execute("VACUUM ANALYZE fu_read.fu_tasks")
            cancelled = await conn.fetch(
                "SELECT due_at, id FROM fu_tasks WHERE status = 'cancelled' ORDER BY due_at, id"
            )
            cursor = page_cursor(cancelled)
            print(f"{args.tasks} tasks, {len(cancelled)} cancelled", flush=True)
            pages: dict[str, list[dict[str, Any]]] = {}
            for pair in range(args.pairs):
                for variant in ("old", "new"):
                    got = await page_run(conn, pool, variant, cursor)
                    pages.setdefault(variant, []).append(got)
                    print(
                        f"page pair {pair + 1} {variant}: "
                        + "; ".join(
                            f"{p} {b:.0f} buffers {ms:.2f} ms ({idx})"
                            for p, (b, ms, idx) in got.items()
                        ),
                        flush=True,
                    )
            writes: dict[str, list[tuple[float, float]]] = {}
            run = 0
            for pair in range(args.pairs):
                for variant in ("old", "new"):
                    run += 1
                    got_w = await write_run(conn, variant, run, args.writes)
                    writes.setdefault(variant, []).append(got_w)
                    print(
                        f"writes pair {pair + 1} {variant}: {got_w[0]:.1f} µs backend CPU, "
                        f"{got_w[1]:.0f} WAL bytes per task (insert + close)",
                        flush=True,
                    )
        finally:
            await pool.close()
            await conn.close()
    for variant, runs in pages.items():
        print(
            f"page {variant} medians: "
            + "; ".join(
                f"{p} {statistics.median(r[p][0] for r in runs):.0f} buffers "
                f"{statistics.median(r[p][1] for r in runs):.2f} ms"
                for p in ("first", "next")
            )
        )
    for variant, wruns in writes.items():
        print(
            f"writes {variant} medians: {statistics.median(w[0] for w in wruns):.1f} µs CPU, "
            f"{statistics.median(w[1] for w in wruns):.0f} WAL bytes per task"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


PAGE = 50
"""The API's page: the next page's cursor is the 50th cancelled task."""
ENOUGH = 75
"""The cancelled tasks a fill must be expected to make (drawn at random, a fill expected to
make 50 makes fewer about half the time; the defaults expect 95)."""


def page_cursor(cancelled: list[Any]) -> tuple[datetime, uuid.UUID]:
    """The next page's cursor: the ``PAGE``-th of the cancelled tasks (``due_at``, ``id``,
    in the list's order); refused, naming the arguments, when the fill made fewer."""
    if len(cancelled) < PAGE:
        raise SystemExit(
            f"the fill made {len(cancelled)} cancelled tasks, fewer than a page ({PAGE}): "
            "raise --tasks or --cancelled"
        )
    return cancelled[PAGE - 1]["due_at"], cancelled[PAGE - 1]["id"]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, refused before any stack starts when the fill it asks for would
    hold fewer cancelled tasks than a page (the 95% of tasks not open, ``--cancelled`` of
    them): Round 36's ``--tasks 2000`` (about 2 at the default 0.001) started, migrated and
    filled its stack and then stopped on an ``IndexError``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--cancelled", type=float, default=0.001)
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args(argv)
    expected = 0.95 * args.tasks * args.cancelled
    if expected < ENOUGH:
        parser.error(
            f"--tasks {args.tasks} at --cancelled {args.cancelled} makes about {expected:.0f} "
            f"cancelled tasks: the next page needs more than {PAGE} (ask for {ENOUGH} or more)"
        )
    return args


def main() -> int:
    return run_in_scratch(measure, arguments(), "status-page-")


if __name__ == "__main__":
    raise SystemExit(main())
