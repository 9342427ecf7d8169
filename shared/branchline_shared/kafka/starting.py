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
from collections.abc import Coroutine
from typing import Any

from branchline_shared.kafka.aiokafka_private import private_parts

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


async def closed(client: Any) -> None:
    """Stopped (a producer or consumer) or closed (an admin client), also if whoever waits is
    cancelled meanwhile: the close goes on."""
    close = client.stop if hasattr(client, "stop") else client.close
    await asyncio.shield(close())


async def stopped(consumer: Any) -> None:
    """``await consumer.stop()``, which may be cut short (a batch consumer's stop bound cancels
    it on purpose: a group leave the broker does not answer, a join in flight): cancelled, the
    stop ends where it waits, what it did not close is closed, and the cancellation goes on.
    aiokafka's own stop, cancelled, marks the consumer closed and leaves its fetcher, its group
    coordinator's tasks and its connections open for the life of the process (#12)."""
    stop = asyncio.ensure_future(consumer.stop())
    try:
        await asyncio.shield(stop)
    except asyncio.CancelledError:
        await _to_its_end(_cut(stop, consumer))
        raise


async def _cut(stop: asyncio.Future[None], consumer: Any) -> None:
    stop.cancel()
    await asyncio.wait([stop])
    if not stop.cancelled():
        stop.exception()  # retrieved: the cancellation is what the caller is told
    parts = private_parts(consumer)
    if parts is not None and parts.close_rest is not None:
        await parts.close_rest()


async def _to_its_end(work: Coroutine[Any, Any, None]) -> None:
    """``work`` (a few closes) run to its end, also while whoever waits is cancelled again
    meanwhile (``cancel_and_wait`` cancels every second)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
    if not task.cancelled():
        task.exception()  # retrieved: the cancellation is what the caller is told


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
