"""Where a walk past unreadable task rows spends its time per row (#12, Round 33: Round 32
measured ~33 us per row in all, ``bench.profile_unreadable_pages``).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` as
``bench.profile_unreadable_pages`` does: an RM (``rm-u``) with ``--unreadable`` open tasks of a
kind that is no task kind (``survey``) due before 60 readable revisits. Then ``--runs`` times:

``walk``: the RM's pages followed through ``resume_after`` until one holds a task (the API's
50 + 1, ``queries.list_tasks`` as shipped, through a one-connection pool), its wall time split
into the statements (``fetch``: the pool's ``fetch`` calls, i.e. PostgreSQL's read, the wire
and asyncpg's records) and ``decode_rows`` (the Python per row), per row read;
then, on one page's rows (``READ_PAGES`` x 51 unreadable records, fetched once), each step of
``decode_rows`` timed alone, per row: ``dict(record)``, the decoder (``task_row``: raises on
the kind), the problem's text (``_problem``), ``skipped`` (the counter and the warning) with
logging dropped (a null handler, as the page probe) and with the services' JSON line handler
writing to /dev/null (``configure_logging``'s formatter, as in production), and the whole
``decode_rows`` both ways, on one record at a time and on the page's records at once (one
read: since #12's Round 34 one warning per read, not per row). The walk is also timed with
the JSON line handler (``walk, JSON lines``). Printed per run, then as median [min-max] over
the runs.

    python -m bench.profile_unreadable_rows [--tasks 20000] [--unreadable 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile_owner_status import NOW, fill_tasks, live_read_model  # noqa: E402
from bench.profile_unreadable_pages import PLANT  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402
from branchline_shared import logging_setup  # noqa: E402
from branchline_shared.postgres import row_guard  # noqa: E402

RM = "rm-u"
QUERY = "followups.list"
TIMEOUT_S = 300.0


class TimedPool:
    """The pool, its ``fetch`` calls' wall time and rows added up."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self.seconds = 0.0
        self.rows = 0
        self.calls = 0
        self.first: tuple[Any, ...] = ()

    async def fetch(self, sql: str, *args: Any) -> Any:
        start = time.perf_counter()
        rows = await self._pool.fetch(sql, *args)
        self.seconds += time.perf_counter() - start
        self.rows += len(rows)
        self.calls += 1
        self.first = self.first or (sql, *args)
        return rows


def drop_logs() -> None:
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    logging.getLogger().setLevel(logging.WARNING)


def json_logs(sink: Any) -> None:
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging_setup.JsonLineFormatter("followup"))
    logging.getLogger().handlers[:] = [handler]
    logging.getLogger().setLevel(logging.INFO)


async def rm_page(pool: Any, after: Any) -> Any:
    """The RM's page after ``after`` (None: the first) as the console asks for it."""
    return await queries.list_tasks(
        pool,
        where=queries.TaskFilter(assignee=RM),
        after=after,
        limit=51,
        now=NOW,
        due_soon_window=timedelta(days=2),
    )


async def walk(pool: Any) -> tuple[float, float, float, int, int]:
    """(wall s, fetch s, decode_rows s, rows read, statements) of the walk to a task."""
    timed = TimedPool(pool)
    decoding = 0.0
    original = vars(queries)["decode_rows"]

    def timed_decode(rows: Any, decode: Any, *, query: str, **options: Any) -> Any:
        nonlocal decoding
        start = time.perf_counter()
        found = original(rows, decode, query=query, **options)
        decoding += time.perf_counter() - start
        return found

    vars(queries)["decode_rows"] = timed_decode
    try:
        start = time.perf_counter()
        after = None
        while True:
            found = await rm_page(timed, after)
            if found.rows or found.resume_after is None:
                break
            after = found.resume_after
        wall = time.perf_counter() - start
    finally:
        vars(queries)["decode_rows"] = original
    return wall, timed.seconds, decoding, timed.rows, timed.calls


def per_row_us(step: Callable[[Any], Any], items: list[Any], repeat: int = 5) -> float:
    """The median over ``repeat`` passes of ``step`` over ``items``, in us per item."""
    passes = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            step(item)
        passes.append((time.perf_counter() - start) / len(items))
    return 1e6 * statistics.median(passes)


