"""The audit consumer's stop while its batch's append waits on a lock held elsewhere (the
ledger's lock, as a long checkpoint or a repair by hand holds it), on a real PostgreSQL and
broker (#12, Round 36; the followup worker's is in followup/test_followup_worker_stop.py).

By default the stop gives the batch in hand the consumer's patience
(``consumer_stop_patience_s``, 2 s), then cancels it: rolled back, its offsets not committed,
the next start appends it. Before Round 35 the stop waited for its bound (BOUND_S here, far
above STOP_S). A batch that is slow but not stuck (the lock let go after the default patience)
is finished and committed when an operator lengthened the patience (the setting, Round 36):
the decision of docs/reliability.md ("Graceful shutdown"), a batch past the patience is
cancelled whether its statement waits or works, the setting lengthens it up to the bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.ledger import LEDGER_LOCK_KEY
from branchline_audit.application.context import AuditContext
from branchline_audit.bootstrap import (
    CONSUMER,
    audit_context,
    build_consumer,
    ledger_probe,
    prepare_database,
)
from branchline_shared.background import cancel_and_wait
from branchline_shared.clock import SystemClock
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka import consuming
from branchline_shared.kafka.consuming import BatchConsumer, stop_batch_consumer
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import start_or_close
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.kafka.wire import encode_event
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import event, quick_settings
from tests.integration.test_graceful_shutdown import committed_and_end
from tests.support.consumers import audit_consumer
from tests.support.kafka import produce
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(240)]

BOUND_S = 40.0
"""The consumer's stop bound here (``audit_consumer_stop_timeout_s``): what the old stop took
(or the pool's 30 s command timeout failing the append first), the append waiting on the lock."""
STOP_S = 12.0
"""What the default stop may take: the patience (2 s), the statement's cancel and the
consumer's close (~2.5 s with the followup worker's), widened for a loaded machine; far under
the bound."""
LONG_PATIENCE_S = 30.0
"""The lengthened patience of the slow-batch case (under BOUND_S: the patience decides)."""


@dataclass
class Running:
    consumer: BatchConsumer
    task: asyncio.Task[None]
    audit: AuditContext
    holder: asyncpg.Connection[Any]


@contextlib.asynccontextmanager
async def a_consumer_waiting_on_the_ledgers_lock(
    settings: BranchlineSettings, client_id: str
) -> AsyncIterator[Running]:
    """The audit consumer started, the ledger's lock held by another session, one event sent:
    yielded once the batch's append waits on that lock (seen in ``pg_stat_activity``)."""
    await prepare_database(settings)
    topics = declare_topics(settings)
    await ensure_topics(settings.kafka_bootstrap, topics.all())
    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=4)
    producer = make_producer(settings, client_id="test-audit-stop-locked")
    holder = await asyncpg.connect(settings.audit_database_url)
    task: asyncio.Task[None] | None = None
    try:
        await start_or_close(producer)
        clock = SystemClock()
        audit = audit_context(settings, pool, clock)
        consumer = build_consumer(
            settings, audit.ledger, producer, clock, answering=ledger_probe(pool)
        )
        task = asyncio.create_task(consumer.run())
        async with asyncio.timeout(60):
            await consumer.started.wait()
        await holder.execute("SELECT pg_advisory_lock($1)", LEDGER_LOCK_KEY)
        envelope = RecordedEvent.model_validate(event(1, client_id=client_id))
        await produce(
            settings.kafka_bootstrap,
            topics.intake_events.name,
            [(client_id.encode(), encode_event(envelope.model_dump(mode="json")))],
        )

        async def the_append_waits() -> bool:
            return bool(
                await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

        await eventually(the_append_waits, within=60, interval=0.05)
        yield Running(consumer, task, audit, holder)
    finally:
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        with contextlib.suppress(Exception):
            await producer.stop()
        await holder.close()  # lets the lock go if the test did not
        await pool.close()


async def test_a_batch_waiting_on_the_ledgers_lock_is_cancelled_after_the_patience(
    settings: BranchlineSettings,
) -> None:
    s = quick_settings(settings, audit_consumer_stop_timeout_s=BOUND_S)
    loop = asyncio.get_running_loop()
    async with a_consumer_waiting_on_the_ledgers_lock(s, "C-AUDIT-LOCK") as running:
        started = loop.time()
        async with asyncio.timeout(BOUND_S * 2 + 30):  # the old stop: the bound, cancelled
            await stop_batch_consumer(running.consumer, running.task, BOUND_S)
        took = loop.time() - started
        await running.holder.execute("SELECT pg_advisory_unlock($1)", LEDGER_LOCK_KEY)
        assert running.task.done()
        assert not running.task.cancelled()  # the patience's cancel, not the bound's
        assert await running.audit.ledger.size() == 0  # rolled back
    committed, end = await committed_and_end(s, s.topic(CONSUMER))
    assert committed < end  # not committed: redelivered
    async with audit_consumer(s) as ledger:  # the next start appends it
        await eventually(lambda: _size_is(ledger, 1), within=60)
    assert took < STOP_S, f"the stop took {took:.1f} s (bound {BOUND_S} s)"


async def test_a_slow_batch_is_finished_and_committed_with_the_patience_lengthened(
    settings: BranchlineSettings,
) -> None:
    s = quick_settings(
        settings,
        audit_consumer_stop_timeout_s=BOUND_S,
        consumer_stop_patience_s=LONG_PATIENCE_S,
    )
    async with a_consumer_waiting_on_the_ledgers_lock(s, "C-AUDIT-SLOW") as running:
        stopping = asyncio.create_task(stop_batch_consumer(running.consumer, running.task, BOUND_S))
        # slow, not stuck: the lock let go only after the default patience has passed
        await asyncio.sleep(consuming.STOP_PATIENCE_S + 1.0)
        assert not stopping.done()
        await running.holder.execute("SELECT pg_advisory_unlock($1)", LEDGER_LOCK_KEY)
        async with asyncio.timeout(BOUND_S + 30):
            await stopping
        assert running.task.done()
        assert not running.task.cancelled()
        assert running.task.exception() is None
        assert await running.audit.ledger.size() == 1  # finished, not rolled back
    committed, end = await committed_and_end(s, s.topic(CONSUMER))
    assert committed == end  # and committed


async def _size_is(ledger: Any, size: int) -> bool:
    return bool(await ledger.size() == size)
