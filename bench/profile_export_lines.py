"""An export's entry lines put together from their parts against the whole entry object
through the canonicaliser, alternated pairs (#12, Round 17).

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries (as
``profile_export_proofs``: 2,000 clients, 40 branches), then ``--pairs`` alternated pairs
(before: ``ExportWriter.reference_entry_line``, the format's definition and the code before;
after: ``ExportWriter.entry_line``) of ``--repeat`` exports each: a whole export (jsonl and
csv) and a broad filtered one (a period holding ~70 %, with proofs): the time to the first
line and to the manifest of ``export_lines``, the process's CPU time, and the two exports
compared byte for byte (same checkpoint: ``export_lines`` records nothing).

    python -m bench.profile_export_lines [--entries 100000] [--pairs 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
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


from bench.export_ledger import READER, T0, filled_audit, ms, spread  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.application import exporting  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.domain.export import ExportWriter  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402


async def one_export(
    audit: AuditContext, filters: LedgerFilters, content: Any
) -> tuple[float, float, float, str]:
    started, cpu = time.perf_counter(), time.process_time()
    lines = exporting.export_lines(audit, filters, content, READER)
    chunks = [await anext(lines)]
    first = ms(started)
    async for chunk in lines:
        chunks.append(chunk)
    return first, ms(started), 1e3 * (time.process_time() - cpu), "".join(chunks)


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    broad = LedgerFilters(
        occurred_from=T0 + timedelta(minutes=n // 10),
        occurred_to=T0 + timedelta(minutes=n // 10 + n * 7 // 10),
    )
    filters: dict[str, tuple[LedgerFilters, Any]] = {
        "whole jsonl": (LedgerFilters(), "jsonl"),
        "whole csv": (LedgerFilters(), "csv"),
        "broad jsonl (70%)": (broad, "jsonl"),
    }
    async with filled_audit(base, args.entries) as audit:
        fast = ExportWriter.entry_line
        lines: dict[str, Any] = {"before": ExportWriter.reference_entry_line, "after": fast}
        for p in range(args.pairs):
            made: dict[str, dict[str, str]] = {}
            for state, line in lines.items():
                ExportWriter.entry_line = line  # type: ignore[method-assign]
                for name, (chosen, content) in filters.items():
                    firsts, wholes, cpus = [], [], []
                    for _ in range(args.repeat):
                        f, w, c, text = await one_export(audit, chosen, content)
                        firsts.append(f)
                        wholes.append(w)
                        cpus.append(c)
                        made.setdefault(name, {})[state] = text
                    count = text.count(chr(10)) - 1 - (content == "csv")
                    print(
                        f"pair {p + 1} {state:6} {name:18} {count:6} entries | first line "
                        f"{spread(firsts)} | whole {spread(wholes)} | cpu {spread(cpus)} "
                        f"({1e3 * statistics.median(cpus) / count:.1f} us/entry)"
                        f" | load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
            for name, texts in made.items():
                if texts["before"] != texts["after"]:
                    raise AssertionError(f"the exports differ ({name}, pair {p + 1})")
        ExportWriter.entry_line = fast  # type: ignore[method-assign]
        print("the exports of each pair are the same bytes", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    return run_in_scratch(measure, parser.parse_args(), "bl-export-lines-")


if __name__ == "__main__":
    raise SystemExit(main())
