"""How long does the benchmark's broker hold a fetch, and what does the wait cost? (#12)

The consumers (the followup worker, the audit consumer) fetch with
``BRANCHLINE_KAFKA_FETCH_MAX_WAIT_MS`` at the broker and ``fetch_min_bytes`` 1 (aiokafka's
default). Apache Kafka answers a fetch as soon as ``fetch_min_bytes`` are there. This tool
starts a tansu broker alone (as the tests and ``branchline dev`` do, in memory) and measures,
for each max wait:

- ``raw``: one Fetch request's round trip (aiokafka's client, no consumer) when records are
  already there at the fetch's offset, when none are and none come, and when one is produced
  half-way through the wait (does the fetch return it, and when);
- ``consumer``: an ``AIOKafkaConsumer`` (assigned, no group) reading a trickle produced at a
  fixed rate: produce -> consumed latency p50 / p99, the consumer process's and the broker's
  CPU per second; then the same at rest (nothing produced): the idle cost of the wait.

    python -m bench.probe_fetch_wait [--waits 50,20,10,0] [--reps 20] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import NewTopic  # noqa: E402
from aiokafka.client import AIOKafkaClient  # noqa: E402
from aiokafka.protocol.fetch import FetchRequest  # noqa: E402

from bench.loadgen import percentile  # noqa: E402
from bench.probe_broker import broker_with_topics, last_record_fetches  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from branchline_shared.kafka.starting import closed, start_or_close  # noqa: E402

TOPIC = "t"
TP = TopicPartition(TOPIC, 0)
FRACTIONS = (0.2, 0.6)  # when, within the wait, the raw part's record is produced


def ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


async def fetch_once(
    client: AIOKafkaClient, node: int, offset: int, max_wait_ms: int
) -> tuple[float, int]:
    """One Fetch request at ``offset``: its round trip (s) and the bytes of records it got."""
    request = FetchRequest(max_wait_ms, 1, 1 << 20, 0, [(TOPIC, [(0, offset, 1 << 20)])])
    started = time.perf_counter()
    response = await client.send(node, request)
    took = time.perf_counter() - started
    got = 0
    for _topic, partitions in response.topics:
        for part in partitions:
            records = part[-1]
            got += len(records or b"")
    return took, got


async def raw(bootstrap: str, producer: AIOKafkaProducer, waits: list[int], reps: int) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    client.add_topic(TOPIC)
    await client.force_metadata_update()
    node = client.cluster.leader_for_partition(TP)
    assert node is not None
    end = (await producer.send_and_wait(TOPIC, b"x" * 200, partition=0)).offset + 1
    try:
        for wait in waits:
            there, empty, there_got = [], [], 0
            mid: list[list[float]] = [[] for _ in FRACTIONS]
            mid_got = [0 for _ in FRACTIONS]
            for _ in range(reps):
                # records already there: ten produced, then a fetch from the first of them
                first = end
                for _ in range(10):
                    end = (await producer.send_and_wait(TOPIC, b"x" * 200, partition=0)).offset + 1
                took, got = await fetch_once(client, node, first, wait)
                there.append(took)
                there_got += got > 0
                # nothing there, nothing comes
                took, got = await fetch_once(client, node, end, wait)
                empty.append(took)
                # one record produced a fifth, then three fifths, into the wait
                for i, fraction in enumerate(FRACTIONS):
                    fetching = asyncio.ensure_future(fetch_once(client, node, end, wait))
                    await asyncio.sleep(fraction * wait / 1000)
                    sent = (await producer.send_and_wait(TOPIC, b"x" * 200, partition=0)).offset
                    end = sent + 1
                    took, got = await fetching
                    mid[i].append(took)
                    mid_got[i] += got > 0
            print(
                f"raw  max_wait {wait:3d} ms, min_bytes 1: records there: fetch "
                f"{ms(statistics.median(there)):5.1f} ms median "
                f"(p90 {ms(percentile(sorted(there), 0.9)):5.1f}), returned {there_got}/{reps}; "
                f"nothing there: "
                f"{ms(statistics.median(empty)):5.1f} ms; one produced during it: "
                + "; ".join(
                    f"at {fraction * wait:.0f} ms: {ms(statistics.median(mid[i])):5.1f} ms, "
                    f"returned {mid_got[i]}/{reps}"
                    for i, fraction in enumerate(FRACTIONS)
                ),
                flush=True,
            )
    finally:
        await client.close()


async def long_log(
    bootstrap: str, producer: AIOKafkaProducer, broker_pid: int, waits: list[int], sizes: list[int]
) -> None:
    """Grow one partition in one-record batches (each a stored batch, as a relay round leaves
    one per partition it wrote to) and, at each size, fetch the last batch with each max wait:
    how long it takes, the broker's CPU for it, and whether it returned the record."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    client.add_topic("long")
    await client.force_metadata_update()
    node = client.cluster.leader_for_partition(TopicPartition("long", 0))
    assert node is not None
    batches = 0
    try:
        for size in sizes:
            while batches < size:  # one at a time: one stored batch each
                await producer.send_and_wait("long", b"x" * 200, partition=0)
                batches += 1
            end = (await producer.send_and_wait("long", b"x" * 200, partition=0)).offset
            batches += 1
            for wait in waits:
                took, got, cpu = await last_record_fetches(
                    client, node, "long", end, wait, 5, broker_pid
                )
                print(
                    f"long log ~{end + 1:6d} records: max_wait {wait:3d} ms: fetch of the last "
                    f"record {ms(took):6.1f} ms median, returned it {got}/5, "
                    f"broker CPU {ms(cpu):6.1f} ms per fetch",
                    flush=True,
                )
    finally:
        await client.close()


