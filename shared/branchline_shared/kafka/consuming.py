"""Consumer plumbing: poison events to a dead-letter topic with the reason, transient faults
(database or broker away) retried without losing or skipping anything, offsets committed only
after the work is durable.

Kafka delivers at least once; consumers make that effectively once by recording applied event
ids in their own transaction (ADR-0003), so this loop may redeliver after a crash.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import (
    PoisonEvent,
    SourcePosition,
    decode_event,
    source_position,
)
from branchline_shared.reconcile.jumps import PositionJumps
from branchline_shared.settings import CommonSettings

log = logging.getLogger(__name__)

CONSUMED = Counter("branchline_consumer_events_total", "Events handled", ["consumer"])
DEAD_LETTERED = Counter(
    "branchline_consumer_dead_letters_total", "Events dead-lettered", ["consumer"]
)
LOG_LOST = Counter(
    "branchline_consumer_log_lost_total",
    "Times the broker's log was found shorter than the consumer's position (rewound)",
    ["consumer"],
)
RETRIES = Counter("branchline_consumer_retries_total", "Transient failures retried", ["consumer"])

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    KafkaError,
)


TP = TypeVar("TP", bound=Hashable)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class DeadLetters:
    """Publishes a poison message, untouched, to the consumer's dead-letter topic, with why."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, consumer: str) -> None:
        self._producer = producer
        self._topic = topic
        self._consumer = consumer

    async def send(self, message: RawMessage, reason: str) -> None:
        headers = [
            *[(k, v) for k, v in message.headers if not k.startswith("dlq_")],
            ("dlq_reason", reason[:2000].encode()),
            ("dlq_consumer", self._consumer.encode()),
            ("dlq_source_topic", message.topic.encode()),
            ("dlq_source_partition", str(message.partition).encode()),
            ("dlq_source_offset", str(message.offset).encode()),
        ]
        while True:
            try:
                await self._producer.send_and_wait(
                    self._topic, value=message.value, key=message.key, headers=headers
                )
                break
            except KafkaError as exc:  # broker away: keep the message, try again
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
        DEAD_LETTERED.labels(self._consumer).inc()
        log.error(
            "event dead-lettered",
            extra={"reason": reason, "topic": message.topic, "offset": message.offset},
        )


