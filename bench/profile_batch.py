"""Where one intake process spends its CPU on `POST /v1/events:batch` (docs/performance.md, #12).

Starts the benchmark's stack with every relay off (nothing is published, so the followup
worker and the audit consumer stay idle), then a second intake process (one process), and
sends it batches of 1,000 (the benchmark's workload: new clients registered), one after
another, after one batch to warm up. Prints the batch rate and the CPU the process used per
event (user + system, from `/proc`) and PostgreSQL's processes used per event (its server
processes alive at the end, so mostly intake's connections). With ``--profile`` the process
runs under pyinstrument and the share of the busy samples per function is written as in
`bench.profile_intake`.

With ``--raw-copy`` each round is followed by `bench.baselines.raw_copy` of as many events on
the same server, and the batch rate is printed as a ratio to it (the #12 target: >= 0.35).
With ``--statements`` the server logs every statement's duration while the batches run, and
the time per statement (parse, bind, execute summed, per batch) is printed, largest first.

With ``--whole-stack`` the batches go where `make bench` sends them: the stack's own intake
port (its processes, one of which runs the relay), every relay on, so the broker, the followup
worker and the audit consumer take the batches' events while the next ones are posted. Each
process's CPU per event is printed (intake, the consumers, the broker, PostgreSQL), and how
long after the last answer the consumers had caught up is not waited for: the figures are those
of the posting window, as the benchmark's.

    python -m bench.profile_batch [--batches 10] [--profile] [--out bench/profile_batch.txt]
    python -m bench.profile_batch --batches 10 --repeat 3 --raw-copy
    python -m bench.profile_batch --batches 10 --repeat 3 --raw-copy --whole-stack
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
import time
import uuid
from pathlib import Path

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.baselines import raw_copy  # noqa: E402
from bench.loadgen import RawHttpClient  # noqa: E402
from bench.profile_intake import collapsed_stacks, component_command, summarise  # noqa: E402
from bench.stack import child_pids, process_cpu_seconds, running_stack  # noqa: E402
from bench.workload import event_body  # noqa: E402
from branchline_shared.embedded.ports import free_port, wait_for_port  # noqa: E402


def batch_bodies(count: int, per_batch: int) -> list[bytes]:
    run = uuid.uuid4().hex[:8]
    return [
        orjson.dumps({"events": [event_body(b * per_batch + i, run) for i in range(per_batch)]})
        for b in range(count)
    ]


async def send(http: RawHttpClient, bodies: list[bytes]) -> None:
    for body in bodies:
        status, answer = await http.post("/v1/events:batch", body)
        if status != 200 or b'"status":409' in answer or b'"status":422' in answer:
            raise AssertionError(f"batch answered {status}: {answer[:300]!r}")


def server_cpu_seconds(pgdata: Path) -> float:
    """User + system CPU of the PostgreSQL server's processes alive now (its postmaster's
    children: the backends of every pool, the writer, the WAL writer, ...)."""
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    return sum(process_cpu_seconds(pid) for pid in [postmaster, *child_pids(postmaster)])


_DURATION = re.compile(r"duration: ([0-9.]+) ms\s+(?:(parse|bind|execute) [^:]*: |statement: )(.*)")


def statement_times(log: str, batches: int) -> list[tuple[float, int, str]]:
    """From a server log written with ``log_min_duration_statement = 0``: per statement (its
    first 90 characters; a statement that starts on the next line, like a ``WITH`` written
    over several, is named by that line), the milliseconds per batch (parse + bind + execute
    summed) and how many times it was executed."""
    total: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    lines = log.splitlines()
    for at, line in enumerate(lines):
        found = _DURATION.search(line)
        if found is None:
            continue
        text = found.group(3).strip()
        if not text and at + 1 < len(lines):
            text = lines[at + 1].strip()
        text = " ".join(text.split())[:90]
        total[text] += float(found.group(1))
        if found.group(2) in (None, "execute"):
            calls[text] += 1
    return sorted(((ms / batches, calls[t], t) for t, ms in total.items()), reverse=True)


async def log_statements(admin_url: str, on: bool) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if on:
            await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        else:
            await conn.execute("ALTER SYSTEM RESET log_min_duration_statement")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def data_directory(admin_url: str) -> Path:
    conn = await asyncpg.connect(admin_url)
    try:
        return Path(await conn.fetchval("SHOW data_directory"))
    finally:
        await conn.close()


def broker_pids(port: int) -> list[int]:
    """The tansu broker's process (the stack starts it outside its components), found by its
    command line naming the broker's port."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"tansu" in cmdline and str(port).encode() in cmdline:
            found.append(int(entry.name))
    return found


