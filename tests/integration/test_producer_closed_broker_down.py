"""A producer closed (``kafka.starting.closed``, the services' shutdown) while the broker is
down: its flush is bounded, then what it did not deliver fails (#12).

aiokafka 0.14's ``AIOKafkaProducer.stop()`` first flushes: it waits until every batch is
delivered or expires (its request timeout, after its retries). With the broker down a
service's stop waited that long after its relay had drained. ``closed`` now lets the stop
flush for ``flush_within_s`` (the setting ``kafka_producer_stop_flush_s`` in the services),
then closes the rest (``aiokafka_private``'s ``close_rest``): every batch not delivered fails
with ``ProducerClosed``, so the outbox relay that sent it marks nothing published and the next
relay publishes it (nothing lost), and no task or socket of the producer's is left.

The broker is reached through a proxy (``tests/support/held_broker.py``) that breaks the open
connections and holds new ones: the batch's send waits in the connect.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import ProducerClosed

from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import closed, start_or_close
from branchline_shared.settings.common import CommonSettings
from tests.support.held_broker import aiokafka_tasks, held_broker, left_when_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "relayed"
BOUND_S = 0.5
WITHIN_S = 8.0
"""What the test waits for ``closed``: well above the bound, below the producer's request
timeout (10 s, ``make_producer``), which the unbounded flush waited for at least."""


async def test_a_producer_closed_with_the_broker_down_fails_its_batch_after_the_bound(
    request: pytest.FixtureRequest,
) -> None:
    before = aiokafka_tasks()
    async with held_broker() as broker:
        settings = CommonSettings(
            kafka_bootstrap=broker.bootstrap, kafka_producer_stop_flush_s=BOUND_S
        )
        producer = make_producer(settings, client_id="test-closed-broker-down")
        await start_or_close(producer)
        delivered = await producer.send_and_wait(TOPIC, b"delivered")
        assert delivered.offset == 0
        broker.hold()
        broker.cut()  # the broker gone: the producer connects again, and is held
        undelivered = await producer.send(TOPIC, b"undelivered")
        async with asyncio.timeout(30):
            await broker.held_one.wait()
        await asyncio.sleep(0.3)  # the batch drained, its send waiting for the connection
        assert not undelivered.done()
        # as the services close it (their bootstraps)
        async with asyncio.timeout(WITHIN_S):
            await closed(producer, flush_within_s=settings.kafka_producer_stop_flush_s)
        await asyncio.sleep(0)  # what the close's futures wake runs once
        failed = None if not undelivered.done() else undelivered.exception()
        ours, left = await left_when_back(broker, request, before)
    assert isinstance(failed, ProducerClosed), f"the batch ended in {failed!r}"
    assert left == set(), "aiokafka's tasks still running:\n" + "\n".join(map(repr, left))
    assert ours == [], "\n".join(ours)


async def test_a_producer_closed_with_the_broker_up_delivers_what_it_holds() -> None:
    """The bound cuts only a flush that does not end: with the broker up, a batch sent just
    before the stop is delivered by its flush, as before."""
    async with held_broker() as broker:
        settings = CommonSettings(kafka_bootstrap=broker.bootstrap)
        producer = make_producer(settings, client_id="test-closed-broker-up")
        await start_or_close(producer)
        sent = await producer.send(TOPIC, b"sent")
        await closed(producer, flush_within_s=settings.kafka_producer_stop_flush_s)
        assert (await sent).offset == 0
