"""A stop asked while a batch consumer's round waits for records (idle) ends the round at once
(#12): before, ``run`` returned only once the round's wait (``ROUND_MS``, 0.5 s) was over, in
every idle stop of the followup worker and the audit consumer. The stand-in's round never ends
by itself, so the old loop never returned (the bound below failed it)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from tests.unit.test_batch_consumer import consumer_over

from branchline_shared.kafka.consuming import BatchConsumer, RawMessage, stop_batch_consumer

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

TP0 = TopicPartition("events", 0)


class IdleKafka:
    """aiokafka's consumer at the end of its log: a round waits for records that never come."""

    def __init__(self) -> None:
        self.in_round = asyncio.Event()
        self.rounds_cut_short = 0
        self.committed: list[Any] = []
        self.stopped = False
        self._fetcher = SimpleNamespace(_fetch_max_wait_ms=50)

    def subscribe(self, topics: list[str], listener: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.in_round.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.rounds_cut_short += 1
            raise
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {TP0}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


def _consumer(kafka: IdleKafka) -> BatchConsumer:
    async def handle(raws: list[RawMessage]) -> None:
        raise AssertionError("nothing to handle")

    return consumer_over(kafka, handle)


async def test_a_stop_ends_an_idle_round_at_once_and_the_consumer_closes() -> None:
    kafka = IdleKafka()
    consumer = _consumer(kafka)
    task = asyncio.create_task(consumer.run())
    await kafka.in_round.wait()

    # the bound is the old loop's failure, far above the wait of any round
    async with asyncio.timeout(10):
        await stop_batch_consumer(consumer, task, timeout_s=20)

    assert task.done()
    assert not task.cancelled()
    assert task.exception() is None
    assert kafka.rounds_cut_short == 1
    assert kafka.stopped  # the group left, as after any stop
    assert kafka.committed == []  # the round handed nothing out