async def whole_stack(args: argparse.Namespace) -> int:
    """The benchmark's own path: the stack's intake port, every relay and consumer running."""
    async with running_stack() as stack:
        port = stack.settings.intake_port
        pgdata = await data_directory(stack.admin_url)
        broker = broker_pids(stack.settings.broker_port)
        parts = [c for c in stack.pids if c not in ("followup-api", "audit-api")]

        def cpu() -> dict[str, float]:
            used = {c: stack.cpu_seconds(c) for c in parts}
            used["broker"] = sum(process_cpu_seconds(p) for p in broker)
            used["postgres"] = server_cpu_seconds(pgdata)
            return used

        async with RawHttpClient("127.0.0.1", port, stack.token) as http:
            await send(http, batch_bodies(1, args.per_batch))  # warm up
        for _ in range(args.repeat):
            bodies = batch_bodies(args.batches, args.per_batch)
            events = args.batches * args.per_batch
            async with RawHttpClient("127.0.0.1", port, stack.token) as http:
                before = cpu()
                started = time.perf_counter()
                await send(http, bodies)
                elapsed = time.perf_counter() - started
            after = cpu()
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            shares = ", ".join(f"{c} {1000 * (after[c] - before[c]) / events:.3f}" for c in after)
            total = sum(after[c] - before[c] for c in after)
            print(
                f"{events} events in batches of {args.per_batch}: {events / elapsed:.0f} ev/s "
                f"({1000 * elapsed / events:.3f} ms per event); CPU ms per event: {shares}; "
                f"all {1000 * total / events:.3f} (two cores: {50 * total / elapsed:.0f} % "
                f"busy); load average {load}",
                flush=True,
            )
            if args.raw_copy:
                copy_rate = await raw_copy(stack.admin_url, events, args.per_batch)
                print(
                    f"  raw COPY {copy_rate:.0f} ev/s; batch / raw COPY "
                    f"{events / elapsed / copy_rate:.3f}",
                    flush=True,
                )
    return 0


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--per-batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--raw-copy", action="store_true", help="raw COPY after each round")
    parser.add_argument("--statements", action="store_true", help="each statement's time")
    parser.add_argument("--whole-stack", action="store_true", help="the benchmark's own path")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profile_batch.txt")
    args = parser.parse_args()
    if args.whole_stack:
        return await whole_stack(args)
    raw = args.out.with_suffix(".pyisession")
    async with running_stack({"BRANCHLINE_RELAY_ENABLED": "false"}) as stack:
        port = free_port()
        env = {
            **stack.env,
            "BRANCHLINE_INTAKE_PORT": str(port),
            "BRANCHLINE_RELAY_ENABLED": "false",
            "BRANCHLINE_INTAKE_PROCESSES": "1",  # one process, the one measured
            "BRANCHLINE_SHUTDOWN_DRAIN_S": "0",
        }
        command = component_command("intake-api", sampled_to=raw if args.profile else None)
        measured = subprocess.Popen(command, env=env, start_new_session=True)  # noqa: ASYNC220
        try:
            if not await asyncio.to_thread(wait_for_port, port, timeout_s=60):
                raise RuntimeError("intake did not start")
            pgdata = await data_directory(stack.admin_url)
            server_log = pgdata.parent / "postgres.log"
            async with RawHttpClient("127.0.0.1", port, stack.token) as http:
                await send(http, batch_bodies(1, args.per_batch))  # warm up
            for _ in range(args.repeat):
                bodies = batch_bodies(args.batches, args.per_batch)
                events = args.batches * args.per_batch
                if args.statements:
                    await log_statements(stack.admin_url, True)
                    logged_from = server_log.stat().st_size
                # A connection per round, opened once its bodies are built: uvicorn closes a
                # keep-alive connection idle for 5 s (its default), and the raw COPY of the
                # round before, with the bodies built, lasts longer than that on a loaded
                # machine (the IncompleteReadError that lost the second round, #12).
                async with RawHttpClient("127.0.0.1", port, stack.token) as http:
                    cpu = process_cpu_seconds(measured.pid)
                    server = server_cpu_seconds(pgdata)
                    started = time.perf_counter()
                    await send(http, bodies)
                    elapsed = time.perf_counter() - started
                used = process_cpu_seconds(measured.pid) - cpu
                server_used = server_cpu_seconds(pgdata) - server
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(
                    f"{events} events in batches of {args.per_batch}: "
                    f"{events / elapsed:.0f} ev/s, intake CPU "
                    f"{1000 * used / events:.3f} ms per event, PostgreSQL CPU "
                    f"{1000 * server_used / events:.3f} ms per event; load average {load}",
                    flush=True,
                )
                if args.statements:
                    await log_statements(stack.admin_url, False)
                    with server_log.open(errors="replace") as log:
                        log.seek(logged_from)
                        for ms, calls, text in statement_times(log.read(), args.batches)[:12]:
                            print(f"  {ms:8.1f} ms per batch  {calls:6d} calls  {text}")
                if args.raw_copy:
                    copy_rate = await raw_copy(stack.admin_url, events, args.per_batch)
                    print(
                        f"  raw COPY {copy_rate:.0f} ev/s; batch / raw COPY "
                        f"{events / elapsed / copy_rate:.3f}",
                        flush=True,
                    )
        finally:
            os.killpg(measured.pid, signal.SIGINT)
            await asyncio.to_thread(measured.wait, 60)
    if args.profile:
        args.out.write_text(summarise(collapsed_stacks(raw), top=60))
        print(f"profile: {args.out} (stacks: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
