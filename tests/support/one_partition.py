"""A stand-in for aiokafka's consumer over one partition of one topic, for the unit tests of the
paged topic readers (#12): it answers what ``topic_pages`` asks (the partitions, a seek, the
high watermark, the position) and serves ``getmany`` from a log its subclass describes. Each
fetch's ``max_records`` is kept in ``asked``, so a test can show the reads were bounded."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition


class OnePartitionConsumer:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.tp = TopicPartition(topic, 0)
        self._position = 0
        self._highwater: int | None = None
        self._assigned: list[TopicPartition] = []
        self.asked: list[int] = []

    def log_length(self) -> int:
        """How many records the partition holds at this fetch."""
        raise NotImplementedError

    def record(self, offset: int) -> Any:
        """The record at ``offset``."""
        raise NotImplementedError

    def fetched(self, first: int, end: int) -> None:
        """Called after a fetch served ``first``..``end - 1`` (``first == end``: nothing)."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def topics(self) -> set[str]:
        return {self.topic}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0} if topic == self.topic else set()

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assigned = partitions

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._position = 0

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        assert max_records is not None, "a paged read always bounds its fetch"
        self.asked.append(max_records)
        length = self.log_length()
        self._highwater = length
        first, end = self._position, min(length, self._position + max_records)
        records = [self.record(offset) for offset in range(first, end)]
        self._position = end
        self.fetched(first, end)
        return {self.tp: records} if records else {}

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater

    async def position(self, tp: TopicPartition) -> int:
        return self._position
