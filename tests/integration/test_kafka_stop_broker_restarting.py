"""A Kafka client stopped while the broker restarts closes all it opened (#12).

Seen once in CI (test_broker_log_loss.py, at teardown): a socket of the reconciler's topic
reader (``read_topic``) left open, opened by its aiokafka client's metadata task to the
restarted broker. The reader had been stopped while the broker was gone: aiokafka 0.14's
``AIOKafkaConsumer.stop()`` closes its fetcher, whose ``close`` cancels each fetch task and
awaits it; a fetch task cancelled in its retry back-off (its request failed: the broker gone)
ends cancelled, so that await raises ``CancelledError`` out of ``stop()`` before the client's
close. The client's metadata task lived on, and connected again when the broker was back (one
client and its socket per such stop, for the life of the process); the caller, whom nobody
had cancelled, was told of a cancellation.

The broker here is reached through a proxy (``tests/support/held_broker.py``) that breaks the
connections open (a broker restarting, as a client sees it) and refuses or holds new ones.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from branchline_shared.kafka.starting import closed, start_or_close, stopped
from tests.support.held_broker import (
    METADATA_AGE_MS,
    HeldBroker,
    aiokafka_tasks,
    held_broker,
    left_when_back,
    sockets_to,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "dead-letters"


async def _reader(broker: HeldBroker) -> AIOKafkaConsumer:
    """A consumer made as ``read_topic`` makes its own (no group), fetching from a topic; a
    failed fetch is tried again after a long back-off (the window the stop falls in)."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await start_or_close(producer)
    try:
        await producer.send_and_wait(TOPIC, b"dead letter")
    finally:
        await closed(producer)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10_000,
        retry_backoff_ms=5_000,
        metadata_max_age_ms=METADATA_AGE_MS,
    )
    await start_or_close(consumer)
    partition = TopicPartition(TOPIC, 0)
    consumer.assign([partition])
    await consumer.seek_to_beginning(partition)
    await consumer.getmany(partition, timeout_ms=200)  # fetching
    return consumer


@pytest.mark.parametrize("stop", [closed, stopped], ids=["closed", "stopped"])
async def test_a_consumer_stopped_while_its_fetch_waits_to_retry_closes_its_client(
    request: pytest.FixtureRequest, stop: Callable[[Any], Awaitable[None]]
) -> None:
    before = aiokafka_tasks()
    async with held_broker() as broker:
        consumer = await _reader(broker)
        try:
            broker.refuse()
            broker.cut()  # the broker restarting: its fetch fails, and waits its back-off
            async with asyncio.timeout(30):
                await broker.refused_one.wait()
            await asyncio.sleep(0.05)  # in the back-off
            try:
                await stop(consumer)
                told_cancelled = False
            except asyncio.CancelledError:
                this = asyncio.current_task()
                if this is not None and this.cancelling():
                    raise  # the test itself cancelled
                told_cancelled = True  # the old code: the stop ended short, nobody cancelled
        finally:
            if not consumer._closed:  # the test failed before its stop
                await consumer.stop()
        ours, left = await left_when_back(broker, request, before)
    assert ours == [], "\n".join(ours)
    assert left == set(), "aiokafka's tasks still running:\n" + "\n".join(map(repr, left))
    assert not told_cancelled, "the stop ended in a CancelledError nobody asked for"
    gc.collect()  # an unclosed connection warns as it is collected (an error in this suite)


async def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, metadata_max_age_ms=METADATA_AGE_MS
    )
    await start_or_close(consumer)
    await consumer.topics()
    return consumer


async def _producer(bootstrap: str) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, metadata_max_age_ms=METADATA_AGE_MS)
    await start_or_close(producer)
    await producer.send_and_wait(TOPIC, b"x")
    return producer


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, metadata_max_age_ms=METADATA_AGE_MS)
    await start_or_close(admin)
    await admin.list_topics()
    return admin


@pytest.mark.parametrize(
    "make", [_consumer, _producer, _admin], ids=["consumer", "producer", "admin"]
)
async def test_a_client_stopped_while_its_metadata_task_connects_leaves_nothing_open(
    request: pytest.FixtureRequest, make: Callable[[str], Awaitable[Any]]
) -> None:
    """The client's metadata task is inside ``create_conn`` (its connection made, the version
    lookup unanswered) when the client is closed: aiokafka's close cancels the task there, and
    that connection is closed with it (aiokafka's ``connect`` closes on any exception)."""
    before = aiokafka_tasks()
    async with held_broker() as broker:
        client = await make(broker.bootstrap)
        try:
            broker.hold()
            broker.cut()  # its connections broken: its metadata task connects again, held
            async with asyncio.timeout(30):
                await broker.held_one.wait()
            await asyncio.sleep(0.05)
        finally:
            async with asyncio.timeout(30):  # a stop ends with the broker answering nothing
                await closed(client)
        left = aiokafka_tasks() - before
        assert left == set(), "aiokafka's tasks still running:\n" + "\n".join(map(repr, left))
        await asyncio.sleep(0.1)
        ours = sockets_to(broker, request)
    assert ours == [], "\n".join(ours)
    gc.collect()
