"""Reading a whole topic from its beginning to its current end (dead-letter topics, for
reconcile and the ``dlq`` commands). A fresh consumer without a group, so nothing is committed.

The end is the high watermark of a fetch response: some brokers (tansu 0.6) answer
ListOffsets(latest) with the base offset of the last batch instead of the log end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from branchline_shared.kafka.consuming import MEAGRE_ROUND, FetchWait, adapt_fetch_wait
from branchline_shared.kafka.starting import closed, start_or_close

ROUND_MS = 200


class TopicReadStalled(RuntimeError):
    """The broker did not deliver up to the end within the time allowed."""


async def read_topic(
    bootstrap: str, topics: Sequence[str], *, within_s: float = 30.0, fetch_wait_ms: int = 100
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topics`` now, per partition in offset order (:func:`topic_pages`,
    gathered)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with contextlib.aclosing(
        topic_pages(bootstrap, topics, within_s=within_s, fetch_wait_ms=fetch_wait_ms)
    ) as pages:
        async for page in pages:
            records.extend(page)
    return records


PAGE_RECORDS = 5000
"""At most this many records a page of :func:`topic_pages` (one ``getmany``)."""


async def topic_pages(
    bootstrap: str,
    topics: Sequence[str],
    *,
    within_s: float = 30.0,
    fetch_wait_ms: int = 100,
    page: int = PAGE_RECORDS,
    start: Mapping[TopicPartition, int] | None = None,
    ends: dict[TopicPartition, int] | None = None,
) -> AsyncGenerator[list[ConsumerRecord[bytes, bytes]]]:
    """The records of ``topics`` from their beginning, a page of at most ``page`` records at a
    time (one ``getmany`` round each), up to each partition's end as first seen (the first
    high watermark a fetch reported for it: records written after the read began are not
    waited for nor returned), per partition in offset order. A caller that keeps what it
    needs of each page (reconcile: the event ids) holds one page of records, not the topic
    (#12). The fetch wait is raised as the batch consumers' is when the broker answers
    nothing although records are there (a long partition of the dev broker,
    :class:`FetchWait`).

    ``start``: where to begin in the partitions it names (the others from their beginning), to
    read only what is new since an earlier read; an offset past a partition's end (the topic
    was recreated) starts it from its beginning again. ``ends``, if given, is filled with each
    partition's end as first seen (the caller can tell a partition that went back)."""
    if page < 1:
        raise ValueError("page must be at least 1")
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
            return
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        for tp in partitions:
            if start and start.get(tp):
                consumer.seek(tp, start[tp])
        pending = set(partitions)
        if ends is None:
            ends = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        fetch_wait = FetchWait(fetch_wait_ms, round_ms=ROUND_MS)
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=ROUND_MS, max_records=page)
            got = 0
            records: list[ConsumerRecord[bytes, bytes]] = []
            for tp, batch in batches.items():
                highwater = consumer.highwater(tp)
                if tp not in ends and highwater is not None:
                    ends[tp] = highwater
                end = ends.get(tp)
                records.extend(r for r in batch if end is None or r.offset < end)
                got += len(batch)
            if records:
                yield records
            if fetch_wait.starving or got < MEAGRE_ROUND:
                await adapt_fetch_wait(
                    consumer, fetch_wait, records=got, name="topic-reader", partitions=pending
                )
            for tp in list(pending):
                if tp not in ends:
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue
                    ends[tp] = highwater
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
            if pending and loop.time() > deadline:
                raise TopicReadStalled(f"{sorted(str(tp) for tp in pending)} not read to the end")
    finally:
        await closed(consumer)
