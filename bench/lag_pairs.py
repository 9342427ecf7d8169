"""The steady load's accepted -> visible lag, seen from outside, against the rows' own
timestamps, in pairs on one stack (#12, docs/performance.md Round 10).

Two arms alternate at the same fixed rate, each after the consumers caught up and a
``VACUUM (ANALYZE)`` (as in the benchmark):

- ``rows``: the benchmark up to Round 9: the load, then the rows' ``applied_at`` and
  ``appended_at`` read (both taken when the applying transaction starts);
- ``poller``: ``bench.latency.end_to_end``: the same load with the two pollers seeing each row
  appear, the rows' timestamps and their transactions' commit times (what the benchmark now
  reports, Round 16) read as well;
- ``slowpoll`` (``--arms poller,slowpoll``): the same with the pollers pausing half a second:
  whether the pollers' CPU changes the exact (commit) figures.

Each line gives the lags, the poll window, and the CPU per event of this process (load and
pollers), of PostgreSQL's processes and of the two consumers: what the pollers cost, and
whether they change what they measure.

    python -m bench.lag_pairs [--rate 300] [--seconds 20] [--pairs 3] [--arms rows,poller]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import branchline_measures, latency  # noqa: E402
from bench.loadgen import percentile  # noqa: E402
from bench.profile_batch import data_directory, server_cpu_seconds  # noqa: E402
from bench.stack import BenchStack, running_stack  # noqa: E402

CONSUMERS = ("followup-worker", "audit-consumer")


async def rows_only(stack: BenchStack, rate: float, seconds: float) -> str:
    s = stack.settings
    answered, _http = await latency._send_open_loop(s.intake_port, stack.token, rate, seconds)
    ids = list(answered)
    figures = []
    for dsn, sql in (
        (s.followup_database_url, latency.FOLLOWUP_ROWS),
        (s.audit_database_url, latency.AUDIT_ROWS),
    ):
        arrived = await latency._arrivals(dsn, sql, ids, within_s=300)
        lags, _missing = latency._lags(answered, arrived, time.time())
        figures.append(1000 * percentile(lags, 0.99))
    return f"row p99 followup {figures[0]:6.1f} audit {figures[1]:6.1f} ms"


async def with_pollers(
    stack: BenchStack, rate: float, seconds: float, pause_s: float = latency.WATCH_INTERVAL_S
) -> str:
    s = stack.settings
    r = await latency.end_to_end(
        s.intake_port,
        stack.token,
        rate,
        seconds,
        s.followup_database_url,
        s.audit_database_url,
        watch_pause_s=pause_s,
    )
    return (
        f"row p99 followup {r.followup_row_p99_ms:6.1f} audit {r.audit_row_p99_ms:6.1f} ms; "
        f"commit p50/p99 followup {r.followup_commit_p50_ms:5.1f}/{r.followup_commit_p99_ms:6.1f} "
        f"audit {r.audit_commit_p50_ms:5.1f}/{r.audit_commit_p99_ms:6.1f} ms; "
        f"visible p50/p99 followup {r.followup_p50_ms:5.1f}/{r.followup_p99_ms:6.1f} "
        f"audit {r.audit_p50_ms:5.1f}/{r.audit_p99_ms:6.1f} ms; "
        f"poll window p99 {r.poll_window_p99_ms:4.1f} ms"
    )


async def measure(args: argparse.Namespace) -> None:
    async with running_stack() as stack:
        s = stack.settings
        pgdata = await data_directory(stack.admin_url)
        await branchline_measures.single_posts(s.intake_port, stack.token, 640)  # warm up
        events = int(args.rate * args.seconds)
        for _ in range(args.pairs):
            for arm in args.arms.split(","):
                run = ARMS[arm]
                await latency.drain(s.followup_database_url, s.audit_database_url)
                await latency.vacuum(
                    [s.intake_database_url, s.followup_database_url, s.audit_database_url]
                )
                own, server = time.process_time(), server_cpu_seconds(pgdata)
                consumers = sum(stack.cpu_seconds(c) for c in CONSUMERS)
                line = await run(stack, args.rate, args.seconds)
                own = time.process_time() - own
                server = server_cpu_seconds(pgdata) - server
                consumers = sum(stack.cpu_seconds(c) for c in CONSUMERS) - consumers
                print(
                    f"{arm:6s} {args.rate:.0f} ev/s: {line}; CPU ms per event: this process "
                    f"{1000 * own / events:.3f}, PostgreSQL {1000 * server / events:.3f}, "
                    f"consumers {1000 * consumers / events:.3f}; "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )


async def slow_pollers(stack: BenchStack, rate: float, seconds: float) -> str:
    """The pollers at a pause of half a second: enough to know when all are applied, now that
    the reported figures are the commits' (Round 16)."""
    return await with_pollers(stack, rate, seconds, pause_s=SLOW_POLL_S)


SLOW_POLL_S = 0.5
ARMS = {"rows": rows_only, "poller": with_pollers, "slowpoll": slow_pollers}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--arms", default="rows,poller", help=f"of {', '.join(ARMS)}")
    asyncio.run(measure(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
