"""The baselines every Branchline figure is divided by, measured in the same run.

- raw asyncpg COPY of the same event bodies, 1,000 rows per transaction (the ceiling of a
  batch write into PostgreSQL from Python);
- raw asyncpg, one event per transaction from 64 tasks (the ceiling of "one commit per
  event", which group commit has to beat);
- raw aiokafka produce of the same messages, acks=all (the ceiling of the outbox relay).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench.workload import event_body
from branchline_shared.kafka.starting import closed, start_or_close


async def raw_copy(dsn: str, events: int, per_transaction: int = 1000) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS raw_copy; CREATE TABLE raw_copy (id uuid PRIMARY KEY, "
            "stream text, version int, body jsonb)"
        )
        body = orjson.dumps(event_body(0, "raw")).decode()
        batches = max(1, events // per_transaction)
        started = 0.0
        for b in range(-1, batches):  # the first round warms the connection up, untimed
            if b == 0:
                started = time.perf_counter()
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "raw_copy",
                    records=[(uuid.uuid4(), f"s-{b}-{i}", 1, body) for i in range(per_transaction)],
                )
        return batches * per_transaction / (time.perf_counter() - started)
    finally:
        await conn.close()


async def raw_one_per_transaction(dsn: str, events: int, tasks: int = 64) -> float:
    pool = await asyncpg.create_pool(dsn, min_size=tasks, max_size=tasks)
    try:
        await pool.execute(
            "DROP TABLE IF EXISTS raw_events; CREATE TABLE raw_events (id uuid PRIMARY KEY, "
            "stream text, version int, body jsonb)"
        )
        body = orjson.dumps(event_body(0, "raw")).decode()
        remaining = iter(range(events))

        async def task() -> None:
            for i in remaining:
                await pool.execute(
                    "INSERT INTO raw_events VALUES ($1, $2, 1, $3::jsonb)",
                    uuid.uuid4(),
                    f"s-{i}",
                    body,
                )

        started = time.perf_counter()
        async with asyncio.timeout(600):
            await asyncio.gather(*(task() for _ in range(tasks)))
        return events / (time.perf_counter() - started)
    finally:
        await pool.close()


async def raw_produce(bootstrap: str, topic: str, events: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await start_or_close(producer)
    try:
        body = orjson.dumps(event_body(0, "raw"))
        started = time.perf_counter()
        futures = [
            await producer.send(topic, value=body, key=f"C-{i}".encode()) for i in range(events)
        ]
        async with asyncio.timeout(300):
            await asyncio.gather(*futures)
        return events / (time.perf_counter() - started)
    finally:
        await closed(producer)
