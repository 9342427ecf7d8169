"""The followup worker: a Faust app whose agent projects every event into the read models.

Faust brings the consumer group, partition assignment and ordered per-partition streams (the
topics are keyed by client id, so one client's events arrive in order); state that must
survive lives in PostgreSQL (the projector records applied ids there), so Faust's own store
stays ``memory://``.
"""

from __future__ import annotations

import logging
from typing import Any

import faust

from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.projector import Projection, apply_event
from branchline_shared.kafka.consuming import DeadLetters, RawMessage, retry_transient
from branchline_shared.kafka.fetch_latency import install_faust_fetch_wait
from branchline_shared.kafka.topics import Topics
from branchline_shared.kafka.wire import PoisonEvent, decode_current_event, source_position
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.pool import PgPool
from branchline_shared.settings import FollowupSettings

log = logging.getLogger(__name__)
CONSUMER = "followup-worker"


def create_faust_app(
    settings: FollowupSettings,
    topics: Topics,
    pool: PgPool,
    dead_letters: DeadLetters,
    projection: Projection | None = None,
) -> faust.App:
    if projection is None:
        projection = Projection(policy_from_settings(settings))
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
    source = app.topic(
        *topics.event_topics(),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    @app.agent(source, name="project-events")
    async def project(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            raw = RawMessage(
                message.topic,
                message.partition,
                message.offset,
                message.key,
                message.value,
                list(message.headers or ()),
            )
            await handle_message(raw, pool, dead_letters, projected)

    return app


async def handle_message(
    raw: RawMessage, pool: PgPool, dead_letters: DeadLetters, projection: Projection
) -> None:
    try:
        event = decode_current_event(raw.value)
    except PoisonEvent as exc:
        await dead_letters.send(raw, str(exc))
        return
    try:
        position = source_position(raw.headers)
        await retry_transient(
            lambda: apply_event(pool, event, projection, position), consumer=CONSUMER
        )
    except Exception as exc:
        await dead_letters.send(raw, f"projection failed: {describe_error(exc)}")
