"""The producer's batch interface (``partitions_for``, ``create_batch``, ``send_batch``) over a
test broker's per-message ``send``: the outbox relay submits a round as one batch per
partition (#12, Round 35); the test brokers answer message by message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

Headers = Sequence[tuple[str, bytes]]


class Batch:
    """A batch builder: records appended until it is closed (or holds ``limit`` records, then
    ``append`` answers None as aiokafka's does when a batch is full)."""

    def __init__(self, limit: int | None = None) -> None:
        self.records: list[tuple[bytes, bytes, Headers]] = []
        self.closed = False
        self._limit = limit

    def append(
        self, *, timestamp: float | None, key: bytes, value: bytes, headers: Headers
    ) -> object | None:
        if self.closed or (self._limit is not None and len(self.records) >= self._limit):
            return None
        self.records.append((key, value, headers))
        return object()

    def close(self) -> None:
        self.closed = True


class SendsInBatches:
    """Mixed into a test broker that has ``send(topic, *, key, value, headers, partition)``:
    a batch's records go through ``send`` in order, and the batch's answer is its first
    record's, once every record's is in."""

    partition_count = 1

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[Any]:
        raise NotImplementedError

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partition_count))

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        futures = [
            await self.send(topic, key=key, value=value, headers=headers, partition=partition)
            for key, value, headers in batch.records
        ]

        async def first() -> Any:
            return (await asyncio.gather(*futures))[0]

        return asyncio.ensure_future(first())
