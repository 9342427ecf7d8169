"""The dead-letter gauges against the real broker: a round reads only the records written
since the last (the end offsets remembered per partition, ``topic_pages(start=...)``), and a
replay shows at the next round (#12)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from branchline_shared.kafka.dead_letter_log import DeadLetterGauges

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def dead_letter(bootstrap: str, topic: str, ids: Sequence[uuid.UUID]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n, event_id in enumerate(ids):
            await producer.send_and_wait(
                topic,
                b"{}",
                partition=n % 2,
                headers=[("event_id", str(event_id).encode()), ("dlq_reason", b"test")],
            )
    finally:
        await producer.stop()


async def test_a_round_reads_what_is_new_and_a_replay_shows(kafka_bootstrap: str) -> None:
    topic = f"dlq.gauges-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    applied: set[uuid.UUID] = set()

    async def applied_among(ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return applied & set(ids)

    gauges = DeadLetterGauges(kafka_bootstrap, "test-consumer", topic, applied_among, page=3)
    first = [uuid.uuid4() for _ in range(6)]
    await dead_letter(kafka_bootstrap, topic, first)
    await gauges.round()
    assert (gauges.records_read, gauges.pending) == (6, 6)

    await gauges.round()
    assert (gauges.records_read, gauges.pending) == (0, 6)

    more = [uuid.uuid4() for _ in range(3)]
    await dead_letter(kafka_bootstrap, topic, more)
    applied.update(first[:2])
    await gauges.round()
    assert (gauges.records_read, gauges.pending) == (3, 7)