async def retry_transient(
    work: Callable[[], Awaitable[Any]], *, consumer: str, max_backoff_s: float = 5.0
) -> Any:
    """Run ``work`` until it succeeds or fails for a reason that is not transient."""
    backoff = 0.1
    while True:
        try:
            return await work()
        except Exception as exc:
            if not is_transient(exc):
                raise
            RETRIES.labels(consumer).inc()
            log.warning(
                "transient failure; retrying", extra={"error": repr(exc), "backoff_s": backoff}
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


Positions = dict[uuid.UUID, SourcePosition]
"""Where each delivered event sits in the store that wrote it (from the relay's headers)."""

BatchHandler = Callable[[list[RecordedEvent], Positions], Awaitable[object]]


class BatchConsumer:
    """An aiokafka group consumer that hands batches of decoded events to ``handle``.

    Per fetch (every partition it returned, up to ``max_records``): decode (poison → dead
    letter), hand every event to ``handle`` at once (the audit ledger writes them in one
    transaction, #12), with retries on transient faults, then commit the offsets of every
    partition. A handler failure that is not transient is narrowed down by halving the batch
    (each half handled, and so written, on its own) until the one event that causes it is
    alone: that one is dead-lettered with the reason, every other is handled. Handlers skip
    what they already applied (by event id), so a half handled twice is applied once.
    """

    def __init__(
        self,
        *,
        settings: CommonSettings,
        topics: Sequence[str],
        group_id: str,
        name: str,
        handle: BatchHandler,
        dead_letters: DeadLetters,
        max_records: int = 500,
        on_broker_lost: Callable[[], Awaitable[None]] | None = None,
        on_log_lost: Callable[[], Awaitable[None]] | None = None,
        jumps: PositionJumps | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._group_id = group_id
        self._name = name
        self._handle = handle
        self._dead_letters = dead_letters
        self._max_records = max_records
        # Called when the broker seems to have lost our topics (tansu's memory store after a
        # restart): typically re-creates them, so commits can succeed again.
        self._on_broker_lost = on_broker_lost
        # Called after rewinding because the broker's log became shorter than our position:
        # what it lost before we read it is only in the event stores (reconcile repairs it).
        self._on_log_lost = on_log_lost
        # Sees a gap the moment an event skips versions of its stream.
        self._jumps = jumps
        self.started = asyncio.Event()
        self._stopping = False

    def request_stop(self) -> None:
        """Finish the batch in hand, commit its offsets, then return from :meth:`run`."""
        self._stopping = True

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=self._group_id,
            client_id=self._name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self._settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=self._settings.kafka_heartbeat_interval_ms,
            max_poll_interval_ms=300_000,
            metadata_max_age_ms=5_000,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )

    async def run(self) -> None:
        consumer = self._consumer()
        await retry_transient(consumer.start, consumer=self._name)
        self.started.set()
        try:
            checked = asyncio.get_running_loop().time()
            while not self._stopping:
                batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
                if batches:
                    await self._process([r for records in batches.values() for r in records])
                    await self._commit(
                        consumer, {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
                now = asyncio.get_running_loop().time()
                if now - checked > 5:
                    checked = now
                    await self._rewind_if_log_was_lost(consumer)
        finally:
            await consumer.stop()

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]
    ) -> None:
        # aiokafka retries a commit to an unknown topic forever; bound it, and let the broker
        # get its topics back before the next try.
        async def commit() -> None:
            try:
                await asyncio.wait_for(consumer.commit(dict(offsets)), timeout=5)
            except TimeoutError:
                if self._on_broker_lost is not None:
                    await self._on_broker_lost()
                raise

        await retry_transient(commit, consumer=self._name)

    async def _process(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        events: list[tuple[RawMessage, RecordedEvent]] = []
        positions: Positions = {}
        for record in records:
            raw = RawMessage(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                list(record.headers or ()),
            )
            try:
                event = decode_event(record.value)
            except PoisonEvent as exc:
                await self._dead_letters.send(raw, str(exc))
                continue
            events.append((raw, event))
            position = source_position(raw.headers)
            if position is not None:
                positions[event.event_id] = position
            if self._jumps is not None:
                self._jumps.seen(event, position)
        if events:
            await self._handle_narrowing(events, positions)
            CONSUMED.labels(self._name).inc(len(events))

    async def _handle_narrowing(
        self, events: Sequence[tuple[RawMessage, RecordedEvent]], positions: Positions
    ) -> None:
        """Handle ``events`` at once; if that fails for good, each half on its own, down to
        the one event that fails, which goes to the dead-letter topic with the reason (a
        poison event costs about 2·log2(batch) extra transactions, and fails only itself)."""
        try:
            await self._handle_retrying([e for _, e in events], positions)
        except Exception as exc:
            if len(events) == 1:
                await self._dead_letters.send(events[0][0], f"handler failed: {exc!r}")
                return
            half = len(events) // 2
            await self._handle_narrowing(events[:half], positions)
            await self._handle_narrowing(events[half:], positions)

    async def _handle_retrying(self, events: list[RecordedEvent], positions: Positions) -> None:
        async def handle() -> object:
            return await self._handle(events, positions)

        await retry_transient(handle, consumer=self._name)

    async def _rewind_if_log_was_lost(self, consumer: AIOKafkaConsumer) -> None:
        """After a broker lost its log (tansu's memory store restarted), our position can be
        past the new end; the broker does not say OFFSET_OUT_OF_RANGE, so we check."""
        positions: dict[TopicPartition, int] = {}
        try:
            for tp in consumer.assignment():
                positions[tp] = await consumer.position(tp)
        except KafkaError:  # assignment changing under a rebalance: look again next time
            return
        highwaters = {tp: consumer.highwater(tp) for tp in positions}
        lost = partitions_past_log_end(positions, highwaters)
        if not lost:
            return
        LOG_LOST.labels(self._name).inc()
        log.warning(
            "broker log shorter than our position; rewinding and reconciling",
            extra={"consumer": self._name, "partitions": [str(tp) for tp in lost]},
        )
        await consumer.seek_to_beginning(*lost)
        if self._on_log_lost is not None:
            await self._on_log_lost()


def partitions_past_log_end(
    positions: Mapping[TP, int], highwaters: Mapping[TP, int | None]
) -> list[TP]:
    """Partitions whose position lies beyond the log end a fetch last reported (the high
    watermark: exact, unlike some brokers' ListOffsets(latest), which tansu answers with the
    base offset of the last batch)."""
    lost: list[TP] = []
    for tp, position in positions.items():
        highwater = highwaters.get(tp)
        if highwater is not None and position > highwater:
            lost.append(tp)
    return lost
