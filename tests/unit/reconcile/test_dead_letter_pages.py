"""Reconcile reads a dead-letter topic a page of records at a time, up to its end as first
seen (#12): ``topic_pages`` over a broker stand-in whose partition keeps growing while it is
read."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from tests.support.one_partition import OnePartitionConsumer

from branchline_shared.kafka import topic_reading
from branchline_shared.kafka.topic_reading import read_topic, topic_pages
from branchline_shared.reconcile.running import dead_lettered_ids

TOPIC = "dlq"


class GrowingPartition(OnePartitionConsumer):
    """A consumer of one partition that a writer keeps appending to: each fetch answers the
    log's end then (its high watermark), then three more records are written."""

    def __init__(self, ids: list[uuid.UUID]) -> None:
        super().__init__(TOPIC)
        self.log = list(ids)
        self.ids = ids

    def log_length(self) -> int:
        return len(self.log)

    def record(self, offset: int) -> Any:
        return SimpleNamespace(
            offset=offset, headers=[("event_id", str(self.log[offset]).encode())], value=b"{}"
        )

    def fetched(self, first: int, end: int) -> None:
        self.log.extend(uuid.uuid4() for _ in range(3))  # the writer goes on


@pytest.fixture
def partition(monkeypatch: pytest.MonkeyPatch) -> GrowingPartition:
    made = GrowingPartition([uuid.uuid4() for _ in range(12)])
    monkeypatch.setattr(topic_reading, "AIOKafkaConsumer", lambda **_: made)
    return made


async def test_pages_are_bounded_and_end_where_the_topic_ended_when_first_seen(
    partition: GrowingPartition,
) -> None:
    pages = [page async for page in topic_pages("broker", [TOPIC], page=5)]
    assert [len(page) for page in pages] == [5, 5, 2]
    assert [r.offset for page in pages for r in page] == list(range(12))
    assert set(partition.asked) == {5}
    assert len(partition.log) > 12  # written to meanwhile, not waited for


async def test_read_topic_is_the_pages_gathered(partition: GrowingPartition) -> None:
    records = await read_topic("broker", [TOPIC])
    assert [r.offset for r in records] == list(range(12))


async def test_reconcile_keeps_the_dead_lettered_ids_of_the_topic_as_it_was(
    partition: GrowingPartition,
) -> None:
    found = await dead_lettered_ids("broker", TOPIC, page=4)
    assert found == set(partition.ids[:12])
    assert set(partition.asked) == {4}
