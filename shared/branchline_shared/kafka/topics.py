"""Topics are declared here, in code, and created idempotently at start (ADR-0002).

Key = client id everywhere, so one client's events stay in order on one partition.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from branchline_shared.kafka.starting import closed, start_or_close
from branchline_shared.settings import CommonSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topics:
    """Every topic of the product, named for a settings' namespace."""

    intake_events: TopicSpec
    followup_events: TopicSpec
    followup_worker_dlq: TopicSpec
    audit_consumer_dlq: TopicSpec

    def all(self) -> list[TopicSpec]:
        return [
            self.intake_events,
            self.followup_events,
            self.followup_worker_dlq,
            self.audit_consumer_dlq,
        ]

    def event_topics(self) -> list[str]:
        """The topics that carry domain events (what followup and audit consume)."""
        return [self.intake_events.name, self.followup_events.name]


def declare_topics(settings: CommonSettings) -> Topics:
    def spec(name: str, *, retention_ms: int) -> TopicSpec:
        return TopicSpec(
            name=settings.topic(name),
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config={
                "cleanup.policy": "delete",
                "retention.ms": str(retention_ms),
                "min.insync.replicas": str(settings.topic_min_insync_replicas),
            },
        )

    # Event topics keep everything by default: the event stores are the source of truth, the
    # topics are how it is distributed and what a rebuild can replay from.
    keep = settings.topic_retention_ms
    month = 30 * 24 * 3600 * 1000
    return Topics(
        intake_events=spec("intake.events.v1", retention_ms=keep),
        followup_events=spec("followup.events.v1", retention_ms=keep),
        followup_worker_dlq=spec("followup-worker.dlq.v1", retention_ms=month),
        audit_consumer_dlq=spec("audit-consumer.dlq.v1", retention_ms=month),
    )


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], *, attempts: int = 30) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = await _started_admin(bootstrap, request_timeout_ms=5000, attempts=attempts)
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return
        new_topics = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                topic_configs=s.config,
            )
            for s in missing
        ]
        try:
            await admin.create_topics(new_topics)
        except TopicAlreadyExistsError:
            pass  # created concurrently by another process: what we wanted
        log.info("topics created", extra={"topics": [s.name for s in missing]})
    finally:
        await closed(admin)


async def broker_is_reachable(bootstrap: str) -> bool:
    try:
        async with asyncio.timeout(3):
            admin = await _started_admin(bootstrap, request_timeout_ms=2000)
    except (KafkaError, OSError, TimeoutError):
        return False
    try:
        async with asyncio.timeout(3):
            await admin.list_topics()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await closed(admin)


async def _started_admin(
    bootstrap: str, *, request_timeout_ms: int, attempts: int = 1
) -> AIOKafkaAdminClient:
    """An admin client started (a refused start tried again, up to ``attempts``), or closed and
    the error raised. A start cut short leaves no connection open (``start_or_close``: a
    readiness check timing out on a slow broker lost a socket each time, #12)."""
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms
        )
        try:
            await start_or_close(admin)
            return admin
        except KafkaError:
            if attempt == attempts:
                raise
        await asyncio.sleep(min(0.2 * attempt, 2.0))
    raise AssertionError("unreachable: the last attempt returns or raises")
