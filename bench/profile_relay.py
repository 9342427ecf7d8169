"""Where intake's outbox relay spends its CPU at a steady load (docs/performance.md, #12).

Starts the benchmark's stack with intake's relay in a process of its own (``branchline run
intake-relay``, as ``bench.steady_lag_stack --relay-process`` does), starts that process again
under pyinstrument, offers a steady load (``bench.latency.end_to_end``) and prints the share
of the relay's busy samples per function, inclusive and self (the event loop's idle wait left
out: ``bench.profile_intake.summarise``), and the relay process's CPU per event (/proc).

    python -m bench.profile_relay [--rate 1089] [--seconds 20] [--out bench/profile_relay.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import latency  # noqa: E402
from bench.profile_intake import collapsed_stacks, component_command, summarise  # noqa: E402
from bench.stack import BenchStack, process_cpu_seconds, running_stack  # noqa: E402
from branchline_shared.embedded.ports import wait_for_port  # noqa: E402


def running(pid: int) -> bool:
    """Whether ``pid`` still runs: a child that exited stays in /proc as a zombie until the
    stack reaps it when it stops (its ``stat`` state ``Z``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def sampled_relay(stack: BenchStack, raw: Path, log: Path) -> subprocess.Popen[bytes]:
    """The stack's own relay process (``relay_process=True``: the API does not relay) stopped,
    and the relay started again under pyinstrument (it takes the relay lock the stopped one
    gave up)."""
    for pid in stack.pids["intake-relay"]:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while any(running(pid) for pid in stack.pids["intake-relay"]):
        if time.monotonic() > deadline:
            raise RuntimeError("the stack's relay did not stop")
        time.sleep(0.1)
    relay = subprocess.Popen(
        component_command("intake-relay", sampled_to=raw),
        env=stack.env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if not wait_for_port(stack.settings.intake_relay_port, timeout_s=60):
        raise RuntimeError("the sampled relay did not start")
    return relay


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1089)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profile_relay.txt")
    args = parser.parse_args()
    raw = args.out.with_suffix(".pyisession")
    async with running_stack(relay_process=True) as stack:
        log = args.out.with_suffix(".log")
        relay = await asyncio.to_thread(sampled_relay, stack, raw, log)
        try:
            s = stack.settings
            await asyncio.sleep(3)  # the relay takes the lock
            cpu0 = process_cpu_seconds(relay.pid)
            result = await latency.end_to_end(
                s.intake_port,
                stack.token,
                rate=args.rate,
                duration_s=args.seconds,
                followup_dsn=s.followup_database_url,
                audit_dsn=s.audit_database_url,
            )
            spent = process_cpu_seconds(relay.pid) - cpu0
            n = max(1, result.answered)
            print(
                f"{result.answered} events at {result.offered_per_s:.0f} ev/s offered; relay "
                f"process (sampled) {1e6 * spent / n:.0f} us/event"
            )
        finally:
            os.killpg(relay.pid, signal.SIGINT)
            await asyncio.to_thread(relay.wait, 60)
    args.out.write_text(summarise(collapsed_stacks(raw), top=45))
    print(f"profile: {args.out} (stacks: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
