"""Where one intake process spends its CPU on `POST /v1/events` (docs/performance.md).

Starts the benchmark's stack and a second intake process (relay off), samples that process
with py-spy (CPU samples only: waiting on the database is not counted) while it answers
single events from 64 connections, and prints the share of CPU samples per function,
inclusive and self.

    python -m bench.profile_intake [--events 3000] [--out bench/profile.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import single_posts  # noqa: E402
from bench.stack import running_stack  # noqa: E402
from branchline_shared.embedded.ports import free_port, wait_for_port  # noqa: E402

# Samples of starting and stopping (imports, migrations, lifespan) are not the request path.
_NOT_SERVING = ("_find_and_load", "lifespan", "startup (", "shutdown (")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>.+?)(?::\d+)?\)$")


def summarise(collapsed: str, top: int = 30) -> str:
    """py-spy's raw (collapsed) stacks -> share of samples per function."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or any(s in stack for s in _NOT_SERVING):
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match:
                path = match["file"]
                short = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", path)
                short = re.sub(r"^.*/(services/\w+|shared|cli)/", "", short)
                frames.append(f"{match['func']} ({short})")
            else:
                frames.append(frame)
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"CPU samples: {total}", "", "inclusive share (function and what it calls):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self share (the function's own code):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profile.txt")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = args.out.with_suffix(".collapsed")
    async with running_stack() as stack:
        port = free_port()
        env = {
            **stack.env,
            "BRANCHLINE_INTAKE_PORT": str(port),
            "BRANCHLINE_RELAY_ENABLED": "false",
            "BRANCHLINE_INTAKE_PROCESSES": "1",  # one process, the one sampled
        }
        # py-spy launches the intake (attaching to a running interpreter of a pyenv build
        # fails): both share a new process group that one SIGINT stops.
        sampled = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [
                py_spy,
                "record",
                "-f",
                "raw",
                "-r",
                "250",
                "-o",
                str(raw),
                "--nonblocking",
                "--",
                sys.executable,
                "-m",
                "branchline_cli.main",
                "run",
                "intake-api",
            ],
            env=env,
            start_new_session=True,
        )
        try:
            if not await asyncio.to_thread(wait_for_port, port, timeout_s=60):
                raise RuntimeError("intake did not start")
            await single_posts(port, stack.token, 200)  # warm up (imports, pools, caches)
            latencies = await single_posts(port, stack.token, args.events)
            print(
                f"{latencies.per_s:.0f} ev/s, p50 {latencies.p50_ms:.1f} ms, "
                f"p99 {latencies.p99_ms:.1f} ms"
            )
        finally:
            os.killpg(sampled.pid, signal.SIGINT)
            await asyncio.to_thread(sampled.wait, 60)
    args.out.write_text(summarise(raw.read_text()))
    print(f"profile: {args.out} (stacks: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
