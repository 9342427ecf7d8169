"""Composition root of audit: the API app and the ledger consumer, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.application.recording import record_events
from branchline_audit.entrypoints.http import router
from branchline_shared.clock import SystemClock
from branchline_shared.http.auth import TokenCodec
from branchline_shared.http.service_app import create_service_app
from branchline_shared.http.worker_runtime import serving_health, stop_on_signals
from branchline_shared.kafka.consuming import BatchConsumer, DeadLetters
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import broker_is_reachable, declare_topics, ensure_topics
from branchline_shared.postgres.migrations import load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database, is_reachable, open_pool
from branchline_shared.settings import BranchlineSettings

SERVICE = "audit"
CONSUMER = "audit-consumer"


async def prepare_database(settings: BranchlineSettings) -> None:
    await ensure_database(settings.audit_database_url)
    pool = await open_pool(settings.audit_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate(conn, SERVICE, load_migrations("branchline_audit.migrations"))
    finally:
        await pool.close()


def create_app(settings: BranchlineSettings | None = None) -> FastAPI:
    settings = settings or BranchlineSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_database(settings)
        pool = await open_pool(
            settings.audit_database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        try:
            app.state.ledger = PostgresLedger(pool)
            app.state.token_codec = TokenCodec(
                settings.resolved_jwt_secret(), settings.jwt_issuer, settings.jwt_audience
            )
            app.state.readiness_checks = {
                "postgres": lambda: is_reachable(pool),
                "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
            }
            yield
        finally:
            await pool.close()

    app = create_service_app(
        service=SERVICE,
        title="Branchline audit",
        description="The immutable, hash-chained trail of every accepted event, for auditors.",
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    app.include_router(router)
    return app


async def run_consumer(settings: BranchlineSettings) -> None:
    """The audit consumer process: runs until SIGINT/SIGTERM."""
    stop = stop_on_signals()
    await prepare_database(settings)
    topics = declare_topics(settings)
    await ensure_topics(settings.kafka_bootstrap, topics.all())
    pool = await open_pool(settings.audit_database_url, min_size=1, max_size=4)
    producer = make_producer(settings, client_id=f"branchline-{CONSUMER}-dlq")
    await producer.start()
    ledger = PostgresLedger(pool)
    clock = SystemClock()
    consumer = BatchConsumer(
        settings=settings,
        topics=topics.event_topics(),
        group_id=settings.topic(CONSUMER),
        name=CONSUMER,
        handle=lambda events: record_events(ledger, clock, events),
        dead_letters=DeadLetters(producer, topics.audit_consumer_dlq.name, CONSUMER),
        on_broker_lost=lambda: ensure_topics(settings.kafka_bootstrap, topics.all(), attempts=1),
    )
    checks = {
        "postgres": lambda: is_reachable(pool),
        "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
    }
    task = asyncio.create_task(consumer.run(), name=CONSUMER)
    try:
        async with serving_health(
            CONSUMER, settings.bind_host, settings.audit_consumer_port, checks
        ):
            done, _ = await asyncio.wait(
                [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                task.result()  # a crashed consumer ends the process loudly
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()
        await pool.close()
