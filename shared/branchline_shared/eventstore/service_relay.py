"""A service's outbox relay, wired from its settings as intake and followup both run it (#12)."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.topics import Topics, ensure_topics
from branchline_shared.postgres.pool import PgPool, connect_one
from branchline_shared.settings.common import CommonSettings


def service_relay(
    settings: CommonSettings,
    *,
    pool: PgPool,
    producer: AIOKafkaProducer,
    topics: Topics,
    store_name: str,
    database_url: str,
    min_interval_s: float,
) -> OutboxRelay:
    """The relay of one service's event store.

    Its lock and its LISTEN are on a connection of their own, never on one of ``pool``'s: the
    services' pools skip asyncpg's reset on release, which would otherwise end both. A relay that
    recovers from a broker outage declares the topics again (a broker that lost them).
    """
    return OutboxRelay(
        pool=pool,
        producer=producer,
        store_name=store_name,
        batch_size=settings.relay_batch_size,
        poll_interval_s=settings.relay_poll_interval_s,
        min_interval_s=min_interval_s,
        on_recover=lambda: ensure_topics(settings.kafka_bootstrap, topics.all(), attempts=1),
        lock_connect=lambda: connect_one(database_url),
        stop_patience_s=settings.relay_stop_patience_s,
    )
