"""How fast the audit ledger appends and verifies, and where its time goes (#12).

Starts an embedded PostgreSQL only, then per round, in a database of its own: raw asyncpg
COPY of the same event bodies (the benchmark's baseline), the ledger's append as the benchmark
measures it (``PostgresLedger.append``, 500 events per transaction) and ``verify_ledger`` over
what was appended; prints events per second of each and their ratios, the statements sent
per event, the CPU of this process per event and that of the PostgreSQL server's processes.

    python -m bench.profile_ledger [--events 10000] [--rounds 3] [--checkpoints 0]
                                   [--profile-append FILE] [--profile-verify FILE] [--sql]
                                   [--positions] [--without-index NAME[,NAME...]]

``--positions`` appends each event with its store position, as the audit consumer does
(the ledger then records them in ``audit_source_positions``). ``--checkpoints N`` signs a
checkpoint after every N appended events (the benchmark signs none), so verification checks
signatures and roots too. ``--without-index`` drops those indexes of ``audit_ledger`` in
each round's database before anything is appended: what they cost an append (#12; the
ledger's reads are not checked then, the verify reads by position only). ``--profile-*``
samples that part with pyinstrument (FILE: the call tree, FILE.summary.txt: shares per function).

``--verify 1,2`` verifies each round's ledger once per listed process count, in that order
(1: one pass, as ``verify_ledger`` without segments; N > 1: N segments in N processes, #12;
0: one per core; ``auto``: what ``branchline audit verify`` does by default, #12; ``api``:
what ``GET /v1/audit/verify`` does, every segment in a process apart from the loop, #12),
``--cold`` stops the fork server after each parallel verify (the next one pays its start, as
every command's verify does), ``--verify-repeat R`` repeats that sequence R times (pairs
alternate); the CPU figure of a parallel verify adds its processes' CPU (the fork server's and, once
reaped, its children's, from /proc) to this process's. Each verify also reports the longest
time it held this process's event loop (a 1 ms ticker's latest wake) and the sum of the
waits over 20 ms: what an API process verifying beside its other requests would add to
them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import baselines, branchline_measures  # noqa: E402
from bench.probe_stack import ProbeStack, probe_stack  # noqa: E402
from bench.profile_followup import write_profile  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters.database import open_role_pool  # noqa: E402
from branchline_audit.adapters.segments import ProcessSegmentVerifiers  # noqa: E402
from branchline_audit.application.checkpointing import checkpoint_now  # noqa: E402
from branchline_audit.application.verifying import (  # noqa: E402
    verify_ledger,
    verify_ledger_apart,
)
from branchline_audit.bootstrap import audit_context  # noqa: E402
from branchline_shared.clock import SystemClock  # noqa: E402
from branchline_shared.kafka.wire import SourcePosition  # noqa: E402

BATCH = 500  # the audit consumer's max_records per fetch, as bench/scale.py
STATEMENTS: collections.Counter[str] = collections.Counter()


def count_statements() -> None:
    """Count what the connections send (each call one round trip to PostgreSQL)."""
    import asyncpg

    names = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "copy_records_to_table")
    for name in names:
        original = getattr(asyncpg.Connection, name, None)
        if original is None:
            continue

        def counted(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            STATEMENTS[" ".join(str(args[0] if args else "").split())[:80]] += 1
            return __original(self, *args, **kwargs)

        setattr(asyncpg.Connection, name, counted)


def server_cpu(server: Any) -> dict[int, float]:
    """CPU seconds so far of the embedded PostgreSQL's processes (the postmaster and every
    backend and helper below it), by pid, from /proc (Linux): verification now has
    PostgreSQL do part of the work, so its cost is counted on both sides."""
    root = int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # ended meanwhile
        fields = text[text.rindex(")") + 2 :].split()  # after "pid (name) "
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    ours = {root}
    for pid in sorted(parents):  # a child has a higher pid than its parent (no wrap-around)
        if parents[pid] in ours:
            ours.add(pid)
    return {pid: used[pid] for pid in ours if pid in used}


def server_cpu_since(server: Any, before: dict[int, float]) -> float:
    """CPU seconds PostgreSQL's processes used since ``before`` (one that ended between
    is not counted: the pool's connections live through a measured part)."""
    return sum(now - before.get(pid, 0.0) for pid, now in server_cpu(server).items())


def settle_heap() -> None:
    """A full collection before a measured part, so that it is not billed for the collection
    the harness's own heap (imports, the input envelopes) owes: the process's first one
    otherwise fell into the first round's verify, 0.4 s of a 10,000-entry verify at load 10.
    The audit processes freeze their start-up heap (``startup_heap.py``) and never pay it;
    a collection the measured part itself causes still counts (#12)."""
    gc.collect()


