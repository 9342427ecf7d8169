"""Composition root of followup: the API app and the worker, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from branchline_followup.adapters.clock_store import PostgresClockOffsets
from branchline_followup.adapters.legal_holds import legal_holds_from_settings
from branchline_followup.adapters.partitioned_rebuild import ProcessPartitions
from branchline_followup.adapters.pg_schemas import LIVE_SCHEMA, with_search_path
from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget
from branchline_followup.adapters.reconciling import (
    read_models_applied,
    read_models_applied_among,
    read_models_have,
    read_models_order_reported,
    read_models_unordered,
)
from branchline_followup.adapters.store_replay import StoreLog, StoreReplay
from branchline_followup.adapters.topic_replay import TopicReplay
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.clock import ServiceClock
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.projector import Projection
from branchline_followup.application.rebuild import (
    RebuildResult,
    TopicOrder,
    rebuild_read_models,
)
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.shredding import (
    retention_rule_from_settings,
)
from branchline_followup.entrypoints.console import install_followup_console
from branchline_followup.entrypoints.http import api_router
from branchline_followup.entrypoints.shred_runner import run_shred_loop
from branchline_followup.entrypoints.timer_runner import run_timer_loop
from branchline_followup.entrypoints.worker import (
    CONSUMER,
    create_worker_consumer,
    worker_group,
)
from branchline_shared.access.scope import StaffDirectory
from branchline_shared.allocator_trim import batch_trimmer, trim_policy
from branchline_shared.background import running_task
from branchline_shared.clock import SystemClock
from branchline_shared.crypto.keystore import open_configured_key_store
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.eventstore.relay_stop import RelayStop
from branchline_shared.eventstore.service_relay import service_relay
from branchline_shared.http.hardening import install_hardening
from branchline_shared.http.service_app import ReadinessCheck, create_service_app
from branchline_shared.http.startup_heap import freeze_batch_heap
from branchline_shared.http.token_keys import token_codec
from branchline_shared.http.worker_runtime import cut_short_by, serving_health, stop_on_signals
from branchline_shared.kafka.consuming import BatchConsumer, DeadLetters, stop_batch_consumer
from branchline_shared.kafka.dead_letter_log import watch_dead_letters
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import ProducerStop, start_or_close
from branchline_shared.kafka.topics import (
    Topics,
    broker_is_reachable,
    declare_topics,
    ensure_topics,
)
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database
from branchline_shared.postgres.pool import PgPool, is_reachable, open_pool
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.reconcile.running import ConsumerSource
from branchline_shared.reconcile.self_repair import SelfRepair, self_repairing
from branchline_shared.settings import FollowupSettings

SERVICE = "followup"


async def prepare_database(settings: FollowupSettings) -> None:
    # Migrations run with search_path = public: the read-model schema holds only read models.
    await migrate_database(
        with_search_path(settings.followup_database_url, "public"),
        [
            EVENT_STORE_MIGRATIONS,
            (SERVICE, "branchline_followup.migrations"),
            ("followup-console", "branchline_followup.console_migrations"),
        ],
    )


async def open_read_model_pool(settings: FollowupSettings) -> PgPool:
    # Nothing done on this pool outlives a transaction (the relay's session-level lock and
    # LISTEN are on a connection of its own, ``followup_runtime``): a released connection
    # skips asyncpg's reset query, a round trip after each worker batch, relay read and mark,
    # timer round and API request (#12, as intake's write pool in Round 6).
    return await open_pool(
        with_search_path(settings.followup_database_url, LIVE_SCHEMA),
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        session_state=False,
    )


def outbox_relay(
    settings: FollowupSettings, pool: PgPool, producer: AIOKafkaProducer, topics: Topics
) -> OutboxRelay:
    """The relay of followup's event store, as both followup processes run it."""
    return service_relay(
        settings,
        pool=pool,
        producer=producer,
        topics=topics,
        store_name=SERVICE,
        database_url=settings.followup_database_url,
        min_interval_s=settings.followup_relay_min_interval_s,
    )


