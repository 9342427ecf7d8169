"""Composition root of audit: the API app, the ledger consumer and the CLI's context, built
from settings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from branchline_audit.adapters.checkpoints import PostgresCheckpoints
from branchline_audit.adapters.database import open_role_pool, prepare_database
from branchline_audit.adapters.ledger import LEDGER_LOCK_PROBE, PostgresLedger
from branchline_audit.adapters.reconciling import OWN_SOURCES, ledger_applied, ledger_has
from branchline_audit.adapters.segments import ProcessSegmentVerifiers
from branchline_audit.adapters.signing_key import load_signer
from branchline_audit.adapters.verify_slots import PostgresVerifySlots
from branchline_audit.application.checkpointing import run_checkpointer
from branchline_audit.application.context import AuditContext
from branchline_audit.application.exporting import ExportSlots
from branchline_audit.application.ports import AuditLedger
from branchline_audit.application.recording import record_events
from branchline_audit.application.signed_leaves import refuse_unsigned
from branchline_audit.domain.personal import PersonalDataPolicy
from branchline_audit.domain.retention import RetentionPolicy
from branchline_audit.entrypoints.console import install_audit_console
from branchline_audit.entrypoints.http import router
from branchline_audit.entrypoints.http_holds import router as holds_router
from branchline_audit.entrypoints.problems import install_altered_entry_problems
from branchline_shared.allocator_trim import batch_trimmer, trim_policy
from branchline_shared.background import running_task
from branchline_shared.clock import Clock, SystemClock
from branchline_shared.http.hardening import install_hardening
from branchline_shared.http.service_app import create_service_app
from branchline_shared.http.startup_heap import freeze_batch_heap
from branchline_shared.http.token_keys import token_codec
from branchline_shared.http.worker_runtime import cut_short_by, serving_health, stop_on_signals
from branchline_shared.kafka.consuming import (
    Answering,
    BatchConsumer,
    DeadLetters,
    stop_batch_consumer,
)
from branchline_shared.kafka.dead_letter_log import watch_dead_letters
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.starting import ProducerStop, start_or_close
from branchline_shared.kafka.topics import broker_is_reachable, declare_topics, ensure_topics
from branchline_shared.postgres.pool import PromptProbe, is_reachable
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.reconcile.running import ConsumerSource
from branchline_shared.reconcile.self_repair import SelfRepair, self_repairing
from branchline_shared.settings import AuditSettings

SERVICE = "audit"
CONSUMER = "audit-consumer"

__all__ = ["build_consumer", "create_app", "prepare_database", "run_consumer", "self_repair"]


def audit_context(
    settings: AuditSettings,
    pool: asyncpg.Pool[Any],
    clock: Clock,
) -> AuditContext:
    ledger = PostgresLedger(pool)
    audit = AuditContext(
        ledger=ledger,
        checkpoints=PostgresCheckpoints(pool),
        signer=load_signer(settings),
        clock=clock,
        policy=PersonalDataPolicy(frozenset(settings.audit_stored_form_roles)),
        checkpoint_every=settings.audit_checkpoint_every_entries,
        checkpoint_interval_s=settings.audit_checkpoint_interval_s,
    )
    # Legal holds and relationship ends are held against their signed checkpoint as every
    # trail read is (D-11, #12).
    ledger.hold_facts_to(functools.partial(refuse_unsigned, audit))
    return audit


def retention_policy(settings: AuditSettings) -> RetentionPolicy:
    return RetentionPolicy(
        years_by_profile=settings.retention_years,
        default_profile=settings.retention_profile,
        branch_profiles=settings.retention_branch_profiles,
    )


@contextlib.asynccontextmanager
async def checkpointing(audit: AuditContext) -> AsyncIterator[None]:
    task = asyncio.create_task(run_checkpointer(audit), name="audit-checkpointer")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: AuditSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or AuditSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever is opened is registered at once: a start that fails half-way (a missing
        # signing key) releases what it had opened.
        async with contextlib.AsyncExitStack() as opened:
            await prepare_database(settings)
            pool = await open_role_pool(
                settings,
                settings.audit_db_writer_role,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
            )
            opened.push_async_callback(pool.close)
            audit = audit_context(settings, pool, clock or SystemClock())
            app.state.audit = audit
            app.state.export_slots = ExportSlots(settings.audit_max_concurrent_exports)
            app.state.verify_slots = PostgresVerifySlots(
                settings.audit_database_url, settings.audit_max_concurrent_verifies
            )
            app.state.verify_segments = ProcessSegmentVerifiers.configured(
                settings.audit_database_url,
                settings.audit_db_writer_role,
                processes=settings.audit_verify_processes,
                min_entries=settings.audit_verify_parallel_min_entries,
            )
            app.state.token_codec = token_codec(settings, "audit")
            app.state.readiness_checks = {
                "postgres": lambda: is_reachable(pool),
                "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
            }
            await opened.enter_async_context(checkpointing(audit))
            yield

    app = create_service_app(
        service=SERVICE,
        title="Branchline audit",
        description="The immutable, hash-chained trail of every accepted event, for auditors.",
        lifespan=lifespan,
        max_body_bytes=settings.max_body_bytes,
    )
    install_hardening(app, settings, service=SERVICE)
    install_altered_entry_problems(app)
    app.include_router(router)
    app.include_router(holds_router)
    install_audit_console(app, settings)
    return app


def self_repair(settings: AuditSettings, pool: asyncpg.Pool[Any]) -> SelfRepair | None:
    """The consumer's own reconciliation with the event stores (None: switched off)."""
    if not settings.reconcile_self_repair:
        return None
    topics = declare_topics(settings)
    return SelfRepair(
        settings,
        ConsumerSource(
            CONSUMER,
            topics.audit_consumer_dlq.name,
            lambda: ledger_applied(pool),
            OWN_SOURCES,
            has=lambda ids: ledger_has(pool, ids),
            # build_consumer's group and topics: the check asks the broker how far it read.
            group_id=settings.topic(CONSUMER),
            topics=tuple(topics.event_topics()),
            # The ledger's order is its record of arrival: a late entry is information,
            # never a difference (as ``branchline reconcile`` judges it, #12).
            late_is_record=True,
        ),
        interval_s=settings.reconcile_self_check_interval_s,
        grace_s=settings.reconcile_grace_s,
    )


