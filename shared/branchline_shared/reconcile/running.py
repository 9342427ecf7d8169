"""``branchline reconcile``: compare every event store with every consumer; optionally repair.

The stores are the source of truth (intake's, and followup's own store of RM actions and
timer events). A repair queues each event some consumer misses in its store's outbox once;
the relay publishes it, and consumers that had it already drop it by event id.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson
from prometheus_client import Counter, Gauge

from branchline_shared.kafka.topic_reading import read_topic
from branchline_shared.logging_setup import describe_error
from branchline_shared.postgres.pool import PgConnection
from branchline_shared.reconcile.compare import (
    AppliedEvent,
    ConsumerReport,
    StoreEvent,
    compare,
)
from branchline_shared.reconcile.stores import read_store_log, requeue
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


@dataclass
class Reconciliation:
    reports: list[ConsumerReport]
    requeued: dict[str, int] = field(default_factory=dict)

    @property
    def differences(self) -> int:
        return sum(r.differences for r in self.reports)

    @property
    def missing(self) -> int:
        return sum(len(r.missing) for r in self.reports)

    @property
    def late(self) -> int:
        """Events applied late that need nobody (repaired, or the ledger's record): not
        counted in :attr:`differences` (#12)."""
        return sum(len(r.late) for r in self.reports)


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


async def dead_lettered_ids(
    bootstrap: str, topic: str, *, within_s: float = 30.0
) -> set[uuid.UUID]:
    """The event ids in a dead-letter topic (header ``event_id``, else the envelope's)."""
    found: set[uuid.UUID] = set()
    for record in await read_topic(bootstrap, [topic], within_s=within_s):
        raw = dict(record.headers or ()).get("event_id")
        if raw is None and record.value:
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                value = orjson.loads(record.value)
                raw = str(value.get("event_id", "")).encode() if isinstance(value, dict) else None
        if raw:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                found.add(uuid.UUID(raw.decode()))
    return found


async def reconcile(
    stores: Sequence[StoreSource],
    consumers: Sequence[ConsumerSource],
    *,
    bootstrap: str,
    repair: bool = False,
    grace_s: float = 10.0,
) -> Reconciliation:
    """Compare; with ``repair``, queue every missing event in its store's outbox once.

    What the consumers applied is read before the stores: an event committed and applied
    while reconcile reads would otherwise be in a consumer's record but not in the store
    read earlier, and count as extra. Read in this order it is at worst a recent event not
    yet applied, which the grace period excuses.
    """
    applied = {consumer.name: await consumer.applied() for consumer in consumers}
    logs: dict[str, list[StoreEvent]] = {}
    for store in stores:
        async with store_connection(store.dsn) as conn:
            logs[store.source] = await read_store_log(conn, store.source, grace_s=grace_s)
    reports: list[ConsumerReport] = []
    for consumer in consumers:
        try:
            dead = await dead_lettered_ids(bootstrap, consumer.dead_letter_topic)
        except Exception as exc:  # the broker is away: compare anyway, nothing counted dead
            log.warning(
                "dead-letter topic not readable; its events count as missing",
                extra={"consumer": consumer.name, "error": describe_error(exc)},
            )
            dead = set()
        report = compare(
            consumer.name,
            logs,
            applied[consumer.name],
            dead_lettered=frozenset(dead),
            own_sources=consumer.own_sources,
            late_is_record=consumer.late_is_record,
        )
        DIFFERENCES.labels(consumer.name).set(report.differences)
        reports.append(report)
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
