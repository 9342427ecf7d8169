"""Reading the dead-letter topics: each dead letter with its reason and where it came from
(what :class:`~branchline_shared.kafka.consuming.DeadLetters` wrote), for ``branchline dlq``
and the dead-letter gauges. The message itself is kept as it was: personal values stay sealed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiokafka import ConsumerRecord
from prometheus_client import Gauge

from branchline_shared.kafka.topic_reading import read_topic
from branchline_shared.logging_setup import describe_error

log = logging.getLogger(__name__)

PENDING = Gauge(
    "branchline_dead_letters_pending",
    "Dead letters whose event the consumer has not applied (yet)",
    ["consumer"],
)
OLDEST_AGE = Gauge(
    "branchline_dead_letter_oldest_age_seconds",
    "Age of the oldest dead letter not applied since (0: none); alert when it grows",
    ["consumer"],
)


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    topic: str
    partition: int
    offset: int
    dead_lettered_at: datetime
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    event_id: uuid.UUID | None
    event_type: str | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    @property
    def ref(self) -> str:
        """How an operator names it: ``<consumer>:<partition>:<offset>`` in its DLQ."""
        return f"{self.consumer}:{self.partition}:{self.offset}"

    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.headers if not k.startswith("dlq_")]


def _text(headers: Mapping[str, bytes], name: str) -> str | None:
    raw = headers.get(name)
    if raw is None:
        return None
    return raw.decode(errors="replace")


def _int(headers: Mapping[str, bytes], name: str) -> int | None:
    text = _text(headers, name)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _identity(
    headers: Mapping[str, bytes], value: bytes | None
) -> tuple[uuid.UUID | None, str | None]:
    """The event id and type from the relay's headers, else from the envelope if it parses."""
    raw_id, event_type = _text(headers, "event_id"), _text(headers, "type")
    if (raw_id is None or event_type is None) and value:
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(value)
            if isinstance(body, dict):
                raw_id = raw_id or (str(body["event_id"]) if "event_id" in body else None)
                event_type = event_type or (str(body["type"]) if "type" in body else None)
    event_id = None
    if raw_id is not None:
        with contextlib.suppress(ValueError):
            event_id = uuid.UUID(raw_id)
    return event_id, event_type


_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def record_time(timestamp_ms: int) -> datetime:
    """A record's Kafka timestamp as a time. Any producer may set any 64-bit value; one past
    what a ``datetime`` holds is shown as the earliest or latest time there is, so that one
    forged record cannot fail a whole ``dlq list`` (it sorts first or last, in plain sight)."""
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return _EARLIEST if timestamp_ms < 0 else _LATEST


def parse_dead_letter(consumer: str, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    headers = tuple(record.headers or ())
    found = dict(headers)
    event_id, event_type = _identity(found, record.value)
    return DeadLetter(
        consumer=consumer,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        dead_lettered_at=record_time(record.timestamp),
        reason=_text(found, "dlq_reason") or "(no reason recorded)",
        source_topic=_text(found, "dlq_source_topic"),
        source_partition=_int(found, "dlq_source_partition"),
        source_offset=_int(found, "dlq_source_offset"),
        event_id=event_id,
        event_type=event_type,
        key=record.key,
        value=record.value,
        headers=headers,
    )


async def read_dead_letters(
    bootstrap: str,
    topics: Mapping[str, str],
    *,
    since: datetime | None = None,
    within_s: float = 30.0,
) -> list[DeadLetter]:
    """Every dead letter of the consumers in ``topics`` (consumer → its dead-letter topic),
    oldest first; only those dead-lettered at or after ``since`` if given."""
    letters: list[DeadLetter] = []
    for consumer, topic in topics.items():
        for record in await read_topic(bootstrap, [topic], within_s=within_s):
            letter = parse_dead_letter(consumer, record)
            if since is None or letter.dead_lettered_at >= since:
                letters.append(letter)
    letters.sort(key=lambda d: (d.dead_lettered_at, d.consumer, d.partition, d.offset))
    return letters


def pending(letters: Iterable[DeadLetter], applied: set[uuid.UUID]) -> list[DeadLetter]:
    """Dead letters whose event was not applied since (a replay or a re-delivery that worked);
    a message without a readable event id stays pending."""
    return [d for d in letters if d.event_id is None or d.event_id not in applied]


AppliedAmong = Callable[[Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]]


async def watch_dead_letters(
    bootstrap: str,
    consumer: str,
    topic: str,
    applied_among: AppliedAmong,
    *,
    interval_s: float = 30.0,
) -> None:
    """Until cancelled: keep the pending count and the oldest pending age on ``/metrics``."""
    while True:
        try:
            letters = await read_dead_letters(bootstrap, {consumer: topic})
            ids = [d.event_id for d in letters if d.event_id is not None]
            waiting = pending(letters, await applied_among(ids) if ids else set())
            PENDING.labels(consumer).set(len(waiting))
            oldest = min((d.dead_lettered_at for d in waiting), default=None)
            age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
            OLDEST_AGE.labels(consumer).set(max(age, 0.0))
        except Exception as exc:  # the gauges wait for the next round; the consumer goes on
            log.warning("dead-letter gauges not updated", extra={"error": describe_error(exc)})
        await asyncio.sleep(interval_s)


@dataclass(frozen=True)
class ReplayOutcome:
    letter: DeadLetter
    status: str
    """``applied``, ``already applied`` (applied once already: nothing done) or ``failed``."""
    detail: str = ""


Replayer = Callable[[DeadLetter], Awaitable[ReplayOutcome]]
