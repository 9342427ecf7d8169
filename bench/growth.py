"""The benchmark's growth part alone (#12, docs/performance.md Round 25): a stack of its own
filled step by step, each step measured as ``make bench`` measures it (bench/scale.py's
``growth_step``: the fill, the consumers' catch-up, the batch rate, intake's CPU per single
POST and every component's resident memory at rest), without the rest of the benchmark
(about an hour with ``--profile full``; this is the growth part's 20 minutes or so at 1M).
The rebuild the benchmark times at its first step is not run here.

After each step's benchmark reading, ``--reads`` more readings of the batch rate follow on the
same stack, alternately with the consumers running and paused (SIGSTOP), each with what else
the server did meanwhile: the autovacuum workers seen (sampled every 0.1 s), checkpoints
begun, WAL written, and the consumers' CPU. They tell what the benchmark's one reading of
three batches stood beside; they are printed and stored, not part of the benchmark's table.

    python -m bench.growth [--steps 10000,100000,1000000] [--sample 1280] [--reads 4]
                           [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import branchline_measures, scale  # noqa: E402
from bench.growth_pairs import CONSUMERS  # noqa: E402
from bench.stack import BenchStack, running_stack  # noqa: E402

T = TypeVar("T")

REBUILD_LIMIT_S = 900.0

DEFAULT_STEPS = (10_000, 100_000, 1_000_000)

AUTOVACUUM = (
    "SELECT datname, query FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
    "AND query <> ''"
)
SERVER_COUNTERS = (
    "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS wal, "
    "(SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints, "
    "(SELECT num_done FROM pg_stat_checkpointer) AS checkpoints_done, "
    "extract(epoch FROM now() - (pg_control_checkpoint()).checkpoint_time) AS since_checkpoint, "
    "(SELECT coalesce(sum(fsyncs), 0) FROM pg_stat_io WHERE object = 'wal') AS wal_fsyncs, "
    "(SELECT coalesce(sum(fsync_time), 0) FROM pg_stat_io WHERE object = 'wal') AS wal_fsync_ms"
)


def dirty_mb() -> float:
    """The operating system's dirty and under-writeback page cache (/proc/meminfo), MB: what
    a fill leaves the disk still to write when a reading begins."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return 0.0
    kb = sum(int(line.split()[1]) for line in lines if line.startswith(("Dirty:", "Writeback:")))
    return kb / 1024


def steps_of(text: str) -> tuple[int, ...]:
    """``10000,100000`` (or ``10k,100k,1M``): increasing, positive event counts."""
    steps: list[int] = []
    for part in text.split(","):
        part = part.strip().lower()
        scale_by = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        number = part[:-1] if scale_by > 1 else part
        try:
            value = int(number) * scale_by
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of events: {part!r}") from None
        if value <= 0 or (steps and value <= steps[-1]):
            raise argparse.ArgumentTypeError(f"steps must be positive and increasing: {text!r}")
        steps.append(value)
    return tuple(steps)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps",
        type=steps_of,
        default=DEFAULT_STEPS,
        help="events the stack holds at each reading, increasing (default 10k,100k,1M)",
    )
    parser.add_argument(
        "--sample", type=int, default=1280, help="single POSTs per reading (as the benchmark)"
    )
    parser.add_argument(
        "--reads",
        type=int,
        default=4,
        help="further batch-rate readings per step, running and paused alternately (0: none)",
    )
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="after the first step, the rebuild `make bench` times there (not timed here)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "growth.json")
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = arguments()
    args = parser.parse_args(argv)
    if args.sample <= 0:
        parser.error("--sample must be at least 1")
    if args.reads < 0:
        parser.error("--reads must be 0 or more")
    return args


