"""``branchline reconcile``: compare every event store with every consumer; optionally repair.

The stores are the source of truth (intake's, and followup's own store of RM actions and
timer events). A repair queues each event some consumer misses in its store's outbox once;
the relay publishes it, and consumers that had it already drop it by event id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field

import asyncpg
import orjson
from aiokafka import ConsumerRecord
from prometheus_client import Counter, Gauge

from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.kafka.topic_reading import PAGE_RECORDS, topic_pages
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.pool import PgConnection
from branchline_shared.reconcile.compare import (
    KINDS,
    LATE,
    ORDER_FREE_TYPES,
    OUT_OF_ORDER,
    AppliedEvent,
    ConsumerReport,
    SourceProgress,
    StoreEvent,
    StreamWalk,
    compare,
)
from branchline_shared.reconcile.stores import (
    read_store_log,
    read_store_log_page,
    read_stream_page,
    requeue,
    stored_ids,
)
from branchline_shared.settings import CommonSettings

log = logging.getLogger(__name__)

REPAIRED = Counter(
    "branchline_reconcile_republished_total",
    "Events queued for publication again by a reconcile repair",
    ["store"],
)
DIFFERENCES = Gauge(
    "branchline_reconcile_differences",
    "Differences found by the last reconcile of a consumer",
    ["consumer"],
)


@dataclass(frozen=True)
class StoreSource:
    source: str
    """The store's name, as its events' envelope ``source`` says."""
    dsn: str


@dataclass(frozen=True)
class ConsumerSource:
    name: str
    dead_letter_topic: str
    applied: Callable[[], Awaitable[list[AppliedEvent]]]
    own_sources: frozenset[str] = frozenset()
    has: Callable[[Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]] | None = None
    """Which of the given event ids the consumer applied: what its self-check asks, a page
    at a time, instead of reading everything it applied (:mod:`.self_repair`, #12)."""
    group_id: str | None = None
    """The consumer's group on the broker, and ``topics`` what it reads: its self-check
    judges by the group's committed offsets whether it has reached an event yet
    (:mod:`.progress`, #12). None: by the grace period alone."""
    topics: tuple[str, ...] = ()
    late_is_record: bool = False
    """The consumer's order of applying is its own record (the audit ledger: append-only,
    hash-chained, the order of recording): an event it applied late is reported *late*,
    information, not *out of order* (:func:`~.compare.compare`, #12)."""
    unordered: Callable[[int, int], Awaitable[list[AppliedEvent]]] | None = None
    """The events the consumer applied after the given apply sequence (0: all) and did not
    put in source order itself (none of
    :data:`~.compare.ORDER_FREE_TYPES`), in the order applied, at most the second argument
    of them (a keyset page: the next page starts after the last one's ``seq``): its
    self-check judges the order of their streams alone, a page at a time (:mod:`.ordering`,
    #12). None: the self-check does not look at order."""
    applied_among: Callable[[Sequence[uuid.UUID]], Awaitable[list[AppliedEvent]]] | None = None
    """Of the given event ids, those the consumer applied, with the order it applied them in
    (what :attr:`applied` says of each)."""
    order_reported: Callable[[Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]] | None = None
    """Record that the self-check reported the given events out of order; returns those no
    check had reported before, of this process or an earlier one (the rest are logged as
    already reported, #12). None: each process reports what it finds once."""
    order_remedy: str = ""
    """What puts an event applied out of order in order, for the self-check's log line."""
    applied_page: Callable[[int, int], Awaitable[list[AppliedEvent]]] | None = None
    """What :attr:`applied` says, of the events applied after the given order of applying
    (``seq``; 0: from the first), at most the second argument of them, in that order (a
    keyset page): ``branchline reconcile`` walks them a page at a time (with :attr:`has`
    and :attr:`applied_among`, :func:`paged_reports`, #12)."""

    @property
    def pages(self) -> bool:
        """Whether reconcile can read this consumer a page at a time (:func:`paged_reports`)."""
        return None not in (self.applied_page, self.has, self.applied_among)


@dataclass
class Reconciliation:
    reports: list[ConsumerReport]
    requeued: dict[str, int] = field(default_factory=dict)
    ends: dict[str, LogPosition] = field(default_factory=dict)
    """Each store's last event the (paged) log walk read: where ``--wait``'s counts stop."""

    @property
    def waiting(self) -> int:
        """Events not applied by some consumer and not dead-lettered: missing or in flight."""
        return sum(r.count("missing") + r.in_flight for r in self.reports)

    @property
    def differences(self) -> int:
        return sum(r.differences for r in self.reports)

    @property
    def missing(self) -> int:
        return sum(r.count("missing") for r in self.reports)

    @property
    def late(self) -> int:
        """Events applied late that need nobody (repaired, or the ledger's record): not
        counted in :attr:`differences` (#12)."""
        return sum(r.count("late") for r in self.reports)


def store_sources(settings: CommonSettings) -> list[StoreSource]:
    """Every event store of the product."""
    return [
        StoreSource("intake", settings.intake_database_url),
        StoreSource("followup", settings.followup_database_url),
    ]


@contextlib.asynccontextmanager
async def store_connection(dsn: str) -> AsyncIterator[PgConnection]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        yield conn
    finally:
        await conn.close()


def record_event_id(record: ConsumerRecord[bytes, bytes]) -> uuid.UUID | None:
    """A dead letter's event id: its ``event_id`` header, else its envelope's (None: neither
    readable)."""
    raw = dict(record.headers or ()).get("event_id")
    if raw is None and record.value:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            value = orjson.loads(record.value)
            raw = str(value.get("event_id", "")).encode() if isinstance(value, dict) else None
    if raw:
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            return uuid.UUID(raw.decode())
    return None


async def _event_id_pages(
    bootstrap: str, topic: str, within_s: float, page: int
) -> AsyncGenerator[list[uuid.UUID]]:
    """The readable event ids of each page of a dead-letter topic's records, up to its end
    when the read began."""
    async with contextlib.aclosing(
        topic_pages(bootstrap, [topic], within_s=within_s, page=page)
    ) as pages:
        async for records in pages:
            yield [i for i in map(record_event_id, records) if i is not None]


async def dead_lettered_ids(
    bootstrap: str, topic: str, *, within_s: float = 30.0, page: int = PAGE_RECORDS
) -> set[uuid.UUID]:
    """The event ids in a dead-letter topic (header ``event_id``, else the envelope's), up to
    its end when the read began, read a page of records at a time (:func:`topic_pages`): the
    ids are kept, not the records (#12). The consumers' self-checks use it; ``branchline
    reconcile`` asks :func:`dead_lettered_among` instead, which keeps only what it asked."""
    found: set[uuid.UUID] = set()
    async with contextlib.aclosing(_event_id_pages(bootstrap, topic, within_s, page)) as pages:
        async for ids in pages:
            found.update(ids)
    return found


async def dead_lettered_among(
    bootstrap: str,
    topic: str,
    ids: Collection[uuid.UUID],
    *,
    within_s: float = 30.0,
    page: int = PAGE_RECORDS,
) -> set[uuid.UUID]:
    """Which of ``ids`` the dead-letter topic holds, read a page of records at a time up to
    its end when the read began: memory is ``ids``, one page of records and the answer, not
    every id the topic holds (a consumer with millions of dead letters, #12)."""
    wanted = set(ids)
    found: set[uuid.UUID] = set()
    if not wanted:
        return found
    async with contextlib.aclosing(_event_id_pages(bootstrap, topic, within_s, page)) as pages:
        async for ids in pages:
            found.update(wanted.intersection(ids))
            if len(found) == len(wanted):  # nothing left to look for
                break
    return found


DeadLettered = Callable[[ConsumerSource, Sequence[uuid.UUID]], Awaitable[set[uuid.UUID]]]
"""Which of the given events (not applied by the consumer) its dead-letter topic holds."""

DEAD_LETTER_CANDIDATES = 50_000
"""How many events not applied (each missing or dead-lettered) the paged reconcile's log walk
holds, over its consumers, before it asks their dead-letter topics which are dead letters
(:func:`dead_lettered_among`, one read of each topic holding some): the bound of what it
holds for the dead letters, whatever the topics hold; a healthy stack reads no topic (#12)."""


class _TopicDeadLetters:
    """:data:`DeadLettered` from each consumer's dead-letter topic; a topic that cannot be
    read counts nothing dead for the rest of the reconcile (warned once), as before."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._unreadable: set[str] = set()

    async def __call__(self, consumer: ConsumerSource, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if consumer.name in self._unreadable:
            return set()
        try:
            return await dead_lettered_among(self._bootstrap, consumer.dead_letter_topic, ids)
        except Exception as exc:  # the broker is away: compare anyway, nothing counted dead
            self._unreadable.add(consumer.name)
            log.warning(
                "dead-letter topic not readable; its events count as missing",
                extra={"consumer": consumer.name, "error": describe_error(exc)},
            )
            return set()


async def reconcile(
    stores: Sequence[StoreSource],
    consumers: Sequence[ConsumerSource],
    *,
    bootstrap: str,
    repair: bool = False,
    grace_s: float = 10.0,
    page: int | None = None,
    keep: int | None = None,
    sink: Sink | None = None,
    log_only: bool = False,
    upto: Mapping[str, LogPosition] | None = None,
    candidates: int | None = None,
) -> Reconciliation:
    """Compare; with ``repair``, queue every missing event in its store's outbox once.

    What the consumers applied is read before the stores: an event committed and applied
    while reconcile reads would otherwise be in a consumer's record but not in the store
    read earlier, and count as extra. Read in this order it is at worst a recent event not
    yet applied, which the grace period excuses.

    With ``page``, a page at a time (:func:`paged_reports`, #12): the same reports, no read
    returning more than ``page`` rows, each kind of finding counted whole but at most ``keep``
    of it kept in the report (None: all), every finding given to ``sink`` as found, a repair
    made a page at a time as the missing events are found (every one, not the kept ones), and
    the dead-letter topics asked only about the events not applied, at most ``candidates`` of
    them at a time (:data:`DEAD_LETTER_CANDIDATES`, :func:`dead_lettered_among`). With
    ``log_only``, only the stores' logs (up to ``upto``'s position per store, if given):
    missing, dead-lettered and in flight counted, nothing else (``--wait``'s count).
    """
    if page is not None:
        requeued: dict[str, int] | None = {} if repair else None
        ends: dict[str, LogPosition] = {}
        reports = await paged_reports(
            stores,
            consumers,
            dead=_TopicDeadLetters(bootstrap),
            grace_s=grace_s,
            page=page,
            keep=keep,
            sink=sink,
            requeued=requeued,
            log_only=log_only,
            upto=upto,
            ends=ends,
            candidates=candidates,
        )
        if not log_only:  # a count of the logs alone is not the consumer's differences
            for report in reports:
                DIFFERENCES.labels(report.consumer).set(report.differences)
        result = Reconciliation(reports, ends=ends)
        for source, count in (requeued or {}).items():
            if not count:
                continue
            result.requeued[source] = count
            log.warning(
                "reconcile re-queued missing events for publication",
                extra={"store": source, "events": count},
            )
        return result
    applied = {consumer.name: await consumer.applied() for consumer in consumers}
    logs: dict[str, list[StoreEvent]] = {}
    for store in stores:
        async with store_connection(store.dsn) as conn:
            logs[store.source] = await read_store_log(conn, store.source, grace_s=grace_s)
    reports = [
        compare(
            consumer.name,
            logs,
            applied[consumer.name],
            dead_lettered=await _dead_letters(bootstrap, consumer),
            own_sources=consumer.own_sources,
            late_is_record=consumer.late_is_record,
        )
        for consumer in consumers
    ]
    for report in reports:
        DIFFERENCES.labels(report.consumer).set(report.differences)
    result = Reconciliation(reports)
    if repair:
        for store in stores:
            missing = [e for r in reports for e in r.missing if e.source == store.source]
            if not missing:
                continue
            async with store_connection(store.dsn) as conn:
                count = await requeue(conn, missing)
            result.requeued[store.source] = count
            REPAIRED.labels(store.source).inc(count)
            log.warning(
                "reconcile re-queued missing events for publication",
                extra={"store": store.source, "events": count},
            )
    return result


async def _dead_letters(bootstrap: str, consumer: ConsumerSource) -> frozenset[uuid.UUID]:
    try:
        return frozenset(await dead_lettered_ids(bootstrap, consumer.dead_letter_topic))
    except Exception as exc:  # the broker is away: compare anyway, nothing counted dead
        log.warning(
            "dead-letter topic not readable; its events count as missing",
            extra={"consumer": consumer.name, "error": describe_error(exc)},
        )
        return frozenset()


Finding = StoreEvent | uuid.UUID
"""A finding: the store's event (missing, dead-lettered) or the event's id (the others)."""

Sink = Callable[[str, str, Finding], None]
"""Told each finding as it is found: the consumer, the kind (:data:`~.compare.KINDS`), the
finding (``branchline reconcile --findings`` writes them as JSON lines, #12)."""


async def paged_reports(
    stores: Sequence[StoreSource],
    consumers: Sequence[ConsumerSource],
    *,
    dead: DeadLettered,
    grace_s: float,
    page: int,
    keep: int | None = None,
    sink: Sink | None = None,
    requeued: dict[str, int] | None = None,
    log_only: bool = False,
    upto: Mapping[str, LogPosition] | None = None,
    ends: dict[str, LogPosition] | None = None,
    candidates: int | None = None,
) -> list[ConsumerReport]:
    """What :func:`compare` reports of each consumer over every store, read a page of at
    most ``page`` rows at a time (#12), in three walks:

    - each consumer's applied events in its order of applying (:attr:`ConsumerSource.applied_page`),
      each page's ids looked up in the stores: how many it applied, the highest global position
      it recorded per store, and the *extra* ones (no store has them);
    - each store's log in log order (:func:`~.stores.read_store_log_page`), each page's ids
      asked of every consumer (:attr:`ConsumerSource.has`): progress, *in flight*, and the
      events not applied, held until at most ``candidates`` (None:
      :data:`DEAD_LETTER_CANDIDATES`) over the consumers and then asked of ``dead`` (each
      consumer's dead-letter topic): *dead-lettered*, else *missing*;
    - each store's streams by the stream index, each from its highest version down
      (:func:`~.stores.read_stream_page`), each page's ids asked of every consumer with when it
      applied them (:attr:`ConsumerSource.applied_among`): *out of order* and *late*, judged by
      :class:`~.compare.StreamWalk`, which carries two apply sequences per consumer across a page
      boundary, whatever the stream's length.

    What is carried between pages: keyset positions, counters, that per-stream pair, and at
    most ``keep`` findings of each kind per consumer (None: all; every one is counted in
    :attr:`~.compare.ConsumerReport.totals` and told to ``sink``). With ``requeued``, the
    events some consumer misses are queued in their store's outbox a log page at a time, on
    a connection of their own, as they are found (each once; the count per store added to
    ``requeued``). Each store's walks read one snapshot (a
    read-only repeatable-read transaction), as the whole read was one statement. A stream's
    versions are judged within one store (the whole compare merged same-named streams of two
    stores by name; none are: followup's streams are ``followup-…``).

    ``log_only``: the log walk alone, each store's stopping after ``upto``'s position for it
    (if given); ``ends`` is told each store's last event read."""
    if page < 1:
        raise ValueError("page must be at least 1")
    for consumer in consumers:
        if not consumer.pages:
            raise ValueError(f"{consumer.name} cannot be read a page at a time")
    if keep is not None and keep < 0:
        raise ValueError("keep must be at least 0")
    if candidates is None:
        candidates = DEAD_LETTER_CANDIDATES
    if candidates < 1:
        raise ValueError("candidates must be at least 1")
    found = _Found(keep, sink)
    reports = {
        consumer.name: ConsumerReport(consumer.name, totals=dict.fromkeys(KINDS, 0))
        for consumer in consumers
    }
    last: dict[str, dict[str, int]] = {consumer.name: {} for consumer in consumers}
    async with contextlib.AsyncExitStack() as opened:
        conns = {
            store.source: await opened.enter_async_context(store_connection(store.dsn))
            for store in stores
        }
        for consumer in consumers:  # what the consumers applied first, as reconcile reads
            if log_only:
                break
            await _walk_applied(
                consumer, conns, reports[consumer.name], last[consumer.name], page, found
            )
        for store in stores:
            conn = conns[store.source]
            repair: _Repair | None = None
            if requeued is not None:
                writer = await opened.enter_async_context(store_connection(store.dsn))
                repair = _Repair(store.source, writer, requeued)
            walk = _LogWalk(consumers, reports, dead, found, repair, candidates)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                end = await _walk_log(
                    store, conn, last, grace_s, page, walk, (upto or {}).get(store.source)
                )
                if end is not None and ends is not None:
                    ends[store.source] = end
                if not log_only:
                    await _walk_streams(store, conn, consumers, reports, page, found)
    for report in reports.values():
        report.extra.sort(key=lambda i: i.hex)
        report.out_of_order.sort(key=lambda i: i.hex)
        report.late.sort(key=lambda i: i.hex)
    return [reports[consumer.name] for consumer in consumers]


class _Found:
    """Counts each finding, keeps at most ``keep`` of each kind per report, tells ``sink``."""

    def __init__(self, keep: int | None, sink: Sink | None) -> None:
        self._keep = keep
        self._sink = sink

    def __call__(self, report: ConsumerReport, kind: str, item: Finding) -> None:
        report.totals[kind] += 1
        kept: list[Finding] = getattr(report, kind)
        if self._keep is None or len(kept) < self._keep:
            kept.append(item)
        if self._sink is not None:
            self._sink(report.consumer, kind, item)


@dataclass
class _Repair:
    """Queues the events some consumer misses in their store's outbox as they are found."""

    source: str
    conn: PgConnection
    requeued: dict[str, int]

    async def __call__(self, events: Sequence[StoreEvent]) -> None:
        if not events:
            return
        count = await requeue(self.conn, events)
        self.requeued[self.source] = self.requeued.get(self.source, 0) + count
        REPAIRED.labels(self.source).inc(count)


async def applied_in_pages(
    applied_page: Callable[[int, int], Awaitable[list[AppliedEvent]]], page: int = 1_000
) -> list[AppliedEvent]:
    """Everything a consumer applied, read through its keyset pages
    (:attr:`ConsumerSource.applied_page`), no statement returning more than ``page`` rows:
    for a caller that still wants the whole list (:attr:`ConsumerSource.applied`; the bench
    probes, #12)."""
    entries: list[AppliedEvent] = []
    after = 0
    while True:
        got = await applied_page(after, page)
        entries.extend(got)
        seqs = [entry.seq for entry in got if entry.seq is not None]
        if len(got) < page or not seqs or max(seqs) <= after:
            return entries
        after = max(seqs)


async def _walk_applied(
    consumer: ConsumerSource,
    conns: Mapping[str, PgConnection],
    report: ConsumerReport,
    last: dict[str, int],
    page: int,
    found: _Found,
) -> None:
    assert consumer.applied_page is not None
    after = 0
    while True:
        entries = await consumer.applied_page(after, page)
        mine = [e for e in entries if e.source not in consumer.own_sources]
        report.applied += len(mine)
        for entry in mine:
            if entry.source is not None and entry.global_position is not None:
                last[entry.source] = max(last.get(entry.source, 0), entry.global_position)
        known: set[uuid.UUID] = set()
        ids = [entry.event_id for entry in mine]
        for conn in conns.values():
            if ids:
                known |= await stored_ids(conn, ids)
        for event_id in ids:
            if event_id not in known:
                found(report, "extra", event_id)
        seqs = [entry.seq for entry in entries if entry.seq is not None]
        if len(entries) < page or not seqs or max(seqs) <= after:
            return
        after = max(seqs)


@dataclass
class _LogWalk:
    """What a store's log walk judges with: the events no consumer of it has applied are held
    (per consumer, in log order) until ``candidates`` are, then the consumers' dead-letter
    topics are asked which of them they hold (:meth:`settle`): each held event is found
    dead-lettered or missing, in log order, and the missing ones re-queued (each once)."""

    consumers: Sequence[ConsumerSource]
    reports: Mapping[str, ConsumerReport]
    dead: DeadLettered
    found: _Found
    repair: _Repair | None
    candidates: int
    held: dict[str, list[StoreEvent]] = field(default_factory=dict)

    def hold(self, consumer: ConsumerSource, event: StoreEvent) -> None:
        self.held.setdefault(consumer.name, []).append(event)

    @property
    def full(self) -> bool:
        return sum(len(events) for events in self.held.values()) >= self.candidates

    async def settle(self) -> None:
        misses: dict[uuid.UUID, StoreEvent] = {}
        for consumer in self.consumers:
            events = self.held.pop(consumer.name, [])
            if not events:
                continue
            dead = await self.dead(consumer, [event.event_id for event in events])
            report = self.reports[consumer.name]
            for event in events:
                if event.event_id in dead:
                    self.found(report, "dead_lettered", event)
                else:
                    self.found(report, "missing", event)
                    misses[event.event_id] = event
        if self.repair is not None:
            await self.repair(list(misses.values()))


async def _walk_log(
    store: StoreSource,
    conn: PgConnection,
    last: Mapping[str, Mapping[str, int]],
    grace_s: float,
    page: int,
    walk: _LogWalk,
    upto: LogPosition | None = None,
) -> LogPosition | None:
    """One store's log, a page at a time (up to ``upto``, if given); returns the position of
    the last event read (None: none)."""
    consumers, reports = walk.consumers, walk.reports
    progress = {
        consumer.name: SourceProgress(
            store.source, 0, 0, None, last[consumer.name].get(store.source)
        )
        for consumer in consumers
    }
    gap = dict.fromkeys(progress, False)
    after = LogPosition.start()
    end: LogPosition | None = None
    while True:
        read = await read_store_log_page(
            conn, store.source, after=after, limit=page, grace_s=grace_s
        )
        events = read if upto is None else [e for e in read if _not_after(e.log_position, upto)]
        if not events:
            break
        ids = [event.event_id for event in events]
        for consumer in consumers:
            assert consumer.has is not None
            applied = await consumer.has(ids)
            report, told = reports[consumer.name], progress[consumer.name]
            contiguous, applied_here = told.contiguous_to, told.applied
            for event in events:
                if event.event_id in applied:
                    applied_here += 1
                    if not gap[consumer.name]:
                        contiguous = event.log_position
                    continue
                gap[consumer.name] = True
                if event.in_flight:
                    report.in_flight += 1
                else:  # dead-lettered or missing: the dead-letter topic says, when settled
                    walk.hold(consumer, event)
            progress[consumer.name] = dataclasses.replace(
                told,
                events=told.events + len(events),
                applied=applied_here,
                contiguous_to=contiguous,
            )
        end = events[-1].log_position
        if walk.full:
            await walk.settle()
        if len(read) < page or len(events) < len(read):  # the log's end, or past ``upto``
            break
        after = events[-1].log_position
    await walk.settle()
    for consumer in consumers:
        reports[consumer.name].progress.append(progress[consumer.name])
    return end


def _not_after(position: LogPosition, upto: LogPosition) -> bool:
    return (position.tx_id, position.global_position) <= (upto.tx_id, upto.global_position)


async def _walk_streams(
    store: StoreSource,
    conn: PgConnection,
    consumers: Sequence[ConsumerSource],
    reports: Mapping[str, ConsumerReport],
    page: int,
    found: _Found,
) -> None:
    walks: dict[str, tuple[str, StreamWalk]] = {}
    before: tuple[str, int] | None = None
    while True:
        events = await read_stream_page(conn, store.source, before=before, limit=page)
        if not events:
            break
        ids = [event.event_id for event in events]
        for consumer in consumers:
            assert consumer.applied_among is not None
            applied = {
                entry.event_id: entry
                for entry in await consumer.applied_among(ids)
                if entry.source not in consumer.own_sources
            }
            report = reports[consumer.name]
            for event in events:
                entry = applied.get(event.event_id)
                if entry is None or entry.seq is None:
                    continue
                current = walks.get(consumer.name)
                if current is None or current[0] != event.stream_id:
                    current = (event.stream_id, StreamWalk(late_is_record=consumer.late_is_record))
                    walks[consumer.name] = current
                walk = current[1]
                ordered = entry.source_ordered or event.type in ORDER_FREE_TYPES
                verdict = walk.judge(entry.seq, ordered=ordered)
                if verdict == LATE:
                    found(report, "late", event.event_id)
                elif verdict == OUT_OF_ORDER:
                    found(report, "out_of_order", event.event_id)
        if len(events) < page:
            break
        before = (events[-1].stream_id, events[-1].stream_version)