def profiler_or_none(path: str | None) -> Any:
    if not path:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="enabled")
    profiler.start()
    return profiler


def verify_modes(verify: str, repeat: int) -> list[int | str | None]:
    """``--verify``'s list, ``--verify-repeat`` times over: a process count, ``None`` for
    ``auto`` (as ``branchline audit verify`` by default) or ``"api"``."""
    modes: list[int | str | None] = [
        None if m == "auto" else m if m == "api" else int(m) for m in verify.split(",")
    ]
    return modes * repeat


async def one_round(args: argparse.Namespace, stack: ProbeStack, r: int) -> str:
    server = stack.server
    ledger = await stack.database(f"ledger_{uuid.uuid4().hex[:8]}", migrated="audit")
    own = stack.settings.model_copy(update={"audit_database_url": ledger})
    if args.without_index:
        admin = await asyncpg.connect(own.audit_database_url)  # the superuser, the tables' owner
        try:
            for name in args.without_index.split(","):
                await admin.execute(f"DROP INDEX {name.strip()}")
        finally:
            await admin.close()
    copy_rate = await baselines.raw_copy(own.audit_database_url, args.events)
    pool = await open_role_pool(own, own.audit_db_writer_role, min_size=1, max_size=2)
    try:
        audit = audit_context(own, pool, SystemClock())
        run = uuid.uuid4().hex[:8]
        STATEMENTS.clear()
        settle_heap()
        profiler = profiler_or_none(args.profile_append if r == 0 else None)
        append_s = append_cpu = append_pg = 0.0
        for b, (batch, placed) in enumerate(envelope_batches(args, run)):
            # Only the append is timed: the batches are made as they come (1,000,000
            # envelopes held at once would take gigabytes).
            # PostgreSQL's CPU read before the clocks start: reading /proc for every process
            # of the machine took 10-40 ms per append on the shared box (300 processes),
            # which the append's time and CPU were billed for (#12).
            pg = server_cpu(server)
            started, cpu = time.perf_counter(), time.process_time()
            await audit.ledger.append(batch, now=datetime.now(UTC), positions=placed)
            if args.checkpoints and (b + 1) * BATCH % args.checkpoints == 0:
                await checkpoint_now(audit)
            append_s += time.perf_counter() - started
            append_cpu += time.process_time() - cpu
            append_pg += server_cpu_since(server, pg)
        append_statements = sum(STATEMENTS.values())
        if args.sql and r == 0:
            for sql, count in STATEMENTS.most_common(12):
                print(f"  append: {count / (args.events / BATCH):5.2f} per transaction  {sql}")
        if profiler is not None:
            profiler.stop()
            write_profile(profiler, Path(args.profile_append))
        n = args.events
        append_rate = n / append_s
        lines = [
            f"round {r + 1}: raw COPY {copy_rate:,.0f} ev/s | append {append_rate:,.0f} ev/s "
            f"({append_rate / copy_rate:.3f} x COPY, {1e6 * append_cpu / n:.1f} us CPU/ev "
            f"+ {1e6 * append_pg / n:.1f} us PostgreSQL, "
            f"{append_statements / n:.3f} stmt/ev) | load {os.getloadavg()[0]:.2f}"
        ]
        modes = verify_modes(args.verify, args.verify_repeat)
        for i, processes in enumerate(modes):
            profile = args.profile_verify if r == 0 and i == 0 else None
            lines.append(
                await one_verify(audit, own, server, processes, profile, n, copy_rate, args)
            )
    finally:
        await pool.close()
    return "\n".join(lines)


def envelope_batches(
    args: argparse.Namespace, run: str
) -> Iterator[tuple[list[dict[str, Any]], dict[uuid.UUID, SourcePosition] | None]]:
    """The round's envelopes, BATCH at a time; with ``--positions`` each event's store
    position, as the audit consumer appends."""
    for first in range(0, args.events, BATCH):
        batch = [
            branchline_measures.recorded(i, run, datetime.now(UTC)).model_dump(mode="json")
            for i in range(first, min(first + BATCH, args.events))
        ]
        at = {
            uuid.UUID(e["event_id"]): SourcePosition(e["source"], first + i + 1)
            for i, e in enumerate(batch)
        }
        yield batch, at if args.positions else None


