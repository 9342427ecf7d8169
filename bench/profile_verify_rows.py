"""Ledger verify's Python per entry, without a database (#12).

Builds ``--events`` stored rows in memory as the verifier's scan hands them (the event only
inside its canonical bytes, the times in PostgreSQL's binary form, the event id as text;
``profile_ledger``'s envelopes), a checkpoint every ``--checkpoints`` entries, then feeds them
``--repeat`` times, in pages of 5,000 as the scan reads them, to the one pass
(``LedgerAuditor.feed_rows``) and to a segment's auditor over the ledger's second half
(``SegmentAuditor``, as a verifying process does), and prints the CPU per entry of each
(``time.thread_time``: this thread only, so a loaded machine's other work does not enter,
though its cache and frequency effects do).

    python -m bench.profile_verify_rows [--events 200000] [--checkpoints 1000] [--repeat 3]

Run it with another tree's ``services/audit`` first on ``PYTHONPATH`` to compare the two
(alternate them: A B A B ...). Each verdict must be good and cover every entry.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import branchline_measures  # noqa: E402
from branchline_audit.domain.canonical import (  # noqa: E402
    GENESIS_PREV_HASH,
    chain_hash,
    entry_encoder,
    format_appended_at,
)
from branchline_audit.domain.merkle import CompactRange, leaf_hash  # noqa: E402
from branchline_audit.domain.verification import (  # noqa: E402
    LedgerAuditor,
    Segment,
    SegmentAuditor,
    StoredCheckpoint,
)

PAGE = 5000
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _binary(moment: datetime) -> bytes:
    return ((moment - _PG_EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True)


def build(events: int, every: int) -> tuple[list[tuple[Any, ...]], list[StoredCheckpoint]]:
    run, now = uuid.uuid4().hex[:8], datetime.now(UTC)
    appended = datetime.now(UTC)
    encode = entry_encoder(format_appended_at(appended))
    appended_binary = _binary(appended)
    rows: list[tuple[Any, ...]] = []
    checkpoints: list[StoredCheckpoint] = []
    tree = CompactRange()
    prev = GENESIS_PREV_HASH
    for i in range(events):
        event = branchline_measures.recorded(i, run, now).model_dump(mode="json")
        position = i + 1
        canonical = encode(position, event)
        digest = chain_hash(prev, canonical)
        rows.append(
            (
                position,
                prev,
                digest,
                canonical,
                None,  # the event: inside its canonical bytes only (migration 006)
                appended_binary,
                None,
                event["event_id"],
                event["type"],
                event["client_id"],
                event["actor"]["id"],
                event["branch_id"],
                _binary(datetime.fromisoformat(event["occurred_at"])),
            )
        )
        if every:
            tree.append(leaf_hash(digest))
            if position % every == 0:
                checkpoints.append(StoredCheckpoint(position, tree.root(), ""))
        prev = digest
    return rows, checkpoints


def one_pass(rows: list[tuple[Any, ...]], checkpoints: list[StoredCheckpoint]) -> float:
    auditor = LedgerAuditor(checkpoints, verifier=None, origin="")
    started = time.thread_time()
    for first in range(0, len(rows), PAGE):
        auditor.feed_rows(rows[first : first + PAGE])
    verdict = auditor.verdict()
    spent = time.thread_time() - started
    if not verdict.ok or verdict.entries != len(rows):
        raise AssertionError(f"the ledger did not verify: {verdict}")
    return spent / len(rows)


def second_half(rows: list[tuple[Any, ...]], checkpoints: list[StoredCheckpoint]) -> float:
    low = len(rows) // 2
    auditor = SegmentAuditor(Segment(low, None), frozenset(c.tree_size for c in checkpoints))
    mine = rows[low:]
    started = time.thread_time()
    for first in range(0, len(mine), PAGE):
        auditor.feed_rows(mine[first : first + PAGE])
    result = auditor.result()
    spent = time.thread_time() - started
    if result.rows != len(mine) or any(row < 0 for row, _, _ in result.events):
        raise AssertionError("the segment did not verify")
    return spent / len(mine)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows, checkpoints = build(args.events, args.checkpoints)
    gc.collect()
    gc.freeze()  # the rows are not the verifier's garbage
    whole, segment = [], []
    for _ in range(args.repeat):
        whole.append(one_pass(rows, checkpoints))
        segment.append(second_half(rows, checkpoints))
    print(
        f"{args.events:,} entries, {len(checkpoints)} checkpoints, "
        f"from {sys.modules['branchline_audit'].__file__}\n"
        f"  one pass: {1e6 * statistics.median(whole):.2f} us/entry "
        f"({', '.join(f'{1e6 * s:.2f}' for s in whole)})\n"
        f"  segment:  {1e6 * statistics.median(segment):.2f} us/entry "
        f"({', '.join(f'{1e6 * s:.2f}' for s in segment)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
