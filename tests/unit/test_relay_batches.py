"""The relay submits a round as batches, one per partition while a batch holds its rows
(#12, Round 35): every row lands in its key's partition (the producer's partitioner), in
outbox order there, and is marked with the partition and offset where the broker put it
(the batch's first offset plus the row's place in the batch), also when a full batch makes
the partition's next rows start another."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from tests.support.batching import Batch
from tests.support.outbox import ListOutbox

from branchline_shared.eventstore.ports import PendingPublication
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.partitioning import default_partition

pytestmark = pytest.mark.unit

TOPIC = "branchline.test.batches"
PARTITIONS = 3
LIMIT = 3  # records a batch holds before it is full
FIRST_OFFSET = 100  # the broker's logs already hold this many records each


class BatchBroker:
    """A producer with the batch interface only (no per-message ``send``): each submitted
    batch is appended to its partition's log and answered with its first record's offset."""

    def __init__(self) -> None:
        self.logs: dict[int, list[bytes]] = {p: [b"old"] * FIRST_OFFSET for p in range(PARTITIONS)}
        self.submitted: list[tuple[int, int]] = []  # (partition, records)
        metadata = SimpleNamespace(topics=lambda: {TOPIC})

        async def fetch_all_metadata() -> SimpleNamespace:
            return metadata

        self.client = SimpleNamespace(fetch_all_metadata=fetch_all_metadata)

    async def partitions_for(self, topic: str) -> set[int]:
        assert topic == TOPIC
        return set(range(PARTITIONS))

    def create_batch(self) -> Batch:
        return Batch(limit=LIMIT)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert topic == TOPIC
        assert batch.closed  # nothing else is appended to a submitted one
        log = self.logs[partition]
        base = len(log)
        log.extend(key for key, _, _ in batch.records)
        self.submitted.append((partition, len(batch.records)))
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answered.set_result(SimpleNamespace(topic=topic, partition=partition, offset=base))
        return answered


class PositionsOutbox(ListOutbox):
    def __init__(self, rows: list[PendingPublication]) -> None:
        super().__init__(rows)
        self.positions: dict[int, tuple[int, int]] = {}

    async def mark_published(self, outbox_ids: Any, positions: Any = None) -> None:
        await super().mark_published(outbox_ids, positions)
        self.positions.update(zip(outbox_ids, positions, strict=True))


def envelope(n: int) -> dict[str, Any]:
    return {"event_id": f"00000000-0000-4000-8000-{n:012d}", "type": "t", "source": "intake"}


async def test_a_round_goes_out_in_batches_per_partition_each_row_marked_where_it_landed() -> None:
    rows = [PendingPublication(n, TOPIC, f"key-{n % 7}", n, envelope(n)) for n in range(1, 17)]
    broker, outbox = BatchBroker(), PositionsOutbox(rows)
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),
        producer=cast("AIOKafkaProducer", broker),
        store_name="test",
        batch_size=len(rows),
        outbox=outbox,
    )
    assert await relay.publish_once() == len(rows)

    every = list(range(PARTITIONS))
    partition_of = {
        row.outbox_id: default_partition(row.message_key.encode(), every, every) for row in rows
    }
    # Each partition's log: its rows' keys in outbox order (per-key order kept).
    for partition in every:
        expected = [r.message_key.encode() for r in rows if partition_of[r.outbox_id] == partition]
        assert broker.logs[partition][FIRST_OFFSET:] == expected
    # Each row marked with its key's partition and the offset where the broker holds it.
    for row in rows:
        partition, offset = outbox.positions[row.outbox_id]
        assert partition == partition_of[row.outbox_id]
        assert broker.logs[partition][offset] == row.message_key.encode()
    assert len(set(outbox.positions.values())) == len(rows)
    # One batch per partition until it is full (LIMIT records), then another after it.
    counts = {p: sum(1 for r in rows if partition_of[r.outbox_id] == p) for p in every}
    assert sorted(broker.submitted) == sorted(
        (p, min(LIMIT, counts[p] - start)) for p in every for start in range(0, counts[p], LIMIT)
    )
    assert max(counts.values()) > LIMIT  # the test covers a full batch
