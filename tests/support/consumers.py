"""The audit ledger consumer, run in-process as its component runs it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.application.recording import record_events
from branchline_audit.bootstrap import CONSUMER as AUDIT_CONSUMER
from branchline_audit.bootstrap import prepare_database as prepare_audit
from branchline_shared.clock import SystemClock
from branchline_shared.kafka.consuming import BatchConsumer, DeadLetters
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings


@contextlib.asynccontextmanager
async def audit_consumer(settings: BranchlineSettings) -> AsyncIterator[PostgresLedger]:
    await prepare_audit(settings)
    topics = declare_topics(settings)
    pool = await open_pool(settings.audit_database_url)
    producer = make_producer(settings, client_id="test-audit-dlq")
    await producer.start()
    ledger = PostgresLedger(pool)
    consumer = BatchConsumer(
        settings=settings,
        topics=topics.event_topics(),
        group_id=settings.topic(AUDIT_CONSUMER),
        name=AUDIT_CONSUMER,
        handle=lambda events: record_events(ledger, SystemClock(), events),
        dead_letters=DeadLetters(producer, topics.audit_consumer_dlq.name, AUDIT_CONSUMER),
        on_broker_lost=lambda: ensure_topics(settings.kafka_bootstrap, topics.all(), attempts=1),
    )
    task = asyncio.create_task(consumer.run())
    try:
        yield ledger
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await pool.close()
