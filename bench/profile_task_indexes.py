"""What each index of ``fu_tasks`` and ``fu_timers`` costs a task's writes, and which reads
need it (#12).

Starts an embedded PostgreSQL only, migrates followup's database and fills it with the read
plan test's rows (``tests/integration/followup/test_followup_read_plans.FILL``: 20,000 tasks,
their visits, surveys, ...) and ``--tasks`` more tasks (5% open, the rest done, 1 in 1,000
cancelled). Then:

``reads``: for each secondary index, dropped alone (then built again): every read of the plan
test (``READS``: the API's and console's task lists, client pages, board, quality measures...)
run through a recording pool, and each statement whose generic plan reads a growing table
whole (``tests.support.generic_plans.whole_reading_statements``: a sequential scan, or an
index walked to the table's end filtering) named: the reads that index keeps bounded.

``writes``: for each secondary index, alternated runs with every index (``all``) and without
that one (``-NAME``), in ABBA order, ``--pairs`` pairs: ``--writes`` tasks inserted open with a
timer each (as a task's creation writes them), then each task closed (90% done, 10% cancelled)
and its timers deleted (as a closing writes), one statement each in transactions of 20. The
backend's CPU (``/proc/PID/schedstat``) and WAL bytes per task, insert and close apart
(``full_page_writes`` and autovacuum off on this scratch server: the records, not the page
images, and nothing but the writes). An
index's cost is the median ``all`` run less the median run without it.

    python -m bench.profile_task_indexes [--tasks 100000] [--writes 3000] [--pairs 2]
        [--only NAME[,NAME...]] [--no-reads] [--create "CREATE INDEX ..."]

(Followup 022 dropped ``fu_tasks_by_due``: ``--create "CREATE INDEX fu_tasks_by_due ON
fu_read.fu_tasks (due_at, id)"`` measures it again.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.generic_plans import Recording, whole_reading_statements  # noqa: E402

from bench.profile_owner_status import live_read_model  # noqa: E402
from bench.profile_rebuild import on_cpu_seconds  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402

MORE = """
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status, closed_at)
SELECT gen_random_uuid(), CASE WHEN r.k < 0.005 THEN 'revisit' ELSE 'satisfaction_survey' END,
       CASE WHEN r.k < 0.005 THEN 'D-08' ELSE 'D-01b' END, 'C-' || (n % 2000),
       'BR-' || (n % 20), 'rm-' || (n % 50), 's', timestamptz '2025-01-01',
       timestamptz '2026-01-01' + n * interval '5 minutes', 'calendar', gen_random_uuid(),
       CASE WHEN r.s < 0.05 THEN 'open' WHEN r.s < 0.051 THEN 'cancelled' ELSE 'done' END,
       CASE WHEN r.s < 0.05 THEN NULL ELSE timestamptz '2026-01-01' + n * interval '5 minutes' END
FROM generate_series(1, $1) AS n CROSS JOIN LATERAL (SELECT random() + 0 * n, random()) AS r(k, s)
"""
TIMERS = """
INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at, fired_at)
SELECT gen_random_uuid(), id, client_id, 'overdue', due_at,
       CASE WHEN status = 'open' THEN NULL ELSE due_at END
