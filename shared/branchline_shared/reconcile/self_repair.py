"""A consumer that repairs itself: it reconciles its own applications with the event stores
when it finds the broker's log reset (its position beyond the log end), at once when an event
skips versions of its stream (a position jump, :mod:`.jumps`), and every so often (a gap
nobody saw: the broker lost messages it had acknowledged before anyone read them), and
re-queues exactly what it misses, as ``branchline reconcile --repair`` does for everyone.

It needs to read the event stores (the settings' database URLs). When they are out of reach,
it logs and tries again later: the operator can always run ``branchline reconcile --repair``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import Counter

from branchline_shared.reconcile.running import ConsumerSource, reconcile, store_sources
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
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._interval_s = interval_s
        self._grace_s = grace_s
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
        result = await reconcile(
            store_sources(self._settings),
            [self._consumer],
            bootstrap=self._settings.kafka_bootstrap,
            repair=True,
            grace_s=self._grace_s if grace_s is None else grace_s,
        )
        repaired = sum(result.requeued.values())
        if repaired:
            GAPS_REPAIRED.labels(self._consumer.name, trigger).inc(repaired)
            log.warning(
                "consumer found events missing; re-queued them for publication",
                extra={"consumer": self._consumer.name, "trigger": trigger, "events": repaired},
            )
        return repaired

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
