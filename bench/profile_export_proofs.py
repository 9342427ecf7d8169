"""A filtered export's proofs shared per page against one proof at a time, alternated pairs
(#12, Round 17).

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries (as
``profile_export_first``: 2,000 clients, 40 branches), then ``--pairs`` alternated pairs
(before: ``_export_body`` as it was at main ``733d4c5``, the copy the byte-for-byte test
keeps; after: the code) of ``--repeat`` exports each, for a selective filter (one branch,
~2.5 % of the ledger, scattered) and a broad one (a period holding ~70 %, contiguous): the
time to the first line and to the manifest of ``export_lines`` (the read's record and the
altered-entry check of ``start_export`` come before it and did not change), and the two
exports compared byte for byte (same checkpoint: ``export_lines`` records nothing).

    python -m bench.profile_export_proofs [--entries 100000] [--pairs 3] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.audit.test_audit_export_shared_proofs import (  # noqa: E402
    _one_at_a_time_body,
)

from bench.export_ledger import READER, T0, filled_audit, ms, spread  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.application import exporting  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402


async def one_export(audit: AuditContext, filters: LedgerFilters) -> tuple[float, float, str]:
    started = time.perf_counter()
    lines = exporting.export_lines(audit, filters, "jsonl", READER)
    chunks = [await anext(lines)]
    first = ms(started)
    async for chunk in lines:
        chunks.append(chunk)
    return first, ms(started), "".join(chunks)


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    filters = {
        "selective (a branch)": LedgerFilters(branch_id="BR-7"),
        "broad (a period, 70%)": LedgerFilters(
            occurred_from=T0 + timedelta(minutes=n // 10),
            occurred_to=T0 + timedelta(minutes=n // 10 + n * 7 // 10),
        ),
    }
    async with filled_audit(base, args.entries) as audit:
        bodies: dict[str, Any] = {
            "before": _one_at_a_time_body,
            "after": exporting._export_body,
        }
        for p in range(args.pairs):
            made: dict[str, dict[str, str]] = {}
            for state, body in bodies.items():
                exporting._export_body = body
                for name, chosen in filters.items():
                    firsts, wholes = [], []
                    for _ in range(args.repeat):
                        f, w, text = await one_export(audit, chosen)
                        firsts.append(f)
                        wholes.append(w)
                        made.setdefault(name, {})[state] = text
                    print(
                        f"pair {p + 1} {state:6} {name:22} {text.count(chr(10)) - 1:6} "
                        f"entries | first line {spread(firsts)} | whole {spread(wholes)}"
                        f" | load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
            for name, texts in made.items():
                if texts["before"] != texts["after"]:
                    raise AssertionError(f"the exports differ ({name}, pair {p + 1})")
        exporting._export_body = bodies["after"]
        print("the exports of each pair are the same bytes", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1)
    return run_in_scratch(measure, parser.parse_args(), "bl-export-proofs-")


if __name__ == "__main__":
    raise SystemExit(main())
