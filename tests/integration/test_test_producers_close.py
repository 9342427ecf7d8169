"""A test's raw producer (``tests.support.kafka.producing``: the chaos test's poison, the
integration tests' ``produce``) leaves no transport open, started and stopped as the services'
producers are (#12).

The chaos test's poison producer started and stopped through aiokafka directly, after the
faults (a broker restarted): a start cut short there (aiokafka's bootstrap cancelled while it
waits for metadata) leaves its connection neither closed nor kept by the client, and a stop
whose flush does not end waits for ever. Both are what ``kafka.starting`` finishes for the
services. Here each is done at many moments and at the end nothing of the test's is open and
collecting what is left raises no ``ResourceWarning`` ("unclosed transport"; warnings are
errors in this suite)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings

import pytest

from tests.support import open_sockets
from tests.support.held_broker import held_broker
from tests.support.kafka import producing
from tests.support.stack import Infra, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MOMENTS_MS = [m / 2 for m in range(40)]
"""When the producer's start is cut short: before, while and after its bootstrap connection is
made and asked for metadata (on the dev broker that takes 1-3 ms)."""


def nothing_unclosed(request: pytest.FixtureRequest) -> None:
    left = open_sockets.left_open({request.node.nodeid})
    assert left == [], "\n".join(left)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        gc.collect()  # an unclosed transport warns as it is collected: an error here


async def test_a_producer_cut_short_while_starting_or_sending_leaves_no_transport(
    infra: Infra, request: pytest.FixtureRequest
) -> None:
    topic = unique("poison-")

    async def send_one() -> None:
        async with producing(infra.kafka_bootstrap) as producer:
            await producer.send_and_wait(topic, value=b"poison", key=b"C-poison")

    await send_one()  # the topic made: each run below is cut in its start or its send
    for ms in MOMENTS_MS:
        task = asyncio.ensure_future(send_one())
        await asyncio.sleep(ms / 1000)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.1)  # a connection the broker answers late is made by now
    nothing_unclosed(request)


async def test_a_producer_stopped_with_the_broker_gone_leaves_no_transport(
    request: pytest.FixtureRequest,
) -> None:
    async with held_broker() as broker:
        async with producing(broker.bootstrap) as producer:
            await producer.send_and_wait("poison", value=b"delivered", key=b"C-poison")
            broker.hold()
            broker.cut()  # the broker gone: the producer connects again, and is held
            undelivered = await producer.send("poison", value=b"left", key=b"C-poison")
            async with asyncio.timeout(30):
                await broker.held_one.wait()
        # the stop's flush bounded (``closed``'s default), the batch failed, not left waiting
        assert undelivered.done()
        undelivered.exception()
        broker.release()
    await asyncio.sleep(0.1)
    nothing_unclosed(request)
