"""Where the followup worker's steady lag comes from: its consumer's rounds, timed (#12).

Runs :mod:`bench.followup_steady` (its arguments, passed through) with the followup worker's
consumer loop instrumented: each round's ``getmany`` (how long it waited, the records it got,
how many were followup's own first copies, skipped unread), the handling of the round and its
offset commit. Afterwards it prints the loop's time per part (rounds with intake events and
rounds of own copies only apart), the commit's duration, and for each intake event its lag
from its record's timestamp (the producer's send) to the end of the handling that applied it,
split into:

- ``busy``: the record was at the broker while the loop was not fetching (handling or
  committing an earlier round, or its starved-round check): queueing in the worker, split by
  what the loop was doing (``busy in commit`` / ``busy in handle``);
- ``fetch``: from the later of its send and the round's start to ``getmany``'s return (the
  broker's fetch and aiokafka's prefetch);
- ``apply``: ``getmany``'s return to the end of the handling (the batch's transaction and
  commit in PostgreSQL).

The visibility poll that follows (``followup_steady``'s own figure) comes after ``apply``.

``--coalesce own|all`` (an experiment, not the product's behaviour): offsets are committed at
most every ``--coalesce-ms`` (200) instead of after each round: ``own``, only a round of own
copies only waits (its offsets go with the next commit); ``all``, every round. What deferring
the commit could buy at most, before writing it into the consumer.

    python -m bench.probe_followup_rounds [--coalesce own|all] [--coalesce-ms 200]
                                          [followup_steady's arguments]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer  # noqa: E402

from bench import followup_steady  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from branchline_followup.entrypoints.worker import CONSUMER  # noqa: E402
from branchline_shared.kafka import consuming  # noqa: E402
from branchline_shared.kafka.wire import is_first_publication_from  # noqa: E402

# One entry per round of the worker's loop: (kind, start, end) intervals on time.time().
INTERVALS: list[tuple[str, float, float]] = []
# (record timestamp s, getmany start, getmany end, handle end) per intake record
EVENTS: list[tuple[float, float, float, float]] = []
ROUNDS: list[dict[str, Any]] = []
SENT: list[float] = []  # the offset commits sent to the broker (their durations)
_pending: dict[str, Any] = {}


def _is_worker(consumer: AIOKafkaConsumer) -> bool:
    return getattr(consumer._client, "_client_id", None) == CONSUMER


def install(coalesce: str = "off", coalesce_ms: float = 200) -> None:
    getmany = AIOKafkaConsumer.getmany
    process = consuming.BatchConsumer._process
    commit = consuming.BatchConsumer._commit

    async def timed_getmany(self: AIOKafkaConsumer, *a: Any, **kw: Any) -> Any:
        if not _is_worker(self):
            return await getmany(self, *a, **kw)
        t0 = time.time()
        batches = await getmany(self, *a, **kw)
        t1 = time.time()
        INTERVALS.append(("getmany", t0, t1))
        records = [r for rs in batches.values() for r in rs]
        own = sum(1 for r in records if is_first_publication_from(r.headers or (), b"followup"))
        _pending.clear()
        _pending.update(
            t0=t0,
            t1=t1,
            records=len(records),
            own=own,
            stamps=[
                r.timestamp / 1000
                for r in records
                if not is_first_publication_from(r.headers or (), b"followup")
            ],
        )
        return batches

    async def timed_process(self: consuming.BatchConsumer, records: Any) -> None:
        if self.name != CONSUMER:
            return await process(self, records)
        t0 = time.time()
        await process(self, records)
        t1 = time.time()
        kind = "handle own-only" if _pending.get("own") == _pending.get("records") else "handle"
        INTERVALS.append((kind, t0, t1))
        for stamp in _pending.get("stamps", ()):
            EVENTS.append((stamp, _pending["t0"], _pending["t1"], t1))
        _pending["handled"] = t1 - t0

    deferred: dict[Any, int] = {}
    last = [0.0]

    async def timed_commit(self: consuming.BatchConsumer, consumer: Any, offsets: Any) -> None:
        if self.name != CONSUMER:
            return await commit(self, consumer, offsets)
        own_only = _pending.get("own") == _pending.get("records")
        t0 = time.time()
        deferred.update(offsets)
        may_wait = coalesce == "all" or (coalesce == "own" and own_only)
        if not may_wait or t0 - last[0] >= coalesce_ms / 1000:
            await commit(self, consumer, dict(deferred))
            deferred.clear()
            last[0] = time.time()
            SENT.append(last[0] - t0)
        t1 = time.time()
        INTERVALS.append(("commit own-only" if own_only else "commit", t0, t1))
        ROUNDS.append(
            {
                "records": _pending.get("records", 0),
                "own": _pending.get("own", 0),
                "handled": _pending.get("handled", 0.0),
                "commit": t1 - t0,
            }
        )

    AIOKafkaConsumer.getmany = timed_getmany
    consuming.BatchConsumer._process = timed_process  # type: ignore[method-assign]
    consuming.BatchConsumer._commit = timed_commit  # type: ignore[method-assign]


def _ms(values: list[float], q: float) -> str:
    return f"{1000 * percentile(sorted(values), q):.1f}" if values else "-"


def overlap(
    a0: float, a1: float, intervals: list[tuple[str, float, float]], kinds: tuple[str, ...]
) -> float:
    """Seconds of ``[a0, a1]`` the loop spent in intervals of ``kinds``."""
    total = 0.0
    for kind, s, e in intervals:
        if kind in kinds and e > a0 and s < a1:
            total += min(e, a1) - max(s, a0)
    return total


def split_lag(
    stamp: float, g0: float, g1: float, done: float, intervals: list[tuple[str, float, float]]
) -> tuple[float, float, float, float, float]:
    """An intake record's send -> applied, split: (busy, of it in commits, of it in handling,
    fetch, apply); busy + fetch + apply is the whole when the record was sent before ``g1``."""
    busy = max(0.0, g0 - stamp)
    in_commit = overlap(stamp, g0, intervals, ("commit", "commit own-only"))
    in_handle = overlap(stamp, g0, intervals, ("handle", "handle own-only"))
    return busy, in_commit, in_handle, g1 - max(stamp, g0), done - g1


def report() -> None:
    if not INTERVALS:
        print("no rounds recorded")
        return
    span = INTERVALS[-1][2] - INTERVALS[0][1]
    by_kind: dict[str, list[float]] = {}
    for kind, s, e in INTERVALS:
        by_kind.setdefault(kind, []).append(e - s)
    print(f"worker loop over {span:.1f} s, {len(ROUNDS)} rounds with records:")
    for kind, values in sorted(by_kind.items()):
        print(
            f"  {kind:16s} n {len(values):6d}  total {sum(values):7.2f} s  "
            f"p50 {_ms(values, 0.5)} ms  p99 {_ms(values, 0.99)} ms  max {_ms(values, 1.0)} ms"
        )
    own_only = [r for r in ROUNDS if r["own"] == r["records"]]
    print(f"  offset commits sent {len(SENT)}, total {sum(SENT):.2f} s")
    records = sum(r["records"] for r in ROUNDS)
    share = sum(r["own"] for r in ROUNDS) / max(1, records)
    sizes = sorted(r["records"] for r in ROUNDS)
    print(
        f"  rounds of own copies only: {len(own_only)} of {len(ROUNDS)}; records per round "
        f"p50 {percentile(sizes, 0.5):.0f}, own copies among them {share:.0%}"
    )
    if not EVENTS:
        return
    busy: list[float] = []
    busy_commit: list[float] = []
    busy_handle: list[float] = []
    fetch: list[float] = []
    apply_: list[float] = []
    total: list[float] = []
    for stamp, g0, g1, done in EVENTS:
        parts = split_lag(stamp, g0, g1, done, INTERVALS)
        for values, part in zip(
            (busy, busy_commit, busy_handle, fetch, apply_), parts, strict=True
        ):
            values.append(part)
        total.append(done - stamp)
    order = sorted(range(len(total)), key=total.__getitem__)
    tail = order[int(0.98 * len(order)) :]

    def mean_ms(values: list[float], idx: list[int]) -> str:
        return f"{1000 * sum(values[i] for i in idx) / max(1, len(idx)):.1f}"

    every = list(range(len(total)))
    print(
        f"intake events {len(EVENTS)}: send -> applied p50 {_ms(total, 0.5)} p99 "
        f"{_ms(total, 0.99)} ms"
    )
    print(
        "  mean ms (all / slowest 2 %): "
        f"busy {mean_ms(busy, every)} / {mean_ms(busy, tail)} "
        f"[in commit {mean_ms(busy_commit, every)} / {mean_ms(busy_commit, tail)}, "
        f"in handle {mean_ms(busy_handle, every)} / {mean_ms(busy_handle, tail)}], "
        f"fetch {mean_ms(fetch, every)} / {mean_ms(fetch, tail)}, "
        f"apply {mean_ms(apply_, every)} / {mean_ms(apply_, tail)}"
    )
    print(f"  p99 ms: busy {_ms(busy, 0.99)}, fetch {_ms(fetch, 0.99)}, apply {_ms(apply_, 0.99)}")


def main() -> int:
    coalesce, coalesce_ms = "off", 200.0
    argv = sys.argv[1:]
    if "--coalesce" in argv:
        i = argv.index("--coalesce")
        coalesce = argv[i + 1]
        del argv[i : i + 2]
    if "--coalesce-ms" in argv:
        i = argv.index("--coalesce-ms")
        coalesce_ms = float(argv[i + 1])
        del argv[i : i + 2]
    if coalesce not in ("off", "own", "all"):
        raise SystemExit("--coalesce: off, own or all")
    sys.argv[1:] = argv
    print(f"commits: coalesce {coalesce} ({coalesce_ms:.0f} ms)")
    install(coalesce, coalesce_ms)
    try:
        return followup_steady.main()
    finally:
        report()


if __name__ == "__main__":
    sys.exit(main())
