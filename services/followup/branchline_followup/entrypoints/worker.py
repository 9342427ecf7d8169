"""The followup worker: a Faust app whose agent projects every event into the read models.

Faust brings the consumer group, partition assignment and ordered per-partition streams (the
topics are keyed by client id, so one client's events arrive in order); state that must
survive lives in PostgreSQL (the projector records applied ids there), so Faust's own store
stays ``memory://``.

The agent applies what the consumer has fetched in batches (#12): events already waiting
behind the one in hand join its batch (up to the ``followup_worker_batch_size`` setting), and
the batch is applied in one transaction
(:func:`~branchline_followup.application.batches.apply_batch`); its events are acknowledged
(their offsets committed) only after that commit. Busy, a batch amortises the
commit; idle, an event is applied at once, waiting for nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.ports import UnitsOfWork
from branchline_followup.application.projector import Projection
from branchline_shared.kafka.consuming import DeadLetters, RawMessage
from branchline_shared.kafka.fetch_latency import install_faust_fetch_wait
from branchline_shared.kafka.topics import Topics
from branchline_shared.kafka.wire import PoisonEvent, decode_current_event, source_position
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.pool import PgPool
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.settings import FollowupSettings

log = logging.getLogger(__name__)
CONSUMER = "followup-worker"


def create_faust_app(
    settings: FollowupSettings,
    topics: Topics,
    pool: PgPool,
    dead_letters: DeadLetters,
    projection: Projection | None = None,
    units: UnitsOfWork | None = None,
    jumps: PositionJumps | None = None,
) -> faust.App:
    """``units``: where the projection writes (default: units on ``pool`` that wake no
    relay; the running worker passes its runtime's, which wake its relay)."""
    if projection is None:
        projection = Projection(policy_from_settings(settings))
    writes: UnitsOfWork = units if units is not None else PostgresUnitsOfWork(pool)
    install_faust_fetch_wait(settings.kafka_fetch_max_wait_ms)
    app = faust.App(
        settings.topic(CONSUMER),
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=False,
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
    )
    projected = projection
    batch_max = settings.followup_worker_batch_size  # a bounded transaction and lock set
    source = app.topic(
        *topics.event_topics(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name="project-events")
    async def project(stream: Any) -> None:
        manual = stream.noack()  # acked only once the batch's transaction committed
        queue = getattr(manual.channel, "queue", None)
        pending: list[Any] = []
        async for event in manual.events():
            pending.append(event)
            if len(pending) < batch_max and queue is not None and not queue.empty():
                continue  # more is fetched already: it joins this batch
            raws = [
                RawMessage(
                    e.message.topic,
                    e.message.partition,
                    e.message.offset,
                    e.message.key,
                    e.message.value,
                    list(e.message.headers or ()),
                )
                for e in pending
            ]
            await handle_batch(raws, writes, dead_letters, projected, jumps)
            for done in pending:
                await manual.ack(done)
            pending = []

    return app


async def handle_batch(
    raws: list[RawMessage],
    units: UnitsOfWork,
    dead_letters: DeadLetters,
    projection: Projection,
    jumps: PositionJumps | None = None,
) -> None:
    """Decode (poison → dead letter), apply the rest as one batch, dead-letter each event that
    fails on its own with the reason."""
    batch: list[tuple[RawMessage, Delivered]] = []
    for raw in raws:
        try:
            event = decode_current_event(raw.value)
        except PoisonEvent as exc:
            await dead_letters.send(raw, str(exc))
            continue
        try:
            position = source_position(raw.headers)
        except Exception as exc:
            await dead_letters.send(raw, f"projection failed: {describe_error(exc)}")
            continue
        if jumps is not None:
            jumps.seen(event, position)
        batch.append((raw, Delivered(event, position)))
    outcome = await apply_batch(units, [d for _, d in batch], projection, consumer=CONSUMER)
    for index, error in outcome.failed:
        await dead_letters.send(batch[index][0], f"projection failed: {describe_error(error)}")


async def handle_message(
    raw: RawMessage, units: UnitsOfWork, dead_letters: DeadLetters, projection: Projection
) -> None:
    """One message as a batch of one."""
    await handle_batch([raw], units, dead_letters, projection)
