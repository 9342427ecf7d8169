"""Where an export's first line goes, and the export's time to first byte and in all, the
code of the tree against the export as it was before Round 16 (a copy below) (#12).

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries (as
``profile_export_start``), then, for a complete and a filtered export:

- the parts of the first line, medians of ``--repeat`` runs: the read recorded (an append),
  the check for an altered entry, the checkpoint signed, the first page read, its views, its
  lines formatted;
- ``--pairs`` alternated pairs (before, after, before, after ...) of ``--repeat`` exports each:
  the time to the 200 (``start_export``), to the first line, and to the manifest (the whole
  export, ``--whole`` only: at 1,000,000 entries one takes tens of seconds); the lines of both
  compared for equality (the manifest's ``exported_at`` is the clock's, held fixed).

    python -m bench.profile_export_first [--entries 300000] [--pairs 3] [--repeat 5] [--whole]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from bench.export_ledger import READER, T0, filled_audit, ms, spread  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.application import exporting  # noqa: E402
from branchline_audit.application.checkpointing import checkpoint_now  # noqa: E402
from branchline_audit.application.context import AuditContext, TrailReader  # noqa: E402
from branchline_audit.application.exporting import ExportSlots, start_export  # noqa: E402
from branchline_audit.application.querying import views_of  # noqa: E402
from branchline_audit.application.recording import record_read  # noqa: E402
from branchline_audit.domain.export import ExportContent, ExportWriter  # noqa: E402
from branchline_audit.domain.filters import LedgerFilters  # noqa: E402
from branchline_audit.domain.merkle import inclusion_proof  # noqa: E402
from branchline_audit.domain.subtrees import RecordingHasher  # noqa: E402
from branchline_audit.domain.verification import StoredCheckpoint  # noqa: E402

FILTERS = {
    "everything": LedgerFilters(),
    "a period (70 days)": LedgerFilters(occurred_from=T0, occurred_to=T0 + timedelta(days=70)),
}
PAGE_SIZE = 500


async def _before_body(
    audit: AuditContext,
    filters: LedgerFilters,
    content: ExportContent,
    reader: TrailReader,
    writer: ExportWriter,
    signed: list[StoredCheckpoint],
    first_page: int = PAGE_SIZE,
) -> AsyncIterator[str]:
    """``exporting._export_body`` as it was at main ``a9d5a4f`` (the baseline); with a
    smaller ``first_page`` it is the code after (kept to try other sizes)."""
    checkpoint = await checkpoint_now(audit)
    signed.append(checkpoint)
    size = checkpoint.tree_size
    complete = filters.is_empty()
    header = writer.header()
    if header:
        yield header
    after = 0
    limit = first_page
    while True:
        page = await audit.ledger.entries(filters, after_position=after, limit=limit, up_to=size)
        if not page:
            break
        proofs: dict[int, list[bytes]] = {}
        if not complete:
            recorder = RecordingHasher()
            for stored in page:
                inclusion_proof(stored.entry.position - 1, size, recorder)
            hasher = await audit.ledger.range_hasher(recorder.ranges)
            proofs = {
                s.entry.position: inclusion_proof(s.entry.position - 1, size, hasher) for s in page
            }
        chunk = []
        for view in await views_of(audit, page, reader):
            entry = view.stored.entry
            chunk.append(
                writer.entry_line(
                    position=entry.position,
                    appended_at=entry.appended_at,
                    prev_hash=entry.prev_hash,
                    hash=entry.hash,
                    event=view.event,
                    view=view.view.value,
                    proof=None if complete else proofs[entry.position],
                )
            )
        yield "".join(chunk)
        after = page[-1].entry.position
        if len(page) < limit:
            break
        limit = PAGE_SIZE
    yield writer.manifest_line(
        audit.signer,
        {**exporting._described(audit, filters, reader), **exporting._signed_tree(checkpoint)},
    )


async def parts(audit: AuditContext, filters: LedgerFilters, repeat: int) -> str:
    times: dict[str, list[float]] = {
        k: [] for k in ("read", "check", "checkpoint", "page", "views", "lines")
    }
    for _ in range(repeat):
        t = time.perf_counter()
        await record_read(audit, READER, "bench", filters.as_dict())
        times["read"].append(ms(t))
        t = time.perf_counter()
        await audit.ledger.first_altered(filters)
        times["check"].append(ms(t))
        t = time.perf_counter()
        checkpoint = await checkpoint_now(audit)
        times["checkpoint"].append(ms(t))
        t = time.perf_counter()
        page = await audit.ledger.entries(
            filters, after_position=0, limit=PAGE_SIZE, up_to=checkpoint.tree_size
        )
        times["page"].append(ms(t))
        t = time.perf_counter()
        views = await views_of(audit, page, READER)
        times["views"].append(ms(t))
        t = time.perf_counter()
        writer = ExportWriter("jsonl")
        for view in views:
            entry = view.stored.entry
            writer.entry_line(
                position=entry.position,
                appended_at=entry.appended_at,
                prev_hash=entry.prev_hash,
                hash=entry.hash,
                event=view.event,
                view=view.view.value,
                proof=None,
            )
        times["lines"].append(ms(t))
    return " | ".join(f"{k} {statistics.median(v):6.1f}" for k, v in times.items()) + " (ms)"


async def one_export(
    audit: AuditContext, filters: LedgerFilters, whole: bool
) -> tuple[float, float, float | None, list[str]]:
    started = time.perf_counter()
    export = await start_export(audit, ExportSlots(4), READER, filters, "jsonl", route="bench")
    to_start = ms(started)
    lines = [await anext(export.lines)]
    to_first = ms(started)
    if not whole:
        await export.lines.aclose()  # type: ignore[attr-defined]
        return to_start, to_first, None, lines
    async for line in export.lines:
        lines.append(line)
    return to_start, to_first, ms(started), lines


def _same_but_size(reference: list[str], lines: list[str], key: str) -> None:
    """Each export records its read, so a later one may hold more entries: its entry lines
    start with the reference's, byte for byte (the manifest is the last chunk)."""
    if not "".join(lines[:-1]).startswith("".join(reference[:-1])):
        raise AssertionError(f"the export's lines differ from the first export's ({key})")


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with filled_audit(base, args.entries) as audit:
        for name, filters in FILTERS.items():
            print(f"parts {name:18} {await parts(audit, filters, args.repeat)}", flush=True)
        bodies: dict[str, Any] = {"before": _before_body, "after": exporting._export_body}
        references: dict[str, list[str]] = {}
        for p in range(args.pairs):
            for state, body in bodies.items():
                exporting._export_body = body
                for name, filters in FILTERS.items():
                    starts, firsts, wholes = [], [], []
                    for _ in range(args.repeat):
                        s, f, w, lines = await one_export(audit, filters, args.whole)
                        if w is not None and filters.is_empty():
                            # The same bytes whatever the code (the clock is fixed; the
                            # tree grows by the read recorded, so a filtered export's
                            # proofs differ from one export to the next: compared in the
                            # tests, on one checkpoint).
                            reference = references.setdefault(name, lines)
                            _same_but_size(reference, lines, f"{name}, {state}")
                        starts.append(s)
                        firsts.append(f)
                        if w is not None:
                            wholes.append(w)
                    print(
                        f"pair {p + 1} {state:16} {name:18} started {spread(starts)}"
                        f" | first line {spread(firsts)}"
                        + (f" | whole {spread(wholes)}" if wholes else "")
                        + f" | load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        exporting._export_body = bodies["after"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=300_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--whole", action="store_true")
    return run_in_scratch(measure, parser.parse_args(), "bl-export-first-")


if __name__ == "__main__":
    raise SystemExit(main())
