"""The relay reads the broker's topic list only when an acknowledgement could come from a
broker that lost its log (#12): an offset at or below the last one acknowledged in its
partition (a broker restarted empty numbers from 0 again), a partition not acknowledged into
since the relay took its lock or a round failed. A broker that restarted empty is still caught:
nothing it acknowledged into a topic it does not list is marked published."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from tests.support.batching import SendsInBatches
from tests.support.outbox import ListOutbox

from branchline_shared.eventstore.relay import OutboxRelay

pytestmark = pytest.mark.unit

TOPICS = ("branchline.test.a", "branchline.test.b")


class Broker(SendsInBatches):
    """A broker of logs per (topic, partition) that can restart empty, acknowledging sends
    into topics it no longer lists (what tansu's memory store does with stale metadata)."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions = self.partition_count = partitions
        self.listed: set[str] = set(TOPICS)
        self.logs: dict[tuple[str, int], int] = {}
        self.metadata_reads = 0
        self.client = SimpleNamespace(fetch_all_metadata=self._metadata)

    async def _metadata(self) -> SimpleNamespace:
        self.metadata_reads += 1
        listed = set(self.listed)
        return SimpleNamespace(topics=lambda: listed)

    def partition_of(self, key: bytes, *_: object) -> int:
        return int(key.decode().rpartition("-")[2]) % self.partitions

    def restart_empty(self) -> None:
        self.listed.clear()
        self.logs.clear()

    async def send(
        self, topic: str, *, key: bytes, partition: int | None = None, **_: object
    ) -> asyncio.Future[Any]:
        if partition is None:
            partition = self.partition_of(key)
        offset = self.logs.get((topic, partition), 0)
        self.logs[(topic, partition)] = offset + 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(partition=partition, offset=offset))
        return future


class Outbox(ListOutbox):
    def add(self, count: int, topic: str = TOPICS[0]) -> None:  # type: ignore[override]
        super().add(count, topic, {"event_id": "x"})


def relay_over(broker: Broker, outbox: Outbox) -> OutboxRelay:
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),
        producer=cast("AIOKafkaProducer", broker),
        store_name="test",
        outbox=outbox,
        partitioner=broker.partition_of,
    )
    # Messages built from these rows are not the subject here.
    relay._producer = cast("AIOKafkaProducer", broker)
    return relay


@pytest.fixture(autouse=True)
def plain_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("branchline_shared.eventstore.relay.encode_event", lambda _: b"{}")
    monkeypatch.setattr(
        "branchline_shared.eventstore.relay.stored_event_headers", lambda *_, **__: []
    )


async def test_rounds_into_growing_partitions_read_the_topic_list_once() -> None:
    broker, outbox = Broker(), Outbox()
    relay = relay_over(broker, outbox)
    outbox.add(6)  # every partition of the topic
    assert await relay.publish_once() == 6
    assert broker.metadata_reads == 1  # partitions not seen since the start: checked
    for _ in range(20):
        outbox.add(4)
        assert await relay.publish_once() == 4
    assert broker.metadata_reads == 1
    assert outbox.marked == list(range(1, 87))


async def test_a_partition_or_topic_not_seen_yet_is_checked() -> None:
    broker, outbox = Broker(), Outbox()
    relay = relay_over(broker, outbox)
    outbox.add(1)  # key-1: partition 1 only
    await relay.publish_once()
    outbox.add(1)  # key-2: partition 2, not acknowledged into before
    await relay.publish_once()
    assert broker.metadata_reads == 2
    outbox.add(1, topic=TOPICS[1])  # key-3: partition 0 of the other topic
    await relay.publish_once()
    assert broker.metadata_reads == 3
    outbox.add(1)  # key-4: partition 1 again, past its last offset
    await relay.publish_once()
    assert broker.metadata_reads == 3


async def test_a_broker_restarted_empty_fails_the_round_until_its_topics_are_back() -> None:
    broker, outbox = Broker(), Outbox()
    relay = relay_over(broker, outbox)
    outbox.add(9)
    assert await relay.publish_once() == 9
    reads = broker.metadata_reads
    broker.restart_empty()
    outbox.add(5)  # acknowledged by the empty broker at offsets from 0: lost there
    for _ in range(3):  # however often it is tried, not while the topic is missing
        with pytest.raises(Exception, match="does not list topics"):
            await relay.publish_once()
    assert broker.metadata_reads == reads + 3
    assert outbox.marked == list(range(1, 10))
    broker.listed.add(TOPICS[0])  # on_recover re-created it
    assert await relay.publish_once() == 5
    assert outbox.marked == list(range(1, 15))


async def test_a_restart_is_caught_even_when_the_new_log_reached_past_a_partition() -> None:
    """The new log's offsets are compared partition by partition: one partition of the round
    at or below its last offset is enough, whatever the others say."""
    broker, outbox = Broker(partitions=2), Outbox()
    relay = relay_over(broker, outbox)
    outbox.add(2)  # key-1 -> partition 1 at 0, key-2 -> partition 0 at 0
    await relay.publish_once()
    broker.restart_empty()
    broker.logs[(TOPICS[0], 1)] = 7  # partition 1 of the new log already past ours
    outbox.add(2)  # key-3 -> partition 1 at 7 (past 0), key-4 -> partition 0 at 0 (not)
    with pytest.raises(Exception, match="does not list topics"):
        await relay.publish_once()
    assert outbox.marked == [1, 2]


async def test_a_failed_round_makes_the_next_one_check() -> None:
    broker, outbox = Broker(), Outbox()
    relay = relay_over(broker, outbox)
    outbox.add(3)
    await relay.publish_once()
    broker.listed.clear()  # the topic list says the topic is gone, the offsets still grow
    outbox.add(3)
    assert await relay.publish_once() == 3  # nothing told the relay: not read
    relay._acked.clear()  # what the relay's loop does after a failed round or a new lock
    outbox.add(3)
    with pytest.raises(Exception, match="does not list topics"):
        await relay.publish_once()
