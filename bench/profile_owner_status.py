"""An RM's and a kind's task pages by status, and what followup 019's indexes cost a task's
writes (#12).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` with
``--tasks`` tasks of 50 RMs (5% open, ``--cancelled`` of them cancelled, the rest done, at random;
one in 200 a revisit, the rest surveys). Then, in ``--pairs`` alternated pairs of the two
variants, each with its own indexes and statements:

- ``old``: the indexes before 019 (``fu_tasks_work_list (assignee, due_at, id)``, 015's
  ``fu_tasks_open_work_list``) and ``queries.list_tasks`` as it was at ``--old`` (git);
- ``new``: 019's ``fu_tasks_owner_by_status (assignee, status, due_at, id)`` and
  ``fu_tasks_kind_by_status (kind, status, due_at, id)``, and the working tree's
  ``list_tasks``;

``page``: each page below (the API's 50 + 1), first and next (its cursor after the first
page's last task), on the generic plans of every statement the page runs
(``EXPLAIN (ANALYZE, BUFFERS)``, ``plan_cache_mode = force_generic_plan``): buffers touched
and execution time summed over the statements, median of 5; ``writes``: ``--writes`` tasks
inserted open, then closed (90% done, 10% cancelled), one statement each in transactions of
20: the backend's CPU (``/proc/PID/schedstat``) and WAL bytes per insert and per close
(``full_page_writes`` off on this scratch server: the records, not the page images).

    python -m bench.profile_owner_status [--tasks 100000] [--pairs 5] [--old 65acb64]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.generic_plans import Recording  # noqa: E402

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_rebuild import on_cpu_seconds  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402

QUERIES = "services/followup/branchline_followup/adapters/queries.py"
INDEXES = {
    "old": {
        "fu_tasks_work_list": "(assignee, due_at, id)",
        "fu_tasks_open_work_list": "(assignee, due_at, id) WHERE status = 'open'",
    },
    "new": {
        "fu_tasks_owner_by_status": "(assignee, status, due_at, id)",
        "fu_tasks_kind_by_status": "(kind, status, due_at, id)",
    },
}
FILL = """
INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at,
                      due_at, deadline_profile, source_event_id, status, closed_at)
SELECT gen_random_uuid(), CASE WHEN r.k < 0.005 THEN 'revisit' ELSE 'satisfaction_survey' END,
       CASE WHEN r.k < 0.005 THEN 'D-08' ELSE 'D-01b' END, 'C-' || (n % 10000),
       'BR-' || (n % 20), 'rm-' || (n % 50), 's', timestamptz '2025-01-01',
       timestamptz '2026-01-01' + n * interval '5 minutes', 'calendar', gen_random_uuid(),
       CASE WHEN r.s < 0.05 THEN 'open' WHEN r.s < 0.05 + $2 THEN 'cancelled' ELSE 'done' END,
       CASE WHEN r.s < 0.05 THEN NULL ELSE timestamptz '2026-01-01' + n * interval '5 minutes' END
FROM generate_series(1, $1) AS n CROSS JOIN LATERAL (SELECT random() + 0 * n, random()) AS r(k, s)
"""
INSERT = (
    "INSERT INTO fu_tasks (id, kind, rule, client_id, branch_id, assignee, subject, opened_at, "
    "due_at, deadline_profile, source_event_id, status) VALUES ($1, 'satisfaction_survey', "
    "'D-01b', $2, 'BR-1', $5, 's', $3, $3, 'calendar', $4, 'open')"
)
CLOSE = "UPDATE fu_tasks SET status = $2, closed_at = $3 WHERE id = $1"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
PAGES = {
    "RM cancelled": queries.TaskFilter(assignee="rm-7", status="cancelled"),
    "RM done": queries.TaskFilter(assignee="rm-7", status="done"),
    "RM, no status": queries.TaskFilter(assignee="rm-7"),
    "RM overdue": queries.TaskFilter(assignee="rm-7", status="overdue"),
    "team of 3, cancelled": queries.TaskFilter(
        assignee_in=frozenset({"rm-7", "rm-8", "rm-9"}), status="cancelled"
    ),
    "team of 3, no status": queries.TaskFilter(assignee_in=frozenset({"rm-7", "rm-8", "rm-9"})),
    "kind revisit": queries.TaskFilter(kind="revisit"),
    "kind revisit, cancelled": queries.TaskFilter(kind="revisit", status="cancelled"),
    "kind survey": queries.TaskFilter(kind="satisfaction_survey"),
}


def old_queries(commit: str) -> ModuleType:
    """``queries`` as it was at ``commit``."""
    text = subprocess.run(
        ["git", "show", f"{commit}:{QUERIES}"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    # the file is needed only while the module is executed: nothing is left in /tmp
    with tempfile.TemporaryDirectory(prefix="old-queries-") as folder:
        path = Path(folder) / "old_queries.py"
        path.write_bytes(text)
        spec = importlib.util.spec_from_file_location("old_queries", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["old_queries"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return module


async def statements_of(module: Any, pool: Any, where: Any, after: Any) -> list[tuple[str, Any]]:
    """The statements ``list_tasks`` runs for the page, with their values, and the page."""
    statements: list[str] = []
    calls: list[tuple[str, Any]] = []

    class Spy(Recording):
        async def fetch(self, sql: str, *args: Any) -> Any:
            calls.append((sql, args))
            return await super().fetch(sql, *args)

    page = await module.list_tasks(
        cast(Any, Spy(pool, statements)),
        where=module.TaskFilter(**where.__dict__),
        after=after,
        limit=51,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )
    # --old's module returns the rows; since Round 31 a TaskRows holds them
    return [*calls, ("page", getattr(page, "rows", page))]


def literal(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "ARRAY[" + ", ".join(literal(v) for v in value) + "]::text[]"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def args_of(values: Any) -> str:
    return f"({', '.join(literal(v) for v in values)})" if values else ""


async def explained(
    conn: Any, statement: str, values: Any, mode: str = "force_generic_plan", text: bool = False
) -> Any:
    """Buffers touched and execution ms, on the plan ``mode`` picks (``plan_cache_mode``'s
    values, the generic plan unless told; ``auto``: the plan PostgreSQL's default uses after 6
    executions); with ``text``, the plan as text instead."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE page_probe AS {statement}")
        try:
            if mode == "auto":
                for _ in range(6):
                    await conn.fetch(f"EXECUTE page_probe{args_of(values)}")
            options = "ANALYZE, BUFFERS" + ("" if text else ", FORMAT JSON")
            explain = f"EXPLAIN ({options}) EXECUTE page_probe{args_of(values)}"
            if text:
                return "\n".join(r[0] for r in await conn.fetch(explain))
            raw = await conn.fetchval(explain)
        finally:
            await conn.execute("DEALLOCATE page_probe")
    tree = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    plan = tree["Plan"]
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"], float(tree["Execution Time"])


