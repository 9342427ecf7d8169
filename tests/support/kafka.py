"""Small real-broker helpers for tests: produce raw messages, read a topic from the start."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.kafka.starting import closed, start_or_close


@contextlib.asynccontextmanager
async def producing(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    """A test's raw producer, started and stopped as the services' are (``kafka.starting``,
    #12): a start cut short closes what its bootstrap opened, a stop that ends short or whose
    flush does not end (the broker gone) is finished by ``close_rest``: no transport left.
    aiokafka's own ``start()``/``stop()`` (what the chaos test's poison used) leave one."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await start_or_close(producer)
    try:
        yield producer
    finally:
        await closed(producer)


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[tuple[bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    async with producing(bootstrap) as producer:
        for key, value in messages:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers or [])


def crash(broker: TansuBroker) -> None:
    """Stop a test's own broker at once (SIGKILL). Stopped in order while clients are still
    connected, tansu waits 5 s for them to go before it exits; its memory store loses the log
    either way, and to the clients a broker gone is a broker gone."""
    if broker.pid is not None:
        os.kill(broker.pid, signal.SIGKILL)
    broker.stop()  # reaps it and closes its log


async def read_all(
    bootstrap: str, topic: str, *, expect: int, within: float = 20.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``expect`` records arrived (bounded wait)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"reader-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=1000,
        heartbeat_interval_ms=200,
    )
    # started and stopped as the services' readers are (``kafka.starting``, #12): a start cut
    # short (a test's timeout) closes what its bootstrap opened; a stop ended short is finished
    await start_or_close(consumer)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):
            while len(records) < expect:
                batch = await consumer.getmany(timeout_ms=200)
                for rs in batch.values():
                    records.extend(rs)
        # a short extra look: nothing more than expected may be there
        batch = await consumer.getmany(timeout_ms=300)
        for rs in batch.values():
            records.extend(rs)
    finally:
        await closed(consumer)
    return records