@dataclass(frozen=True)
class FollowupRuntime:
    """What both followup processes run: the pool, the use cases' context, the outbox relay
    of followup's event store (one active per database, whichever process holds its lock)."""

    settings: FollowupSettings
    topics: Topics
    pool: PgPool
    producer: AIOKafkaProducer
    context: FollowupContext
    # read by the producer's close: the relay's drain and the dead letters' sends (#12)
    producer_stop: ProducerStop | None = None


@contextlib.asynccontextmanager
async def followup_runtime(settings: FollowupSettings) -> AsyncIterator[FollowupRuntime]:
    # Whatever is opened is registered at once: a start that fails half-way (a broker or key
    # database unreachable, a missing key) releases what it had opened, in reverse.
    async with contextlib.AsyncExitStack() as opened:
        await prepare_database(settings)
        topics = declare_topics(settings)
        await ensure_topics(settings.kafka_bootstrap, topics.all())
        policy = policy_from_settings(settings)
        pool = await open_read_model_pool(settings)
        opened.push_async_callback(pool.close)
        keys, key_pool = await open_configured_key_store(settings)
        opened.push_async_callback(key_pool.close)
        producer = make_producer(settings, client_id=f"branchline-{SERVICE}")
        await start_or_close(producer)  # cut short (a SIGTERM while starting): closed (#12)
        # its flush bounded, and none after a drain of the relay's that did not finish or a
        # dead letter not acknowledged; what it did not deliver fails, left unpublished (#12)
        relay_stop = RelayStop()
        opened.push_async_callback(
            relay_stop.producer_closed,
            producer,
            flush_within_s=settings.kafka_producer_stop_flush_s,
        )
        relay = outbox_relay(settings, pool, producer, topics)
        context = FollowupContext(
            pool=pool,
            units=PostgresUnitsOfWork(
                pool, on_commit=relay.wake if settings.relay_enabled else None
            ),
            projection=Projection(policy, task_creations_topic=topics.followup_events.name),
            topic=topics.followup_events.name,
            clock=ServiceClock(
                PostgresClockOffsets(pool), SystemClock(), dev_mode=settings.dev_mode
            ),
            keys=keys,
        )
        if settings.relay_enabled:
            relay_task = asyncio.create_task(relay.run(), name="followup-outbox-relay")
            # Publish what is committed before stopping (bounded); whatever the relay died
            # of, the producer and the pools are still closed.
            opened.push_async_callback(
                relay_stop.drain, relay, relay_task, timeout_s=settings.shutdown_flush_timeout_s
            )
        yield FollowupRuntime(settings, topics, pool, producer, context, relay_stop)


