"""The trail readers' links beside what they serve (Round 27, D-11, #12), before and after,
alternated pairs in one process.

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries
(``bench/export_ledger.py``: 2,000 clients), then ``--pairs`` alternated pairs (A B B A ...)
of:

- ``page``: ``--pages`` pages of 100 entries as ``GET /v1/audit/entries`` reads them (the
  ledger's page read and ``views_of``), spread over the ledger;
- ``client``: ``--pages`` pages of one client each (about 50 entries, none beside another:
  every entry's two neighbours are read), as ``GET /v1/audit/entries?client_id=`` reads them;
- ``export``: a whole jsonl export (``export_lines``).

"before" is Round 26's reads, put back for the step: the page's SQL without the neighbours'
links, Round 26's ``reader_entries`` and ``ServedCheck`` (the module as of ``--before``, a
commit, loaded from git); "after" the code now. The answers of the two are compared equal in
every pair. Each figure is the process's CPU time (and wall time) of the step: a page's per
page, an export's per entry.

    python -m bench.profile_trail_links [--entries 100000] [--pairs 4] [--pages 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.export_ledger import READER, filled_audit  # noqa: E402
from bench.profile_served_check import export_text, print_pairs  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters import ledger as ledger_module  # noqa: E402
from branchline_audit.application import exporting, querying  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402

PAGE = 100
VERIFICATION = "services/audit/branchline_audit/domain/verification.py"


def module_at(commit: str, folder: Path) -> Any:
    """``domain/verification.py`` as of ``commit``, loaded as a module of its own (its file
    written in ``folder``, the run's scratch folder)."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{VERIFICATION}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = folder / "verification_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("verification_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["verification_before"] = module
    spec.loader.exec_module(module)
    return module


def statement_before(filters: LedgerFilters) -> tuple[str, list[Any]]:
    """Round 26's page SQL (``entries_statement`` without ``with_neighbours``)."""
    where, params = ledger_module._where(filters, 4)
    sql = (
        f"SELECT {ledger_module._READ_COLUMNS} FROM audit_ledger "
        f"WHERE position > $1 AND position <= $3 AND {where} ORDER BY position LIMIT $2"
    )
    return sql, params


async def pages(audit: AuditContext, n: int, count: int, *, clients: bool) -> list[Any]:
    served = []
    step = max(1, (n - PAGE) // count)
    for i in range(count):
        filters = LedgerFilters(client_id=f"C-{i * 7 % 2000}") if clients else LedgerFilters()
        after = 0 if clients else i * step
        page = await audit.ledger.entries(filters, after_position=after, limit=PAGE)
        views = await querying.views_of(audit, page, READER)
        served.append([(v.stored.entry.position, v.event, v.view) for v in views])
    return served


async def unchecked(*_: Any) -> None:
    """A check the state "before" did not make (no refusal)."""
    return None


def patched(before: Any) -> list[tuple[Any, str, Any, Any]]:
    """(namespace, name, before's, now's) for every name the two states differ in."""
    return [
        (ledger_module, "entries_statement", statement_before, ledger_module.entries_statement),
        (
            ledger_module,
            "reader_entries",
            before.reader_entries,
            vars(ledger_module)["reader_entries"],
        ),
        (querying, "refuse_altered", before.refuse_altered, vars(querying)["refuse_altered"]),
        (exporting, "ServedCheck", before.ServedCheck, vars(exporting)["ServedCheck"]),
        # Round 28's check against a signed checkpoint reads a column the older statement
        # does not return: "before" is the code before both
        (querying, "unsigned_history", unchecked, vars(querying)["unsigned_history"]),
        (exporting, "unsigned_history", unchecked, vars(exporting)["unsigned_history"]),
    ]


Step = tuple[str, Callable[[AuditContext], Awaitable[Any]]]
Swap = tuple[Any, str, Any, Any]


async def measure_pairs(
    audit: AuditContext,
    steps: Sequence[Step],
    swaps: Sequence[Swap],
    n: int,
    count: int,
    pairs: int,
) -> None:
    """``pairs`` pairs (A B B A ...) of ``steps``, "before" with ``swaps`` undone: their answers
    compared in each pair, each step's CPU printed (shared with ``profile_signed_reads``)."""
    figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
    order = ["before", "after"]
    for p in range(pairs):
        results: dict[str, dict[str, Any]] = {}
        for state in order:
            for namespace, name, old, _ in swaps:
                if state == "before":
                    setattr(namespace, name, old)
            got = results.setdefault(state, {})
            try:
                for step, call in steps:
                    started, cpu = time.perf_counter(), time.process_time()
                    got[step] = await call(audit)
                    wall = 1e3 * (time.perf_counter() - started)
                    spent = 1e3 * (time.process_time() - cpu)
                    figures.setdefault((step, state), []).append((wall, spent))
            finally:
                for namespace, name, _, now in swaps:
                    setattr(namespace, name, now)
            print(
                f"pair {p + 1} {state:6} "
                + " | ".join(f"{s} {figures[(s, state)][-1][1]:7.0f} ms cpu" for s, _ in steps)
                + f" | load {os.getloadavg()[0]:.2f} | {time.strftime('%H:%M:%S')}",
                flush=True,
            )
        if results["before"] != results["after"]:
            raise AssertionError(f"before and after differ in pair {p + 1}")
        order.reverse()
    print(f"{n:,} entries; {count} pages of {PAGE}; median [min-max] of {pairs}:")
    print_pairs(
        figures,
        (
            ("page", count, "ms/page"),
            ("client", count, "ms/page"),
            ("export", n / 1000, "µs/entry"),
        ),
    )


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    swaps = patched(module_at(args.before, base))
    steps = (
        ("page", lambda a: pages(a, n, args.pages, clients=False)),
        ("client", lambda a: pages(a, n, args.pages, clients=True)),
        ("export", export_text),
    )
    async with filled_audit(base, n) as audit:
        await measure_pairs(audit, steps, swaps, n, args.pages, args.pairs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--before", default="4d6dbcc8", help="the commit of the code before")
    return run_in_scratch(measure, parser.parse_args(), "bl-trail-links-")


if __name__ == "__main__":
    raise SystemExit(main())
