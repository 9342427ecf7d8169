"""``GET /v1/audit/verify`` through a real audit API process, and the API's other requests
while it runs (#12).

Starts an embedded PostgreSQL only, appends ``--events`` entries to a ledger
(``PostgresLedger.append``, 500 per transaction, ``profile_ledger``'s envelopes; a
checkpoint signed every ``--checkpoints`` entries, 0: none), then ``--pairs`` times: starts
an audit API process (``branchline run audit-api``, the verify's default split: one process
per core at or above 500,000 entries), probes it for ``--idle-s`` seconds without a verify,
then asks for one verify and probes it the same way until the verify's answer comes, and
stops the process. A probe is one ``GET /v1/audit/entries?limit=1`` (a ledger read, and the
audit.read entry it appends) then one ``GET /healthz``, one after the other every
``--probe-interval`` seconds; it prints the verify's wall time and each probe's latency
(median, p99, max) idle and under the verify.

With ``--before-tree DIR`` (another tree's checkout, e.g. ``git archive``), each pair first
runs an API process of that tree (its ``services/audit``, ``shared`` and ``cli`` first on
``PYTHONPATH``), then this tree's: before, after, before, after...

    python -m bench.profile_verify_api [--events 1000000] [--checkpoints 0] [--pairs 3]
                                       [--before-tree DIR] [--idle-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import branchline_measures  # noqa: E402
from bench.probe_stack import probe_stack  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters.database import open_role_pool  # noqa: E402
from branchline_audit.application.checkpointing import checkpoint_now  # noqa: E402
from branchline_audit.bootstrap import audit_context  # noqa: E402
from branchline_shared.clock import SystemClock  # noqa: E402
from branchline_shared.embedded.ports import free_port  # noqa: E402
from branchline_shared.http.auth import Role, utcnow  # noqa: E402
from branchline_shared.http.token_keys import SERVICES, service_audience, token_codec  # noqa: E402

BATCH = 500


async def fill(settings: Any, events: int, checkpoints: int) -> float:
    """The ledger's ``events`` entries; the append rate (entries per second)."""
    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
    try:
        audit = audit_context(settings, pool, SystemClock())
        run = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        for first in range(0, events, BATCH):
            batch = [
                branchline_measures.recorded(i, run, datetime.now(UTC)).model_dump(mode="json")
                for i in range(first, min(first + BATCH, events))
            ]
            await audit.ledger.append(batch, now=datetime.now(UTC))
            if checkpoints and (first + BATCH) % checkpoints == 0:
                await checkpoint_now(audit)
        return events / (time.perf_counter() - started)
    finally:
        await pool.close()


def api_env(settings: Any, port: int, tree: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    values = {
        "data_dir": settings.data_dir,
        "audit_database_url": settings.audit_database_url,
        "kafka_bootstrap": settings.kafka_bootstrap,
        "topic_namespace": settings.topic_namespace,
        "jwt_secret": settings.jwt_secret.get_secret_value(),
        "audit_port": port,
        # Nothing signed by the API process while it is measured (its checkpointer would
        # sign the whole unsigned ledger at start).
        "audit_checkpoint_every_entries": 10**9,
        "audit_checkpoint_interval_s": 36_000,
        "rate_limit_enabled": "false",
    }
    for name, value in values.items():
        env[f"BRANCHLINE_{name.upper()}"] = str(value)
    if tree is not None:
        parts = [str(tree / p) for p in ("services/audit", "shared", "cli")]
        env["PYTHONPATH"] = os.pathsep.join([*parts, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def token(settings: Any) -> str:
    return token_codec(settings, "intake").issue(
        "bench-auditor",
        [Role.AUDITOR],
        ttl=timedelta(hours=2),
        now=utcnow(),
        audiences=[service_audience(settings, s) for s in SERVICES],
    )


async def probe_until(
    client: httpx.AsyncClient, done: asyncio.Future[Any] | float, interval: float
) -> tuple[list[float], list[float]]:
    """Sequential probes until ``done`` (a future, or a monotonic deadline): the entries'
    and the health check's latencies (s)."""
    entries: list[float] = []
    health: list[float] = []
    while True:
        if isinstance(done, float):
            if time.monotonic() >= done:
                break
        elif done.done():
            break
        started = time.perf_counter()
        answer = await client.get("/v1/audit/entries", params={"limit": 1})
        entries.append(time.perf_counter() - started)
        if answer.status_code != 200:
            raise AssertionError(f"entries answered {answer.status_code}: {answer.text}")
        started = time.perf_counter()
        answer = await client.get("/healthz")
        health.append(time.perf_counter() - started)
        await asyncio.sleep(interval)
    return entries, health


def spread(latencies: list[float]) -> str:
    if not latencies:
        return "none"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"n={len(ordered)} median {1e3 * statistics.median(ordered):.1f} "
        f"p99 {1e3 * p99:.1f} max {1e3 * ordered[-1]:.1f} ms"
    )


async def one_run(settings: Any, label: str, tree: Path | None, args: argparse.Namespace) -> str:
    port = free_port()
    log = Path(args.log_dir) / f"api-{label}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - a start, then only signals
            [sys.executable, "-m", "branchline_cli.main", "run", "audit-api"],
            env=api_env(settings, port, tree),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token(settings)}"}
    try:
        async with (
            httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as client,
            httpx.AsyncClient(base_url=url, timeout=600, headers=headers) as verifying,
        ):
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the API process ended: {log.read_text()[-2000:]}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the API process did not start")
                await asyncio.sleep(0.2)
            await client.get("/v1/audit/entries", params={"limit": 1})  # warm
            idle = await probe_until(client, time.monotonic() + args.idle_s, args.probe_interval)
            load = os.getloadavg()[0]
            started = time.perf_counter()
            verify = asyncio.ensure_future(verifying.get("/v1/audit/verify"))
            busy = await probe_until(client, verify, args.probe_interval)
            answer = await verify
            wall = time.perf_counter() - started
            body = answer.json()
            if answer.status_code != 200 or not body.get("ok"):
                raise AssertionError(f"verify answered {answer.status_code}: {answer.text[:500]}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 30)
    entries = int(body["entries"])
    return (
        f"{label}: verify {wall:.2f} s for {entries:,} entries ({entries / wall:,.0f} ev/s, "
        f"{body['checkpoints_checked']} checkpoints) | load {load:.2f}\n"
        f"    entries idle: {spread(idle[0])} | under verify: {spread(busy[0])}\n"
        f"    healthz idle: {spread(idle[1])} | under verify: {spread(busy[1])}"
    )


async def measure(args: argparse.Namespace, base: Path) -> None:
    async with probe_stack(base, migrated=("audit",)) as stack:
        own = stack.settings
        print(f"{args.events:,} events, load average {os.getloadavg()[0]:.2f} at start", flush=True)
        rate = await fill(own, args.events, args.checkpoints)
        print(f"filled at {rate:,.0f} ev/s | load {os.getloadavg()[0]:.2f}", flush=True)
        args.log_dir = str(base)
        before = Path(args.before_tree) if args.before_tree else None
        for _ in range(args.pairs):
            if before is not None:
                print(await one_run(own, "before", before, args), flush=True)
            print(await one_run(own, "after" if before else "api", None, args), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--checkpoints", type=int, default=0, help="sign one every N events")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--before-tree", help="another tree to alternate with (before)")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--probe-interval", type=float, default=0.02)
    args = parser.parse_args()
    if args.before_tree:
        args.before_tree = str(Path(args.before_tree).resolve())
    return run_in_scratch(measure, args, "bench-verify-api-")


if __name__ == "__main__":
    sys.exit(main())