async def consumer_run(
    bootstrap: str,
    producer: AIOKafkaProducer,
    broker_pid: int,
    wait: int,
    rate: float,
    seconds: float,
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=wait)
    await start_or_close(consumer)
    consumer.assign([TP])
    await consumer.seek_to_end(TP)
    lags: list[float] = []
    stop = asyncio.Event()
    fetches = 0

    async def read() -> None:
        nonlocal fetches
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            now = time.time()
            if batches:
                fetches += 1
            for records in batches.values():
                lags.extend(now - record.timestamp / 1000 for record in records)

    reader = asyncio.ensure_future(read())
    try:
        await asyncio.sleep(1.0)
        # at rest: nothing produced
        own0, broker0, t0 = (
            time.process_time(),
            process_cpu_seconds(broker_pid),
            time.perf_counter(),
        )
        await asyncio.sleep(seconds)
        idle = time.perf_counter() - t0
        own_idle = (time.process_time() - own0) / idle
        broker_idle = (process_cpu_seconds(broker_pid) - broker0) / idle
        # a trickle at ``rate``, one record at a time
        own0, broker0, t0 = (
            time.process_time(),
            process_cpu_seconds(broker_pid),
            time.perf_counter(),
        )
        sent, interval = 0, 1 / rate
        while time.perf_counter() - t0 < seconds:
            sent += 1
            await producer.send(TOPIC, b"x" * 200, partition=0)
            delay = t0 + sent * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(0.5)
        busy = time.perf_counter() - t0
        own_busy = (time.process_time() - own0) / busy
        broker_busy = (process_cpu_seconds(broker_pid) - broker0) / busy
    finally:
        stop.set()
        await reader
        await closed(consumer)
    lags.sort()
    print(
        f"consumer fetch_max_wait {wait:3d} ms: {rate:.0f} rec/s produce -> consumed p50 "
        f"{ms(percentile(lags, 0.5)):5.1f} p99 {ms(percentile(lags, 0.99)):5.1f} ms "
        f"({len(lags)} of {sent}; {len(lags) / max(fetches, 1):.1f} records per non-empty round); "
        f"CPU (core fraction) loaded: this process {own_busy:.3f}, broker {broker_busy:.3f}; "
        f"at rest: this process {own_idle:.4f}, broker {broker_idle:.4f}; "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waits", default="50,20,10,0")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2, help="consumer runs per wait, alternated")
    parser.add_argument(
        "--sizes", default="", help="long-log part: batches in the log, e.g. 1000,5000"
    )
    parser.add_argument("--parts", default="raw,consumer")
    args = parser.parse_args()
    waits = [int(w) for w in args.waits.split(",")]
    topics = (NewTopic(TOPIC, 1, 1), NewTopic("long", 1, 1))
    async with broker_with_topics(*topics) as (broker, pid):
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
        await start_or_close(producer)
        try:
            print(f"tansu {broker.bootstrap}, in memory, 1 partition", flush=True)
            parts = set(args.parts.split(","))
            if "raw" in parts:
                await raw(broker.bootstrap, producer, waits, args.reps)
            if args.sizes:
                sizes = [int(n) for n in args.sizes.split(",")]
                await long_log(broker.bootstrap, producer, pid, waits, sizes)
            for _ in range(args.rounds if "consumer" in parts else 0):
                for wait in waits:
                    await consumer_run(
                        broker.bootstrap, producer, pid, wait, args.rate, args.seconds
                    )
        finally:
            await closed(producer)


if __name__ == "__main__":
    asyncio.run(main())