async def _server(stack: BenchStack, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(stack.admin_url)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _watch_autovacuum(stack: BenchStack, seen: set[str], stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(stack.admin_url)
    try:
        while not stop.is_set():
            for row in await conn.fetch(AUTOVACUUM):
                seen.add(f"{row['datname']}: {row['query']}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await stop.wait()
    finally:
        await conn.close()


async def beside(
    stack: BenchStack, mode: str, reading: Callable[[], Awaitable[T]]
) -> tuple[T, dict[str, Any]]:
    """``reading`` run with the consumers ``running`` or ``paused``, and what the server did
    meanwhile: the autovacuum workers seen, checkpoints begun and ended, WAL written, how
    long ago the last checkpoint ended when it began, the consumers' CPU."""
    dirty = dirty_mb()
    before = (await _server(stack, SERVER_COUNTERS))[0]
    consumers_cpu = sum(stack.cpu_seconds(c) for c in CONSUMERS)
    seen: set[str] = set()
    stop = asyncio.Event()
    watcher = asyncio.create_task(_watch_autovacuum(stack, seen, stop))
    try:
        with stack.paused(*CONSUMERS) if mode == "paused" else contextlib.nullcontext():
            value = await reading()
    finally:
        stop.set()
        await watcher
    after = (await _server(stack, SERVER_COUNTERS))[0]
    return value, {
        "mode": mode,
        "autovacuum": sorted(seen),
        "checkpoints": int(after["checkpoints"] - before["checkpoints"]),
        "checkpoints_done": int(after["checkpoints_done"] - before["checkpoints_done"]),
        "since_checkpoint_s": float(before["since_checkpoint"]),
        "wal_mb": float(after["wal"] - before["wal"]) / 2**20,
        "wal_fsyncs": int(after["wal_fsyncs"] - before["wal_fsyncs"]),
        "wal_fsync_ms": float(after["wal_fsync_ms"] - before["wal_fsync_ms"]),
        "dirty_mb_before": dirty,
        "consumers_cpu_s": sum(stack.cpu_seconds(c) for c in CONSUMERS) - consumers_cpu,
        "load": os.getloadavg()[0],
    }


async def one_read(stack: BenchStack, mode: str, sample: int) -> dict[str, Any]:
    """One batch-rate reading (as the benchmark's: ``max(3000, sample)`` events) with the
    consumers ``running`` or ``paused``, and what the server did meanwhile."""
    rate, seen = await beside(
        stack,
        mode,
        lambda: branchline_measures.batches(
            stack.settings.intake_port, stack.token, max(3000, sample)
        ),
    )
    return {"batch_per_s": rate, **seen}


@contextlib.contextmanager
def watched_write_path(stack: BenchStack, into: list[dict[str, Any]]) -> Iterator[None]:
    """The benchmark's own write-path reading (``scale.write_path``, called by
    ``growth_step``: the batches, then the single POSTs) watched as ``beside`` watches,
    what it saw appended to ``into``."""
    measured = scale.write_path

    async def watched(
        stack_: BenchStack, sample: int, batch_events: int | None = None
    ) -> tuple[float, float]:
        figures, seen = await beside(
            stack_, "running", lambda: measured(stack_, sample, batch_events)
        )
        into.append({"batch_per_s": figures[0], **seen})
        return figures

    scale.write_path = watched  # type: ignore[assignment]
    try:
        yield
    finally:
        scale.write_path = measured


def read_mode(i: int) -> str:
    """The ``i``-th extra reading's mode: running, paused, paused, running, ... (both
    orders, PREAMBLE rule 2)."""
    return ("running", "paused")[(i % 2) ^ ((i // 2) % 2)]


def read_line(read: dict[str, Any]) -> str:
    vacuums = "; ".join(read["autovacuum"]) or "none"
    return (
        f"    {read['mode']:8s} batch {read['batch_per_s']:6,.0f} ev/s; consumers' CPU "
        f"{read['consumers_cpu_s']:4.1f} s; checkpoints {read['checkpoints']} begun "
        f"{read['checkpoints_done']} ended (last ended {read['since_checkpoint_s']:.0f} s "
        f"before); WAL "
        f"{read['wal_mb']:5.1f} MB, {read.get('wal_fsyncs', 0)} fsyncs "
        f"{read.get('wal_fsync_ms', 0.0):.0f} ms; dirty before "
        f"{read.get('dirty_mb_before', 0.0):.0f} MB; load {read['load']:.2f}; autovacuum: {vacuums}"
    )


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"steps": list(args.steps), "sample": args.sample, "warnings": []}
    figures: dict[str, float] = {}
    reads: dict[str, list[dict[str, Any]]] = {}
    async with running_stack() as stack:
        for events in args.steps:
            label = scale.step_label(events)
            started = time.perf_counter()
            print(f"growth: filling to {events:,} events ...", flush=True)
            benchmarks: list[dict[str, Any]] = []
            with watched_write_path(stack, benchmarks):
                step = await scale.growth_step(stack, events, args.sample, result["warnings"])
            figures |= step
            print(
                f"  {label} ({time.perf_counter() - started:.0f} s): "
                + ", ".join(f"{k} {v:,.3f}" for k, v in step.items()),
                flush=True,
            )
            reads[label] = [{**read, "mode": "benchmark"} for read in benchmarks]
            for read in reads[label]:
                print(read_line(read), flush=True)
            for i in range(args.reads):
                mode = read_mode(i)
                await scale.caught_up(stack, followup=True, within_s=60)
                reads[label].append(await one_read(stack, mode, args.sample))
                print(read_line(reads[label][-1]), flush=True)
            if args.rebuild and events == args.steps[0]:
                print("  rebuild ...", flush=True)
                async with asyncio.timeout(REBUILD_LIMIT_S):
                    await scale.rebuild_rate(stack.settings)
            # Written after every step: a run stopped at 1M keeps its 10k and 100k.
            result |= {"figures": figures, "reads": reads, "ratios": ratios(figures, args.steps)}
            args.out.write_text(json.dumps(result, indent=2))
    return result


def ratios(figures: dict[str, float], steps: tuple[int, ...]) -> dict[str, float]:
    """Each later step's figure over the first step's (``scale.growth_ratios``), where both
    were measured."""
    return {
        key: figures[key] / figures[base]
        for key, (base,) in scale.growth_ratios(steps).items()
        if key in figures and figures.get(base)
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = asyncio.run(measure(args))
    for key, value in result.get("ratios", {}).items():
        print(f"  {key}: {value:.3f} x")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
