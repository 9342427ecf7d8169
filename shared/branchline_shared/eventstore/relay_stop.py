"""A service's stop behind an outbox relay: the relay's drain, then its producer's close, which
flushes only when the drain finished (#12).

The relay's drain (:meth:`OutboxRelay.drain`, bounded by ``shutdown_flush_timeout_s``) that
did not finish (it timed out, the broker down; the relay died) left rows unmarked in the
outbox: the next relay publishes them again, whatever the producer still holds. Flushing those
batches on the producer's close (``kafka_producer_stop_flush_s``) only made the stop longer
(the broker down: the whole bound, after the drain's), so the producer is then closed at once,
its batches not delivered failed (``kafka.starting.closed``): nothing is marked published that
the broker did not acknowledge, nothing is lost. A drain that finished keeps the flush (a
batch sent by someone else on the same producer is delivered), unless a dead letter's send on
it was not acknowledged (:class:`~branchline_shared.kafka.starting.ProducerStop`).

A drain that has seen the broker or the database fail (a round failed while draining, or the
drain was requested while the relay was retrying after a failure) ends at once instead of
retrying until its bound (:attr:`OutboxRelay.drain_given_up`); a drain whose rounds succeed
goes on until the outbox is empty or its bound (#12, Round 33).
"""

from __future__ import annotations

import asyncio

from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.kafka.starting import ProducerStop


class RelayStop(ProducerStop):
    """What a stop's drain of the relay ended in, read by the producer's close after it (the
    bootstrap's exit stack runs the drain first: it is registered after the close)."""

    async def drain(
        self, relay: OutboxRelay, task: asyncio.Task[None], *, timeout_s: float
    ) -> None:
        """``relay.drain(task)``, and whether ``task`` (its :meth:`OutboxRelay.run`) drained
        by itself: the outbox emptied, or another process's relay the active one. Cancelled at
        the bound, ended by an error, or ended early because the broker or the database failed
        while draining (:attr:`OutboxRelay.drain_given_up`), it did not finish."""
        await relay.drain(task, timeout_s=timeout_s)
        self.drain_unfinished = relay.drain_given_up or not (
            task.done() and not task.cancelled() and task.exception() is None
        )