def print_page_runs(
    pages: dict[str, list[dict[str, tuple[float, float, int]]]], order: tuple[str, str]
) -> None:
    """Each page's buffers and ms of every run, per variant of ``order``, and its rows."""
    for name in pages[order[1]][0]:
        print(
            f"{name}: "
            + " | ".join(
                f"{v} buf {'/'.join(f'{r[name][0]:.0f}' for r in pages[v])} "
                f"ms {'/'.join(f'{r[name][1]:.2f}' for r in pages[v])} "
                f"({pages[v][0][name][2]} rows)"
                for v in order
            )
        )


Statements = Callable[[Any, Any], Awaitable[tuple[list[tuple[str, Any]], list[Any]]]]
"""``(where, after) -> (the statements list_tasks runs for that page with their values, the
page's rows)``."""


async def page_plans(
    conn: Any,
    statements: Statements,
    pages: dict[str, Any],
    modes: dict[str, str],
    *,
    next_when: Callable[[list[Any]], bool] = bool,
) -> dict[str, tuple[float, float, int]]:
    """Each page of ``pages`` (its first page, then its next while ``next_when`` the first):
    per mode of ``modes`` (label -> ``plan_cache_mode``; an empty label adds nothing to the
    key), the median buffers and ms over 5 explains of its statements together, and its rows."""
    found: dict[str, tuple[float, float, int]] = {}
    for name, where in pages.items():
        after = None
        for which in ("first", "next"):
            run, page = await statements(where, after)
            for label, mode in modes.items():
                runs = []
                for _ in range(5):
                    buffers, ms = 0, 0.0
                    for sql, values in run:
                        b, t = await explained(conn, sql, values, mode)
                        buffers, ms = buffers + b, ms + t
                    runs.append((buffers, ms))
                found[", ".join(filter(None, (name, which, label)))] = (
                    statistics.median(r[0] for r in runs),
                    statistics.median(r[1] for r in runs),
                    len(page),
                )
            if not next_when(page):
                break
            after = (page[-1]["due_at"], page[-1]["id"])
    return found


async def use_indexes(conn: Any, variant: str) -> None:
    for other, indexes in INDEXES.items():
        for name, definition in indexes.items():
            await conn.execute(f"DROP INDEX IF EXISTS fu_read.{name}")
            if other == variant:
                await conn.execute(f"CREATE INDEX {name} ON fu_read.fu_tasks {definition}")
    await conn.execute("ANALYZE fu_read.fu_tasks")


async def page_run(conn: Any, pool: Any, module: Any) -> dict[str, tuple[float, float, int]]:
    async def of(where: Any, after: Any) -> tuple[list[tuple[str, Any]], list[Any]]:
        *run, (_, page) = await statements_of(module, pool, where, after)
        return run, page

    return await page_plans(conn, of, PAGES, {"": "force_generic_plan"})


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
            async with conn.transaction():
                if phase == "insert":
                    await conn.executemany(
                        INSERT,
                        [
                            (t, f"C-w{run}-{t.int % 500}", at, uuid.uuid4(), f"rm-{t.int % 50}")
                            for t in ids[i : i + 20]
                        ],
                    )
                else:
                    await conn.executemany(
                        CLOSE,
                        [
                            (t, "cancelled" if t.int % 10 == 0 else "done", at)
                            for t in ids[i : i + 20]
                        ],
                    )
        cpu = on_cpu_seconds(pid) - cpu0
        wal = await conn.fetchval(
            "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)", lsn0
        )
        found += [1e6 * cpu / n, float(wal) / n]
    return found[0], found[1], found[2], found[3]