def build_consumer(
    settings: AuditSettings,
    ledger: AuditLedger,
    producer: AIOKafkaProducer,
    clock: Clock,
    repair: SelfRepair | None = None,
    *,
    answering: Answering | None,
    producer_stop: ProducerStop | None = None,
) -> BatchConsumer:
    """The ledger consumer: every event topic into the ledger, poison to the DLQ; a broker
    that lost its log makes it rewind and ``repair`` re-queue what it missed. ``answering``
    (required, so that no caller forgets it): the probe of the ledger's pool,
    :func:`ledger_probe`; with it, an event alone whose append is cancelled again and again
    while the database answers it promptly is dead-lettered (replayable), not held for ever;
    ``None`` only where a lone cancelled event is to be retried for ever (#12)."""
    topics = declare_topics(settings)
    return BatchConsumer(
        settings=settings,
        topics=topics.event_topics(),
        group_id=settings.topic(CONSUMER),
        name=CONSUMER,
        handle=lambda events, positions: record_events(ledger, clock, events, positions),
        dead_letters=DeadLetters(producer, topics.audit_consumer_dlq.name, CONSUMER, producer_stop),
        max_records=settings.audit_consumer_batch_size,
        on_broker_lost=lambda: ensure_topics(settings.kafka_bootstrap, topics.all(), attempts=1),
        on_log_lost=repair.log_lost if repair is not None else None,
        jumps=PositionJumps(CONSUMER, repair.position_jumped if repair is not None else None),
        after_round=batch_trimmer(trim_policy(settings)),
        answering=answering,
        stop_patience_s=settings.consumer_stop_patience_s,
    )


