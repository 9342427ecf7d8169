"""Composition root of followup: the API app and the worker, built from settings."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from branchline_followup.entrypoints.http import router
from branchline_followup.entrypoints.worker import CONSUMER, create_faust_app
from branchline_shared.http.auth import TokenCodec
from branchline_shared.http.service_app import create_service_app
from branchline_shared.http.worker_runtime import serving_health, stop_on_signals
from branchline_shared.kafka.consuming import DeadLetters
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import broker_is_reachable, declare_topics, ensure_topics
from branchline_shared.postgres.migrations import load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database, is_reachable, open_pool
from branchline_shared.settings import BranchlineSettings

SERVICE = "followup"


async def prepare_database(settings: BranchlineSettings) -> None:
    await ensure_database(settings.followup_database_url)
    pool = await open_pool(settings.followup_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await migrate(
                conn, "eventstore", load_migrations("branchline_shared.eventstore.migrations")
            )
            await migrate(conn, SERVICE, load_migrations("branchline_followup.migrations"))
    finally:
        await pool.close()


def create_app(settings: BranchlineSettings | None = None) -> FastAPI:
    settings = settings or BranchlineSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await prepare_database(settings)
        pool = await open_pool(
            settings.followup_database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        try:
            app.state.pool = pool
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
        title="Branchline followup",
        description="Read models of clients and follow-up work for relationship managers.",
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    app.include_router(router)
    return app


async def run_worker(settings: BranchlineSettings) -> None:
    """The followup worker process: runs until SIGINT/SIGTERM."""
    stop = stop_on_signals()
    await prepare_database(settings)
    topics = declare_topics(settings)
    await ensure_topics(settings.kafka_bootstrap, topics.all())
    pool = await open_pool(
        settings.followup_database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    producer = make_producer(settings, client_id=f"branchline-{CONSUMER}-dlq")
    await producer.start()
    app = create_faust_app(
        settings, topics, pool, DeadLetters(producer, topics.followup_worker_dlq.name, CONSUMER)
    )
    checks = {
        "postgres": lambda: is_reachable(pool),
        "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
    }
    try:
        await app.start()
        async with serving_health(
            f"{SERVICE}-worker", settings.bind_host, settings.followup_worker_port, checks
        ):
            await stop.wait()
    finally:
        await app.stop()
        await producer.stop()
        await pool.close()