WriteFigures = tuple[float, float, float, float]


@contextlib.asynccontextmanager
async def live_read_model(base: Path) -> AsyncIterator[tuple[Any, Any]]:
    """A scratch PostgreSQL (under ``base``) with the followup database migrated: a connection
    and a one-connection pool on its live read model, closed at the end."""
    import asyncpg

    async with probe_stack(base, migrated=("followup",)) as stack:
        dsn = stack.live_dsn
        conn = await asyncpg.connect(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            yield conn, pool
        finally:
            await pool.close()
            await conn.close()


async def fill_tasks(conn: Any, tasks: int, cancelled: float, *, autovacuum: bool = True) -> None:
    """``FILL``'s tasks (seeded, so every run holds the same), analysed, with full-page writes
    off (and autovacuum, if asked) so that the write runs' WAL is the rows' and indexes' own."""
    await conn.execute("ALTER SYSTEM SET full_page_writes = off")
    if not autovacuum:
        await conn.execute("ALTER SYSTEM SET autovacuum = off")
    await conn.execute("SELECT pg_reload_conf()")
    await conn.execute("SELECT setseed(0.2)")
    await conn.execute(FILL, tasks, cancelled)
    await conn.execute("VACUUM ANALYZE fu_read.fu_tasks")


async def abba_write_runs(
    conn: Any,
    order: tuple[str, str, str, str],
    pairs: int,
    n: int,
    use: Callable[[Any, str], Awaitable[None]],
) -> dict[str, list[WriteFigures]]:
    """``write_run`` of each variant in ``order`` (A B B A), ``pairs`` times, each after
    ``use(conn, variant)`` set its indexes up; printed as they come."""
    writes: dict[str, list[WriteFigures]] = {}
    run = 0
    for pair in range(pairs):
        for variant in order[(pair % 2) * 2 : (pair % 2) * 2 + 2]:
            run += 1
            await use(conn, variant)
            got = await write_run(conn, run, n)
            writes.setdefault(variant, []).append(got)
            print(
                f"writes pair {pair + 1} {variant} (load {os.getloadavg()[0]:.2f}): "
                f"insert {got[0]:.1f} µs CPU {got[1]:.0f} WAL B; "
                f"close {got[2]:.1f} µs CPU {got[3]:.0f} WAL B",
                flush=True,
            )
    return writes


async def measure(args: argparse.Namespace, base: Path) -> None:

    modules = {"old": old_queries(args.old), "new": queries}
    async with live_read_model(base) as (conn, pool):
        pages: dict[str, list[dict[str, tuple[float, float, int]]]] = {}
        writes: dict[str, list[WriteFigures]] = {}
        await fill_tasks(conn, args.tasks, args.cancelled)
        counts = await conn.fetch(
            "SELECT status, count(*) AS n, count(*) FILTER (WHERE assignee = 'rm-7') AS rm7, "
            "count(*) FILTER (WHERE kind = 'revisit') AS revisits "
            "FROM fu_tasks GROUP BY status ORDER BY status"
        )
        print("tasks by status (all, rm-7, revisits):", [tuple(r) for r in counts], flush=True)
        order = ("old", "new", "new", "old")
        for pair in range(args.pairs):
            for variant in order[(pair % 2) * 2 : (pair % 2) * 2 + 2]:
                await use_indexes(conn, variant)
                got = await page_run(conn, pool, modules[variant])
                pages.setdefault(variant, []).append(got)
                print(
                    f"page pair {pair + 1} {variant} "
                    f"(load {os.getloadavg()[0]:.2f}): "
                    + "; ".join(f"{p} {b:.0f} buf {ms:.2f} ms" for p, (b, ms, _) in got.items()),
                    flush=True,
                )
        writes = await abba_write_runs(conn, order, args.pairs, args.writes, use_indexes)
    for name in pages["new"][0]:
        print(
            f"{name}: "
            + " | ".join(
                f"{v} {statistics.median(r[name][0] for r in pages[v]):.0f} buf "
                f"{statistics.median(r[name][1] for r in pages[v]):.2f} ms "
                f"({pages[v][0][name][2]} rows)"
                for v in ("old", "new")
            )
        )
    for variant, wruns in writes.items():
        print(
            f"writes {variant} medians: insert {statistics.median(w[0] for w in wruns):.1f} µs, "
            f"{statistics.median(w[1] for w in wruns):.0f} B; close "
            f"{statistics.median(w[2] for w in wruns):.1f} µs, "
            f"{statistics.median(w[3] for w in wruns):.0f} B"
        )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--cancelled", type=float, default=0.001)
    parser.add_argument("--writes", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--old", default="65acb64")
    return run_in_scratch(measure, parser.parse_args(), "owner-status-")


if __name__ == "__main__":
    raise SystemExit(main())