def ledger_probe(pool: asyncpg.Pool[Any]) -> Answering:
    """The audit consumer's probe: the ledger's lock, as every append takes it, answered
    within a tenth of the pool's ``statement_timeout`` (#12, docs/reliability.md)."""
    return PromptProbe(pool, *LEDGER_LOCK_PROBE)


async def run_consumer(settings: AuditSettings) -> None:
    """The audit consumer process: runs until SIGINT/SIGTERM."""
    stop = stop_on_signals()
    # Whatever is opened or started is registered at once and released in reverse, also when
    # the start fails half-way (a broker unreachable, a missing signing key).
    async with contextlib.AsyncExitStack() as opened:
        started = False
        # a SIGTERM while starting (a slow broker or database) ends the start at once (#12)
        async with cut_short_by(stop):
            await prepare_database(settings)
            topics = declare_topics(settings)
            await ensure_topics(settings.kafka_bootstrap, topics.all())
            pool = await open_role_pool(
                settings, settings.audit_db_writer_role, min_size=1, max_size=4
            )
            opened.push_async_callback(pool.close)
            producer = make_producer(settings, client_id=f"branchline-{CONSUMER}-dlq")
            await start_or_close(producer)  # cut short (a SIGTERM while starting): closed (#12)
            # its flush bounded, none after a dead letter not acknowledged (the broker down:
            # the consumer did not commit past it, the next start sends it again); what it
            # did not deliver fails, left unpublished (#12)
            producer_stop = ProducerStop()
            opened.push_async_callback(
                producer_stop.producer_closed,
                producer,
                flush_within_s=settings.kafka_producer_stop_flush_s,
            )
            clock = SystemClock()
            audit = audit_context(settings, pool, clock)
            repair = self_repair(settings, pool)
            consumer = build_consumer(
                settings,
                audit.ledger,
                producer,
                clock,
                repair,
                answering=ledger_probe(pool),
                producer_stop=producer_stop,
            )
            checks = {
                "postgres": lambda: is_reachable(pool),
                "kafka": lambda: broker_is_reachable(settings.kafka_bootstrap),
            }
            task = await opened.enter_async_context(running_task(consumer.run(), name=CONSUMER))
            await opened.enter_async_context(
                running_task(
                    watch_dead_letters(
                        settings.kafka_bootstrap,
                        CONSUMER,
                        topics.audit_consumer_dlq.name,
                        lambda ids: ledger_has(pool, ids),
                        interval_s=settings.dead_letter_gauge_interval_s,
                    ),
                    name=f"{CONSUMER}-dead-letter-gauges",
                )
            )
            await opened.enter_async_context(checkpointing(audit))
            await opened.enter_async_context(self_repairing(repair))
            health = await opened.enter_async_context(
                serving_health(CONSUMER, settings.bind_host, settings.audit_consumer_port, checks)
            )
            started = True
        if not started:
            return  # what the start opened is closed by `opened`; exit 0 as a stop
        # Started: what is loaded by now lives as long as the process, and the collector
        # need not walk it again on every gen-2 collection; a batch's objects live until its
        # append commits (#12).
        freeze_batch_heap(settings.audit_consumer_gc_young_threshold)
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()  # a crashed consumer ends the process loudly
        # SIGTERM: unready first (still consuming), then the batch in hand is finished and
        # its offsets committed (bounded: ``audit_consumer_stop_timeout_s``, then cancelled)
        # while readiness still says draining; a dead-letter send not acknowledged is given
        # up at once, its poison not committed (the next start dead-letters it again, #12)
        await health.drain(settings.shutdown_drain_s)
        await stop_batch_consumer(consumer, task, settings.audit_consumer_stop_timeout_s)
