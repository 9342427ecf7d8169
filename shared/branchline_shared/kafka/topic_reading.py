"""Reading a whole topic from its beginning to its current end (dead-letter topics, for
reconcile and the ``dlq`` commands). A fresh consumer without a group, so nothing is committed.

The end is the high watermark of a fetch response: some brokers (tansu 0.6) answer
ListOffsets(latest) with the base offset of the last batch instead of the log end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from branchline_shared.kafka.consuming import MEAGRE_ROUND, FetchWait, adapt_fetch_wait
from branchline_shared.kafka.starting import closed, start_or_close

ROUND_MS = 200


class TopicReadStalled(RuntimeError):
    """The broker did not deliver up to the end within the time allowed."""


async def read_topic(
    bootstrap: str, topics: Sequence[str], *, within_s: float = 30.0, fetch_wait_ms: int = 100
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` now, per partition in offset order. The fetch wait is raised
    as the batch consumers' is when the broker answers nothing although records are there (a
    long partition of the dev broker, :class:`FetchWait`)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_wait_ms,
        request_timeout_ms=10_000,
    )
    # a start cut short (a worker stopping while its dead-letter gauges read) closes what it
    # opened (#12)
    await start_or_close(consumer)
    try:
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
        fetch_wait = FetchWait(fetch_wait_ms, round_ms=ROUND_MS)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=ROUND_MS, max_records=5000)
            got = 0
            for batch in batches.values():
                records.extend(batch)
                got += len(batch)
            if fetch_wait.starving or got < MEAGRE_ROUND:
                await adapt_fetch_wait(
                    consumer, fetch_wait, records=got, name="topic-reader", partitions=pending
                )
            for tp in list(pending):
                highwater = consumer.highwater(tp)
                if highwater is not None and await consumer.position(tp) >= highwater:
                    pending.discard(tp)
            if pending and loop.time() > deadline:
                raise TopicReadStalled(f"{sorted(str(tp) for tp in pending)} not read to the end")
        return records
    finally:
        await closed(consumer)
