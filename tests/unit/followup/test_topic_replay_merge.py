"""The rebuild's topic replay merges its partitions in replay order, with one key per record
(#12, Round 29): not a key of every partition's head per record."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiokafka import TopicPartition

from branchline_followup.adapters import topic_replay
from branchline_followup.adapters.topic_replay import TopicReplay

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

TOPICS = ["intake.events", "followup.events"]


class Record:
    """A consumer record that counts how often its timestamp (the replay order's first key)
    is read."""

    reads = 0

    def __init__(self, tp: TopicPartition, offset: int, timestamp: int) -> None:
        self.topic, self.partition, self.offset = tp.topic, tp.partition, offset
        self._timestamp = timestamp
        self.value = f"{tp.topic}/{tp.partition}/{offset}".encode()
        self.headers = ()

    @property
    def timestamp(self) -> int:
        Record.reads += 1
        return self._timestamp


class Consumer:
    """Hands out each partition's records ``chunk`` at a time, as ``getmany`` does."""

    def __init__(self, logs: dict[TopicPartition, list[Record]], chunk: int) -> None:
        self._logs = logs
        self._chunk = chunk
        self._position = dict.fromkeys(logs, 0)

    async def getmany(self, *partitions: TopicPartition, **_: Any) -> dict[Any, list[Record]]:
        got = {}
        for tp in partitions:
            at = self._position[tp]
            records = self._logs[tp][at : at + self._chunk]
            if records:
                got[tp] = records
                self._position[tp] = at + len(records)
        return got

    async def position(self, tp: TopicPartition) -> int:
        return self._position[tp]


async def unchanged_wait(*_: Any, **__: Any) -> None:
    return None


def a_replay(
    monkeypatch: pytest.MonkeyPatch, partitions: int, records: int, chunk: int, seed: int
) -> tuple[TopicReplay, list[Record]]:
    """``partitions`` partitions of each topic, ``records`` records each, timestamps rising
    within a partition and colliding across them (ties broken by topic, partition, offset)."""
    monkeypatch.setattr(topic_replay, "adapt_fetch_wait", unchanged_wait)
    rng = random.Random(seed)
    logs: dict[TopicPartition, list[Record]] = {}
    for topic in TOPICS:
        for partition in range(partitions):
            tp = TopicPartition(topic, partition)
            stamps = sorted(rng.randrange(records * 2) for _ in range(records))
            logs[tp] = [Record(tp, offset, stamp) for offset, stamp in enumerate(stamps)]
    replay = TopicReplay("unused:9092", TOPICS)
    replay._consumer = Consumer(logs, chunk)  # type: ignore[assignment]
    replay._partitions = list(logs)
    replay._ends = {tp: len(log) for tp, log in logs.items()}
    replay._next = dict.fromkeys(logs, 0)
    replay._buffers = {tp: topic_replay.deque() for tp in logs}
    every = [r for log in logs.values() for r in log]
    return replay, every


def replay_order(record: Record) -> tuple[int, int, int, int]:
    return (record._timestamp, TOPICS.index(record.topic), record.partition, record.offset)


@pytest.mark.parametrize(
    ("partitions", "chunk", "seed"),
    [(1, 3, 1), (4, 7, 2), (8, 1, 3), (8, 2000, 4)],
    ids=["1-partition", "4-partitions-chunks-of-7", "8-partitions-one-by-one", "8-partitions"],
)
async def test_the_replay_yields_every_record_once_in_replay_order(
    monkeypatch: pytest.MonkeyPatch, partitions: int, chunk: int, seed: int
) -> None:
    replay, every = a_replay(monkeypatch, partitions, records=40, chunk=chunk, seed=seed)
    got = [m.value async for m in replay.messages()]
    assert got == [r.value for r in sorted(every, key=replay_order)]


async def test_each_record_costs_one_key_not_one_per_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The default 4 partitions of each of the two topics: the merge read every partition's
    # head's timestamp for every record it yielded (about 8 per record); now one key per
    # record as it becomes its partition's head, and one for the record it yields.
    replay, every = a_replay(monkeypatch, partitions=4, records=200, chunk=50, seed=5)
    Record.reads = 0
    yielded = [m async for m in replay.messages()]
    assert len(yielded) == len(every)
    assert Record.reads <= 2 * len(every)