FROM fu_tasks
"""
INSERT = (
    "INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at, "
    "due_at, deadline_profile, source_event_id, status) VALUES ($1, 'satisfaction_survey', "
    "'D-01b', $2, 'BR-1', $5, 's', $3, $3, 'calendar', $4, 'open')"
)
TIMER = (
    "INSERT INTO fu_timers (id, task_id, client_id, kind, fire_at) "
    "VALUES ($1, $2, $3, 'overdue', $4)"
)
CLOSE = (
    "UPDATE fu_tasks SET status = $2, closed_at = $3, closed_by_event_id = $4, "
    "close_reason = 'done' WHERE id = $1"
)
UNTIME = "DELETE FROM fu_timers WHERE task_id = ANY($1::uuid[]) AND num_nulls(fired_at) = 1"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
TABLES = ("fu_tasks", "fu_timers")


async def secondary_indexes(conn: Any) -> dict[str, str]:
    """Each secondary (not a key's) index of the two tables: name -> its CREATE statement."""
    rows = await conn.fetch(
        "SELECT c.relname AS name, pg_get_indexdef(c.oid) AS definition "
        "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace "
        "WHERE n.nspname = 'fu_read' AND t.relname = ANY($1::text[]) "
        "AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = c.oid) "
        "ORDER BY t.relname, c.relname",
        list(TABLES),
    )
    return {r["name"]: r["definition"] for r in rows}


async def without(conn: Any, indexes: dict[str, str], name: str | None) -> None:
    """Every index but ``name`` (None: every one)."""
    present = await secondary_indexes(conn)
    for index, definition in indexes.items():
        if index == name and index in present:
            await conn.execute(f"DROP INDEX fu_read.{index}")
        elif index != name and index not in present:
            await conn.execute(definition)


async def read_run(conn: Any, pool: Any, indexes: dict[str, str]) -> dict[str, list[str]]:
    from tests.integration.followup.test_followup_read_plans import READS, SMALL, WALKS

    needs: dict[str, list[str]] = {}
    for name in [None, *indexes]:
        await without(conn, indexes, name)
        await conn.execute("ANALYZE fu_read.fu_tasks, fu_read.fu_timers")
        unbounded = []
        for read_name, read in READS.items():
            statements: list[str] = []
            await read(cast(Any, Recording(pool, statements)))
            small = SMALL | WALKS.get(read_name, frozenset())
            if await whole_reading_statements(pool, statements, small=small):
                unbounded.append(read_name)
        needs[name or "(all)"] = unbounded
        print(f"reads without {name or '(none)'}: unbounded {unbounded}", flush=True)
    await without(conn, indexes, None)
    return needs


async def write_run(conn: Any, run: int, n: int) -> tuple[float, float, float, float]:
    await conn.execute("CHECKPOINT")
    ids = [uuid.uuid4() for _ in range(n)]
    pid = conn.get_server_pid()
    at = NOW + timedelta(days=run)
    found: list[float] = []
    for phase in ("insert", "close"):
        lsn0 = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
        cpu0 = on_cpu_seconds(pid)
        for i in range(0, n, 20):
            part = ids[i : i + 20]
            async with conn.transaction():
                if phase == "insert":
                    await conn.executemany(
                        INSERT,
                        [
                            (t, f"C-{t.int % 2000}", at, uuid.uuid4(), f"rm-{t.int % 50}")
                            for t in part
                        ],
                    )
                    await conn.executemany(
                        TIMER, [(uuid.uuid4(), t, f"C-{t.int % 2000}", at) for t in part]
                    )
                else:
                    await conn.executemany(
                        CLOSE,
                        [
                            (t, "cancelled" if t.int % 10 == 0 else "done", at, uuid.uuid4())
                            for t in part
                        ],
                    )
                    await conn.execute(UNTIME, part)
        cpu = on_cpu_seconds(pid) - cpu0
        wal = await conn.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)", lsn0
        )
        found += [1e6 * cpu / n, float(wal) / n]
    return found[0], found[1], found[2], found[3]


async def measure(args: argparse.Namespace, base: Path) -> None:
    from tests.integration.followup.test_followup_read_plans import FILL

    async with live_read_model(base) as (conn, pool):
        await conn.execute("ALTER SYSTEM SET full_page_writes = off")
        await conn.execute("ALTER SYSTEM SET autovacuum = off")  # its WAL is not a write's
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute("SELECT setseed(0.3)")
        for statement in args.create:
            await conn.execute(statement)
        await conn.execute(FILL)
        await conn.execute(MORE, args.tasks)
        await conn.execute(TIMERS)
        await conn.execute("VACUUM ANALYZE fu_read.fu_tasks, fu_read.fu_timers")
        indexes = await secondary_indexes(conn)
        if args.only:
            indexes = {k: v for k, v in indexes.items() if k in args.only.split(",")}
        print("indexes:", *indexes.values(), sep="\n  ", flush=True)
        if not args.no_reads:
            await read_run(conn, pool, indexes)
        runs: dict[str, list[tuple[float, float, float, float]]] = {}
        beside: dict[str, list[tuple[float, float, float, float]]] = {}
        run = 0
        for name in indexes:
            for pair in range(args.pairs):
                order = [None, name] if pair % 2 == 0 else [name, None]
                for dropped in order:
                    run += 1
                    await without(conn, indexes, dropped)
                    got = await write_run(conn, run, args.writes)
                    label = "all" if dropped is None else f"-{dropped}"
                    runs.setdefault(label, []).append(got)
                    if dropped is None:
                        beside.setdefault(name, []).append(got)
                    print(
                        f"{label} (load {os.getloadavg()[0]:.2f}): insert {got[0]:.1f} µs "
                        f"{got[1]:.0f} B; close {got[2]:.1f} µs {got[3]:.0f} B",
                        flush=True,
                    )
        await without(conn, indexes, None)
    for label, got_runs in runs.items():
        if label == "all":
            continue
        base_runs = beside[label[1:]]  # the runs with every index of the same ABBA block
        line = [f"{label} (against its blocks' all):"]
        for k, what in enumerate(("insert µs", "insert WAL B", "close µs", "close WAL B")):
            b, g = [r[k] for r in base_runs], [r[k] for r in got_runs]
            line.append(
                f"{what} all {statistics.median(b):.1f} [{min(b):.1f}-{max(b):.1f}] without "
                f"{statistics.median(g):.1f} [{min(g):.1f}-{max(g):.1f}] "
                f"(saves {statistics.median(b) - statistics.median(g):.1f});"
            )
        print(" ".join(line))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--only", default="")
    parser.add_argument("--no-reads", action="store_true")
    parser.add_argument(
        "--create",
        action="append",
        default=[],
        help="a CREATE INDEX statement run after the migrations (an index they dropped)",
    )
    return run_in_scratch(measure, parser.parse_args(), "task-indexes-")


if __name__ == "__main__":
    raise SystemExit(main())
