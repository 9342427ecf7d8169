"""A dead-letter producer's close after a send the broker did not acknowledge: no flush
(``kafka.starting.ProducerStop``, #12, Round 33).

The audit consumer's and the followup worker's dead letters retry their send while the broker
is down; the stop cancels the send in flight, and the consumer has not committed past the
poison message (the next start dead-letters it again). Before, the producer's close flushed
that batch until it expired (the producer's request timeout) or the flush bound
(``kafka_producer_stop_flush_s``); here both are far above the stop's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from branchline_shared.background import cancel_and_wait
from branchline_shared.kafka.consuming import DeadLetters, RawMessage
from branchline_shared.kafka.starting import ProducerStop, start_or_close
from branchline_shared.kafka.topics import TopicSpec, ensure_topics
from branchline_shared.settings import BranchlineSettings
from tests.support.held_broker import held_broker
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FLUSH_S = 120.0
"""The producer's flush bound, far above the stop's."""
EXPIRY_MS = 120_000
"""The producer's request timeout, its batches' expiry (10 s in ``make_producer``): an old close
flushed until the batch expired, so it took at least this long (#12, Round 34: a 10 s expiry
against a 5 s bound left a starved test process too little room)."""
STOP_S = 30.0
"""What the close may take: a safety net for a loaded machine, far under the old ``EXPIRY_MS``."""


def slow_to_expire(settings: BranchlineSettings) -> AIOKafkaProducer:
    """A dead-letter producer as ``make_producer`` makes it, its batches expiring after
    ``EXPIRY_MS``."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_idempotence=settings.kafka_idempotent_producer,
        client_id="test-dlq-stop",
        acks="all",
        linger_ms=2,
        request_timeout_ms=EXPIRY_MS,
        retry_backoff_ms=200,
    )


def poison(offset: int) -> RawMessage:
    return RawMessage("branchline.test.source", 0, offset, b"C-x", b"{oops", [])


async def test_a_dead_letter_not_acknowledged_leaves_the_producer_closed_without_a_flush(
    infra: Infra, tmp_path: Path
) -> None:
    async with held_broker() as broker:
        settings = make_settings(infra, tmp_path, kafka_bootstrap=broker.bootstrap)
        topic = "branchline.test.stop-dlq"
        await ensure_topics(broker.bootstrap, [TopicSpec(topic, 1, 1)])
        producer = slow_to_expire(settings)
        await start_or_close(producer)
        stop = ProducerStop()
        letters = DeadLetters(producer, topic, "test-consumer", stop)
        closing: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(30):
                await letters.send(poison(1), "not a Branchline event envelope")  # acknowledged
            assert stop.sends_unacknowledged == 0
            broker.hold()
            broker.cut()  # the broker gone: the next send's batch waits for a connection
            sending = asyncio.create_task(letters.send(poison(2), "not an envelope"))
            async with asyncio.timeout(30):
                await broker.held_one.wait()
            await cancel_and_wait(sending)  # the consumer's stop cuts the send
            loop = asyncio.get_running_loop()
            started = loop.time()
            closing = asyncio.create_task(stop.producer_closed(producer, flush_within_s=FLUSH_S))
            async with asyncio.timeout(STOP_S + 30):  # the old close: EXPIRY_MS at least
                await asyncio.shield(closing)
            took = loop.time() - started
            assert took < STOP_S, f"the close took {took:.1f} s (flush bound {FLUSH_S} s)"
        finally:
            if closing is None:
                await producer.stop()
            elif not closing.done():
                broker.release()
                with contextlib.suppress(Exception):
                    await closing
