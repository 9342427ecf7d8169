"""An export's reading of its rows and ``verify-export``'s canonical check, before and after
Round 18, alternated pairs in one process (#12).

Starts an embedded PostgreSQL only (no stack lock needed), fills a ledger with ``--entries``
entries (``bench/export_ledger.py``), then ``--pairs`` alternated pairs (A B B A ...) of:

- ``read``: the ledger's rows of a whole export (read once, kept) turned into entries, by the
  reader before (:func:`reference_stored`, Round 17's code, kept here) and the reader now
  (``PostgresLedger``'s page reader); the entries compared;
- ``export``: a whole jsonl export (``export_lines``) with either reader patched in, the two
  exports compared byte for byte;
- ``verify jsonl`` / ``verify csv``: ``verify_export`` of a whole export of each content,
  before (``export._reference_entry``, the line put through ``rfc8785``) and after
  (``export._read_entry``); the verdicts compared.

Each figure is the process's CPU time (and the wall time) of the step; ``--profile`` runs
each "after" step once more under cProfile and prints its top functions.

    python -m bench.profile_export_read [--entries 100000] [--pairs 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.export_ledger import READER, filled_audit  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters import ledger as ledger_module  # noqa: E402
from branchline_audit.application import exporting  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.domain import export as export_module  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402
from branchline_audit.domain.verification import (  # noqa: E402
    ROW_FIELDS,
    StoredEntry,
    pg_time,
    stored_entry,
)


def reference_stored(row: Any) -> StoredEntry:
    """Round 17's reader of one row (``adapters/ledger.py`` ``_stored``), kept to compare."""
    stored = stored_entry([row[name] for name in ROW_FIELDS])
    if row["unwritten"] is not None:
        return replace(stored, unwritten=row["unwritten"])
    if type(stored.pruned_at) is bytes:
        return replace(stored, pruned_at=pg_time(stored.pruned_at))
    return stored


def reference_page(rows: Sequence[Any]) -> list[StoredEntry]:
    return [reference_stored(r) for r in rows]


def timed(step: Callable[[], Any]) -> tuple[float, float, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    result = step()
    return (
        1e3 * (time.perf_counter() - started),
        1e3 * (time.process_time() - cpu),
        result,
    )


async def export_text(audit: AuditContext, content: Any) -> str:
    lines = exporting.export_lines(audit, LedgerFilters(), content, READER)
    return "".join([chunk async for chunk in lines])


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    async with filled_audit(base, n) as audit:
        sql, params = ledger_module.entries_statement(LedgerFilters())
        pool = audit.ledger.pool  # type: ignore[attr-defined]
        rows = await pool.fetch(sql, 0, n, 2**62, *params)
        read_now = ledger_module.stored_page
        texts = {c: await export_text(audit, c) for c in ("jsonl", "csv")}
        folder = Path(tempfile.mkdtemp(dir=base))
        paths = {}
        for content, text in texts.items():
            paths[content] = folder / f"export.{content}"
            paths[content].write_text(text, encoding="utf-8")
        verifier = audit.signer.verifier()
        entry_now = export_module._read_entry

        async def export_with(reader: Any) -> str:
            ledger_module.stored_page = reader
            try:
                return await export_text(audit, "jsonl")
            finally:
                ledger_module.stored_page = read_now

        def verify_with(reader: Any, content: str) -> Any:
            export_module._read_entry = reader
            try:
                return export_module.verify_export(
                    export_module.file_lines(str(paths[content])), verifier
                )
            finally:
                export_module._read_entry = entry_now

        states = {
            "before": (reference_page, export_module._reference_entry),
            "after": (read_now, entry_now),
        }
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        order = ["before", "after"]
        for p in range(args.pairs):
            results: dict[str, dict[str, Any]] = {}
            for state in order:
                reader, entry_reader = states[state]
                got = results.setdefault(state, {})
                wall, cpu, got["read"] = timed(lambda r=reader: r(rows))  # type: ignore[misc]
                figures.setdefault(("read", state), []).append((wall, cpu))
                started, cpu0 = time.perf_counter(), time.process_time()
                got["export"] = await export_with(reader)
                figures.setdefault(("export jsonl", state), []).append(
                    (1e3 * (time.perf_counter() - started), 1e3 * (time.process_time() - cpu0))
                )
                for content in ("jsonl", "csv"):
                    wall, cpu, got[content] = timed(
                        lambda e=entry_reader, c=content: verify_with(e, c)  # type: ignore[misc]
                    )
                    figures.setdefault((f"verify {content}", state), []).append((wall, cpu))
                print(
                    f"pair {p + 1} {state:6} "
                    + " | ".join(
                        f"{step} {figures[(step, state)][-1][1]:8.0f} ms cpu"
                        for step in ("read", "export jsonl", "verify jsonl", "verify csv")
                    )
                    + f" | load {os.getloadavg()[0]:.2f} | {time.strftime('%H:%M:%S')}",
                    flush=True,
                )
            if results["before"] != results["after"]:
                differing = [
                    k for k in results["before"] if results["before"][k] != results["after"][k]
                ]
                raise AssertionError(f"before and after differ in pair {p + 1}: {differing}")
            if results["after"]["export"] != texts["jsonl"]:
                raise AssertionError("the export differs from the first one")
            if not (results["after"]["jsonl"].ok and results["after"]["csv"].ok):
                raise AssertionError(f"an export did not verify: {results['after']}")
            order.reverse()
        print(f"{n:,} entries; CPU µs per entry, median [range] of {args.pairs} pairs:")
        for step in ("read", "export jsonl", "verify jsonl", "verify csv"):
            cells = []
            for state in ("before", "after"):
                cpus = [1e3 * c / n for _, c in figures[(step, state)]]
                walls = [w for w, _ in figures[(step, state)]]
                cells.append(
                    f"{state} {statistics.median(cpus):6.1f} [{min(cpus):.1f}-{max(cpus):.1f}] "
                    f"(wall {statistics.median(walls):7.0f} ms)"
                )
            ratios = [
                a[1] / b[1]
                for a, b in zip(figures[(step, "after")], figures[(step, "before")], strict=True)
            ]
            print(
                f"  {step:13} " + " | ".join(cells)
                + " | after/before " + ", ".join(f"{r:.2f}" for r in ratios),
                flush=True,
            )  # fmt: skip
        if args.profile:
            for name, call in (
                ("read", lambda: read_now(rows)),
                ("verify jsonl", lambda: verify_with(entry_now, "jsonl")),
                ("verify csv", lambda: verify_with(entry_now, "csv")),
            ):
                profiler = cProfile.Profile()
                profiler.runcall(call)
                print(f"--- {name} (after), cProfile, top 15 by internal time")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    return run_in_scratch(measure, parser.parse_args(), "bl-export-read-")


if __name__ == "__main__":
    raise SystemExit(main())
