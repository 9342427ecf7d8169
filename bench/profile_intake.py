"""Where one intake process spends its CPU on `POST /v1/events` (docs/performance.md).

Starts the benchmark's stack and a second intake process (relay off), samples that process
with pyinstrument (wall-clock samples; the event loop's idle wait, where the process waits on
the database or the network, is left out) while it answers single events from 64
connections, and prints the share of the busy samples by part of a POST (``split``: HTTP
parse, edge, auth, validation, the group commit's parts, the answer; Round 37), then per
function, inclusive and self.

    python -m bench.profile_intake [--events 3000] [--out bench/profile.txt] [--branch-systems N]
                                   [--event-ids]

``--branch-systems N`` posts with N branch systems' tokens, as ``bench.intake_cpu`` does; the
sampled process's group-commit counters (groups by path) are printed after the load.
``--event-ids``: each event sent with an ``event_id`` of its own, as ``bench.intake_cpu``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from pyinstrument.frame_info import parse_frame_info
from pyinstrument.session import Session

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.branchline_measures import branch_tokens, single_posts  # noqa: E402
from bench.stack import running_stack  # noqa: E402
from branchline_shared.embedded.ports import free_port, wait_for_port  # noqa: E402

# Samples of starting and stopping (imports, migrations, lifespan) are not the request path.
_NOT_SERVING = ("_find_and_load", "lifespan", "startup (", "shutdown (")
# Leaves where the process waits (the event loop polling its sockets; uvloop's own run loop
# is C, so its wait shows as the time of the frame that entered it): not CPU.
_IDLE_LEAVES = ("select (", "run_forever (", "run_until_complete (", "run (", "[await]")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>.+?)(?::\d+)?\)$")


def component_command(component: str, *, sampled_to: Path | None) -> list[str]:
    """The command that runs ``component`` as ``branchline run`` does, under pyinstrument
    (2 ms samples, its session written to ``sampled_to``) unless ``sampled_to`` is None: the
    profiles of intake, its batch and its relay sample their process alike."""
    profiler = ["-m", "pyinstrument", "-r", "session", "-o", str(sampled_to), "-i", "0.002"]
    return [
        sys.executable,
        *(profiler if sampled_to is not None else []),
        "-m",
        "branchline_cli.main",
        "run",
        component,
    ]


def collapsed_stacks(session_file: Path) -> str:
    """A pyinstrument session as collapsed stacks (``func (file);... weight``), weights in
    tenths of a millisecond."""
    lines = []
    for stack, seconds in Session.load(session_file).frame_records:
        frames = []
        for info in stack:
            identifier, _ = parse_frame_info(info)
            func, file, *_ = [*identifier.split("\x00"), "", ""]
            frames.append(f"{func} ({file})" if file else func)
        weight = round(seconds * 10_000)
        if weight:
            lines.append(f"{';'.join(frames)} {weight}")
    return "\n".join(lines)


def busy_stacks(collapsed: str) -> Iterator[tuple[list[str], int]]:
    """The serving process's busy samples: each stack's frames (``func (short path)``, the
    path from the package on) and its weight; starting, stopping and idle waits left out."""
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit() or any(s in stack for s in _NOT_SERVING):
            continue
        if stack.rpartition(";")[2].startswith(_IDLE_LEAVES):
            continue
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
        yield frames, int(count_text)


# The parts of a POST's CPU (Round 37, #12), each stack given to the first part whose test
# it passes. A part of the group commit's task (``_write_groups``: every caller's events
# decided and written in one transaction) is told from its frames' files; the request's own
# task is told by the layer the sample is in, innermost first.
_GROUP_TASK = "_write_groups ("
_PARTS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "group commit: asyncpg (encode, send, decode)",
        lambda s: _GROUP_TASK in s and "(asyncpg/" in s,
    ),
    (
        "group commit: deciding (the D-rules on the recorded state)",
        lambda s: _GROUP_TASK in s and "(branchline_intake/domain/" in s,
    ),
    (
        "group commit: envelopes, payload checks, staging",
        lambda s: (
            _GROUP_TASK in s
            and ("(branchline_intake/application/submit.py)" in s or "eventstore/" in s)
        ),
    ),
    ("group commit: grouping, guesses, bookkeeping", lambda s: _GROUP_TASK in s),
    ("auth: token, roles", lambda s: "(branchline_shared/http/auth.py)" in s),
    ("event model validation (pydantic)", lambda s: "_validated (" in s),
    ("strict input check (JSON parse, bounds)", lambda s: "strict_input.py)" in s),
    ("answer: the socket write", lambda s: "joined_writes.py)" in s),
    (
        "answer: send path (head, middlewares' send)",
        lambda s: "send_app (" in s or "send (uvicorn/protocols/" in s,
    ),
    (
        "HTTP parse (httptools callbacks, header bounds)",
        lambda s: "data_received (" in s or "on_headers_complete (" in s or "on_url (" in s,
    ),
    (
        "handler: direct route, submit, awaiting the group",
        lambda s: "direct_submit.py)" in s or "entrypoints/http.py)" in s,
    ),
    ("edge and middlewares (deadline, limits, metrics, ids)", lambda s: "run_asgi (" in s),
    ("asyncpg outside the group commit", lambda s: "(asyncpg/" in s),
)
OTHER_PART = "other (event loop, timers, callbacks)"


def split(collapsed: str) -> dict[str, float]:
    """The busy samples' shares (per cent) by part of a POST's CPU, largest first."""
    weights: collections.Counter[str] = collections.Counter()
    for frames, count in busy_stacks(collapsed):
        joined = ";".join(frames)
        part = next((name for name, test in _PARTS if test(joined)), OTHER_PART)
        weights[part] += count
    total = sum(weights.values()) or 1
    return {name: 100 * weight / total for name, weight in weights.most_common()}


def summarise(collapsed: str, top: int = 30) -> str:
    """Collapsed stacks -> the split by part, then the share of busy samples per function."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in busy_stacks(collapsed):
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    lines = [f"busy samples (0.1 ms units): {total}", "", "split by part of a POST:"]
    lines += [f"  {share:5.1f}%  {name}" for name, share in split(collapsed).items()]
    lines += ["", "inclusive share (function and what it calls):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self share (the function's own code):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


def group_counters(port: int) -> str:
    """The sampled process's group-commit counters (warm-up included): groups by the path
    they took, and events per group."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    wanted = ("branchline_intake_group_commit_", "branchline_intake_refusal_lock_reruns")
    return "\n".join(
        line
        for line in text.splitlines()
        if line.startswith(wanted) and "_bucket" not in line and "_created" not in line
    )


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profile.txt")
    parser.add_argument("--branch-systems", type=int, default=1, metavar="N")
    parser.add_argument("--event-ids", action="store_true")
    args = parser.parse_args()
    raw = args.out.with_suffix(".pyisession")
    async with running_stack() as stack:
        port = free_port()
        env = {
            **stack.env,
            "BRANCHLINE_INTAKE_PORT": str(port),
            "BRANCHLINE_RELAY_ENABLED": "false",
            "BRANCHLINE_INTAKE_PROCESSES": "1",  # one process, the one sampled
            "BRANCHLINE_SHUTDOWN_DRAIN_S": "0",
        }
        # pyinstrument runs the intake in its own process group; one SIGINT stops it, and it
        # writes its session when the server has shut down.
        sampled = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            component_command("intake-api", sampled_to=raw),
            env=env,
            start_new_session=True,
        )
        try:
            if not await asyncio.to_thread(wait_for_port, port, timeout_s=60):
                raise RuntimeError("intake did not start")
            tokens = branch_tokens(stack, max(1, args.branch_systems))
            ids = args.event_ids
            await single_posts(port, tokens, 200, event_ids=ids)  # warm up (imports, caches)
            latencies = await single_posts(port, tokens, args.events, event_ids=ids)
            print(
                f"{latencies.per_s:.0f} ev/s, p50 {latencies.p50_ms:.1f} ms, "
                f"p99 {latencies.p99_ms:.1f} ms, {len(tokens)} branch systems"
            )
            print(await asyncio.to_thread(group_counters, port))
        finally:
            os.killpg(sampled.pid, signal.SIGINT)
            await asyncio.to_thread(sampled.wait, 60)
    args.out.write_text(summarise(collapsed_stacks(raw)))
    print(f"profile: {args.out} (stacks: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
