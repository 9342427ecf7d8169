"""A real producer's stop cut short while a batch is in flight (#12).

aiokafka 0.14's ``AIOKafkaProducer.stop()`` waits for its accumulator to flush (or its sender
task to end), then the sender's close (which cancels the sender task; the task then awaits its
send tasks in flight one by one), then the client's close. Cut while it waits (a stop bound:
``kafka/starting.py``'s ``stopped``), what it did not reach is closed by the producer's
``close_rest`` (``aiokafka_private``). Before: only the sender task was ended and the client
closed; the send task in flight was left to run on (and the sender, cancelled, waited for it
first: up to the request timeout with a broker that does not answer), the flush task the stop
had made was left pending for good, and the batch's future (what ``send_and_wait`` awaits)
stayed pending: its caller waited for ever. Now every task of the sender's and the
accumulator's is ended together, every batch not delivered fails (``ProducerClosed``), then
the client is closed.

The broker is reached through a proxy (``tests/support/held_broker.py``) that breaks the open
connections and holds new ones: the batch's send waits in the connect.
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from branchline_shared.kafka.starting import start_or_close, stopped
from tests.support.held_broker import (
    METADATA_AGE_MS,
    aiokafka_tasks,
    held_broker,
    left_when_back,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOPIC = "relayed"
REQUEST_TIMEOUT_MS = 20_000
"""Longer than the test waits: a send held in its connect is not given up by aiokafka itself."""


async def test_a_producer_stop_cut_while_a_batch_is_in_flight_fails_it_and_ends_its_tasks(
    request: pytest.FixtureRequest,
) -> None:
    before = aiokafka_tasks()
    async with held_broker() as broker:
        producer = AIOKafkaProducer(
            bootstrap_servers=broker.bootstrap,
            acks="all",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=METADATA_AGE_MS,
        )
        await start_or_close(producer)
        delivered = await producer.send_and_wait(TOPIC, b"delivered")
        assert delivered.offset == 0
        broker.hold()
        broker.cut()  # the broker restarting: the producer connects again, and is held
        in_flight = await producer.send(TOPIC, b"in flight")
        async with asyncio.timeout(30):
            await broker.held_one.wait()
        await asyncio.sleep(0.3)  # the batch drained, its send waiting for the connection
        assert not in_flight.done()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # a stop bound: the flush waits for ever
                await stopped(producer)
        await asyncio.sleep(0)  # what the close's futures wake runs once
        pending = not in_flight.done()
        failed = None if pending else in_flight.exception()
        ours, left = await left_when_back(broker, request, before)
    assert not pending, "the batch's future left pending: send_and_wait would wait for ever"
    assert isinstance(failed, KafkaError), f"the batch ended in {failed!r}"
    assert left == set(), "aiokafka's tasks still running:\n" + "\n".join(map(repr, left))
    assert ours == [], "\n".join(ours)
    # What the close failed is retrieved (asyncio logs "Future exception was never retrieved"
    # when such a future is collected, which may be long after the stop): no failed future of
    # the producer's is left unretrieved (``_log_traceback``: asyncio's own flag for it).
    del producer, in_flight
    gc.collect()  # an unclosed connection warns as it is collected (an error in this suite)
    unretrieved = [
        repr(o)
        for o in gc.get_objects()
        if isinstance(o, asyncio.Future)
        and o.done()
        and not o.cancelled()
        and getattr(o, "_log_traceback", False)
        and "ProducerClosed" in repr(o)
    ]
    assert unretrieved == [], unretrieved
