"""Starting an aiokafka client (producer, consumer, admin) so that a start cut short leaks
nothing (#12).

aiokafka's start cannot be interrupted cleanly: cancelled while its bootstrap connection waits
for the broker's metadata, that connection is neither closed nor kept by the client, so no
``stop()`` or ``close()`` ever reaches it (one socket per cancelled start: a readiness probe
timing out on a slow broker, a service stopped while starting, a worker stopped while its
dead-letter gauges read). A cancellation here therefore lets the bootstrap end first (bounded
by the client's request timeout: the connect, the version lookup and the metadata request are
each bounded by it), then cancels what remains of the start (a consumer waiting for its group,
whose connections the client holds and its stop closes), and re-raises: the caller is still
cancelled, only a little later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaProducer

from branchline_shared.kafka.aiokafka_private import private_parts

log = logging.getLogger(__name__)

_POLL_S = 0.005
"""How often a cancelled start is looked at while its bootstrap ends (the cancel path only)."""


async def start_settled(client: Any) -> None:
    """``await client.start()``; cut short, the bootstrap is let to end before the cancellation
    goes on (the caller stops the client: a consumer that retries its start keeps it)."""
    start = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(start)
    except asyncio.CancelledError:
        await _settled(start, client)
        raise


async def start_or_close(client: Any) -> None:
    """``await client.start()``, or the client closed and whatever ended the start (a cancel,
    a timeout around this call, a refusal) raised."""
    try:
        await start_settled(client)
    except BaseException:
        await closed(client)
        raise


PRODUCER_FLUSH_WITHIN_S = 3.0
"""How long :func:`closed` lets a producer's stop flush its batches by default (the setting
``kafka_producer_stop_flush_s`` overrides it in the services)."""


async def closed(client: Any, *, flush_within_s: float | None = PRODUCER_FLUSH_WITHIN_S) -> None:
    """Stopped (a producer or consumer) or closed (an admin client), also if whoever waits is
    cancelled meanwhile: the close goes on. A consumer's stop that ends short by itself is
    finished as :func:`stopped` finishes it.

    A producer's stop flushes first: aiokafka waits until every batch is delivered or expires
    (its request timeout, after its retries), for ever in effect while the broker is down. It
    is let flush for ``flush_within_s`` (None: unbounded; 0: no flush); then the rest is closed
    (``close_rest``): every batch not delivered fails with ``ProducerClosed``, so its sender
    (the outbox relay's ``send_and_wait``) marks nothing published and the next relay
    publishes it: nothing is lost (#12)."""
    if isinstance(client, AIOKafkaProducer) and flush_within_s is not None:
        await asyncio.shield(asyncio.ensure_future(_stopped_within(client, flush_within_s)))
    elif hasattr(client, "stop"):
        await asyncio.shield(asyncio.ensure_future(_stopped_whole(client)))
    else:
        await asyncio.shield(client.close())


class ProducerStop:
    """Whether a producer's close may flush (#12): what its users left that the broker did not
    take, read by the close (registered on the exit stack before them, so run after them).

    A flush delivers what a producer still holds; with the broker down it only waits its bound
    (``kafka_producer_stop_flush_s``) and then fails it all anyway. It is skipped when the
    holder's users know the flush is not worth it: an outbox relay's drain that did not finish
    (``eventstore.relay_stop``), or a send not acknowledged (a dead letter whose send failed or
    was cut by the stop: its consumer did not commit past the poison, so the next start
    dead-letters it again). Nothing is lost either way."""

    def __init__(self) -> None:
        self.drain_unfinished = False
        self.sends_unacknowledged = 0

    def sending(self) -> None:
        """A send starts: counted until :meth:`acknowledged`."""
        self.sends_unacknowledged += 1

    def acknowledged(self) -> None:
        self.sends_unacknowledged -= 1

    async def producer_closed(self, producer: AIOKafkaProducer, *, flush_within_s: float) -> None:
        """The producer closed: its flush bounded by ``flush_within_s``, none if its users left
        work the broker did not take."""
        if self.drain_unfinished or self.sends_unacknowledged:
            log.warning(
                "a producer is closed without a flush: its users left work the broker did not "
                "take (left unpublished; the next start publishes it)",
                extra={
                    "drain_unfinished": self.drain_unfinished,
                    "sends_unacknowledged": self.sends_unacknowledged,
                },
            )
            await closed(producer, flush_within_s=0)
        else:
            await closed(producer, flush_within_s=flush_within_s)


async def stopped(consumer: Any) -> None:
    """``await consumer.stop()``, which may be cut short (a batch consumer's stop bound cancels
    it on purpose: a group leave the broker does not answer, a join in flight): cancelled, the
    stop ends where it waits, what it did not close is closed, and the cancellation goes on.
    aiokafka's own stop, cancelled, marks the consumer closed and leaves its fetcher, its group
    coordinator's tasks and its connections open for the life of the process (#12).

    aiokafka's stop also ends short by itself: its fetcher's close awaits each fetch task it
    cancels, and one cancelled in its retry back-off (the broker gone or restarting) ends
    cancelled, so that await raises ``CancelledError`` out of ``stop()`` before the client is
    closed: the client's metadata task lived on and opened a connection to the broker when it
    came back (one per such stop), and the caller, cancelled by nobody, saw a cancellation.
    That stop is finished here (what it did not close is closed) and ends as a stop."""
    stop = asyncio.ensure_future(consumer.stop())
    try:
        await asyncio.wait([stop])  # raises only if whoever waits is cancelled
    except asyncio.CancelledError:
        await _to_its_end(_cut(stop, consumer))
        raise
    if _ended_short(stop) and await _to_its_end(_rest_closed(consumer)):
        raise asyncio.CancelledError  # whoever waits was cancelled while the rest closed
    _raise_its_error(stop)


async def _stopped_whole(client: Any) -> None:
    """``closed``'s stop (run shielded: nobody cancels it)."""
    stop = asyncio.ensure_future(client.stop())
    await asyncio.wait([stop])
    if _ended_short(stop):
        await _rest_closed(client)
    _raise_its_error(stop)


async def _stopped_within(producer: AIOKafkaProducer, within_s: float) -> None:
    """``closed``'s stop of a producer, its flush bounded (run shielded: nobody cancels it)."""
    stop = asyncio.ensure_future(producer.stop())
    await asyncio.wait([stop], timeout=within_s)
    if not stop.done() and within_s > 0:
        log.warning(
            "a producer's stop did not flush within %.1f s; its batches not delivered are "
            "failed (left unpublished)",
            within_s,
        )
    if not stop.done():  # 0: no flush at all (an outbox relay's drain unfinished, #12)
        await _cut(stop, producer)
        return
    if _ended_short(stop):
        await _rest_closed(producer)
    _raise_its_error(stop)


def _ended_short(stop: asyncio.Future[None]) -> bool:
    """A client's ``stop()``, ended cancelled (by one of its own tasks: nobody cancels it) or
    raising: what it did not reach is still open."""
    return stop.cancelled() or stop.exception() is not None


def _raise_its_error(stop: asyncio.Future[None]) -> None:
    if not stop.cancelled():
        stop.result()  # an error it raised is the caller's; its own cancellation is not


async def _rest_closed(client: Any) -> None:
    parts = private_parts(client)
    if parts is not None and parts.close_rest is not None:
        await parts.close_rest()


async def _cut(stop: asyncio.Future[None], consumer: Any) -> None:
    stop.cancel()
    await asyncio.wait([stop])
    if not stop.cancelled():
        stop.exception()  # retrieved: the cancellation is what the caller is told
    await _rest_closed(consumer)


async def _to_its_end(work: Coroutine[Any, Any, None]) -> bool:
    """``work`` (a few closes) run to its end, also while whoever waits is cancelled again
    meanwhile (``cancel_and_wait`` cancels every second); whether it was."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
            continue
    if not task.cancelled():
        task.exception()  # retrieved: the cancellation is what the caller is told
    return cancelled


async def _settled(start: asyncio.Future[None], client: Any) -> None:
    # What aiokafka keeps private (the client's request timeout, whether its bootstrap has
    # ended) is read in one place, ``aiokafka_private``; a stand-in (a unit test's fake) or an
    # aiokafka without them has no bootstrap to wait for.
    parts = private_parts(client)
    try:
        if parts is not None and parts.request_timeout_s and parts.bootstrapped is not None:
            bootstrapped = parts.bootstrapped
            async with asyncio.timeout(2 * parts.request_timeout_s):
                # aiokafka 0.14: the client's metadata task is made as the bootstrap's last
                # step; from then on every connection is the client's own.
                while not start.done() and not bootstrapped():
                    await asyncio.wait([start], timeout=_POLL_S)
    except TimeoutError:
        pass  # a broker that answers nothing: what the start opened is left to its bound
    finally:
        if not start.done():
            start.cancel()
        await asyncio.wait([start])
        if not start.cancelled():
            start.exception()  # retrieved: the cancellation is what the caller is told
