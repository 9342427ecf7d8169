"""How long a consumer's periodic self-check holds its event loop (#12).

Starts an embedded PostgreSQL and tansu, fills intake's event store with ``--events`` events
published by the real relay (``bench.profile_self_check``'s fill), and stands up a consumer
that lags: its group's committed offsets ``--reached`` of the way into each partition, every
event before them applied (recorded in a table of the followup database, asked per page as the
worker asks ``fu_applied_events``). Then it runs full self-checks, each with a ticker on the
same event loop (a 5 ms sleep, its overshoot is how long the loop was held), and prints per
check: its time, the loop's longest hold, the loop's time held over 50 ms in total, and the
process's CPU during the check.

``--baseline DIR``: a copy of ``branchline_shared/reconcile`` as it was (``self_repair.py``,
``stores.py``) to alternate with the current code, check by check (A B A B ...). Make one with
``git show REV:shared/branchline_shared/reconcile/self_repair.py > DIR/self_repair.py`` (and
``stores.py``).

    python -m bench.self_check_stall [--events 50000] [--reached 0.97] [--checks 6]
                                     [--baseline DIR] [--page-sizes 2000,500]
                                     [--applier-rate 500] [--applier-cost 0.0003]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import logging
import os
import pstats
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.probe_stack import probe_stack  # noqa: E402
from bench.profile_self_check import (  # noqa: E402
    bench_source,
    commit_group,
    committed_offsets,
    filled_and_published,
    no_dead_letters,
)
from bench.scratch import run_in_scratch  # noqa: E402


def _load_baseline(folder: Path) -> ModuleType:
    """The baseline ``self_repair`` module, importing the baseline ``stores``."""
    stores_spec = importlib.util.spec_from_file_location(
        "branchline_shared.reconcile._baseline_stores", folder / "stores.py"
    )
    assert stores_spec is not None
    assert stores_spec.loader is not None
    stores = importlib.util.module_from_spec(stores_spec)
    sys.modules[stores_spec.name] = stores
    stores_spec.loader.exec_module(stores)
    source = (folder / "self_repair.py").read_text()
    source = source.replace(
        "from branchline_shared.reconcile.stores import",
        "from branchline_shared.reconcile._baseline_stores import",
    )
    # Its metrics are registered once already by the current module: give them other names.
    source = source.replace('"branchline_consumer_', '"baseline_consumer_')
    module = ModuleType("branchline_shared.reconcile._baseline_self_repair")
    sys.modules[module.__name__] = module
    exec(compile(source, str(folder / "self_repair.py"), "exec"), module.__dict__)
    return module


class Ticker:
    """The loop's holds: a 5 ms sleep's overshoot, while running. ``watch``: a thread that
    prints the loop thread's stack when the loop is held longer than that (s)."""

    def __init__(self, watch: float = 0.0) -> None:
        self.longest = 0.0
        self.over_50ms = 0.0
        self._task: asyncio.Task[None] | None = None
        self._beat = time.monotonic()
        self._watch = watch
        self._stop = threading.Event()

    def _watchdog(self, loop_thread: int) -> None:
        reported = 0.0
        while not self._stop.wait(self._watch / 2):
            beat = self._beat
            if time.monotonic() - beat > self._watch and beat != reported:
                reported = beat
                frame = sys._current_frames().get(loop_thread)
                print("loop held; its stack:", flush=True)
                print("".join(traceback.format_stack(frame)[-12:]), flush=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._watch:
            threading.Thread(
                target=self._watchdog, args=(threading.get_ident(),), daemon=True
            ).start()
        while True:
            before = loop.time()
            self._beat = time.monotonic()
            await asyncio.sleep(0.005)
            held = loop.time() - before - 0.005
            self.longest = max(self.longest, held)
            if held > 0.05:
                self.over_50ms += held

    def __enter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self._stop.set()


class Applier:
    """A consumer on the same loop: ``rate`` events a second due, each costing ``cost_s`` of
    CPU, applied up to 500 at a time every 10 ms; ``longest_lag`` is the most it fell behind
    (its backlog in seconds of arrivals) while running."""

    def __init__(self, rate: float, cost_s: float) -> None:
        self.rate, self.cost_s = rate, cost_s
        self.longest_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started, done = loop.time(), 0
        while True:
            await asyncio.sleep(0.01)
            due = int((loop.time() - started) * self.rate)
            n = min(due - done, 500)
            end = time.thread_time() + n * self.cost_s
            while time.thread_time() < end:
                pass
            done += n
            self.longest_lag = max(self.longest_lag, (due - done) / self.rate)

    def __enter__(self) -> Applier:
        if self.rate:
            self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def measure(args: argparse.Namespace, base: Path) -> None:
    from branchline_shared.kafka.topics import declare_topics
    from branchline_shared.postgres.pool import open_pool
    from branchline_shared.reconcile import self_repair

    variants: list[tuple[str, ModuleType, dict[str, int]]] = [
        (f"current/{size}", self_repair, {"page_size": size}) for size in args.page_sizes
    ]
    if args.baseline:
        variants.insert(0, ("baseline", _load_baseline(Path(args.baseline)), {}))

    async with probe_stack(base, broker=True) as stack:
        settings = stack.settings
        topics = declare_topics(settings)
        positions = await filled_and_published(settings, args.events, analyze=True)
        committed = committed_offsets(positions, args.reached)
        applied = [e for e, (p, o) in positions.items() if o < committed[p]]
        group = "bench-stall-consumer"
        await commit_group(settings, topics, group, committed)
        pool = await open_pool(settings.followup_database_url, min_size=1, max_size=2)
        await pool.execute("CREATE TABLE bench_applied (event_id uuid PRIMARY KEY)")
        await pool.execute("INSERT INTO bench_applied SELECT unnest($1::uuid[])", list(applied))
        await pool.execute("ANALYZE bench_applied")
        print(
            f"applied {len(applied)}, not reached {len(positions) - len(applied)}",
            flush=True,
        )

        async def has(ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT event_id FROM bench_applied WHERE event_id = ANY($1::uuid[])",
                    list(ids),
                )
            return {r["event_id"] for r in rows}

        for _, module, _ in variants:
            # the baseline module may still ask for the whole topic's ids (before #12's paged ask)
            for name in ("dead_lettered_among", "dead_lettered_ids"):
                if hasattr(module, name):
                    setattr(module, name, no_dead_letters)
        print(
            "variant\tcheck s\tlongest hold ms\theld >50ms s\tCPU s\tre-queued\t"
            "not reached\tapplier's longest lag ms"
        )
        if args.slow_callbacks:
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = args.slow_callbacks
            logging.getLogger("asyncio").setLevel(logging.WARNING)
            logging.basicConfig()
        for _ in range(args.checks):
            with Ticker() as ticker, Applier(args.applier_rate, args.applier_cost) as applier:
                await asyncio.sleep(args.idle)
            print(
                f"idle\t{args.idle:.2f}\t{ticker.longest * 1000:.0f}\t"
                f"{ticker.over_50ms:.2f}\t\t\t\t{applier.longest_lag * 1000:.0f}",
                flush=True,
            )
            for label, module, options in variants:
                check = module.SelfRepair(
                    settings,
                    bench_source(topics, has, group),
                    interval_s=60,
                    grace_s=settings.reconcile_grace_s,
                    **options,
                )
                cpu = time.process_time()
                started = time.perf_counter()
                profiler = cProfile.Profile() if args.profile else None
                applier = Applier(args.applier_rate, args.applier_cost)
                with Ticker(args.watch) as ticker, applier:
                    if profiler is not None:
                        profiler.enable()
                    requeued = await check.check()
                    if profiler is not None:
                        profiler.disable()
                        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
                took = time.perf_counter() - started
                cpu = time.process_time() - cpu
                print(
                    f"{label}\t{took:.2f}\t{ticker.longest * 1000:.0f}\t"
                    f"{ticker.over_50ms:.2f}\t{cpu:.2f}\t{requeued}\t{check.not_reached}\t"
                    f"{applier.longest_lag * 1000:.0f}",
                    flush=True,
                )
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--reached", type=float, default=0.97)
    parser.add_argument("--checks", type=int, default=6)
    parser.add_argument("--baseline", help="a folder with the baseline self_repair.py, stores.py")
    parser.add_argument(
        "--slow-callbacks",
        type=float,
        default=0.0,
        help="asyncio debug mode: log every callback holding the loop longer (s)",
    )
    parser.add_argument(
        "--watch", type=float, default=0.0, help="print the loop's stack when held longer (s)"
    )
    parser.add_argument(
        "--page-sizes",
        type=lambda v: [int(n) for n in v.split(",")],
        default=[2_000],
        help="the current code's page sizes, comma-separated (a variant each)",
    )
    parser.add_argument(
        "--applier-rate", type=float, default=0.0, help="a consumer's events/s on the loop"
    )
    parser.add_argument("--applier-cost", type=float, default=0.0003, help="its CPU per event (s)")
    parser.add_argument("--idle", type=float, default=3.0, help="the idle window per round (s)")
    parser.add_argument("--profile", action="store_true", help="cProfile each check")
    args = parser.parse_args(argv)
    os.environ.setdefault("BRANCHLINE_LOG_LEVEL", "WARNING")
    return run_in_scratch(measure, args, "self-check-stall-")


if __name__ == "__main__":
    raise SystemExit(main())
