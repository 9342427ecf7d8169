"""The topic read of ``branchline rebuild followup`` alone (``TopicReplay``), which
``bench/profile_rebuild.py`` leaves out (it replays a message list): this process's CPU per
event, the broker's, and the rate; for topics written with the producer's batches of 16 KiB
(aiokafka's default, the relay's before Round 28) and of 512 KiB (``BATCH_BYTES``, the relay's
since), and with the merge of the partitions before Round 29 (``--merge scan``: every
partition's head keyed per record) or as the product merges them (``heap``) (#12, Round 29).

A tansu broker of its own (in memory); two topics (``intake.events``, ``followup.events``)
of ``--partitions`` partitions for each batch size, the same generated history's envelopes
(``bench.profile_followup.workload``, keyed by subject, with the relay's headers) written to
each by a producer as the relay's (linger 2 ms) differing only in ``max_batch_size``, 500
sends per round (the relay's round). Then one replay per item of ``--runs`` (``BATCH:MERGE``,
e.g. ``512:heap,16:heap,16:heap,512:heap``), each reading every record to the end.

    python -m bench.profile_topic_replay [--clients 2000] [--partitions 4]
        [--runs 512:scan,512:heap,512:heap,512:scan] [--cprofile /tmp/replay.pstats]
        [--young 50000]

``--young``: the collector's young threshold while replaying, as the command sets it once its
heap is settled (without it, Python's default 700: the old merge's allocations, a key tuple per
partition per record, then cost more in young collections than the merge itself).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import NewTopic  # noqa: E402

from bench.probe_broker import broker_with_topics  # noqa: E402
from bench.profile_followup import workload  # noqa: E402
from bench.scratch import raw_messages  # noqa: E402
from bench.stack import process_cpu_seconds  # noqa: E402
from branchline_followup.adapters import topic_replay  # noqa: E402
from branchline_followup.adapters.topic_replay import ReplayedMessage, TopicReplay  # noqa: E402
from branchline_shared.kafka.partitioning import default_partition  # noqa: E402
from branchline_shared.kafka.starting import closed, start_or_close  # noqa: E402

PRODUCT_MERGE = TopicReplay.messages


async def scan_messages(self: TopicReplay) -> AsyncIterator[ReplayedMessage]:
    """The merge before Round 29: a key of every partition's head per record, their min."""
    await self._fill(self._partitions)
    while True:
        heads = [
            (buffer[0].timestamp, self._rank[tp.topic], tp.partition, buffer[0].offset, tp)
            for tp, buffer in self._buffers.items()
            if buffer
        ]
        if not heads:
            return
        tp = min(heads)[-1]
        record = self._buffers[tp].popleft()
        yield ReplayedMessage(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.value,
            tuple(record.headers or ()),
        )
        if not self._buffers[tp]:
            await self._fill([tp])


def topics(batch_kib: int) -> list[str]:
    return [f"b{batch_kib}.intake.events", f"b{batch_kib}.followup.events"]


async def fill(bootstrap: str, batch_kib: int, values: list[tuple[Any, Any, Any]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=2,
        max_batch_size=batch_kib * 1024,
        max_request_size=4 * 1024 * 1024,
        partitioner=default_partition,
    )
    await start_or_close(producer)
    try:
        topic = topics(batch_kib)[0]
        for i in range(0, len(values), 500):  # the relay's round
            sent = [
                await producer.send(topic, value=value, key=key, headers=list(headers))
                for key, value, headers in values[i : i + 500]
            ]
            await asyncio.gather(*sent)
    finally:
        await closed(producer)


async def replay(
    bootstrap: str, batch_kib: int, broker_pid: int
) -> tuple[int, float, float, float]:
    source = TopicReplay(bootstrap, topics(batch_kib))
    total = await source.start()
    broker0 = process_cpu_seconds(broker_pid)
    started, cpu0 = time.perf_counter(), time.process_time()
    read = 0
    async for _ in source.messages():
        read += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    broker = process_cpu_seconds(broker_pid) - broker0
    await source.stop()
    if read != total:
        raise AssertionError(f"read {read} of {total}")
    return read, wall, cpu, broker


def write_profile(profiler: Any, path: str) -> None:
    import io
    import pstats

    profiler.dump_stats(path)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
    Path(f"{path}.txt").write_text(text.getvalue())
    print(f"CPU profile: {path}.txt")


async def main(args: argparse.Namespace) -> None:
    events = workload("history", args.clients)
    values = [(r.key, r.value, r.headers) for r in raw_messages(events)]
    runs = [run.split(":") for run in args.runs.split(",")]
    sizes = sorted({int(size) for size, _ in runs})
    new = [NewTopic(t, args.partitions, 1) for size in sizes for t in topics(size)]
    async with broker_with_topics(*new) as (broker, pid):
        for size in sizes:
            t0 = time.perf_counter()
            await fill(broker.bootstrap, size, values)
            print(
                f"{len(values)} events written with {size} KiB batches in "
                f"{time.perf_counter() - t0:.1f} s",
                flush=True,
            )
        profiler = None
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)
        results: dict[str, list[tuple[float, float, float]]] = {}
        if args.young:  # the command's young generation once its heap is settled
            _young, middle, old = gc.get_threshold()
            gc.set_threshold(args.young, middle, old)
        for size, merge in runs:
            topic_replay.TopicReplay.messages = (  # type: ignore[method-assign]
                PRODUCT_MERGE if merge == "heap" else scan_messages
            )
            if profiler is not None:
                profiler.enable()
            n, wall, cpu, broker_cpu = await replay(broker.bootstrap, int(size), pid)
            if profiler is not None:
                profiler.disable()
            rate = n / wall
            results.setdefault(f"{size}:{merge}", []).append(
                (rate, 1e6 * cpu / n, 1e6 * broker_cpu / n)
            )
            print(
                f"  {size} KiB, {merge}: {n} events, {rate:,.0f} ev/s, process "
                f"{1e6 * cpu / n:.1f} µs CPU/event, broker {1e6 * broker_cpu / n:.1f} µs/event",
                flush=True,
            )
        topic_replay.TopicReplay.messages = PRODUCT_MERGE  # type: ignore[method-assign]
        for key, rows in results.items():
            print(
                f"{key}: {min(r[0] for r in rows):,.0f}..{max(r[0] for r in rows):,.0f} ev/s, "
                f"process {min(r[1] for r in rows):.1f}..{max(r[1] for r in rows):.1f} µs/event, "
                f"broker {min(r[2] for r in rows):.1f}..{max(r[2] for r in rows):.1f} µs/event"
            )
        if profiler is not None:
            write_profile(profiler, args.cprofile)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--runs", default="512:scan,512:heap,512:heap,512:scan")
    parser.add_argument("--cprofile")
    parser.add_argument(
        "--young",
        type=int,
        default=0,
        help="the collector's young threshold while replaying (the command's settled heap "
        "raises it to rebuild.YOUNG_THRESHOLD, 50000; 0: Python's default)",
    )
    asyncio.run(main(parser.parse_args()))
