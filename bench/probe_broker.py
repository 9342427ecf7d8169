"""Does the benchmark's broker cost more per event as its log grows? (#12)

The benchmark's stack runs tansu with its in-memory storage. There, a fetch that finds data
lists every record batch ever stored in the partition before it picks those from the fetch's
offset on (tansu 0.6, ``dynostore.rs``, ``fetch``), so a consumer reading at the tail pays for
the whole log in every fetch, and the log only grows through a benchmark run. This tool
starts a broker alone, grows one topic's log in small batches (as the outbox relays write it
under a steady load), and at each size measures the broker's CPU (all its threads, from
/proc) for rounds of "produce a small batch, read it at the tail", as the stack's consumers do.

    python -m bench.probe_broker --partitions 4 --batch 10 --sizes 1000,5000,10000,20000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.protocol.fetch import FetchRequest  # noqa: E402

from bench.probe_stack import tansu_broker  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from bench.workload import event_body  # noqa: E402
from branchline_shared.embedded.tansu import TansuBroker  # noqa: E402
from branchline_shared.kafka.starting import closed, start_or_close  # noqa: E402


@contextlib.asynccontextmanager
async def broker_with_topics(*topics: NewTopic) -> AsyncIterator[tuple[TansuBroker, int]]:
    """A tansu broker of its own (in memory) holding ``topics``, and its process id (its CPU
    is what the probes read); stopped when the block ends."""
    with tansu_broker() as broker:
        pid = broker.pid
        assert pid is not None
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics(list(topics))
        await admin.close()
        yield broker, pid


async def last_record_fetches(
    client: Any, node: int, topic: str, end: int, wait_ms: int, times: int, broker_pid: int
) -> tuple[float, int, float]:
    """``times`` raw fetches of partition 0's record at offset ``end`` with ``wait_ms`` of
    fetch wait: the median seconds one took, how many returned a record, and the broker's CPU
    seconds per fetch (shared by the long-log probes, #12)."""
    request = FetchRequest(wait_ms, 1, 1 << 20, 0, [(topic, [(0, end, 1 << 20)])])
    took, got, cpu = [], 0, 0.0
    for _ in range(times):
        cpu0, t0 = process_cpu_seconds(broker_pid), time.perf_counter()
        response = await client.send(node, request)
        took.append(time.perf_counter() - t0)
        cpu += process_cpu_seconds(broker_pid) - cpu0
        got += any(part[-1] for _t, parts in response.topics for part in parts)
    return statistics.median(took), got, cpu / times


async def produce_batch(producer: AIOKafkaProducer, body: bytes, first: int, size: int) -> None:
    sends = [
        await producer.send("t", value=body, key=f"C-{first + i}".encode()) for i in range(size)
    ]
    await asyncio.gather(*sends)


async def read(consumer: AIOKafkaConsumer, wanted: int) -> None:
    got = 0
    while got < wanted:
        fetched = await consumer.getmany(timeout_ms=2000)
        if not fetched:
            raise RuntimeError(f"the consumer read {got} of {wanted} records")
        got += sum(len(records) for records in fetched.values())
    await consumer.commit()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=10, help="events per produced batch")
    parser.add_argument("--sizes", default="1000,5000,10000,20000", help="batches in the log")
    parser.add_argument("--rounds", type=int, default=200, help="tail rounds per size")
    args = parser.parse_args()
    async with broker_with_topics(NewTopic("t", args.partitions, 1)) as (broker, pid):
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
        consumer = AIOKafkaConsumer(
            "t",
            bootstrap_servers=broker.bootstrap,
            group_id="probe",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,  # the product's default (kafka_fetch_max_wait_ms)
        )
        await start_or_close(producer)
        await start_or_close(consumer)
        body = orjson.dumps(event_body(0, "probe"))
        produced = 0
        print(
            f"tansu in memory, {args.partitions} partitions, {args.batch} events per produce",
            flush=True,
        )
        for size in (int(s) for s in args.sizes.split(",")):
            while produced < size * args.batch:
                await produce_batch(producer, body, produced, args.batch)
                produced += args.batch
            await read(consumer, produced - await committed(consumer))
            cpu0, wall0 = process_cpu_seconds(pid), time.perf_counter()
            for _ in range(args.rounds):
                await produce_batch(producer, body, produced, args.batch)
                produced += args.batch
                await read(consumer, args.batch)
            cpu1, wall1 = process_cpu_seconds(pid), time.perf_counter()
            events = args.rounds * args.batch
            print(
                f"log of {produced // args.batch:>6} produce rounds ({produced:>7} events): "
                f"broker CPU {1e6 * (cpu1 - cpu0) / events:6.0f} us per event read at the "
                f"tail; a round (produce, read) {1e3 * (wall1 - wall0) / args.rounds:5.1f} ms",
                flush=True,
            )
        await closed(consumer)
        await closed(producer)


async def committed(consumer: AIOKafkaConsumer) -> int:
    """Records of the topic the group committed so far (all its partitions)."""
    total = 0
    for tp in consumer.assignment():
        total += await consumer.committed(tp) or 0
    return total


if __name__ == "__main__":
    asyncio.run(main())
