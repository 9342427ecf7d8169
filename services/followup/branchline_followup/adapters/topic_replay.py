"""Reading the event topics from the beginning, for a rebuild of the read models.

A fresh consumer without a group is assigned every partition of the topics and reads them up to
the end offsets captured when it starts (or later, :meth:`TopicReplay.extend_to_current_end`),
never further. The partitions are merged into one order by the record timestamp (the time the
outbox relay produced the event), then topic, partition and offset: a ``followup.*`` event is
produced after the intake events it followed from were consumed, so the merge replays causes
before their consequences, as the live worker applied them.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from branchline_shared.kafka.consuming import MEAGRE_ROUND, FetchWait, adapt_fetch_wait
from branchline_shared.kafka.starting import closed, start_or_close

_Head = tuple[int, int, int, int, TopicPartition]
"""A partition's head in the replay order: timestamp, topic's rank, partition, offset."""


@dataclass(frozen=True)
class ReplayedMessage:
    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    from_store: bool = False
    """The value was read from one of Branchline's own event stores, not from a topic: it is
    read without the checks made where it entered (``stored_documents``, #12)."""


class ReplayStalled(RuntimeError):
    """The broker stopped delivering records below the captured end offsets."""


class TopicReplay:
    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        stall_timeout_s: float = 30.0,
        fetch_wait_ms: int = 100,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        self._rank = {t: i for i, t in enumerate(self._topics)}
        self._stall_timeout_s = stall_timeout_s
        # raised as the batch consumers' is when the broker answers nothing although records
        # are there (a long partition of the dev broker)
        self._fetch_wait = FetchWait(fetch_wait_ms)
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._ends: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}
        self._buffers: dict[TopicPartition, deque[ConsumerRecord[bytes, bytes]]] = {}

    async def start(self) -> int:
        """Assign every partition, capture the end offsets; returns how many records lie
        between the beginning and those ends."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_wait.ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await start_or_close(consumer)  # a start cut short closes what it opened (#12)
        self._consumer = consumer
        await consumer.topics()  # fetches the metadata of every topic
        partitions: list[TopicPartition] = []
        for topic in self._topics:
            for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                partitions.append(TopicPartition(topic, partition))
        self._partitions = partitions
        consumer.assign(partitions)
        if not partitions:
            return 0
        beginnings = await consumer.beginning_offsets(partitions)
        self._ends = await self._probe_ends()
        await consumer.seek_to_beginning(*partitions)
        self._next = {tp: beginnings[tp] for tp in partitions}
        self._buffers = {tp: deque() for tp in partitions}
        return int(sum(self._ends[tp] - beginnings[tp] for tp in partitions))

    async def _probe_ends(self) -> dict[TopicPartition, int]:
        """The partitions' end offsets now. Some brokers (tansu 0.6) answer ListOffsets(latest)
        with the base offset of the last batch, not the offset after it; the high watermark
        of a fetch response is exact, so one fetch from the reported end settles it. Leaves
        the consumer's positions at those offsets (the caller seeks where it wants) and
        drops what the consumer had fetched ahead."""
        assert self._consumer is not None
        consumer = self._consumer
        reported = await consumer.end_offsets(self._partitions)
        consumer.assign(self._partitions)  # fresh partition states: no stale high watermark
        for tp in self._partitions:
            consumer.seek(tp, reported[tp])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stall_timeout_s
        ends: dict[TopicPartition, int] = {}
        while len(ends) < len(self._partitions):
            await consumer.getmany(timeout_ms=100)
            for tp in self._partitions:
                highwater = consumer.highwater(tp)
                if highwater is not None and tp not in ends:
                    ends[tp] = max(int(highwater), reported[tp])
            if loop.time() > deadline:
                raise ReplayStalled("no fetch response to learn the end offsets from")
        return ends

    async def extend_to_current_end(self) -> int:
        """Move the end to the topics' current end offsets (the final catch-up of a rebuild);
        returns how many more records that adds."""
        if self._consumer is None or not self._partitions:
            return 0
        ends = await self._probe_ends()
        for tp in self._partitions:
            self._consumer.seek(tp, self._next[tp])
        added = int(sum(max(0, ends[tp] - self._ends[tp]) for tp in self._partitions))
        self._ends = {tp: max(ends[tp], self._ends[tp]) for tp in self._partitions}
        return added

    async def stop(self) -> None:
        if self._consumer is not None:
            await closed(self._consumer)
            self._consumer = None

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        """Every record up to the current ends, merged in replay order.

        The partitions' heads are kept in a heap keyed by that order: each record costs one
        key and a heap step (log of the partitions), not a key of every partition's head and
        a scan of them all (#12, Round 29: 8 partitions by default). Records of one partition
        come in offset order, so a partition's next head is its only new key."""
        await self._fill(self._partitions)
        heads = [self._head(tp, buffer[0]) for tp, buffer in self._buffers.items() if buffer]
        heapq.heapify(heads)
        while heads:
            tp = heads[0][-1]
            buffer = self._buffers[tp]
            record = buffer.popleft()
            yield ReplayedMessage(
                record.topic,
                record.partition,
                record.offset,
                record.timestamp,
                record.value,
                tuple(record.headers or ()),
            )
            if not buffer:
                await self._fill([tp])
            if buffer:
                heapq.heapreplace(heads, self._head(tp, buffer[0]))
            else:
                heapq.heappop(heads)

    def _head(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> _Head:
        """The replay order's key of ``record``, the head of ``tp``'s buffer (module
        docstring): its timestamp, then topic, partition and offset."""
        return (record.timestamp, self._rank[tp.topic], tp.partition, record.offset, tp)

    def _behind(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        return [
            tp for tp in partitions if not self._buffers[tp] and self._next[tp] < self._ends[tp]
        ]

    async def _fill(self, partitions: Sequence[TopicPartition]) -> None:
        """Fetch until each of ``partitions`` has buffered records or reached its end."""
        assert self._consumer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stall_timeout_s
        needy = self._behind(partitions)
        while needy:
            batches = await self._consumer.getmany(*needy, timeout_ms=500, max_records=2000)
            got = sum(len(records) for records in batches.values())
            if self._fetch_wait.starving or got < MEAGRE_ROUND:
                await adapt_fetch_wait(
                    self._consumer,
                    self._fetch_wait,
                    records=got,
                    name="topic-replay",
                    partitions=needy,
                )
            for tp, records in batches.items():
                for record in records:
                    if record.offset < self._ends[tp]:
                        self._buffers[tp].append(record)
                if records:
                    self._next[tp] = records[-1].offset + 1
                    deadline = loop.time() + self._stall_timeout_s
            for tp in needy:
                if not batches.get(tp):
                    # gaps (deleted or compacted records) move the position past them
                    self._next[tp] = max(self._next[tp], await self._consumer.position(tp))
            needy = self._behind(needy)
            if needy and loop.time() > deadline:
                raise ReplayStalled(
                    f"no records from {[str(tp) for tp in needy]} for {self._stall_timeout_s}s"
                )