def raising(decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def step(values: Any) -> Any:
        try:
            return decode(values)
        except row_guard._DECODE_ERRORS as error:
            return error

    return step


def steps_of(records: list[Any], sink: Any) -> dict[str, float]:
    """Each step of ``decode_rows`` alone, us per record."""
    values = [dict(r) for r in records]
    for v in values:
        v.pop(row_guard.UNREADABLE, None)
    errors = [raising(queries.task_row)(dict(v)) for v in values]
    assert all(isinstance(e, Exception) for e in errors), "the planted rows decode"
    found: dict[str, float] = {}
    found["dict(record)"] = per_row_us(dict, records)
    found["task_row (raises)"] = per_row_us(lambda v: raising(queries.task_row)(dict(v)), values)
    found["  of it dict copy"] = per_row_us(dict, values)
    found["_problem"] = per_row_us(row_guard._problem, errors)
    drop_logs()
    found["skipped, logs dropped"] = per_row_us(lambda _: row_guard.skipped(QUERY, "x"), errors)
    found["decode_rows, logs dropped"] = per_row_us(
        lambda r: row_guard.decode_rows([r], queries.task_row, query=QUERY), records
    )
    found["decode_rows, a read's records, logs dropped"] = per_row_us(
        lambda _: row_guard.decode_rows(records, queries.task_row, query=QUERY), [None]
    ) / len(records)
    json_logs(sink)
    found["decode_rows, a read's records, JSON lines"] = per_row_us(
        lambda _: row_guard.decode_rows(records, queries.task_row, query=QUERY), [None]
    ) / len(records)
    found["skipped, JSON lines"] = per_row_us(lambda _: row_guard.skipped(QUERY, "x"), errors)
    found["decode_rows, JSON lines"] = per_row_us(
        lambda r: row_guard.decode_rows([r], queries.task_row, query=QUERY), records
    )
    drop_logs()
    return found


async def measure(args: argparse.Namespace, base: Path) -> None:
    drop_logs()
    figures: dict[str, list[float]] = {}
    sink = args.sink
    async with asyncio.timeout(TIMEOUT_S), live_read_model(base) as (conn, pool):
        await fill_tasks(conn, args.tasks, 0.001)
        await conn.execute(PLANT, "survey", "D-07", RM, 0, args.unreadable)
        await conn.execute(PLANT, "revisit", "D-08", RM, args.unreadable + 1, 60)
        await conn.execute("VACUUM ANALYZE fu_read.fu_tasks")
        await walk(pool)  # warm: plans, buffers
        # one capped page's records, as list_tasks reads them (its first statement)
        sample = TimedPool(pool)
        await rm_page(sample, None)
        records = list(await pool.fetch(*sample.first))
        for run in range(args.runs):
            json_logs(sink)
            json_wall, _, json_decoding, json_rows, _ = await walk(pool)
            drop_logs()
            wall, fetch, decoding, rows, calls = await walk(pool)
            line = {
                "walk": 1e6 * wall / rows,
                "fetch": 1e6 * fetch / rows,
                "decode_rows": 1e6 * decoding / rows,
                "rest": 1e6 * (wall - fetch - decoding) / rows,
                "walk, JSON lines": 1e6 * json_wall / json_rows,
                "walk's decode_rows, JSON lines": 1e6 * json_decoding / json_rows,
            }
            line |= steps_of(records, sink)
            for name, value in line.items():
                figures.setdefault(name, []).append(value)
            print(
                f"run {run + 1}: {rows} rows in {calls} statements, {1e3 * wall:.1f} ms; "
                + ", ".join(f"{k} {v:.2f}" for k, v in line.items())
                + f" us/row (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    print(f"us per row read, median [min-max] of {args.runs} runs ({len(records)} records):")
    for name, values in figures.items():
        print(f"  {name:28} {statistics.median(values):7.2f} [{min(values):.2f}-{max(values):.2f}]")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--unreadable", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with Path(os.devnull).open("w") as args.sink:  # the JSON lines' sink
        return run_in_scratch(measure, args, "unreadable-rows-")


if __name__ == "__main__":
    raise SystemExit(main())
