"""The relay against a real broker that restarts empty (tansu's memory store), now that it
reads the broker's topic list only when an acknowledgement could come from a lost log (#12):
the first round after the restart reads it, and every row published after the restart is in
the broker's new log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import TopicSpec, ensure_topics
from branchline_shared.settings import CommonSettings
from tests.support.kafka import crash
from tests.support.outbox import ListOutbox
from tests.support.stack import runtime_dir

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(120)]

TOPIC = "branchline.test.relay-restart"
SPEC = TopicSpec(TOPIC, 3, 1)


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    """A broker of this test's own: restarting it must not disturb the others' topics."""
    own = TansuBroker(free_port(), runtime_dir() / f"tansu-relay-restart-{free_port()}.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()


class Outbox(ListOutbox):
    def add(self, count: int) -> None:  # type: ignore[override]
        envelope = {"event_id": "00000000-0000-4000-8000-{n:012d}", "type": "t", "source": "intake"}
        super().add(count, TOPIC, envelope)


async def published_keys(bootstrap: str, expected: set[bytes]) -> set[bytes]:
    """The topic's keys, read until ``expected`` are among them (at most 10 reads of 0.5 s:
    reading on after they arrived showed nothing more, it only waited)."""
    consumer = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        keys: set[bytes] = set()
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=500)
            keys |= {record.key for records in batch.values() for record in records if record.key}
            if expected <= keys:
                break
        return keys
    finally:
        await consumer.stop()


async def test_a_broker_restarted_empty_is_checked_and_nothing_after_it_is_lost(
    broker: TansuBroker,
) -> None:
    await ensure_topics(broker.bootstrap, [SPEC])
    # The relay's own producer (make_producer): its 10 s request timeout bounds the round
    # after the restart, which waits it out; aiokafka's default (40 s) made that round 40 s.
    producer = make_producer(
        CommonSettings(kafka_bootstrap=broker.bootstrap), client_id="test-relay-restart"
    )
    await producer.start()
    reads = 0
    fetch = producer.client.fetch_all_metadata

    async def counted() -> Any:
        nonlocal reads
        reads += 1
        return await fetch()

    producer.client.fetch_all_metadata = counted  # type: ignore[method-assign]
    recovered = 0

    async def on_recover() -> None:
        nonlocal recovered
        recovered += 1
        await ensure_topics(broker.bootstrap, [SPEC], attempts=1)

    outbox = Outbox()
    relay = OutboxRelay(
        pool=SimpleNamespace(),  # type: ignore[arg-type]
        producer=producer,
        store_name="test",
        outbox=outbox,
        on_recover=on_recover,
    )
    try:
        outbox.add(12)  # every partition
        assert await relay.publish_once() == 12
        checked = reads
        assert checked >= 1
        for _ in range(5):
            outbox.add(6)
            assert await relay.publish_once() == 6
        assert reads == checked  # the log only grew: not read again

        crash(broker)
        broker.start()  # same port, empty log: the topic and its offsets are gone
        outbox.add(6)
        for _ in range(40):  # as the relay's loop does: a failed round recovers and retries
            try:
                if await relay.publish_once() == 0:
                    break
            except Exception:
                relay._acked.clear()
                await on_recover()
                await asyncio.sleep(0.25)
        assert await outbox.backlog() == 0
        assert reads > checked  # the round after the restart read the topic list
        after = {f"key-{n}".encode() for n in range(43, 49)}
        assert after <= await published_keys(broker.bootstrap, after)
    finally:
        await producer.stop()
