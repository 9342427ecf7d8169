"""Composition root of intake: builds everything from settings inside the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from branchline_intake.application.group_commit import GroupCommitter
from branchline_intake.application.history_tail import TailLoadingStore
from branchline_intake.application.submit import IntakeContext
from branchline_intake.domain import RecordedDecider
from branchline_intake.domain_seam import build_decider
from branchline_intake.entrypoints.direct_submit import install_direct_submit
from branchline_intake.entrypoints.http import router
from branchline_intake.entrypoints.schemas_http import schemas_router
from branchline_intake.entrypoints.shelf_http import shelf_router
from branchline_shared.access.scope import StaffDirectory
from branchline_shared.clock import SystemClock
from branchline_shared.crypto.keystore import open_configured_key_store
from branchline_shared.eventstore.ports import EventStore
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.eventstore.relay_stop import RelayStop
from branchline_shared.eventstore.service_relay import service_relay
from branchline_shared.http.hardening import install_hardening
from branchline_shared.http.service_app import create_service_app
from branchline_shared.http.startup_heap import freeze_startup_heap
from branchline_shared.http.token_keys import token_codec
from branchline_shared.http.worker_runtime import cut_short_by, serving_health, stop_on_signals
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import start_or_close
from branchline_shared.kafka.topics import (
    Topics,
    broker_is_reachable,
    declare_topics,
    ensure_topics,
)
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database
from branchline_shared.postgres.pool import PgPool, is_reachable, open_pool
from branchline_shared.settings import IntakeSettings

SERVICE = "intake"


async def prepare_database(settings: IntakeSettings) -> None:
    """Create the database if needed and apply migrations (idempotent, safe to race)."""
    await migrate_database(
        settings.intake_database_url,
        [EVENT_STORE_MIGRATIONS, (SERVICE, "branchline_intake.migrations")],
    )


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever is opened is registered at once: a start that fails half-way (a broker or
        # key database unreachable, a missing key) releases what it had opened, in reverse.
        async with contextlib.AsyncExitStack() as opened:
            await prepare_database(settings)
            topics = declare_topics(settings)
            await ensure_topics(settings.kafka_bootstrap, topics.all())
            # Nothing on this pool outlives a transaction (the relay's lock has a connection of
            # its own): a released connection skips the reset query, one round trip per group.
            pool = await open_pool(
                settings.intake_database_url,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
                session_state=False,
            )
            opened.push_async_callback(pool.close)
            relay_stop = RelayStop()
            producer = await started_producer(opened, settings, relay_stop)
            keys, key_pool = await open_configured_key_store(settings)
            opened.push_async_callback(key_pool.close)
            master = settings.resolved_master_key()
            app.state.token_codec = token_codec(settings, "intake")
            relay = outbox_relay(settings, pool, producer, topics)
            decider = build_decider(settings)
            store: EventStore = PostgresEventStore(pool, on_commit=relay.committed)
            app.state.stream_lister = store  # the product shelf's list (GET /v1/products)
            if isinstance(decider, RecordedDecider):
                store = TailLoadingStore(store, decider)
            app.state.intake = IntakeContext(
                store=store,
                clock=SystemClock(),
                decider=decider,
                topic=topics.intake_events.name,
                keys=keys,
                # Its first value is the one it always had; stored wrapped, it survives a
                # master-key rotation (a re-sent event stays a duplicate, not a conflict).
                hash_key=await keys.service_secret(
                    "submission-hash",
                    initial=hmac.new(master, b"branchline submission hash v1", "sha256").digest(),
                ),
                staff=StaffDirectory(settings.staff_supervisors, settings.staff_default_supervisor),
            )
            app.state.readiness_checks = {
                "postgres": lambda: is_reachable(pool),
                "keys": lambda: is_reachable(key_pool),
                "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
            }
            if settings.relay_enabled:
                relay_task = asyncio.create_task(relay.run(), name="intake-outbox-relay")
                # Publish what is committed before stopping (bounded); whatever the relay
                # died of, the producer and the pools are still closed.
                opened.push_async_callback(
                    relay_stop.drain, relay, relay_task, timeout_s=settings.shutdown_flush_timeout_s
                )
            group_commit = GroupCommitter(
                app.state.intake,
                writers=settings.intake_group_commit_writers,
                max_events=settings.intake_group_commit_max_events,
                window_s=settings.intake_group_commit_window_ms / 1000,
                guess_new_streams=settings.intake_group_commit_guess_new_streams,
                guess_several_callers=settings.intake_group_commit_guess_several_callers,
            )
            app.state.group_commit = group_commit
            opened.push_async_callback(group_commit.aclose)
            yield

    app = create_service_app(
        service=SERVICE,
        title="Branchline intake",
        description="Client-interaction events from branch systems, checked against the "
        "standard (docs/rules.md) and appended to the event store with a transactional outbox.",
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    install_hardening(app, settings, service=SERVICE)
    app.include_router(router)
    app.include_router(schemas_router)
    app.include_router(shelf_router)
    install_direct_submit(app)  # POST /v1/events past FastAPI's per-request layers (#12)
    return app


async def started_producer(
    opened: contextlib.AsyncExitStack, settings: IntakeSettings, stop: RelayStop
) -> AIOKafkaProducer:
    """The relay's producer, started, and stopped when ``opened`` closes (a start cut short or
    failed closes what it had opened, #12)."""
    producer = make_producer(settings, client_id="branchline-intake-relay")
    await start_or_close(producer)
    # its flush bounded, and none after a drain of the relay's that did not finish; what it
    # did not deliver fails, left unpublished (#12)
    opened.push_async_callback(
        stop.producer_closed, producer, flush_within_s=settings.kafka_producer_stop_flush_s
    )
    return producer


