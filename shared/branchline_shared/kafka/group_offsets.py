"""A consumer group's progress as the broker reports it, read without joining the group: its
committed offsets (OffsetFetch), and the partitions' start and end offsets (ListOffsets).

A consumer with the group's id that subscribes to nothing never joins the group, so the
group's members are not rebalanced. ``AIOKafkaAdminClient.list_consumer_group_offsets``
without partitions fails on tansu (its answer does not decode); with partitions it works, and
so does ``AIOKafkaConsumer.committed``, which this uses (one client for both questions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType

from aiokafka import AIOKafkaConsumer, TopicPartition

from branchline_shared.kafka.starting import closed, start_or_close


class GroupOffsets:
    """``async with GroupOffsets(...) as group``: one client for one self-check. Every call
    is bounded by ``timeout_s`` (a broker that does not answer raises ``TimeoutError``)."""

    def __init__(
        self, bootstrap: str, group_id: str, topics: Sequence[str], *, timeout_s: float = 10.0
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._timeout_s = timeout_s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            request_timeout_ms=int(timeout_s * 1000),
            client_id=f"{group_id}-self-check",
        )

    async def __aenter__(self) -> GroupOffsets:
        # a start cut short (the bound below, a cancelled self-check) closes what it opened (#12)
        async with asyncio.timeout(self._timeout_s):
            await start_or_close(self._consumer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # What the check found stands whatever the client's closing meets; a cancel that comes
        # meanwhile stops the client all the same (#12: a stop cut short left a socket open).
        with contextlib.suppress(Exception):
            await closed(self._consumer)

    async def partitions(self) -> list[TopicPartition]:
        """Every partition of the topics (those the broker lists)."""
        async with asyncio.timeout(self._timeout_s):
            await self._consumer.topics()
        return [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]

    async def committed(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offset of each partition where it committed one."""
        found: dict[TopicPartition, int] = {}
        for tp in partitions:
            async with asyncio.timeout(self._timeout_s):
                offset = await self._consumer.committed(tp)
            if offset is not None:
                found[tp] = offset
        return found

    async def bounds(
        self, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """(start, end) of each partition: the first offset held, the next to be written.

        The end is the high watermark of a fetch response when one came (tansu 0.6 answers
        ListOffsets(latest) with the last batch's base offset, not the log end: measured, a
        partition of 15 messages in two batches reported 11), else ListOffsets' answer."""
        if not partitions:
            return {}
        wanted = list(partitions)
        async with asyncio.timeout(self._timeout_s):
            starts = await self._consumer.beginning_offsets(wanted)
        async with asyncio.timeout(self._timeout_s):
            listed = await self._consumer.end_offsets(wanted)
        found = {tp: (starts[tp], listed[tp]) for tp in wanted if tp in starts and tp in listed}
        watermarks = await self._high_watermarks(
            {tp: max(start, end - 1) for tp, (start, end) in found.items()}
        )
        return {
            tp: (start, max(end, watermarks.get(tp, end))) for tp, (start, end) in found.items()
        }

    async def _high_watermarks(self, near: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Each partition's high watermark, from one fetch at an offset ``near`` its end (a
        consumer of no group: it commits nothing and joins nothing)."""
        reader = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=int(self._timeout_s * 1000),
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=1024,  # one batch at most: only the watermark is wanted
        )
        async with asyncio.timeout(self._timeout_s):
            await start_or_close(reader)  # a start cut short closes what it opened (#12)
        try:
            reader.assign(list(near))
            for tp, offset in near.items():
                reader.seek(tp, offset)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout_s
            while True:
                marks = {tp: reader.highwater(tp) for tp in near}
                if all(mark is not None for mark in marks.values()):
                    return {tp: mark for tp, mark in marks.items() if mark is not None}
                if loop.time() > deadline:
                    raise TimeoutError("no fetch answered with the partitions' high watermarks")
                await reader.getmany(timeout_ms=200, max_records=1)
        finally:
            with contextlib.suppress(Exception):
                await closed(reader)
