"""The whole stack's followup lag at one fixed steady rate, in repetitions on one stack, the
same harness over any code (#12, Round 20).

Round 19's benchmark showed main's followup p99 (accepted -> committed) at 3.9-4.4 s against
2.2-2.3 s for Round 18's code, while the worker alone did not separate them. This runs the
benchmark's parts that lead up to its steady load, and nothing else, so that two codes (or two
orders of the parts) are compared at the same rate, alternated, one stack per run:

  per repetition: the single POST (64 connections, one token), the consumers drained, the
  product databases vacuumed (as `make bench`), the steady open-loop load at ``--rate`` for
  ``--seconds``; then the ``--between`` parts, which the next repetition's steady load follows
  (`make bench` runs, after its steady load: ``capacity`` the drain capacity, ``single16`` the
  single POST from 16 branch systems' tokens (main only, Round 19), ``batch`` the batches).

Each repetition writes one JSON line to ``--out``: the code's commit, the load average, the
followup / audit commit lags (p50, p99), the CPU per event of the steady load of the worker,
the broker and intake, and how bursty the load reached the worker: events per relay round
(distinct ``published_at``) and per worker transaction (distinct ``xmin``) during it. Since
Round 34 also the budget of the load (#12): PostgreSQL's CPU per event (all of it, and its
pools' backends per database), how busy the machine's cores were (``machine_busy``, every
process counted: other sessions' too), the load's events per second of the worker's
transactions (``tx_ev_per_s``: what it applies while in one) and the lag's p99 in each two
seconds of the load (``timeline``: growing bin after bin, a worker slower than the load).

To run another tree's code, copy this file into its ``bench/`` and run it there.

    python -m bench.steady_lag_stack --rate 1300 --out /tmp/lag.jsonl
        [--repetitions 2] [--seconds 20] [--between capacity,batch] [--label x]
        [--relay-process]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench import branchline_measures, latency  # noqa: E402
from bench.profile_followup import server_cpu_seconds  # noqa: E402
from bench.run import PROFILES  # noqa: E402
from bench.stack import BenchStack, process_cpu_seconds, running_stack  # noqa: E402

# intake-relay: only with --relay-process (its own process; 0 otherwise)
COMPONENTS = ("followup-worker", "broker", "intake-api", "audit-consumer", "intake-relay")


async def _fetchval(dsn: str, sql: str, *args: object) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def machine_ticks() -> tuple[int, int]:
    """All cores' (busy, total) clock ticks so far, from /proc/stat's first line (Linux):
    busy is every column but idle and iowait."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def postgres_cpu_seconds(stack: BenchStack) -> float:
    """The embedded server's CPU so far (its postmaster, backends, reaped ones): 0 unknown."""
    if stack.postgres_log is None:
        return 0.0
    try:
        return server_cpu_seconds(stack.postgres_log.parent / "pgdata")
    except (OSError, ValueError):
        return 0.0


async def backends_cpu(stack: BenchStack) -> dict[int, tuple[str, float]]:
    """Each live PostgreSQL backend's database and CPU so far (pg_stat_activity's pids)."""
    rows = await _fetch(
        stack.admin_url, "SELECT pid, datname FROM pg_stat_activity WHERE datname IS NOT NULL"
    )
    return {r[0]: (r[1], process_cpu_seconds(r[0])) for r in rows}


