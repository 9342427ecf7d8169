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
``branchline reconcile``: events applied that no store has (extra) and events applied out of
order; the repair never needed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator

from prometheus_client import Counter

from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.reconcile.running import (
    DIFFERENCES,
    REPAIRED,
    ConsumerSource,
    StoreSource,
    dead_lettered_ids,
    store_connection,
    store_sources,
)
from branchline_shared.reconcile.stores import outbox_states, read_store_page, requeue
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


AT_ONCE = frozenset({"log_reset", "position_jump"})
"""Triggers whose missing events are not in flight: checked without a grace period."""


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
    ) -> None:
        if consumer.has is None:
            raise ValueError(f"{consumer.name}: a self-check needs the consumer's has()")
        self._settings = settings
        self._consumer = consumer
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._page_size = page_size
        self._full_scan_every = full_scan_every
        self._checks = 0
        self._settled: dict[str, LogPosition] = {}  # per store: every event up to it applied
        self._triggered = asyncio.Event()
        self._trigger = "periodic"

    async def log_lost(self) -> None:
        """The broker's log was reset under us: check now, counting every published event
        not applied as missing (what the broker lost is not coming)."""
        self._trigger = "log_reset"
        self._triggered.set()

    def position_jumped(self) -> None:
        """An event skipped versions of its stream (:mod:`.jumps`): check now, counting every
        published event not applied as missing (what was skipped was published before the
        event that skipped it, so it is not in flight)."""
        if self._trigger != "log_reset":
            self._trigger = "position_jump"
        self._triggered.set()

    async def check(self, *, trigger: str = "periodic", grace_s: float | None = None) -> int:
        """Reconcile this consumer and re-queue what it misses; returns how many."""
        SELF_CHECKS.labels(self._consumer.name, trigger).inc()
        grace = self._grace_s if grace_s is None else grace_s
        full = trigger == "log_reset" or self._checks % self._full_scan_every == 0
        self._checks += 1
        try:
            dead = frozenset(
                await dead_lettered_ids(
                    self._settings.kafka_bootstrap, self._consumer.dead_letter_topic
                )
            )
        except Exception as exc:  # the broker is away: check anyway, nothing counted dead
            log.warning(
                "dead-letter topic not readable; its events count as missing",
                extra={"consumer": self._consumer.name, "error": repr(exc)},
            )
            dead = frozenset()
        repaired = differences = 0
        for store in store_sources(self._settings):
            start = (
                LogPosition.start()
                if full
                else self._settled.get(store.source, LogPosition.start())
            )
            found, requeued, settled = await self._check_store(store, start, grace, dead)
            self._settled[store.source] = settled
            differences += found
            repaired += requeued
        DIFFERENCES.labels(self._consumer.name).set(differences)
        if repaired:
            GAPS_REPAIRED.labels(self._consumer.name, trigger).inc(repaired)
            log.warning(
                "consumer found events missing; re-queued them for publication",
                extra={"consumer": self._consumer.name, "trigger": trigger, "events": repaired},
            )
        return repaired

    async def _check_store(
        self, store: StoreSource, start: LogPosition, grace_s: float, dead: frozenset[uuid.UUID]
    ) -> tuple[int, int, LogPosition]:
        """One store's log from ``start``, a page at a time: (events owed and not applied,
        of which re-queued, the position up to which every event is applied and settled)."""
        assert self._consumer.has is not None
        settled, contiguous, after = start, True, start
        found = requeued = 0
        async with store_connection(store.dsn) as conn:
            while True:
                page = await read_store_page(conn, store.source, after=after, limit=self._page_size)
                if not page:
                    break
                after = page[-1].log_position
                applied = await self._consumer.has([e.event_id for e in page])
                waiting = [e.event_id for e in page if e.event_id not in applied]
                states = await outbox_states(conn, waiting, grace_s=grace_s) if waiting else {}
                missing = []
                for event in page:
                    if event.event_id in applied and not event.in_flight:
                        if contiguous:
                            settled = event.log_position
                        continue
                    contiguous = False
                    state = states.get(event.event_id)
                    # Applied, or never queued for publication (no outbox row: not owed), or
                    # in flight: nothing to do yet.
                    if event.event_id in applied or state is None or event.in_flight or state[1]:
                        continue
                    found += 1
                    if event.event_id not in dead:  # a dead letter waits for its replay
                        missing.append(dataclasses.replace(event, topic=state[0]))
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
        return found, requeued, settled

    async def run(self) -> None:
        """Until cancelled: a check every interval, and at once when triggered."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._triggered.wait(), timeout=self._interval_s or None)
            trigger, self._trigger = self._trigger, "periodic"
            self._triggered.clear()
            try:
                await self.check(trigger=trigger, grace_s=0 if trigger in AT_ONCE else None)
            except Exception as exc:  # never stops the consumer: the operator can reconcile
                log.warning(
                    "self-check failed; trying again later",
                    extra={"consumer": self._consumer.name, "error": repr(exc)},
                    exc_info=True,
                )


@contextlib.asynccontextmanager
async def self_repairing(repair: SelfRepair | None) -> AsyncIterator[None]:
    """Run ``repair`` in the background for the duration of the block (None: nothing)."""
    if repair is None:
        yield
        return
    task = asyncio.create_task(repair.run(), name="consumer-self-repair")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
