"""A consumer on a long partition of the dev broker keeps reading (#12).

tansu's memory store lists every stored batch of a partition in each fetch that finds records
and answers nothing once the fetch's wait is used up: past some length of log a fetch at the
configured wait never returns a record again (about 100,000 one-record batches at the default
50 ms on this machine, docs/dev-stack.md). The same thing, in a few seconds: a partition of
20,000 one-record batches (listed in about 10 ms) read with a 2 ms wait. The batch consumer
(the followup worker's, the audit consumer's) raises its wait and reads every record, and so do
the readers of whole topics (``read_topic``: dead letters; ``TopicReplay``: a rebuild)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import REGISTRY

from branchline_followup.adapters.topic_replay import TopicReplay
from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.kafka.consuming import (
    BatchConsumer,
    DeadLetters,
    RawMessage,
    stop_batch_consumer,
)
from branchline_shared.kafka.topic_reading import read_topic
from branchline_shared.settings import BranchlineSettings
from tests.support.stack import eventually, runtime_dir

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(240)]

BATCHES = 20_000
SENDERS = 8  # producers in parallel, each one record per request: one stored batch each


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    """A broker of this test's own: its long log is not the other tests' to list."""
    own = TansuBroker(free_port(), runtime_dir() / f"tansu-long-{free_port()}.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()


async def long_partition(bootstrap: str, topic: str) -> int:
    """``topic``'s one partition filled with about BATCHES one-record batches (offset 0 stored
    before any other); its log end."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producers = [
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        for _ in range(SENDERS)
    ]
    for producer in producers:
        await producer.start()
    try:
        # Offset 0 alone first: tansu answers ListOffsets(earliest), where a consumer without
        # a committed offset starts, with the batch stored EARLIEST IN TIME, so when a later
        # offset's batch was stored a moment before offset 0's (parallel senders on a loaded
        # machine) every reader started at 1 and never saw 0 (CI, docs/dev-stack.md).
        await producers[0].send_and_wait(topic, b"x" * 200, partition=0)

        async def send(producer: AIOKafkaProducer) -> int:
            last = 0
            for _ in range(BATCHES // SENDERS):
                last = (await producer.send_and_wait(topic, b"x" * 200, partition=0)).offset
            return last

        return max(await asyncio.gather(*(send(p) for p in producers))) + 1
    finally:
        for producer in producers:
            await producer.stop()


async def test_a_consumer_reads_a_partition_whose_listing_outlasts_its_fetch_wait(
    settings: BranchlineSettings, broker: TansuBroker
) -> None:
    topic = f"long-{uuid.uuid4().hex[:8]}"
    end = await long_partition(broker.bootstrap, topic)
    own = settings.model_copy(
        update={"kafka_bootstrap": broker.bootstrap, "kafka_fetch_max_wait_ms": 2}
    )
    read: set[int] = set()

    async def handle(raws: list[RawMessage]) -> None:
        read.update(raw.offset for raw in raws)

    name = f"long-log-{uuid.uuid4().hex[:8]}"
    consumer = BatchConsumer(
        settings=own,
        topics=[topic],
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        name=name,
        handle_raw=handle,
        dead_letters=DeadLetters(None, "unused", name),  # type: ignore[arg-type]
        max_records=500,
    )
    task = asyncio.create_task(consumer.run())
    try:

        async def all_read() -> bool:
            assert not task.done(), task
            assert len(read) == end, f"{len(read)} of {end} records read"
            return True

        await eventually(all_read, within=45, interval=0.2)
    finally:
        await stop_batch_consumer(consumer, task, timeout_s=10)
    assert read == set(range(end))
    wait = REGISTRY.get_sample_value("branchline_consumer_fetch_wait_ms", {"consumer": name})
    assert wait is not None
    assert wait > 2  # raised, not merely lucky


async def test_the_topic_readers_read_a_partition_whose_listing_outlasts_their_fetch_wait(
    broker: TansuBroker,
) -> None:
    topic = f"long-{uuid.uuid4().hex[:8]}"
    end = await long_partition(broker.bootstrap, topic)

    # A fetch that times out still carries the high watermark: what only needs the log end
    # (GroupOffsets.bounds, TopicReplay's end probe) is not stalled by a short wait.
    near_end = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=None, fetch_max_wait_ms=2
    )
    await near_end.start()
    try:
        tp = TopicPartition(topic, 0)
        near_end.assign([tp])
        near_end.seek(tp, end - 1)
        for _ in range(50):
            await near_end.getmany(timeout_ms=100)
            if near_end.highwater(tp) is not None:
                break
        assert near_end.highwater(tp) == end
    finally:
        await near_end.stop()

    records = await read_topic(broker.bootstrap, [topic], within_s=45, fetch_wait_ms=2)
    assert [r.offset for r in records] == list(range(end))
    raised = REGISTRY.get_sample_value(
        "branchline_consumer_fetch_wait_ms", {"consumer": "topic-reader"}
    )
    assert raised is not None
    assert raised > 2

    replay = TopicReplay(broker.bootstrap, [topic], stall_timeout_s=20, fetch_wait_ms=2)
    assert await replay.start() == end
    try:
        replayed = [message.offset async for message in replay.messages()]
    finally:
        await replay.stop()
    assert replayed == list(range(end))
