"""``read_topic`` itself, stopped while its consumer's fetch waits in the retry back-off (#12).

Round 27 found that aiokafka 0.14's ``AIOKafkaConsumer.stop()`` ends short by itself when a
fetch task is cancelled in its retry back-off (the broker gone or restarting): the fetcher's
close awaits that task, which ends cancelled, so ``stop()`` raises ``CancelledError`` before the
client is closed; the client's metadata task lives on and connects again once the broker is
back, and ``read_topic``'s caller, cancelled by nobody, is told ``CancelledError``
(``kafka/starting.py``'s ``closed``, ``aiokafka_private``'s ``close_rest``). Its test drove a
consumer made like ``read_topic``'s; this one drives ``read_topic``: its consumer is aiokafka's
own with a 5 s back-off (aiokafka's default 100 ms makes the moment a matter of chance) that
breaks the broker's connections (``tests/support/held_broker.py``) once its partitions are
assigned, so its fetch fails and waits; ``read_topic`` gives up (``TopicReadStalled``) and stops
it in that wait.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from branchline_shared.kafka import topic_reading
from branchline_shared.kafka.starting import closed, start_or_close
from branchline_shared.kafka.topic_reading import TopicReadStalled, read_topic
from tests.support.held_broker import (
    METADATA_AGE_MS,
    HeldBroker,
    aiokafka_tasks,
    held_broker,
    left_when_back,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "dead-letters"


def _cutting_consumer(broker: HeldBroker) -> type[AIOKafkaConsumer]:
    class CuttingConsumer(AIOKafkaConsumer):
        """``read_topic``'s consumer, its settings kept, a long back-off added; the broker
        restarting (as it sees it) right after ``read_topic`` seeks to the beginning."""

        def __init__(self, **settings: Any) -> None:
            super().__init__(
                **settings, retry_backoff_ms=5_000, metadata_max_age_ms=METADATA_AGE_MS
            )

        async def seek_to_beginning(self, *partitions: Any) -> None:
            await super().seek_to_beginning(*partitions)
            broker.refuse()
            broker.cut()

    return CuttingConsumer


async def test_read_topic_stopped_while_its_fetch_waits_to_retry_closes_its_client(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = aiokafka_tasks()
    async with held_broker() as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await start_or_close(producer)
        try:
            await producer.send_and_wait(TOPIC, b"dead letter")
        finally:
            await closed(producer)
        monkeypatch.setattr(topic_reading, "AIOKafkaConsumer", _cutting_consumer(broker))
        outcome: BaseException | None = None
        try:
            await read_topic(broker.bootstrap, [TOPIC], within_s=1.0)
        except asyncio.CancelledError as cancelled:
            this = asyncio.current_task()
            if this is not None and this.cancelling():
                raise  # the test itself cancelled
            outcome = cancelled  # the old code: the stop ended short, nobody cancelled
        except TopicReadStalled as stalled:
            outcome = stalled
        assert broker.refused_one.is_set(), "the reader did not try the broker again"
        ours, left = await left_when_back(broker, request, before)
    assert ours == [], "\n".join(ours)
    assert left == set(), "aiokafka's tasks still running:\n" + "\n".join(map(repr, left))
    assert isinstance(outcome, TopicReadStalled), f"read_topic ended in {outcome!r}"
    gc.collect()  # an unclosed connection warns as it is collected (an error in this suite)
