"""A consumer group held in a rebalance on the real broker, to stop a consumer while it joins.

A member whose revocation callback has not returned keeps heartbeating but does not rejoin;
the broker holds every other member's JoinGroup until it does (tansu with no bound, Apache
Kafka up to the rebalance timeout). Used by the stop-while-joining test and
``bench/stop_while_joining.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.conn import AIOKafkaConnection

from branchline_shared.background import cancel_and_wait
from branchline_shared.kafka.consuming import BatchConsumer, DeadLetters, RawMessage
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import TopicSpec, ensure_topics
from branchline_shared.settings import CommonSettings
from tests.support.kafka import produce
from tests.support.stack import eventually

PARTITIONS = 4


class HeldRevocation(ConsumerRebalanceListener):  # type: ignore[misc]
    """Blocks a member's rebalance at its revocation of partitions it held until released."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.released = asyncio.Event()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked and not self.released.is_set():
            self.holding.set()
            await self.released.wait()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def plain_member(settings: CommonSettings, topic: str, group: str, name: str) -> AIOKafkaConsumer:
    """A group member that reads and never commits (what it reads is not the subject)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        client_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )


async def until(condition: Callable[[], bool], within: float = 30) -> None:
    """Wait, bounded, until ``condition`` holds."""

    async def holds() -> bool:
        return condition()

    await eventually(holds, within=within)


class JoinRequests:
    """Counts the JoinGroup requests each client (by client id) has written to the broker, so
    that a test waits for a consumer's join to be at the broker instead of sleeping: inside
    ``with JoinRequests() as joins``, aiokafka's connections count as they send."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self._send = AIOKafkaConnection.send

    def __enter__(self) -> JoinRequests:
        original, sent = self._send, self.sent

        def counting(conn: AIOKafkaConnection, request: Any, *args: Any, **kw: Any) -> Any:
            answer = original(conn, request, *args, **kw)  # written (or raised) by now
            if type(request).__name__.startswith("JoinGroupRequest"):
                client = conn._client_id  # what the request header names
                sent[client] = sent.get(client, 0) + 1
            return answer

        AIOKafkaConnection.send = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        AIOKafkaConnection.send = self._send  # type: ignore[method-assign]

    async def beyond(self, client_id: str, count: int, within: float = 30) -> None:
        """Until ``client_id`` has sent more than ``count`` JoinGroup requests."""
        await until(lambda: self.sent.get(client_id, 0) > count, within=within)


@dataclass
class Member:
    """A plain member reading in the background; ``received`` holds (partition, offset)."""

    consumer: AIOKafkaConsumer
    received: set[tuple[int, int]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    async def start(self, topic: str, listener: ConsumerRebalanceListener) -> None:
        self.consumer.subscribe([topic], listener=listener)
        await self.consumer.start()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            self.received |= {(r.partition, r.offset) for rs in batches.values() for r in rs}

    async def stop(self) -> None:
        if self.task is not None:
            with contextlib.suppress(Exception):
                await cancel_and_wait(self.task)
        await self.consumer.stop()


@dataclass
class Handled:
    """What the consumer under test handled, as (partition, offset)."""

    records: set[tuple[int, int]] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, messages: list[RawMessage]) -> None:
        self.records |= {(m.partition, m.offset) for m in messages}
        self.changed.set()

    async def reach(self, count: int, within: float) -> None:
        async with asyncio.timeout(within):
            while len(self.records) < count:
                self.changed.clear()
                await self.changed.wait()


@dataclass
class Group:
    """A fresh topic and group, and the batch consumer under test."""

    settings: CommonSettings
    topic: str
    group: str
    handled: Handled
    consumer: BatchConsumer
    task: asyncio.Task[None] | None = None

    consumer_name = "joining"
    """The consumer under test's client id (``fresh_group`` names it)."""

    def start_consumer(self) -> None:
        self.task = asyncio.create_task(self.consumer.run())

    async def send(self, count: int, first: int = 0) -> None:
        await produce(
            self.settings.kafka_bootstrap,
            self.topic,
            [(f"k{n}".encode(), b"{}") for n in range(first, first + count)],
        )

    def member(self, name: str) -> Member:
        return Member(plain_member(self.settings, self.topic, self.group, name))


@contextlib.asynccontextmanager
async def fresh_group(settings: CommonSettings) -> AsyncIterator[Group]:
    topic = f"joining-{uuid.uuid4().hex}"
    group = f"joining-{uuid.uuid4().hex}"
    await ensure_topics(settings.kafka_bootstrap, [TopicSpec(topic, PARTITIONS, 1)])
    producer = make_producer(settings, client_id="joining-dlq")
    await producer.start()
    handled = Handled()
    consumer = BatchConsumer(
        settings=settings,
        topics=[topic],
        group_id=group,
        name=Group.consumer_name,
        dead_letters=DeadLetters(producer, f"{topic}.dlq", "joining"),
        handle_raw=handled,
    )
    try:
        yield Group(settings, topic, group, handled, consumer)
    finally:
        await producer.stop()
