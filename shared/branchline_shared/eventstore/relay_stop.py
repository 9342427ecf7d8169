"""A service's stop behind an outbox relay: the relay's drain, then its producer's close, which
flushes only when the drain finished (#12).

The relay's drain (:meth:`OutboxRelay.drain`, bounded by ``shutdown_flush_timeout_s``) that
did not finish (it timed out, the broker down; the relay died) left rows unmarked in the
outbox: the next relay publishes them again, whatever the producer still holds. Flushing those
batches on the producer's close (``kafka_producer_stop_flush_s``) only made the stop longer
(the broker down: the whole bound, after the drain's), so the producer is then closed at once,
its batches not delivered failed (``kafka.starting.closed``): nothing is marked published that
the broker did not acknowledge, nothing is lost. A drain that finished keeps the flush (a
batch sent by someone else on the same producer, e.g. followup's dead letters, is delivered).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.starting import closed

log = logging.getLogger(__name__)


class RelayStop:
    """What a stop's drain of the relay ended in, read by the producer's close after it (the
    bootstrap's exit stack runs the drain first: it is registered after the close)."""

    def __init__(self) -> None:
        self.drain_unfinished = False

    async def drain(
        self, relay: OutboxRelay, task: asyncio.Task[None], *, timeout_s: float
    ) -> None:
        """``relay.drain(task)``, and whether ``task`` (its :meth:`OutboxRelay.run`) returned
        by itself: drained, or another process's relay the active one. Cancelled at the bound,
        or ended by an error, it did not finish."""
        await relay.drain(task, timeout_s=timeout_s)
        self.drain_unfinished = not (
            task.done() and not task.cancelled() and task.exception() is None
        )

    async def producer_closed(self, producer: AIOKafkaProducer, *, flush_within_s: float) -> None:
        """The producer closed: its flush bounded by ``flush_within_s`` after a drain that
        finished (or none), none after one that did not."""
        if self.drain_unfinished:
            log.warning(
                "the outbox relay's drain did not finish: its producer is closed without a "
                "flush (what it holds is left unpublished, the next relay publishes it)"
            )
            await closed(producer, flush_within_s=0)
        else:
            await closed(producer, flush_within_s=flush_within_s)
