"""A consumer that repairs itself: it reconciles its own applications with the event stores
when it finds the broker's log reset (its position beyond the log end), at once when an event
skips versions of its stream (a position jump, :mod:`.jumps`), and every so often (a gap
nobody saw: the broker lost messages it had acknowledged before anyone read them), and
re-queues exactly what it misses, as ``branchline reconcile --repair`` does for everyone.

It needs to read the event stores (the settings' database URLs). When they are out of reach,
it logs and tries again later: the operator can always run ``branchline reconcile --repair``.

Memory (#12): the check never holds more than a page of events. It reads each store's log a
page at a time and asks the consumer which of the page's events it applied (``has``), instead
of loading every event of the stores and everything the consumer applied (at 200,000 events
that peaked at about 400 MB in the audit consumer, every check, and grew with the events).
What it re-queues it re-queues page by page. It also remembers, per store, up to where every
event is applied (settled: below the snapshot's xmin, so nothing can still appear before it)
and starts the next check there; every ``full_scan_every``-th check, and after the broker's
log was reset, starts from the beginning again (the applied record could have changed behind
its back: a rebuild swapping in new read models). What it does not report, unlike
``branchline reconcile``: events applied that no store has (extra); the repair never needed
them.

Order (#12): a consumer that can tell which events it did not put in source order itself
(``ConsumerSource.unordered``: the followup worker) has each check judge those events'
streams as reconcile does (:mod:`.ordering`): an event applied after a later version of its
stream and not put in order since counts among the check's differences and in
``branchline_consumer_self_check_out_of_order``, and is logged once, with the remedy (nothing
re-queued: re-publishing would apply it late again). Its candidates come a page at a time
(``reconcile_self_check_order_page``): a full check's memory does not grow with the events
ever applied. The audit ledger's order of applying is
its record (``late_is_record``): a late entry there is information, and it is not asked.

Owed, not merely behind (#12): a periodic check judges an event the consumer has not applied
by the consumer group's committed offsets on the broker (:mod:`.progress`): one still ahead of
them is not re-queued, however long ago it was published; one they passed is, at once. Where
the broker cannot tell (positions not recorded, the broker unreachable: logged once), the
grace period decides as before. A check triggered by a position jump judges by the offsets
too (what it looks for was skipped, but a lagging consumer's events still ahead of it are not:
re-queuing them at every jump was pure load), with no grace period where the broker cannot
tell. Only a check triggered by a log reset does not ask the broker: its offsets describe a
log that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import Counter, Gauge

from branchline_shared.background import running_task
from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.kafka.group_offsets import GroupOffsets
from branchline_shared.logging_setup import describe_error
from branchline_shared.reconcile.ordering import OrderWatch, checks_order, remedy
from branchline_shared.reconcile.progress import (
    Copy,
    PartitionProgress,
    Partitions,
    Verdict,
    judge,
)
from branchline_shared.reconcile.running import (
    DIFFERENCES,
    REPAIRED,
    ConsumerSource,
    StoreSource,
    dead_lettered_among,
    store_connection,
    store_sources,
)
from branchline_shared.reconcile.stores import (
    OutboxState,
    outbox_states,
    read_store_rows,
    requeue,
    store_event,
)
from branchline_shared.settings import CommonSettings

log = logging.getLogger(__name__)

GAPS_REPAIRED = Counter(
    "branchline_consumer_gaps_repaired_total",
    "Events a consumer found missing (log reset or gap) and had re-published",
    ["consumer", "trigger"],
)
SELF_CHECKS = Counter(
    "branchline_consumer_self_checks_total",
    "Reconciliations a consumer ran on itself",
    ["consumer", "trigger"],
)

NOT_REACHED = Gauge(
    "branchline_consumer_self_check_not_reached",
    "Events the consumer's last check found not applied and still ahead of its group's "
    "committed offsets (not re-queued: the consumer will get them)",
    ["consumer"],
)

OUT_OF_ORDER = Gauge(
    "branchline_consumer_self_check_out_of_order",
    "Events the consumer's last check found applied after a later version of their stream "
    "and not put in order since (a rebuild of the consumer puts them in order)",
    ["consumer"],
)


class GroupProgress:
    """One check's view of the consumer group on the broker: its committed offsets, read at
    the start of the check, before the consumer is asked what it applied (:mod:`.progress`),
    and the partitions' bounds, read per page after the page's outbox rows (so they include
    every copy the page found published)."""

    def __init__(self, group: GroupOffsets, committed: dict[TopicPartition, int]) -> None:
        self._group = group
        self._committed = committed

    @classmethod
    async def read(cls, group: GroupOffsets) -> GroupProgress:
        return cls(group, await group.committed(await group.partitions()))

    async def partitions(self, copies: list[Copy]) -> Partitions:
        wanted = sorted(
            {
                TopicPartition(c.topic, c.partition)
                for c in copies
                if c.partition is not None and c.offset is not None
            }
        )
        bounds = await self._group.bounds(wanted)
        return {
            (tp.topic, tp.partition): PartitionProgress(self._committed.get(tp), start, end)
            for tp, (start, end) in bounds.items()
        }


AT_ONCE = frozenset({"log_reset", "position_jump"})
"""Triggers whose missing events are not in flight: checked without a grace period."""

WITHOUT_BROKER = frozenset({"log_reset"})
"""Triggers whose check does not ask the broker: after a log reset the group's committed
offsets point into a log that no longer exists, so they prove nothing either way."""


class BrokerState(enum.Enum):
    NOT_ASKED = "not asked"
    """A check triggered by a log reset, or a consumer without a group or topics."""
    ANSWERING = "answering"
    UNREACHABLE = "unreachable"
    """It failed to answer at the start of the check or during it: the grace period judges
    the rest of the check."""


@dataclasses.dataclass
class BrokerView:
    """What one check knows of its consumer group on the broker: the group's progress while
    the broker answers, nothing once it stops (the state says which)."""

    state: BrokerState
    progress: GroupProgress | None = None
    """Set exactly while ``state`` is ``ANSWERING``."""

    @classmethod
    def answering(cls, progress: GroupProgress) -> BrokerView:
        return cls(BrokerState.ANSWERING, progress)

    def lost(self) -> None:
        """The broker stopped answering: no more questions to it during this check."""
        self.state, self.progress = BrokerState.UNREACHABLE, None


class SelfRepair:
    def __init__(
        self,
        settings: CommonSettings,
        consumer: ConsumerSource,
        *,
        interval_s: float,
        grace_s: float,
        page_size: int = 2_000,
        full_scan_every: int = 10,
        walk_slice: int = 500,
    ) -> None:
        if consumer.has is None:
            raise ValueError(f"{consumer.name}: a self-check needs the consumer's has()")
        self._settings = settings
        self._consumer = consumer
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._page_size = page_size
        self._full_scan_every = full_scan_every
        if walk_slice < 1:
            raise ValueError("walk_slice must be at least 1")
        self._walk_slice = walk_slice
        self._checks = 0
        self._dead_letters_unreadable = False
        self._settled: dict[str, LogPosition] = {}  # per store: every event up to it applied
        self._triggered = asyncio.Event()
        self._trigger = "periodic"
        self._broker_failing = False  # logged once per outage
        self.not_reached = 0
        """Events the last check left to the consumer (ahead of its committed offsets)."""
        self._out_of_order_told: frozenset[uuid.UUID] = frozenset()  # logged once each
        self.order = OrderWatch(consumer, page=settings.reconcile_self_check_order_page)
        """The order step's candidates and mark, kept across checks (:mod:`.ordering`)."""

    @property
    def consumer(self) -> ConsumerSource:
        """The consumer this checks (its group and topics, as its bootstrap wired them)."""
        return self._consumer

    async def log_lost(self) -> None:
        """The broker's log was reset under us: check now, counting every published event
        not applied as missing (what the broker lost is not coming)."""
        self._trigger = "log_reset"
        self._triggered.set()

    def position_jumped(self) -> None:
        """An event skipped versions of its stream (:mod:`.jumps`): check now. An event the
        group's committed offsets passed without applying it is owed, one still ahead of them
        is not (the consumer lags: it gets it by reading on), as in a periodic check; where
        the broker cannot tell, every published event not applied counts as missing, without
        a grace period (what was skipped was published before the event that skipped it, so
        it is not in flight)."""
        if self._trigger != "log_reset":
            self._trigger = "position_jump"
        self._triggered.set()

    async def check(self, *, trigger: str = "periodic", grace_s: float | None = None) -> int:
        """Reconcile this consumer and re-queue what it misses; returns how many."""
        SELF_CHECKS.labels(self._consumer.name, trigger).inc()
        grace = self._grace_s if grace_s is None else grace_s
        full = trigger == "log_reset" or self._checks % self._full_scan_every == 0
        self._checks += 1
        self._dead_letters_unreadable = False  # per check: warned once, tried again next check
        repaired = differences = 0
        self.not_reached = 0
        async with self._group_progress(trigger) as broker:
            for store in store_sources(self._settings):
                start = (
                    LogPosition.start()
                    if full
                    else self._settled.get(store.source, LogPosition.start())
                )
                found, requeued, settled = await self._check_store(store, start, grace, broker)
                self._settled[store.source] = settled
                differences += found
                repaired += requeued
        if self._consumer.late_is_record:  # its order of applying is its record: never out
            OUT_OF_ORDER.labels(self._consumer.name).set(0)
        elif checks_order(self._consumer):
            differences += await self._check_order(full=full)
        DIFFERENCES.labels(self._consumer.name).set(differences)
        NOT_REACHED.labels(self._consumer.name).set(self.not_reached)
        if repaired:
            GAPS_REPAIRED.labels(self._consumer.name, trigger).inc(repaired)
            log.warning(
                "consumer found events missing; re-queued them for publication",
                extra={"consumer": self._consumer.name, "trigger": trigger, "events": repaired},
            )
        return repaired

    async def _check_order(self, *, full: bool) -> int:
        """Events applied out of order (:mod:`.ordering`): counted in the gauge, each logged
        the first check that finds it (again if it comes back after being put in order); where
        the consumer records what was reported (``order_reported``), a restarted process's
        check logs one an earlier process reported as already reported (info, not a
        warning)."""
        found = await self.order.check(store_sources(self._settings), full=full)
        OUT_OF_ORDER.labels(self._consumer.name).set(len(found))
        new = [event for event in found if event.event_id not in self._out_of_order_told]
        first = {event.event_id for event in new}
        if new and self._consumer.order_reported is not None:
            # reported by an earlier process (a restarted worker finds it again): not again
            first = await self._consumer.order_reported(sorted(first))
        for event in new:
            extra = {
                "consumer": self._consumer.name,
                "event_id": str(event.event_id),
                "stream_id": event.stream_id,
                "stream_version": event.stream_version,
                "remedy": remedy(self._consumer),
            }
            if event.event_id in first:
                log.warning(
                    "consumer applied an event after a later version of its stream; nothing "
                    "put it in order",
                    extra=extra,
                )
            else:
                log.info(
                    "consumer applied an event after a later version of its stream; already "
                    "reported by an earlier run",
                    extra=extra,
                )
        self._out_of_order_told = frozenset(event.event_id for event in found)
        return len(found)

    @contextlib.asynccontextmanager
    async def _group_progress(self, trigger: str) -> AsyncIterator[BrokerView]:
        """The consumer group's progress for this check; not asked for a check triggered by
        a log reset (its offsets describe a lost log) or a consumer without a group, and
        unreachable when the broker does not answer: then the grace period judges, as
        before."""
        consumer = self._consumer
        if trigger in WITHOUT_BROKER or consumer.group_id is None or not consumer.topics:
            yield BrokerView(BrokerState.NOT_ASKED)
            return
        # The client is closed however the check ends, a cancellation included (a worker
        # stopping mid-check): a client left open leaks its broker connections.
        async with contextlib.AsyncExitStack() as opened:
            try:
                group = await opened.enter_async_context(
                    GroupOffsets(self._settings.kafka_bootstrap, consumer.group_id, consumer.topics)
                )
                view = BrokerView.answering(await GroupProgress.read(group))
            except Exception as exc:  # the check goes on by the grace period
                self._broker_failed(exc)
                view = BrokerView(BrokerState.UNREACHABLE)
            else:
                self._broker_answered()
            yield view

    def _broker_failed(self, exc: BaseException) -> None:
        if not self._broker_failing:
            log.warning(
                "consumer group's offsets not readable; the self-check judges by the grace "
                "period until they are",
                extra={"consumer": self._consumer.name, "error": describe_error(exc)},
            )
        self._broker_failing = True

    def _broker_answered(self) -> None:
        if self._broker_failing:
            log.info(
                "consumer group's offsets readable again",
                extra={"consumer": self._consumer.name},
            )
        self._broker_failing = False

    async def _partitions(
        self, broker: BrokerView, states: dict[uuid.UUID, OutboxState]
    ) -> Partitions | None:
        """The partitions of the page's published copies, or None (the grace period judges)."""
        if broker.progress is None:
            return None
        copies = [copy for state in states.values() for copy in state.copies]
        try:
            return await broker.progress.partitions(copies)
        except Exception as exc:  # the broker went away during the check: the rest by grace
            self._broker_failed(exc)
            broker.lost()
            return None

    async def _dead_lettered(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of ``ids`` (one page's events owed) the consumer's dead-letter topic holds:
        only they are looked for, so the check holds a page of ids, not every id the topic
        holds, and a check that finds nothing owed reads no topic (#12). A topic that cannot
        be read counts nothing dead for the rest of the check (warned once)."""
        if self._dead_letters_unreadable:
            return set()
        try:
            return await dead_lettered_among(
                self._settings.kafka_bootstrap, self._consumer.dead_letter_topic, ids
            )
        except Exception as exc:  # the broker is away: check anyway, nothing counted dead
            self._dead_letters_unreadable = True
            log.warning(
                "dead-letter topic not readable; its events count as missing",
                extra={"consumer": self._consumer.name, "error": describe_error(exc)},
            )
            return set()

    async def _check_store(
        self,
        store: StoreSource,
        start: LogPosition,
        grace_s: float,
        broker: BrokerView,
    ) -> tuple[int, int, LogPosition]:
        """One store's log from ``start``, a page at a time: (events owed and not applied,
        of which re-queued, the position up to which every event is applied and settled)."""
        assert self._consumer.has is not None
        contiguous, after = True, start
        settled_row: Any = None  # the last row up to which all are applied, if past start
        found = requeued = 0
        async with store_connection(store.dsn) as conn:
            while True:
                page = await read_store_rows(conn, after=after, limit=self._page_size)
                if not page:
                    break
                after = LogPosition(page[-1]["tx"], page[-1]["global_position"])
                ids = [row["event_id"] for row in page]
                applied = await self._consumer.has(ids)
                waiting = [event_id for event_id in ids if event_id not in applied]
                states = await outbox_states(conn, waiting, grace_s=grace_s) if waiting else {}
                partitions = await self._partitions(broker, states) if states else None
                missing = []
                for first in range(0, len(page), self._walk_slice):
                    if first:  # the consumer's own work runs between slices (#12)
                        await asyncio.sleep(0)
                    for row in page[first : first + self._walk_slice]:
                        event_id, in_flight = row["event_id"], row["in_flight"]
                        if event_id in applied and not in_flight:
                            if contiguous:
                                settled_row = row
                            continue
                        contiguous = False
                        state = states.get(event_id)
                        # Applied, or never queued for publication (no outbox row: not owed),
                        # or its transaction not yet settled: nothing to do yet.
                        if event_id in applied or state is None or in_flight:
                            continue
                        verdict = (
                            judge(state.copies, partitions)
                            if partitions is not None
                            else Verdict.UNKNOWN
                        )
                        if verdict is Verdict.NOT_REACHED:  # the consumer gets it reading on
                            self.not_reached += 1
                            continue
                        if verdict is Verdict.UNKNOWN and state.in_flight:  # the grace rule
                            continue
                        found += 1
                        missing.append(store_event(store.source, row, state.topic))
                if missing:  # a dead letter waits for its replay
                    dead = await self._dead_lettered([event.event_id for event in missing])
                    missing = [event for event in missing if event.event_id not in dead]
                if missing:
                    count = await requeue(conn, missing)
                    requeued += count
                    REPAIRED.labels(store.source).inc(count)
                if len(page) < self._page_size:
                    break
        if requeued:
            log.warning(
                "reconcile re-queued missing events for publication",
                extra={"store": store.source, "events": requeued},
            )
        settled = (
            start
            if settled_row is None
            else LogPosition(settled_row["tx"], settled_row["global_position"])
        )
        return found, requeued, settled

    async def run(self) -> None:
        """Until cancelled: a check every interval, and at once when triggered."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s or None):
                    await self._triggered.wait()
            trigger, self._trigger = self._trigger, "periodic"
            self._triggered.clear()
            try:
                await self.check(trigger=trigger, grace_s=0 if trigger in AT_ONCE else None)
            except Exception as exc:  # never stops the consumer: the operator can reconcile
                log.warning(
                    "self-check failed; trying again later",
                    extra={"consumer": self._consumer.name, "error": describe_error(exc)},
                    exc_info=True,
                )


@contextlib.asynccontextmanager
async def self_repairing(repair: SelfRepair | None) -> AsyncIterator[None]:
    """Run ``repair`` in the background for the duration of the block (None: nothing)."""
    if repair is None:
        yield
        return
    async with running_task(repair.run(), name="consumer-self-repair"):
        yield