def cpu_by_database(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """The backends' CPU between two looks, summed per database (backends alive at both: the
    pools' connections; one opened or closed between them is left out), ``branchline_`` cut."""
    spent: dict[str, float] = {}
    for pid, (db, cpu) in after.items():
        if pid in before:
            name = db.removeprefix("branchline_")
            spent[name] = spent.get(name, 0.0) + cpu - before[pid][1]
    return spent


async def steady(stack: BenchStack, rate: float, seconds: float) -> dict[str, Any]:
    s = stack.settings
    await latency.drain(s.followup_database_url, s.audit_database_url)
    vacuum_s = await latency.vacuum(
        [s.intake_database_url, s.followup_database_url, s.audit_database_url]
    )
    cpu0 = {c: stack.cpu_seconds(c) for c in COMPONENTS}
    pg0, (busy0, all0) = postgres_cpu_seconds(stack), machine_ticks()
    backends0 = await backends_cpu(stack)
    started = await _fetchval(s.intake_database_url, "SELECT now()")
    result = await latency.end_to_end(
        s.intake_port,
        stack.token,
        rate=rate,
        duration_s=seconds,
        followup_dsn=s.followup_database_url,
        audit_dsn=s.audit_database_url,
    )
    cpu = {c: stack.cpu_seconds(c) - cpu0[c] for c in COMPONENTS}
    cpu["postgres"] = postgres_cpu_seconds(stack) - pg0
    busy1, all1 = machine_ticks()
    by_db = cpu_by_database(backends0, await backends_cpu(stack))
    # The load's events only: the rows written since it started (nothing else posts meanwhile).
    relay_rounds = await _fetchval(
        s.intake_database_url,
        "SELECT count(DISTINCT published_at) FROM es_outbox WHERE published_at >= $1",
        started,
    )
    worker_txs = await _fetchval(
        s.followup_database_url,
        "SELECT count(DISTINCT xmin::text) FROM fu_applied_events WHERE applied_at >= $1",
        started,
    )
    n = max(1, result.answered)
    segments = await segments_of_the_load(s.intake_database_url, s.followup_database_url, started)
    return {
        "answered": result.answered,
        "offered": round(result.offered_per_s, 1),
        "vacuum_s": round(vacuum_s, 2),
        "http_p99_ms": round(result.http_p99_ms, 1),
        "fu_p50_ms": round(result.followup_commit_p50_ms),
        "fu_p99_ms": round(result.followup_commit_p99_ms),
        "audit_p50_ms": round(result.audit_commit_p50_ms),
        "audit_p99_ms": round(result.audit_commit_p99_ms),
        "fu_missing": result.followup_missing,
        "cpu_us": {c: round(1e6 * v / n) for c, v in cpu.items()},
        # the machine's cores busy during the load (and its drain), every process counted
        # the PostgreSQL share above per database (its pools' backends)
        "postgres_cpu_us": {db: round(1e6 * v / n) for db, v in sorted(by_db.items())},
        "machine_busy": round((busy1 - busy0) / max(1, all1 - all0), 3),
        "ev_per_relay_round": round(n / max(1, relay_rounds or 0), 1),
        "ev_per_worker_tx": round(n / max(1, worker_txs or 0), 1),
        "segments": segments,
    }


# Each event of the load: stored (its es_events transaction's commit), published (the relay's
# marking transaction's commit: after the broker acknowledged, so an upper bound), taken up by
# the worker (its batch transaction's start, ``applied_at``) and committed there. Read right
# after the load (a row frozen by VACUUM would have lost its xmin).
STORED = (
    "SELECT e.event_id, pg_xact_commit_timestamp(e.xmin), pg_xact_commit_timestamp(o.xmin), "
    "o.published_at "
    "FROM es_events e JOIN es_outbox o USING (event_id) WHERE e.recorded_at >= $1"
)
APPLIED = (
    "SELECT event_id, applied_at, pg_xact_commit_timestamp(xmin), xmin::text "
    "FROM fu_applied_events WHERE applied_at >= $1"
)


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else -1.0


async def segments_of_the_load(intake_dsn: str, followup_dsn: str, started: Any) -> dict[str, Any]:
    """Where an event's lag went (#12, Round 27): stored -> published -> taken up by the
    worker's transaction -> committed, p50 / p99 (ms); the worker's transactions: events,
    duration, and the gap from one's commit to the next one's start."""
    stored_rows = await _fetch(intake_dsn, STORED, started)
    applied_rows = await _fetch(followup_dsn, APPLIED, started)
    stored = {r[0]: (r[1], r[2]) for r in stored_rows if r[1] is not None and r[2] is not None}
    seg: dict[str, list[float]] = {"publish": [], "to_worker": [], "in_tx": [], "total": []}
    # The publish split (#12, Round 28): commit -> the marking statement's start (published_at
    # is its now(): the read, the send and the broker's acknowledgement, and the wait for the
    # round), and that statement's start -> its commit (the marking itself).
    seg["to_mark"] = [
        (r[3] - r[1]).total_seconds() for r in stored_rows if r[1] is not None and r[3] is not None
    ]
    seg["mark"] = [
        (r[2] - r[3]).total_seconds() for r in stored_rows if r[2] is not None and r[3] is not None
    ]
    txs: dict[str, tuple[float, float, int]] = {}
    for event_id, start, commit, xid in applied_rows:
        if commit is None:
            continue
        s0, c0, n = txs.get(xid, (start.timestamp(), commit.timestamp(), 0))
        txs[xid] = (s0, c0, n + 1)
        if event_id not in stored:
            continue
        at, published = (t.timestamp() for t in stored[event_id])
        seg["publish"].append(published - at)
        seg["to_worker"].append(start.timestamp() - published)
        seg["in_tx"].append(commit.timestamp() - start.timestamp())
        seg["total"].append(commit.timestamp() - at)
    ordered = sorted(txs.values())
    course = timeline(stored, applied_rows)
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(ordered)]
    sizes = sorted(n for _, _, n in ordered)
    return {
        **{f"{k}_p50_p99_ms": (_p(v, 0.5), _p(v, 0.99)) for k, v in seg.items()},
        "tx_events_p50_p99_max": (
            (sizes[len(sizes) // 2], sizes[int(0.99 * len(sizes))], sizes[-1]) if sizes else ()
        ),
        "tx_ms_p50_p99": (
            _p([c - s for s, c, _ in ordered], 0.5),
            _p([c - s for s, c, _ in ordered], 0.99),
        ),
        "gap_ms_p50_p99": (_p(gaps, 0.5), _p(gaps, 0.99)),
        "timeline": course,
        # the load's events (not the task creations each tx records as applied too) per second
        # of the worker's transactions: what it can apply while in one
        "tx_ev_per_s": round(len(seg["total"]) / max(1e-9, sum(c - s for s, c, _ in ordered))),
        "busy_share": round(
            sum(c - s for s, c, _ in ordered) / max(1e-9, ordered[-1][1] - ordered[0][0]), 3
        )
        if ordered
        else 0.0,
    }


TIMELINE_S = 2.0


def timeline(stored: dict[Any, tuple[Any, Any]], applied_rows: list[Any]) -> list[float]:
    """The total lag's p99 (ms) of the events stored in each :data:`TIMELINE_S` of the load,
    in order: a lag that grows bin after bin is a consumer slower than the load; one that
    jumps and recovers, a stall (#12, Round 34)."""
    committed = {r[0]: r[2].timestamp() for r in applied_rows if r[2] is not None}
    lags = [
        (at.timestamp(), committed[e] - at.timestamp())
        for e, (at, _) in stored.items()
        if e in committed
    ]
    if not lags:
        return []
    first = min(t for t, _ in lags)
    bins: dict[int, list[float]] = {}
    for t, lag in lags:
        bins.setdefault(int((t - first) / TIMELINE_S), []).append(lag)
    return [_p(bins[b], 0.99) for b in sorted(bins)]


async def _fetch(dsn: str, sql: str, *args: object) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def run(args: argparse.Namespace, commit: str) -> None:
    p = PROFILES["standard"]
    between = [b for b in args.between.split(",") if b]
    async with running_stack(relay_process=args.relay_process) as stack:
        s = stack.settings
        port = s.intake_port

        async def drained() -> None:
            await latency.drain(s.followup_database_url, s.audit_database_url)

        parts: dict[str, Callable[[], Awaitable[object]]] = {
            "capacity": lambda: branchline_measures.drain_capacity(stack, p.drain_events),
            "batch": lambda: branchline_measures.batches(port, stack.token, p.batch_events),
        }
        if hasattr(branchline_measures, "branch_tokens"):
            tokens = branchline_measures.branch_tokens(stack, 16)
            parts["single16"] = lambda: branchline_measures.single_posts(port, tokens, p.singles)
        before: dict[str, Any] = {}
        for r in range(args.repetitions):
            single = await branchline_measures.single_posts(port, stack.token, p.singles)
            row: dict[str, Any] = {
                "label": args.label,
                "commit": commit,
                "repetition": r + 1,
                "between": args.between,
                "at": time.strftime("%H:%M:%S", time.gmtime()),
                "load": round(os.getloadavg()[0], 2),
                "bl_single": round(single.per_s),
                "rate": args.rate,
                "relay_process": args.relay_process,
                **before,
            }
            row |= await steady(stack, args.rate, args.seconds)
            print(json.dumps(row), flush=True)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
            if r + 1 < args.repetitions:
                before = {}
                for name in between:
                    value = await parts[name]()
                    await drained()
                    if name == "capacity":
                        assert isinstance(value, dict)
                        before["capacity_before"] = {k: round(d.per_s) for k, d in value.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, required=True, help="steady load, ev/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument(
        "--between",
        default="capacity,batch",
        help="parts run after each steady load but the last: capacity, single16, batch",
    )
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--relay-process",
        action="store_true",
        help="intake's relay as its own process (branchline run intake-relay), the API's "
        "processes not relaying (#12, Round 31); by default the API's processes relay",
    )
    parser.add_argument("--out", type=Path, required=True)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    asyncio.run(run(parser.parse_args(), commit))


if __name__ == "__main__":
    main()
