"""The trail readers' check of every entry they serve (``ServedCheck``: its hash recomputed
from the stored columns, its columns and link, D-11, #12), before and after, alternated pairs
in one process.

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries
(``bench/export_ledger.py``), then ``--pairs`` alternated pairs (A B B A ...) of:

- ``page``: ``--pages`` pages of 100 entries as ``GET /v1/audit/entries`` reads them (the
  ledger's page read and ``views_of``), spread over the ledger;
- ``export``: a whole jsonl export (``export_lines``), the two compared byte for byte.

"before" is the readers' check until Round 26 (only a time no append writes is refused,
patched in for ``refuse_altered``); "after" the check now. Each figure is the process's CPU
time (and wall time) of the step; a page's also per page, an export's per entry.

    python -m bench.profile_served_check [--entries 100000] [--pairs 4] [--pages 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.export_ledger import READER, filled_audit  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.application import exporting, querying  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402
from branchline_audit.domain.verification import (  # noqa: E402
    AlteredEntry,
    ServedCheck,
    StoredEntry,
    refuse_altered,
)

PAGE = 100


def refuse_unwritten(entries: Iterable[StoredEntry], check: ServedCheck | None = None) -> None:
    """The readers' check until Round 26: a time no append writes only."""
    for stored in entries:
        if stored.unwritten is not None:
            raise AlteredEntry(stored.entry.position, stored.unwritten)


async def pages(audit: AuditContext, n: int, count: int) -> list[Any]:
    served = []
    step = max(1, (n - PAGE) // count)
    for i in range(count):
        page = await audit.ledger.entries(LedgerFilters(), after_position=i * step, limit=PAGE)
        views = await querying.views_of(audit, page, READER)
        served.append([(v.stored.entry.position, v.event, v.view) for v in views])
    return served


async def export_text(audit: AuditContext) -> str:
    lines = exporting.export_lines(audit, LedgerFilters(), "jsonl", READER)
    return "".join([chunk async for chunk in lines])


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    now = refuse_altered
    names = vars(querying)  # views_of's own name for the check, patched per state
    states = {"before": refuse_unwritten, "after": now}
    async with filled_audit(base, n) as audit:
        first = await export_text(audit)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        order = ["before", "after"]
        results: dict[str, dict[str, Any]] = {}
        for p in range(args.pairs):
            for state in order:
                names["refuse_altered"] = states[state]
                got = results.setdefault(state, {})
                try:
                    for step, call in (
                        ("page", lambda: pages(audit, n, args.pages)),
                        ("export", lambda: export_text(audit)),
                    ):
                        started, cpu = time.perf_counter(), time.process_time()
                        got[step] = await call()
                        wall = 1e3 * (time.perf_counter() - started)
                        spent = 1e3 * (time.process_time() - cpu)
                        figures.setdefault((step, state), []).append((wall, spent))
                finally:
                    names["refuse_altered"] = now
                print(
                    f"pair {p + 1} {state:6} page {figures[('page', state)][-1][1]:7.0f} ms cpu"
                    f" | export {figures[('export', state)][-1][1]:7.0f} ms cpu"
                    f" | load {os.getloadavg()[0]:.2f} | {time.strftime('%H:%M:%S')}",
                    flush=True,
                )
            if results["before"] != results["after"]:
                raise AssertionError(f"before and after differ in pair {p + 1}")
            if results["after"]["export"] != first:
                raise AssertionError("the export differs from the first one")
            order.reverse()
        print(f"{n:,} entries; {args.pages} pages of {PAGE}; median [min-max] of {args.pairs}:")
        print_pairs(figures, (("page", args.pages, "ms/page"), ("export", n / 1000, "µs/entry")))


def print_pairs(
    figures: dict[tuple[str, str], list[tuple[float, float]]],
    rows: Iterable[tuple[str, float, str]],
) -> None:
    """Each step's (wall, CPU) figures per state, divided by its ``per``: median [min-max]."""
    for step, per, unit in rows:
        cells = []
        for state in ("before", "after"):
            cpus = [c / per for _, c in figures[(step, state)]]
            walls = [w / per for w, _ in figures[(step, state)]]
            cells.append(
                f"{state} cpu {statistics.median(cpus):.3f} [{min(cpus):.3f}-{max(cpus):.3f}]"
                f" wall {statistics.median(walls):.3f} [{min(walls):.3f}-{max(walls):.3f}]"
            )
        print(f"  {step:7} {unit:9} " + " | ".join(cells), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--pages", type=int, default=200)
    return run_in_scratch(measure, parser.parse_args(), "bl-served-check-")


if __name__ == "__main__":
    raise SystemExit(main())
