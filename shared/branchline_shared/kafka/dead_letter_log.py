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
from aiokafka import ConsumerRecord, TopicPartition
from prometheus_client import Gauge

from branchline_shared.kafka.topic_reading import PAGE_RECORDS, read_topic, topic_pages
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


GAUGE_CAP = 10_000
"""At most this many pending dead letters (event id, dead-lettered at) a consumer's gauges
keep between rounds; pending ones read past it are counted, with the oldest time among them
(:class:`DeadLetterGauges`, #12)."""

RECHECK_PAGE = 1000
"""At most this many kept ids a call of ``applied_among`` is asked about."""


class TopicWentBack(RuntimeError):
    """A partition of the dead-letter topic ends before where it was read to (recreated)."""


class DeadLetterGauges:
    """The pending count and oldest pending age of one consumer's dead letters, kept round
    after round without reading the whole topic again (#12): a round reads only the records
    written since the last (the end offset reached per partition is remembered, a page at a
    time, :func:`topic_pages`), asks ``applied_among`` about each page read and, in pages of
    :data:`RECHECK_PAGE`, about the pending letters it keeps, dropping those applied since (a
    replay). It keeps at most :data:`GAUGE_CAP` pending letters' (event id, time); one read
    past the cap is counted with the oldest time among them, so the count and the oldest age
    stay right as they were read. Those cannot be re-checked: once a kept letter is applied
    while some are past the cap, the next round forgets everything and reads the topic again
    from its beginning (a page at a time, still at most the cap kept), so a replay shows.
    A letter without a readable event id stays pending (counted, its time kept). A partition
    that went back (the topic recreated or truncated to fewer records) forgets everything and
    reads again from the beginning. A round that fails (broker away) changes nothing it did
    not finish reading; the next round goes on from there."""

    def __init__(
        self,
        bootstrap: str,
        consumer: str,
        topic: str,
        applied_among: AppliedAmong,
        *,
        cap: int = GAUGE_CAP,
        page: int = PAGE_RECORDS,
        recheck_page: int = RECHECK_PAGE,
        within_s: float = 30.0,
    ) -> None:
        if cap < 1 or recheck_page < 1:
            raise ValueError("cap and recheck_page must be at least 1")
        self._bootstrap, self._consumer, self._topic = bootstrap, consumer, topic
        self._applied_among = applied_among
        self._cap, self._page, self._recheck_page = cap, page, recheck_page
        self._within_s = within_s
        self.records_read = 0
        """Records read by the last round (what it read of the topic)."""
        self._forget()

    def _forget(self) -> None:
        self._read_to: dict[TopicPartition, int] = {}
        self._waiting: dict[uuid.UUID, datetime] = {}
        self._beyond = 0
        self._beyond_oldest: datetime | None = None
        self._anonymous = 0
        self._anonymous_oldest: datetime | None = None
        self._reread = False

    @property
    def pending(self) -> int:
        return len(self._waiting) + self._beyond + self._anonymous

    @property
    def oldest(self) -> datetime | None:
        times = [t for t in (self._beyond_oldest, self._anonymous_oldest) if t is not None]
        if self._waiting:
            times.append(min(self._waiting.values()))
        return min(times, default=None)

    async def round(self) -> None:
        """Read what is new, re-check what is kept; then set the gauges."""
        self.records_read = 0
        await self._recheck()
        if self._reread:
            self._forget()
        try:
            await self._read_new()
        except TopicWentBack:
            self._forget()
            await self._read_new()
        PENDING.labels(self._consumer).set(self.pending)
        oldest = self.oldest
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        OLDEST_AGE.labels(self._consumer).set(max(age, 0.0))

    async def _recheck(self) -> None:
        kept = list(self._waiting)
        for first in range(0, len(kept), self._recheck_page):
            applied = await self._applied_among(kept[first : first + self._recheck_page])
            for event_id in applied:
                self._waiting.pop(event_id, None)
            if applied and self._beyond:
                self._reread = True

    async def _read_new(self) -> None:
        ends: dict[TopicPartition, int] = {}
        start = dict(self._read_to)
        async with contextlib.aclosing(
            topic_pages(
                self._bootstrap,
                [self._topic],
                within_s=self._within_s,
                page=self._page,
                start=start,
                ends=ends,
            )
        ) as pages:
            async for records in pages:
                self.records_read += len(records)
                if any(r.offset < start.get(_tp(r), 0) for r in records):
                    raise TopicWentBack(self._topic)
                await self._take(records)
        if any(ends.get(tp, offset) < offset for tp, offset in start.items()):
            raise TopicWentBack(self._topic)

    async def _take(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        letters = [parse_dead_letter(self._consumer, r) for r in records]
        ids = [d.event_id for d in letters if d.event_id is not None]
        applied = await self._applied_among(ids) if ids else set()
        for letter in letters:
            at = letter.dead_lettered_at
            if letter.event_id is None:
                self._anonymous += 1
                self._anonymous_oldest = min(at, self._anonymous_oldest or at)
            elif letter.event_id in applied or letter.event_id in self._waiting:
                pass
            elif len(self._waiting) < self._cap:
                self._waiting[letter.event_id] = at
            else:
                self._beyond += 1
                self._beyond_oldest = min(at, self._beyond_oldest or at)
        for record in records:
            tp = _tp(record)
            self._read_to[tp] = max(self._read_to.get(tp, 0), record.offset + 1)


def _tp(record: ConsumerRecord[bytes, bytes]) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


async def watch_dead_letters(
    bootstrap: str,
    consumer: str,
    topic: str,
    applied_among: AppliedAmong,
    *,
    interval_s: float = 30.0,
) -> None:
    """Until cancelled: keep the pending count and the oldest pending age on ``/metrics``
    (:class:`DeadLetterGauges`: each round reads only what is new)."""
    gauges = DeadLetterGauges(bootstrap, consumer, topic, applied_among)
    while True:
        try:
            await gauges.round()
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
