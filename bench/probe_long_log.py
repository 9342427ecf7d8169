"""Does a long partition of the dev broker stall the consumers at their fetch wait? (#12)

tansu's memory store lists every stored batch of a partition in each fetch that finds records
and answers nothing once the fetch's wait is used up (docs/dev-stack.md). This tool starts a
tansu alone, grows one partition in one-record batches (eight producers in parallel, each one
record per request, ``linger_ms`` 0: one stored batch each, as a relay round leaves one per
partition it wrote to) and at each size:

- ``raw``: fetches of the last record with each max wait (aiokafka's client, single Fetch
  requests): round trip, whether it returned the record, the broker's CPU per fetch;
- ``consumer``: the product's batch consumer (``BatchConsumer``, the followup worker's and the
  audit consumer's loop) in a fresh group committed at the log end minus ``--behind``, at the
  default fetch wait (50 ms): how long until it has read those records (``never`` within
  ``--give-up`` s: the stall), the fetch wait it ended with; then ``--trickle`` records/s
  produced one at a time for ``--seconds``: produce -> handled p50 / p99; then at rest
  (nothing produced) this process's and the broker's CPU per second.

    python -m bench.probe_long_log [--sizes 20000,100000,200000] [--waits 50,100,200,500,1000]
        [--adaptive on|off]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import NewTopic  # noqa: E402
from aiokafka.client import AIOKafkaClient  # noqa: E402
from aiokafka.structs import OffsetAndMetadata  # noqa: E402

from bench.loadgen import percentile  # noqa: E402
from bench.probe_broker import broker_with_topics, last_record_fetches  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from branchline_shared.kafka import consuming  # noqa: E402
from branchline_shared.kafka.consuming import (  # noqa: E402
    BatchConsumer,
    DeadLetters,
    RawMessage,
    stop_batch_consumer,
)
from branchline_shared.kafka.starting import closed, start_or_close  # noqa: E402

TOPIC = "long"
TP = TopicPartition(TOPIC, 0)
SENDERS = 8


async def grow(producers: list[AIOKafkaProducer], batches: int) -> int:
    """``batches`` more one-record batches; the log end after them."""

    async def send(producer: AIOKafkaProducer, count: int) -> int:
        last = 0
        for _ in range(count):
            value = repr(time.time()).encode().ljust(200)
            last = (await producer.send_and_wait(TOPIC, value, partition=0)).offset
        return last

    per = max(batches // len(producers), 1)
    return max(await asyncio.gather(*(send(p, per) for p in producers))) + 1


async def raw(bootstrap: str, pid: int, end: int, waits: list[int]) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    client.add_topic(TOPIC)
    await client.force_metadata_update()
    node = client.cluster.leader_for_partition(TP)
    assert node is not None
    try:
        for wait in waits:
            took, got, cpu = await last_record_fetches(client, node, TOPIC, end - 1, wait, 3, pid)
            print(
                f"  raw fetch of the last record, max_wait {wait:4d} ms: "
                f"{1000 * took:6.1f} ms median, returned it {got}/3, "
                f"broker CPU {1000 * cpu:6.1f} ms per fetch",
                flush=True,
            )
    finally:
        await client.close()


async def commit_at(bootstrap: str, group: str, offset: int) -> None:
    committer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await start_or_close(committer)
    try:
        committer.assign([TP])
        await committer.commit({TP: OffsetAndMetadata(offset, "")})
    finally:
        await closed(committer)


async def consumer_run(
    bootstrap: str, pid: int, producers: list[AIOKafkaProducer], end: int, args: Any, n: int
) -> int:
    group = f"probe-{n}"
    trickle_from = end  # the records produced from here on are timed
    await commit_at(bootstrap, group, end - args.behind)
    lags: list[float] = []
    handled = 0
    first_read = asyncio.Event()

    async def handle(raws: list[RawMessage]) -> None:
        nonlocal handled
        now = time.time()
        handled += len(raws)
        if handled >= args.behind:
            first_read.set()
        for message in raws:
            if message.offset >= trickle_from and message.value:
                lags.append(now - float(message.value.strip()))

    settings: Any = SimpleNamespace(
        kafka_bootstrap=bootstrap,
        kafka_session_timeout_ms=1000,
        kafka_heartbeat_interval_ms=200,
        kafka_fetch_max_wait_ms=args.wait,  # the product's default: 50
    )
    name = f"probe-consumer-{n}"
    consumer = BatchConsumer(
        settings=settings,
        topics=[TOPIC],
        group_id=group,
        name=name,
        handle_raw=handle,
        dead_letters=DeadLetters(None, "unused", name),
        max_records=500,
    )
    started = time.perf_counter()
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(30):
            await consumer.started.wait()
        joined = time.perf_counter() - started
        try:
            async with asyncio.timeout(args.give_up):
                await first_read.wait()
            caught = f"{time.perf_counter() - started - joined:5.1f} s after its join"
        except TimeoutError:
            caught = f"never within {args.give_up:.0f} s ({handled} of {args.behind})"
        wait = consuming.FETCH_WAIT.labels(name)._value.get()
        line = (
            f"  consumer at {args.wait} ms, {args.behind} behind: read them {caught}; "
            f"wait now {wait:.0f}"
        )
        if first_read.is_set():
            sent, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                sent += 1
                value = repr(time.time()).encode().ljust(200)
                end = (await producers[0].send_and_wait(TOPIC, value, partition=0)).offset + 1
                delay = t0 + sent / args.trickle - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.sleep(2.0)
            lags.sort()
            lags = lags or [float("nan")]
            own0, broker0, r0 = time.process_time(), process_cpu_seconds(pid), time.perf_counter()
            await asyncio.sleep(args.rest)
            took = time.perf_counter() - r0
            wait = consuming.FETCH_WAIT.labels(name)._value.get()
            line += (
                f"; trickle {args.trickle:.0f}/s: produce -> handled p50 "
                f"{1000 * percentile(lags, 0.5):6.1f} p99 {1000 * percentile(lags, 0.99):6.1f} "
                f"ms ({len(lags)} of {sent}); wait then {wait:.0f} ms; at rest CPU ms/s: "
                f"this process {1000 * (time.process_time() - own0) / took:5.1f}, broker "
                f"{1000 * (process_cpu_seconds(pid) - broker0) / took:5.1f}"
            )
        print(line, flush=True)
    finally:
        await stop_batch_consumer(consumer, task, timeout_s=10)
    return end


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20000,100000,200000", help="batches in the log")
    parser.add_argument("--waits", default="50,100,200,500,1000")
    parser.add_argument("--behind", type=int, default=100, help="records the consumer is behind")
    parser.add_argument("--give-up", type=float, default=20.0)
    parser.add_argument("--trickle", type=float, default=10.0, help="records/s after catching up")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rest", type=float, default=5.0)
    parser.add_argument(
        "--wait", type=int, default=50, help="the consumer's configured fetch wait, ms"
    )
    parser.add_argument(
        "--adaptive", choices=("on", "off"), default="on", help="off: the wait is never raised"
    )
    args = parser.parse_args()
    if args.adaptive == "off":  # Round 14's consumer: the configured wait, always
        consuming.FetchWait.after_round = lambda self, **_: False  # type: ignore[method-assign]
    waits = [int(w) for w in args.waits.split(",")]
    async with broker_with_topics(NewTopic(TOPIC, 1, 1)) as (broker, pid):
        producers = [
            AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=0)
            for _ in range(SENDERS)
        ]
        for producer in producers:
            await start_or_close(producer)
        try:
            end = 0
            print(f"tansu {broker.bootstrap}, in memory, adaptive wait {args.adaptive}", flush=True)
            for n, size in enumerate(int(s) for s in args.sizes.split(",")):
                t0 = time.perf_counter()
                end = await grow(producers, size - end)
                print(
                    f"log of {end} one-record batches (grown in {time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )
                await raw(broker.bootstrap, pid, end, waits)
                end = await consumer_run(broker.bootstrap, pid, producers, end, args, n)
        finally:
            for producer in producers:
                await closed(producer)


if __name__ == "__main__":
    asyncio.run(main())
