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
from typing import Any

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


async def _settled(start: asyncio.Future[None], client: Any) -> None:
    # The ``AIOKafkaClient`` a producer (``client``), consumer or admin (``_client``) holds;
    # a stand-in without one (a unit test's fake) has no bootstrap to wait for. Should an
    # aiokafka upgrade rename these, tests/integration/test_kafka_start_cancelled.py fails.
    inner = getattr(client, "client", None) or getattr(client, "_client", None)
    try:
        if inner is not None:
            async with asyncio.timeout(2 * inner._request_timeout_ms / 1000):
                # aiokafka 0.14: the client's metadata task is made as the bootstrap's last
                # step; from then on every connection is the client's own.
                while not start.done() and inner._sync_task is None:
                    await asyncio.wait([start], timeout=_POLL_S)
    except TimeoutError:
        pass  # a broker that answers nothing: what the start opened is left to its bound
    finally:
        if not start.done():
            start.cancel()
        await asyncio.wait([start])
        if not start.cancelled():
            start.exception()  # retrieved: the cancellation is what the caller is told