async def one_verify(
    audit: Any,
    settings: Any,
    server: Any,
    processes: int | str | None,
    profile: str | None,
    n: int,
    copy_rate: float,
    args: argparse.Namespace,
) -> str:
    """One verify of the round's ledger, in one pass (``processes`` 1), in segments, or as
    ``branchline audit verify`` chooses by default (``processes`` None: "auto")."""
    segments = None
    if processes is None or processes == "api":
        segments = ProcessSegmentVerifiers.configured(
            settings.audit_database_url,
            settings.audit_db_writer_role,
            processes=0,
            min_entries=settings.audit_verify_parallel_min_entries,
        )
    elif isinstance(processes, int) and processes != 1:
        segments = ProcessSegmentVerifiers(
            settings.audit_database_url,
            settings.audit_db_writer_role,
            processes=processes,
            min_entries=args.min_entries,
        )
    STATEMENTS.clear()
    settle_heap()
    profiler = profiler_or_none(profile)
    pg = server_cpu(server)  # before the clocks start, as the append's (#12)
    helpers = forkserver_cpu()
    started, cpu = time.perf_counter(), time.process_time()
    gaps: list[float] = []
    ticking = asyncio.ensure_future(tick(gaps))
    try:
        if processes == "api" and segments is not None:
            verdict = await verify_ledger_apart(
                audit.ledger,
                audit.checkpoints,
                verifier=audit.signer.verifier(),
                origin=audit.origin,
                segments=segments,
            )
        else:
            verdict = await verify_ledger(
                audit.ledger,
                audit.checkpoints,
                verifier=audit.signer.verifier(),
                origin=audit.origin,
                segments=segments,
            )
    finally:
        ticking.cancel()
    verify_s, verify_cpu = time.perf_counter() - started, time.process_time() - cpu
    verify_pg = server_cpu_since(server, pg)
    if segments is not None:
        await asyncio.sleep(0.2)  # the fork server reaps the processes it forked
        helpers = forkserver_cpu() - helpers
        if args.cold:
            stop_forkserver()
    else:
        helpers = 0.0
    verify_statements = sum(STATEMENTS.values())
    if profiler is not None:
        profiler.stop()
        write_profile(profiler, Path(profile or ""))
    if not verdict.ok or verdict.entries != n:
        raise AssertionError(f"the ledger did not verify: {verdict}")
    rate = n / verify_s
    chose = segments.processes if segments is not None and n >= segments.min_entries else 1
    mode = "auto" if processes is None else processes or "one per core"
    return (
        f"  verify, {mode} process(es) ({chose} used): {rate:,.0f} ev/s "
        f"({rate / copy_rate:.3f} x COPY, {1e6 * (verify_cpu + helpers) / n:.1f} us CPU/ev "
        f"of which {1e6 * helpers / n:.1f} in the verifying processes, "
        f"+ {1e6 * verify_pg / n:.1f} us PostgreSQL, "
        f"{verify_statements / n:.4f} stmt/ev in this process, "
        f"{verdict.checkpoints_checked} checkpoints) | event loop held up to "
        f"{1e3 * max(gaps, default=0.0):.0f} ms at a time, "
        f"{1e3 * sum(g for g in gaps if g > 0.02):.0f} ms in waits over 20 ms "
        f"| load {os.getloadavg()[0]:.2f}"
    )


async def tick(gaps: list[float]) -> None:
    """Wakes every millisecond and notes how late each wake came: how long the verify
    holds this process's event loop at a time, which an API process serving other requests
    while it verifies would see as their added latency (#12)."""
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last - 0.001)
        last = now


def stop_forkserver() -> None:
    """``--cold``: the next parallel verify starts its fork server again, as every
    ``branchline audit verify`` command does (a command's first verify)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # type: ignore[attr-defined]


def forkserver_cpu() -> float:
    """CPU seconds of the fork server's process and of the children it has reaped (the
    verifying processes), from /proc; 0 before it runs."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return 0.0
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base) as stack:
        print(f"{args.events:,} events, load average {os.getloadavg()[0]:.2f} at start")
        for r in range(args.rounds):
            print(await one_round(args, stack, r), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=0, help="sign one every N events")
    parser.add_argument("--sql", action="store_true", help="statements per append, by text")
    parser.add_argument(
        "--positions", action="store_true", help="append with store positions, as the consumer"
    )
    parser.add_argument("--profile-append", help="pyinstrument profile of the first append")
    parser.add_argument("--profile-verify", help="pyinstrument profile of the first verify")
    parser.add_argument(
        "--verify",
        default="1",
        help="process counts, in order (1: one pass; auto: as `branchline audit verify` "
        "by default)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="stop the fork server after each parallel verify: each pays its start, as a "
        "command's verify does",
    )
    parser.add_argument("--verify-repeat", type=int, default=1)
    parser.add_argument("--min-entries", type=int, default=1, help="below: one pass")
    parser.add_argument(
        "--without-index",
        default="",
        help="audit_ledger indexes to drop before appending, comma-separated (what they cost)",
    )
    args = parser.parse_args()
    count_statements()
    return run_in_scratch(measure, args, "bench-ledger-")


if __name__ == "__main__":
    sys.exit(main())
