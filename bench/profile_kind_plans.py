"""Task pages filtered by kind on their custom, generic and ``auto`` plans, ``queries`` as at
``--old`` against this tree's (#12, Round 32: a kind written into the statement as its word
instead of a parameter).

Starts an embedded PostgreSQL only, migrates followup's database and fills ``fu_tasks`` as
``bench.profile_owner_status`` does (``--tasks`` tasks of 50 RMs, one in 200 a revisit).
Then, in ``--pairs`` alternated pairs (A B B A) of ``old`` and ``new``, each page below (the
API's 50 + 1, first and next) has every statement ``list_tasks`` runs for it explained
(``EXPLAIN (ANALYZE, BUFFERS)``) on its custom plan (``force_custom_plan``), its generic plan
(``force_generic_plan``) and the plan ``auto`` (PostgreSQL's default) uses once the statement
was run 6 times: shared buffers touched and execution ms summed over the statements, median
of 5. First, the plans of an RM's revisit page by status done (``--shown``: another page) are
printed as text.

    python -m bench.profile_kind_plans [--tasks 100000] [--pairs 2] [--old main]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile_owner_status import (  # noqa: E402
    explained,
    fill_tasks,
    live_read_model,
    old_queries,
    page_plans,
    print_page_runs,
    statements_of,
)
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_followup.adapters import queries  # noqa: E402

TEAM = frozenset({"rm-7", "rm-8", "rm-9"})
PAGES = {
    "RM, revisit": queries.TaskFilter(assignee="rm-7", kind="revisit"),
    "RM, revisit, done": queries.TaskFilter(assignee="rm-7", kind="revisit", status="done"),
    "RM, revisit, open": queries.TaskFilter(assignee="rm-7", kind="revisit", status="open"),
    "RM, survey": queries.TaskFilter(assignee="rm-7", kind="satisfaction_survey"),
    "RM, survey, done": queries.TaskFilter(
        assignee="rm-7", kind="satisfaction_survey", status="done"
    ),
    "RM, no kind": queries.TaskFilter(assignee="rm-7"),
    # SLA filters on owner pages (#12, Round 34: the filter the walk's range, not a text)
    "RM, revisit, overdue": queries.TaskFilter(assignee="rm-7", kind="revisit", status="overdue"),
    "RM, revisit, due soon": queries.TaskFilter(assignee="rm-7", kind="revisit", status="due_soon"),
    "RM, revisit, on track": queries.TaskFilter(assignee="rm-7", kind="revisit", status="on_track"),
    "team of 3, revisit, overdue": queries.TaskFilter(
        assignee_in=TEAM, kind="revisit", status="overdue"
    ),
    "team of 3, revisit": queries.TaskFilter(assignee_in=TEAM, kind="revisit"),
    "team of 3, survey": queries.TaskFilter(assignee_in=TEAM, kind="satisfaction_survey"),
    "kind revisit": queries.TaskFilter(kind="revisit"),
    "kind revisit, done": queries.TaskFilter(kind="revisit", status="done"),
    "kind survey": queries.TaskFilter(kind="satisfaction_survey"),
    "client, revisit": queries.TaskFilter(client_id="C-7", kind="revisit"),
    "client, survey": queries.TaskFilter(client_id="C-7", kind="satisfaction_survey"),
}


PLAN_MODES = {"custom": "force_custom_plan", "generic": "force_generic_plan", "auto": "auto"}


async def page_run(conn: Any, pool: Any, module: Any) -> dict[str, tuple[float, float, int]]:
    async def of(where: Any, after: Any) -> tuple[list[tuple[str, Any]], list[Any]]:
        *run, (_, page) = await statements_of(module, pool, where, after)
        return run, page

    return await page_plans(conn, of, PAGES, PLAN_MODES, next_when=lambda page: len(page) >= 51)


async def measure(args: argparse.Namespace, base: Path) -> None:
    modules = {"old": old_queries(args.old), "new": queries}
    async with live_read_model(base) as (conn, pool):
        await fill_tasks(conn, args.tasks, 0.001)
        counts = await conn.fetch(
            "SELECT status, count(*) FILTER (WHERE assignee = 'rm-7') AS rm7, "
            "count(*) FILTER (WHERE assignee = 'rm-7' AND kind = 'revisit') AS rm7_revisits, "
            "count(*) FILTER (WHERE kind = 'revisit') AS revisits "
            "FROM fu_tasks GROUP BY status ORDER BY status"
        )
        print("tasks by status (rm-7, rm-7's revisits, revisits):", [tuple(r) for r in counts])
        for variant, module in modules.items():
            where = PAGES[args.shown]
            *run, _ = await statements_of(module, pool, where, None)
            for sql, values in run:
                print(f"--- {variant}: {sql} {values!r}")
                for mode, setting in PLAN_MODES.items():
                    print(f"--- {variant}, {mode} plan:")
                    print(await explained(conn, sql, values, setting, text=True), flush=True)
        pages: dict[str, list[dict[str, tuple[float, float, int]]]] = {}
        order = ("old", "new", "new", "old")
        for pair in range(args.pairs):
            for variant in order[(pair % 2) * 2 : (pair % 2) * 2 + 2]:
                pages.setdefault(variant, []).append(await page_run(conn, pool, modules[variant]))
                print(f"page run {variant} (load {os.getloadavg()[0]:.2f})", flush=True)
    print_page_runs(pages, ("old", "new"))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--old", default="main")
    parser.add_argument("--shown", default="RM, revisit, done", choices=sorted(PAGES))
    return run_in_scratch(measure, parser.parse_args(), "kind-plans-")


if __name__ == "__main__":
    raise SystemExit(main())