def create_app(settings: FollowupSettings | None = None) -> FastAPI:
    settings = settings or FollowupSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with followup_runtime(settings) as runtime:
            app.state.pool = runtime.pool
            app.state.followup = runtime.context
            app.state.token_codec = token_codec(settings, "followup")
            app.state.staff = StaffDirectory(
                settings.staff_supervisors, settings.staff_default_supervisor
            )
            app.state.readiness_checks = {
                "postgres": lambda: is_reachable(runtime.pool),
                "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
            }
            yield

    app = create_service_app(
        service=SERVICE,
        title="Branchline followup",
        description="Follow-up work for relationship managers and supervisors: tasks made due "
        "by the rules of the standard, SLA clocks, escalation, client 360, quality measures.",
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    install_hardening(app, settings, service=SERVICE)
    app.include_router(api_router(dev_mode=settings.dev_mode))
    install_followup_console(app, settings)
    return app


def worker_self_repair(settings: FollowupSettings, runtime: FollowupRuntime) -> SelfRepair | None:
    """The worker's own reconciliation with the event stores (None: switched off)."""
    if not settings.reconcile_self_repair:
        return None
    return SelfRepair(
        settings,
        ConsumerSource(
            CONSUMER,
            runtime.topics.followup_worker_dlq.name,
            lambda: read_models_applied(runtime.pool),
            has=lambda ids: read_models_have(runtime.pool, ids),
            # The worker's consumer group (the Faust app's id it was, ADR-0015), reading the
            # event topics: the check asks the broker how far it read.
            group_id=worker_group(settings),
            topics=tuple(runtime.topics.event_topics()),
            # The events no client's re-projection puts in order: the check judges their
            # streams' order as reconcile does (#12).
            unordered=lambda after, limit: read_models_unordered(runtime.pool, after, limit),
            applied_among=lambda ids: read_models_applied_among(runtime.pool, ids),
            order_reported=lambda ids: read_models_order_reported(runtime.pool, ids),
            order_remedy="branchline rebuild followup (from the topics, or --from-stores)",
        ),
        interval_s=settings.reconcile_self_check_interval_s,
        grace_s=settings.reconcile_grace_s,
    )


def worker_consumer(
    settings: FollowupSettings, runtime: FollowupRuntime, repair: SelfRepair | None = None
) -> BatchConsumer:
    """The consumer projecting the event topics through the runtime's units (which wake its
    relay), dead-lettering to the worker's topic, telling ``repair`` of position jumps and of
    a broker that lost its log."""
    topics = runtime.topics
    return create_worker_consumer(
        settings,
        topics,
        runtime.pool,
        DeadLetters(
            runtime.producer, topics.followup_worker_dlq.name, CONSUMER, runtime.producer_stop
        ),
        runtime.context.projection,
        runtime.context.units,
        PositionJumps(CONSUMER, repair.position_jumped if repair is not None else None),
        on_broker_lost=lambda: ensure_topics(settings.kafka_bootstrap, topics.all(), attempts=1),
        on_log_lost=repair.log_lost if repair is not None else None,
        after_round=batch_trimmer(trim_policy(settings)),
    )


@dataclass(frozen=True)
class RunningWorker:
    """The started worker's runtime and its consumer's task (ends only if it crashed)."""

    runtime: FollowupRuntime
    consuming: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running_worker(settings: FollowupSettings) -> AsyncIterator[FollowupRuntime]:
    """The worker's parts, started: the consumer projecting the event topics, the timer
    runner and the outbox relay. Stopped in reverse order when the block ends, and so is
    whatever had started when a start fails half-way."""
    async with running_worker_parts(settings) as worker:
        yield worker.runtime


@contextlib.asynccontextmanager
async def running_worker_parts(settings: FollowupSettings) -> AsyncIterator[RunningWorker]:
    """:func:`running_worker`, with the consumer's task."""
    async with contextlib.AsyncExitStack() as started:
        runtime = await started.enter_async_context(followup_runtime(settings))
        repair = worker_self_repair(settings, runtime)
        consumer = worker_consumer(settings, runtime, repair)
        await started.enter_async_context(
            running_task(
                run_timer_loop(
                    runtime.context,
                    interval_s=settings.followup_timer_poll_interval_s,
                    batch_size=settings.followup_timer_batch_size,
                ),
                name="followup-timer-runner",
            )
        )
        await started.enter_async_context(
            running_task(
                run_shred_loop(
                    runtime.context,
                    retention_rule_from_settings(settings),
                    legal_holds_from_settings(settings),
                    interval_s=settings.privacy_shred_interval_s,
                ),
                name="followup-erasure-job",
            )
        )
        consuming = asyncio.create_task(consumer.run(), name=CONSUMER)
        # The stop finishes the batch in hand and commits it, bounded (past the bound what
        # was not committed is redelivered, its ids deciding: ADR-0003).
        started.push_async_callback(
            stop_batch_consumer, consumer, consuming, settings.followup_worker_stop_timeout_s
        )
        await started.enter_async_context(
            running_task(
                watch_dead_letters(
                    settings.kafka_bootstrap,
                    CONSUMER,
                    runtime.topics.followup_worker_dlq.name,
                    lambda ids: read_models_have(runtime.pool, ids),
                    interval_s=settings.dead_letter_gauge_interval_s,
                ),
                name="followup-worker-dead-letter-gauges",
            )
        )
        await started.enter_async_context(self_repairing(repair))
        yield RunningWorker(runtime, consuming)


async def run_worker(settings: FollowupSettings) -> None:
    """The followup worker process: runs until SIGINT/SIGTERM, or ends loudly if its consumer
    crashed (a worker that no longer consumes must not look alive)."""
    stop = stop_on_signals()
    checks: dict[str, ReadinessCheck] = {}
    async with (
        serving_health(
            f"{SERVICE}-worker", settings.bind_host, settings.followup_worker_port, checks
        ) as health,
        contextlib.AsyncExitStack() as running,
    ):
        worker: RunningWorker | None = None
        async with cut_short_by(stop):
            worker = await running.enter_async_context(running_worker_parts(settings))
        if worker is None:
            return  # stopped while starting: what the start opened is closed, exit 0 (#12)
        runtime = worker.runtime
        checks["postgres"] = lambda: is_reachable(runtime.pool)
        checks["kafka"] = lambda: broker_is_reachable(settings.kafka_bootstrap)
        # Started: what is loaded by now lives as long as the process, and the collector
        # need not walk it again on every gen-2 collection; a batch's objects live until it
        # commits, so young collections are made less often (#12).
        freeze_batch_heap(settings.followup_worker_gc_young_threshold)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([worker.consuming, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if worker.consuming.done():
            worker.consuming.result()  # a crashed consumer ends the process loudly
        # Unready first, still working; then the worker stops while the endpoint still says
        # so: the consumer commits what it applied, the relay publishes what is committed.
        await health.drain(settings.shutdown_drain_s)


async def rebuild(
    settings: FollowupSettings,
    *,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    keep_retired: bool = False,
    batch_size: int = 500,
    from_stores: bool = False,
    settle_heap: bool = False,
    processes: int = 1,
) -> RebuildResult:
    """``branchline rebuild followup``: the read models rebuilt from the event topics into a
    new schema and swapped in (blue/green) while the API keeps serving the old one.
    ``settle_heap``: the process's heap frozen as the rebuild goes (the command's own process,
    never a test's: :func:`rebuild_read_models`). ``processes`` > 1: the main phase applied by
    that many processes, each the clients of its share (:mod:`.adapters.partitioned_rebuild`)."""
    await prepare_database(settings)
    topics = declare_topics(settings)
    admin = await open_pool(
        with_search_path(settings.followup_database_url, "public"), min_size=1, max_size=2
    )
    try:
        return await rebuild_read_models(
            target=PostgresRebuildTarget(admin, settings.followup_database_url),
            source=(
                StoreReplay(
                    [
                        StoreLog("intake", settings.intake_database_url),
                        StoreLog(
                            SERVICE, with_search_path(settings.followup_database_url, "public")
                        ),
                    ]
                )
                if from_stores
                else TopicReplay(settings.kafka_bootstrap, topics.event_topics())
            ),
            policy=policy_from_settings(settings),
            on_total=on_total,
            on_progress=on_progress,
            batch_size=batch_size,
            keep_retired=keep_retired,
            settle_heap=settle_heap,
            partitioned=(
                ProcessPartitions(settings, processes, batch_size) if processes > 1 else None
            ),
            order=TopicOrder.bounded(
                remembered=settings.followup_rebuild_remembered_streams,
                max_held=settings.followup_rebuild_max_held,
            ),
            clock=ServiceClock(
                PostgresClockOffsets(admin), SystemClock(), dev_mode=settings.dev_mode
            ).now,
        )
    finally:
        await admin.close()
