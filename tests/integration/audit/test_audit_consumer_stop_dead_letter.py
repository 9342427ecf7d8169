"""The audit consumer's stop with a dead-letter send stuck (the broker gone as it sends): the
send is given up at once, the stop ends well within its bound
(``audit_consumer_stop_timeout_s``, 10 s), the poison is not committed, and the next start
dead-letters it (#12, Round 33, docs/reliability.md).

Before, the send retried until the stop's bound (a hard-coded 10 s) cancelled the consumer.
The bound is set to BOUND_S here, far above PROMPT_S: the old stop would take all of it, and
no load closes that gap (a 3 s limit against the 10 s default took 2.8 s at load 4-5)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.bootstrap import (
    audit_context,
    build_consumer,
    ledger_probe,
    prepare_database,
)
from branchline_shared.background import cancel_and_wait
from branchline_shared.clock import SystemClock
from branchline_shared.kafka.consuming import stop_batch_consumer
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import ProducerStop, start_or_close
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from tests.integration.audit.audit_support import quick_settings
from tests.support.consumers import audit_consumer
from tests.support.held_broker import held_broker
from tests.support.kafka import produce, read_all
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOUND_S = 60.0
"""The consumer's stop bound here (``audit_consumer_stop_timeout_s``): what the old stop took."""
PROMPT_S = 30.0
"""What the whole stop (the consumer's, then the dead-letter producer's close) may take here,
on a machine however loaded: the new stop takes ~3 s, the old one BOUND_S."""
POISON = b"{not an envelope"


async def test_the_audit_consumer_stops_promptly_with_a_dead_letter_stuck_and_sends_it_again(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with held_broker() as broker:
        settings = quick_settings(
            make_settings(
                infra, tmp_path, kafka_bootstrap=broker.bootstrap, reconcile_self_repair=False
            ),
            audit_consumer_stop_timeout_s=BOUND_S,
        )
        topics = declare_topics(settings)
        await prepare_database(settings)
        await ensure_topics(broker.bootstrap, topics.all())
        source = topics.event_topics()[0]
        await produce(broker.bootstrap, source, [(b"C-x", POISON)])

        pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=4)
        producer = make_producer(settings, client_id="test-audit-dlq-stuck")
        await start_or_close(producer)
        producer_stop = ProducerStop()
        sending = asyncio.Event()
        send_and_wait = producer.send_and_wait

        async def send_as_the_broker_goes(*args: Any, **kwargs: Any) -> Any:
            if not sending.is_set():  # the broker gone as the dead letter is sent
                sending.set()
                broker.hold()
                broker.cut()
            return await send_and_wait(*args, **kwargs)

        monkeypatch.setattr(producer, "send_and_wait", send_as_the_broker_goes)
        clock = SystemClock()
        consumer = build_consumer(
            settings,
            audit_context(settings, pool, clock).ledger,
            producer,
            clock,
            answering=ledger_probe(pool),
            producer_stop=producer_stop,
        )
        task = asyncio.create_task(consumer.run())
        try:
            async with asyncio.timeout(60):
                await sending.wait()
                await broker.held_one.wait()  # the send waits for a connection the broker holds
            loop = asyncio.get_running_loop()
            started = loop.time()
            async with asyncio.timeout(BOUND_S * 2 + 30):  # the old stop: the bound, cancelled
                await stop_batch_consumer(consumer, task, settings.audit_consumer_stop_timeout_s)
                await producer_stop.producer_closed(
                    producer, flush_within_s=settings.kafka_producer_stop_flush_s
                )
            took = loop.time() - started
            assert task.done()
            assert not task.cancelled()  # a stop, not the bound's cancellation
            assert task.exception() is None
            assert took < PROMPT_S, f"the stop took {took:.1f} s"
        finally:
            broker.release()
            if not task.done():
                with contextlib.suppress(Exception):
                    await cancel_and_wait(task)
            with contextlib.suppress(Exception):
                await producer.stop()
            await pool.close()

        # the next start: the poison was not committed, so it is dead-lettered now
        async with audit_consumer(settings):
            letters = await read_all(
                broker.bootstrap, topics.audit_consumer_dlq.name, expect=1, within=60
            )
        assert [letter.value for letter in letters] == [POISON]
        headers = dict(letters[0].headers)
        assert headers["dlq_source_topic"] == source.encode()
        assert headers["dlq_source_offset"] == b"0"