def outbox_relay(
    settings: IntakeSettings, pool: PgPool, producer: AIOKafkaProducer, topics: Topics
) -> OutboxRelay:
    """The relay of intake's event store, in the API's processes or on its own."""
    return service_relay(
        settings,
        pool=pool,
        producer=producer,
        topics=topics,
        store_name=SERVICE,
        database_url=settings.intake_database_url,
        min_interval_s=settings.intake_relay_min_interval_s,
    )


async def run_relay(settings: IntakeSettings) -> None:
    """A standalone outbox relay of intake's store, until SIGINT/SIGTERM: a second relay next
    to the API's (the store's relay lock keeps one active; the other takes over when it dies).
    """
    stop = stop_on_signals()
    async with contextlib.AsyncExitStack() as opened:
        started = False
        # a SIGTERM while starting (a slow broker or database) ends the start at once (#12)
        async with cut_short_by(stop):
            topics = declare_topics(settings)
            await ensure_topics(settings.kafka_bootstrap, topics.all())
            pool = await open_pool(settings.intake_database_url, min_size=1, max_size=3)
            opened.push_async_callback(pool.close)
            relay_stop = RelayStop()
            producer = await started_producer(opened, settings, relay_stop)
            relay = outbox_relay(settings, pool, producer, topics)
            task = asyncio.create_task(relay.run(), name="intake-outbox-relay")
            opened.push_async_callback(
                relay_stop.drain, relay, task, timeout_s=settings.shutdown_flush_timeout_s
            )
            checks = {
                "postgres": lambda: is_reachable(pool),
                "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
            }
            health = await opened.enter_async_context(
                serving_health(
                    "intake-relay", settings.bind_host, settings.intake_relay_port, checks
                )
            )
            started = True
        if not started:
            return  # what the start opened is closed by `opened`; exit 0 as a stop
        # Started: what is loaded by now lives as long as the process, and the collector
        # need not walk it again on every gen-2 collection (#12).
        freeze_startup_heap()
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()
        # unready first (still relaying), then publish what is committed and stop, while
        # readiness still says draining
        await health.drain(settings.shutdown_drain_s)
        await relay.drain(task, timeout_s=settings.shutdown_flush_timeout_s)
