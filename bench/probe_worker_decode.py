"""The followup worker's per-event decoding, timed stage by stage without a database (#12).

What :func:`~branchline_followup.entrypoints.worker.handle_batch` does to each message before
its batch's transaction (the plain envelope, its payload, the store position), and the client
journal's row (:func:`~branchline_followup.adapters.client_journal.journal_row`, the envelope
dumped again), over :mod:`bench.profile_followup`'s workload: CPU per event
(``time.process_time``, the collector off while timed, as a frozen worker's young collections
are rare), best, median and worst of ``--repetitions``, and the memory blocks a decoded event
keeps (tracemalloc). No PostgreSQL, no broker: the figures do not move with the machine's
other work as the whole worker's do.

    python -m bench.probe_worker_decode [--clients 600] [--workload service-loop] [--ratings]
                                        [--repetitions 7]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile_followup import workload  # noqa: E402
from bench.scratch import raw_messages  # noqa: E402
from branchline_followup.adapters.client_journal import journal_row  # noqa: E402
from branchline_shared.events.bounded import STORED  # noqa: E402
from branchline_shared.events.plain_messages import (  # noqa: E402
    _envelope,
    _payload,
    is_plain,
    plain_event,
    plain_payload,
)
from branchline_shared.events.upcasting import upcast  # noqa: E402
from branchline_shared.kafka.wire import source_position  # noqa: E402


def timed(step: Callable[[], object], events: int, repetitions: int) -> str:
    """``step``'s CPU per event: best..worst (median) of ``repetitions`` runs, in µs."""
    runs = []
    for _ in range(repetitions):
        gc.collect()
        gc.disable()
        try:
            started = time.process_time()
            step()
            runs.append(time.process_time() - started)
        finally:
            gc.enable()
    runs.sort()
    per = [r / events * 1e6 for r in runs]
    return f"{per[0]:.1f}..{per[-1]:.1f} (median {per[len(per) // 2]:.1f}) µs/event"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=600)
    parser.add_argument(
        "--workload", choices=("history", "service-loop", "registrations"), default="service-loop"
    )
    parser.add_argument("--ratings", action="store_true")
    parser.add_argument("--repetitions", type=int, default=7)
    args = parser.parse_args()
    raws = raw_messages(workload(args.workload, args.clients, ratings=args.ratings))
    values = [r.value for r in raws if r.value is not None]
    events = len(raws)
    envelope = _envelope()

    def decode_all() -> list[tuple[Any, Any, Any]]:
        decoded = []
        for raw in raws:
            event = plain_event(raw.value)
            if event is None:
                raise SystemExit("a message is not plain: this probe times the plain path only")
            decoded.append((event, plain_payload(event), source_position(raw.headers)))
        return decoded

    decoded = decode_all()
    stages: dict[str, Callable[[], object]] = {
        "decode (plain envelope, payload, position)": decode_all,
        "  is_plain": lambda: [is_plain(v) for v in values],
        "  envelope validate_json": lambda: [envelope.validate_json(v) for v in values],
        "  upcast": lambda: [upcast(e) for e, _, _ in decoded],
        "  payload validate_python": lambda: [
            v.validate_python(e.data, context={STORED: True})
            for e, _, _ in decoded
            if (v := _payload(e.type)) is not None
        ],
        "  source_position": lambda: [source_position(r.headers) for r in raws],
        "journal_row (envelope dumped)": lambda: [
            journal_row(e, p) for e, _, p in decoded if e.client_id is not None
        ],
    }
    print(f"{args.workload}, {args.clients} clients: {events} events")
    for name, step in stages.items():
        print(f"{name}: {timed(step, events, args.repetitions)}")
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = decode_all()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    blocks = sum(s.count_diff for s in after.compare_to(before, "filename"))
    print(f"memory blocks a decoded event keeps: {blocks / len(kept):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
