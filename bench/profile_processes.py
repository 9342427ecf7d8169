"""What the whole consumer processes keep in memory as the events grow (#12).

``bench.profile_memory`` drives the consumers' handling code alone; this runs the benchmark's
own stack (``bench.stack``: every component its own process, the broker, PostgreSQL), fills
it to each step of events with ``POST /v1/events:batch`` (a new client per event, as the
benchmark's growth fill), waits until the audit consumer and the followup worker have applied
everything, and then asks the followup worker and the audit consumer for their figures through
a probe loaded into them (``bench/process_probe/sitecustomize.py``, SIGUSR2): RSS, glibc's heap
in use and free, pymalloc's arenas, the live objects by type and, with ``--tracemalloc N``,
the allocation sites that grew most since the previous step.

    python -m bench.profile_processes [--steps 20000,60000,120000] [--tracemalloc 1]
        [--trim] [--env MALLOC_ARENA_MAX=2 ...]

``--trim`` has the probe call ``malloc_trim(0)`` after each measure and report the RSS after
it; ``--env`` starts the components with more environment (an allocator setting).
tracemalloc slows the processes severalfold and its own bookkeeping is in their RSS: read RSS
from a run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import audit_caught_up, fill_to, stored_events  # noqa: E402
from bench.stack import BenchStack, running_stack  # noqa: E402

PROBED = ("followup-worker", "audit-consumer")
CACHES = (  # the followup worker's derived ids (docs/performance.md, Round 6)
    "branchline_followup.domain.tasks:task_id_for",
    "branchline_followup.application.task_creations:task_created_event_id",
)
PROBE = Path(__file__).resolve().parent / "process_probe"


async def followup_caught_up(stack: BenchStack, within_s: float) -> int:
    """Wait (bounded) until the followup worker has applied every event intake stored and has
    stopped applying for 10 s (its own task events come back to it); how many intake events it
    applied."""
    held = await stored_events(stack.settings.intake_database_url)
    sql = "SELECT count(*) FILTER (WHERE source = 'intake'), count(*) FROM fu_applied_events"
    deadline = time.monotonic() + within_s
    last, still = (-1, -1), 0
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(stack.settings.followup_database_url)
        try:
            row = await conn.fetchrow(sql)
        finally:
            await conn.close()
        applied = (int(row[0]), int(row[1])) if row is not None else last
        still = still + 1 if applied == last else 0
        if applied[0] >= held and still >= 5:
            return applied[0]
        last = applied
        await asyncio.sleep(2.0)
    return last[0]


async def probe(stack: BenchStack, folder: Path, step: int) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    for component in PROBED:
        pid = stack.pids[component][0]
        target = folder / f"{component}-{step}.json"
        # read from outside first: the probe's own work (the collector's object list, the
        # counts) allocates, and a process that gave its free heap back maps it again
        before = resident_kb(pid)
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 120
        # another process writes it: polled
        while not target.exists() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)  # written whole
        answers[component] = json.loads(target.read_text())
        answers[component]["rss_before_probe_kb"] = before
    return answers


def resident_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def report(events: int, applied: int, answers: dict[str, dict[str, Any]]) -> None:
    for component, a in answers.items():
        m, p = a["malloc"], a["pymalloc"]
        arenas = p.get("arenas allocated current", 0)
        trims = f"; own trims {a['trims']:.0f} in {a['trim_s']:.2f} s" if "trims" in a else ""
        trimmed = f" after trim {mb(a['rss_after_trim_kb'])}" if "rss_after_trim_kb" in a else ""
        print(
            f"{events:>8} {component:<16} RSS {mb(a['rss_before_probe_kb'])} MB before the"
            f" probe, {mb(a['rss_kb'])} in it (peak {mb(a['hwm_kb'])})"
            f"{trimmed}; malloc in use {m['uordblks'] / 2**20:.1f} free {m['fordblks'] / 2**20:.1f}"
            f" mmapped {m['hblkhd'] / 2**20:.1f} MB; pymalloc arenas {arenas} MB (1 MiB each),"
            f" in use {p.get('bytes in allocated blocks', 0) / 2**20:.1f} MB;"
            f" gc objects {a['gc_objects']}; threads"
            f" {a['os_threads']}; followup applied {applied}; CPU {a.get('cpu_s', 0):.1f} s"
            f"{trims}",
            flush=True,
        )


def type_growth(before: dict[str, Any], after: dict[str, Any]) -> None:
    grown = {t: n - before["types"].get(t, 0) for t, n in after["types"].items()}
    top = sorted(grown.items(), key=lambda kv: -abs(kv[1]))[:12]
    print("    objects by type: " + ", ".join(f"{t} {n:+d}" for t, n in top if n))


def site_growth(folder: Path, component: str, step: int) -> None:
    older = folder / f"{component}-{step - 1}.tmsnap"
    newer = folder / f"{component}-{step}.tmsnap"
    if not (older.exists() and newer.exists()):
        return
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    a = tracemalloc.Snapshot.load(str(older)).filter_traces(ignore)
    b = tracemalloc.Snapshot.load(str(newer)).filter_traces(ignore)
    frames = max(len(t.traceback) for t in b.traces) if b.traces else 1
    for stat in b.compare_to(a, "traceback" if frames > 1 else "lineno")[:12]:
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+8d} blocks")
        for line in stat.traceback.format(limit=frames, most_recent_first=True):
            print(f"        {line}")


async def measure(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="branchline-probe-", dir=os.environ.get("BENCH_TMP")))
    extra = {
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(PROBE), os.environ.get("PYTHONPATH", "")) if p
        ),
        "BENCH_PROBE_DIR": str(folder),
        "BENCH_PROBE_COMPONENTS": ",".join(PROBED),
        "BENCH_PROBE_TRACEMALLOC": str(args.tracemalloc),
        "BENCH_PROBE_TRIM": "1" if args.trim else "0",
        "BENCH_PROBE_HELD_BY": args.held_by,
        "BENCH_PROBE_CACHES": ",".join(CACHES),
    }
    for pair in args.env:
        key, _, value = pair.partition("=")
        extra[key] = value
    steps = [int(s) for s in args.steps.split(",")]
    previous: dict[str, dict[str, Any]] = {}
    async with running_stack(extra) as stack:
        for step, events in enumerate(steps, start=1):
            started = time.perf_counter()
            await fill_to(stack, events)
            await audit_caught_up(stack)
            applied = await followup_caught_up(stack, args.wait)
            print(f"-- step {events}: filled and applied in {time.perf_counter() - started:.0f} s")
            answers = await probe(stack, folder, step)
            report(events, applied, answers)
            for component, answer in answers.items():
                for named, info in answer.get("caches", {}).items():
                    print(f"    {component} {named.rpartition(':')[2]}: {info}")
                if "held_by" in answer:
                    print(f"    {component} held by: {json.dumps(answer['held_by'], indent=1)}")
            for component, answer in answers.items():
                if component in previous:
                    type_growth(previous[component], answer)
                    site_growth(folder, component, step)
            previous = answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="20000,60000,120000")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    parser.add_argument("--trim", action="store_true")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--held-by", default="", help="type names: report what holds them")
    parser.add_argument("--wait", type=float, default=900.0, help="for the followup worker, s")
    asyncio.run(measure(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
