"""The benchmark's steady load and what it is compared with, alone on one stack (#12, Round 17):
the single-POST peaks measured before any steady load (half their median was tried as the
steady rate, not kept: docs/performance.md Round 17), then per repetition the repetition's own
single-POST peak (half the first one is the benchmark's rate), the steady load at half the
median peak with its
commit lags and the WAL flush time during it (``bench.latency.WalFlushes``), and each
consumer's drain capacity (``bench.branchline_measures.drain_capacity``). What `make bench`
does in these parts, without its baselines, batches, ledger and growth stack: minutes, not an
hour.

    python -m bench.steady_rate_probe [--repetitions 2] [--seconds 20] [--probes 3]
                                      [--singles 3200] [--drain-events 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import branchline_measures, latency  # noqa: E402
from bench.run import PROFILES, Profile  # noqa: E402
from bench.stack import BenchStack, running_stack  # noqa: E402


@dataclass(frozen=True)
class SteadyRate:
    """Half the median of single-POST peaks measured before any steady load."""

    peaks: tuple[float, ...]

    @property
    def per_s(self) -> float:
        return max(5.0, statistics.median(self.peaks) / 2)


async def measured_peak(stack: BenchStack, p: Profile, probes: int) -> SteadyRate:
    """The single-POST peak ``probes`` times, each from consumers that caught up with the one
    before (as each repetition's own peak is)."""
    settings = stack.settings
    peaks = []
    for _ in range(probes):
        latencies = await branchline_measures.single_posts(
            settings.intake_port, stack.token, p.singles
        )
        peaks.append(latencies.per_s)
        await latency.drain(settings.followup_database_url, settings.audit_database_url)
    return SteadyRate(tuple(peaks))


async def measure(args: argparse.Namespace) -> None:
    p = Profile(
        **{
            **PROFILES["standard"].__dict__,
            "singles": args.singles,
            "drain_events": args.drain_events,
        }
    )
    async with running_stack() as stack:
        s = stack.settings
        dsns = [s.intake_database_url, s.followup_database_url, s.audit_database_url]
        steady = await measured_peak(stack, p, args.probes)
        print(
            f"peaks before any steady load: {', '.join(f'{x:,.0f}' for x in steady.peaks)} "
            f"ev/s; steady rate {steady.per_s:,.0f} ev/s; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        for r in range(args.repetitions):
            own = await branchline_measures.single_posts(s.intake_port, stack.token, p.singles)
            await latency.drain(s.followup_database_url, s.audit_database_url)
            await latency.vacuum(dsns)
            async with latency.wal_flushes(stack.admin_url) as samples:
                e2e = await latency.end_to_end(
                    s.intake_port,
                    stack.token,
                    steady.per_s,
                    args.seconds,
                    s.followup_database_url,
                    s.audit_database_url,
                )
            wal = latency.WalFlushes.of(samples)
            wal_text = (
                "no WAL sync"
                if wal is None
                else f"WAL flush per sync {wal.per_sync_ms:.2f} ms (fsync {wal.fsync_ms:.2f}), "
                f"worst second {wal.worst_per_sync_ms:.2f} ms over {wal.syncs} syncs"
            )
            drained = await branchline_measures.drain_capacity(stack, p.drain_events)
            drain_text = "; ".join(
                f"{name} drains {d.per_s:,.0f} ev/s (first commit {d.first_commit_s:.2f} s, "
                f"last {d.took_s:.2f} s after the resume)"
                for name, d in drained.items()
            )
            print(
                f"repetition {r + 1}: own peak {own.per_s:,.0f} ev/s (half: "
                f"{own.per_s / 2:,.0f}); steady {steady.per_s:,.0f} ev/s: commit p99 followup "
                f"{e2e.followup_commit_p99_ms:.0f} ms, audit {e2e.audit_commit_p99_ms:.0f} ms; "
                f"{wal_text}; {drain_text}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repetitions", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--singles", type=int, default=3200)
    parser.add_argument("--drain-events", type=int, default=5000)
    asyncio.run(measure(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
