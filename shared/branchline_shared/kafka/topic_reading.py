"""Reading a whole topic from its beginning to its current end (dead-letter topics, for
reconcile and the ``dlq`` commands). A fresh consumer without a group, so nothing is committed.

The end is the high watermark of a fetch response: some brokers (tansu 0.6) answer
ListOffsets(latest) with the base offset of the last batch instead of the log end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


class TopicReadStalled(RuntimeError):
    """The broker did not deliver up to the end within the time allowed."""


async def read_topic(
    bootstrap: str, topics: Sequence[str], *, within_s: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` now, per partition in offset order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10_000,
    )
    # A start cancelled half-way (a worker stopping while its dead-letter gauges read) leaks
    # the connection aiokafka's bootstrap was opening: the start is left to finish (bounded by
    # the request timeout), then the client is closed.
    starting = asyncio.ensure_future(consumer.start())
    try:
        await asyncio.shield(starting)
        await consumer.topics()
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        pending = set(partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=200, max_records=5000)
            for batch in batches.values():
                records.extend(batch)
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
            if pending and loop.time() > deadline:
                raise TopicReadStalled(f"{sorted(str(tp) for tp in pending)} not read to the end")
        return records
    finally:
        with contextlib.suppress(Exception):
            await starting
        await consumer.stop()
