"""Branchline benchmarks: one command (`make bench`), ratios against baselines measured in
the same run on the same machine, so a noisy 2-core box still gives comparable numbers.

- intake, single events: POST /v1/events from concurrent clients (throughput, p50/p99),
  against the baseline of the same rows inserted with raw asyncpg (one INSERT per event);
- intake, batches: POST /v1/events:batch of 1,000, against raw asyncpg COPY of the same rows;
- outbox relay: events published to Kafka per second, against raw aiokafka produce of the
  same messages (acks=all).

Starts its own embedded PostgreSQL and tansu broker; prints a table and writes
bench/results.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.stack import serve  # noqa: E402

from branchline_intake.bootstrap import create_app  # noqa: E402
from branchline_shared.embedded.ports import free_port, wait_for_port  # noqa: E402
from branchline_shared.embedded.postgres import EmbeddedPostgres, prepare_runtime_dir  # noqa: E402
from branchline_shared.embedded.tansu import TansuBroker  # noqa: E402
from branchline_shared.http.auth import Role, utcnow  # noqa: E402
from branchline_shared.http.token_keys import token_codec  # noqa: E402
from branchline_shared.settings import BranchlineSettings  # noqa: E402

console = Console()


def event(i: int, run: str) -> dict[str, Any]:
    return {
        "type": "client.registered",
        "occurred_at": "2026-11-22T09:00:00+08:00",
        "client_id": f"C-{run}-{i}",
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-1"},
    }


class RawHttpClient:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less than the
    server it measures (httpx spends milliseconds of CPU per request on a 2-core box)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token

    async def __aenter__(self) -> RawHttpClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def post(self, path: str, body: bytes) -> int:
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        return status


async def bench_single_posts(port: int, token: str, n: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    run = uuid.uuid4().hex[:6]
    bodies = [json.dumps(event(i, run)).encode() for i in range(n)]
    per_worker = [bodies[w::concurrency] for w in range(concurrency)]

    async def worker(mine: list[bytes]) -> None:
        async with RawHttpClient("127.0.0.1", port, token) as client:
            for body in mine:
                started = time.perf_counter()
                status = await client.post("/v1/events", body)
                latencies.append(time.perf_counter() - started)
                assert status == 202, status

    started = time.perf_counter()
    await asyncio.gather(*[worker(m) for m in per_worker])
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "per_s": n / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def bench_raw_inserts(dsn: str, n: int, concurrency: int) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    await pool.execute(
        "CREATE TABLE IF NOT EXISTS raw_events (id uuid PRIMARY KEY, "
        "stream text, version int, body jsonb)"
    )
    body = json.dumps(event(0, "raw"))
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await pool.execute(
                "INSERT INTO raw_events VALUES ($1, $2, 1, $3::jsonb)", uuid.uuid4(), f"s-{i}", body
            )

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    await pool.close()
    return n / elapsed


async def bench_batches(url: str, headers: dict[str, str], batches: int) -> float:
    run = uuid.uuid4().hex[:6]
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        started = time.perf_counter()
        for b in range(batches):
            items = [event(b * 1000 + i, run) for i in range(1000)]
            response = await client.post("/v1/events:batch", json={"events": items})
            assert response.status_code == 200
        return batches * 1000 / (time.perf_counter() - started)


async def bench_raw_copy(dsn: str, batches: int) -> float:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS raw_copy (id uuid, stream text, version int, body text)"
    )
    body = json.dumps(event(0, "raw"))
    started = time.perf_counter()
    for b in range(batches):
        await conn.copy_records_to_table(
            "raw_copy", records=[(uuid.uuid4(), f"s-{b}-{i}", 1, body) for i in range(1000)]
        )
    rate = batches * 1000 / (time.perf_counter() - started)
    await conn.close()
    return rate


async def wait_relay_drained(dsn: str, within: float = 300) -> float:
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        while await conn.fetchval("SELECT count(*) FROM es_outbox WHERE published_at IS NULL"):
            if time.perf_counter() - started > within:
                raise TimeoutError("relay did not drain")
            await asyncio.sleep(0.05)
        return float(await conn.fetchval("SELECT count(*) FROM es_outbox"))
    finally:
        await conn.close()


async def bench_raw_produce(bootstrap: str, n: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    body = json.dumps(event(0, "raw")).encode()
    started = time.perf_counter()
    futures = [
        await producer.send("bench.raw", value=body, key=f"C-{i}".encode()) for i in range(n)
    ]
    await asyncio.gather(*futures)
    rate = n / (time.perf_counter() - started)
    await producer.stop()
    return rate


async def main() -> None:
    singles, concurrency, batches = 3000, 32, 5
    base = Path(tempfile.mkdtemp(prefix="branchline-bench-"))
    prepare_runtime_dir(base)
    pg = EmbeddedPostgres(base / "pg", free_port())
    broker = TansuBroker(free_port(), base / "tansu.log")
    pg.start()
    broker.start()
    try:
        settings = BranchlineSettings(
            data_dir=base,
            intake_database_url=pg.url("bench_intake"),
            kafka_bootstrap=broker.bootstrap,
            jwt_secret="bench-" + "x" * 40,
            db_pool_max=20,
            relay_enabled=False,
            log_level="WARNING",
        )
        token = token_codec(settings, "intake").issue(
            "bench",
            [Role.BRANCH_SYSTEM],
            ttl=__import__("datetime").timedelta(hours=1),
            now=utcnow(),
            branch_id="BR-1",
        )
        headers = {"Authorization": f"Bearer {token}"}
        results: dict[str, Any] = {}
        port = free_port()
        server = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measurement
            [sys.executable, "-m", "branchline_cli.main", "run", "intake-api"],
            env={**os.environ, **env_of(settings), "BRANCHLINE_INTAKE_PORT": str(port)},
        )
        try:
            if not wait_for_port(port, timeout_s=60):
                raise RuntimeError("intake did not start")
            await asyncio.sleep(1.0)
            console.print(f"single events: {singles} POSTs, {concurrency} concurrent ...")
            results["single"] = await bench_single_posts(port, token, singles, concurrency)
            results["raw_insert_per_s"] = await bench_raw_inserts(
                pg.url("bench_intake"), singles, concurrency
            )
            console.print(f"batches: {batches} x 1,000 ...")
            results["batch_per_s"] = await bench_batches(
                f"http://127.0.0.1:{port}", headers, batches
            )
            results["raw_copy_per_s"] = await bench_raw_copy(pg.url("bench_intake"), batches)
        finally:
            server.terminate()
            server.wait(timeout=30)
        relay_settings = settings.model_copy(update={"relay_enabled": True})
        started = time.perf_counter()
        async with serve(create_app(relay_settings)):
            published = await wait_relay_drained(pg.url("bench_intake"))
        results["relay_per_s"] = published / (time.perf_counter() - started)
        results["raw_produce_per_s"] = await bench_raw_produce(broker.bootstrap, int(published))
        report(results)
        (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        broker.stop()
        pg.stop(mode="immediate")


def env_of(settings: BranchlineSettings) -> dict[str, str]:
    return {
        "BRANCHLINE_DATA_DIR": str(settings.data_dir),
        "BRANCHLINE_INTAKE_DATABASE_URL": settings.intake_database_url,
        "BRANCHLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BRANCHLINE_JWT_SECRET": settings.resolved_jwt_secret(),
        "BRANCHLINE_RELAY_ENABLED": "false",
        "BRANCHLINE_LOG_LEVEL": "WARNING",
        "BRANCHLINE_DB_POOL_MAX": str(settings.db_pool_max),
    }


def report(r: dict[str, Any]) -> None:
    table = Table(title="Branchline benchmarks (same machine, same run)")
    for column in ("measure", "Branchline", "baseline", "ratio"):
        table.add_column(column)
    s = r["single"]
    table.add_row(
        "single POST /v1/events per s",
        f"{s['per_s']:.0f}",
        f"{r['raw_insert_per_s']:.0f} (raw asyncpg INSERT)",
        f"{s['per_s'] / r['raw_insert_per_s']:.2f}",
    )
    table.add_row("single POST p50 / p99 ms", f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f}", "", "")
    table.add_row(
        "batch events per s",
        f"{r['batch_per_s']:.0f}",
        f"{r['raw_copy_per_s']:.0f} (raw asyncpg COPY)",
        f"{r['batch_per_s'] / r['raw_copy_per_s']:.2f}",
    )
    table.add_row(
        "relay published per s",
        f"{r['relay_per_s']:.0f}",
        f"{r['raw_produce_per_s']:.0f} (raw aiokafka produce)",
        f"{r['relay_per_s'] / r['raw_produce_per_s']:.2f}",
    )
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
