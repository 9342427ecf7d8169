"""The audit ledger consumer, wired exactly as its component runs it (``run_consumer``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.bootstrap import (
    audit_context,
    build_consumer,
    ledger_probe,
    prepare_database,
    self_repair,
)
from branchline_shared.background import cancel_and_wait
from branchline_shared.clock import SystemClock
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import closed, start_or_close
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.reconcile.self_repair import self_repairing
from branchline_shared.settings import BranchlineSettings


@contextlib.asynccontextmanager
async def audit_consumer(settings: BranchlineSettings) -> AsyncIterator[PostgresLedger]:
    await prepare_database(settings)
    await ensure_topics(settings.kafka_bootstrap, declare_topics(settings).all())
    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=4)
    producer = make_producer(settings, client_id="test-audit-dlq")
    try:
        # started and stopped as the audit component's (#12): a start cut short closes
        # what it opened, a stop with the broker gone is bounded and closes the rest
        await start_or_close(producer)
    except BaseException:
        await pool.close()
        raise
    clock = SystemClock()
    audit = audit_context(settings, pool, clock)
    repair = self_repair(settings, pool)
    task = asyncio.create_task(
        build_consumer(
            settings, audit.ledger, producer, clock, repair, answering=ledger_probe(pool)
        ).run()
    )
    try:
        async with self_repairing(repair):
            yield audit.ledger
    finally:
        await cancel_and_wait(task)
        await closed(producer)
        await pool.close()
