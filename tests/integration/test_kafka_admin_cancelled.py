"""An admin client's start cut short leaves no connection open (#12).

aiokafka's start cannot be cancelled cleanly: cancelled while its bootstrap connection waits for
the broker's metadata, that connection is neither closed nor kept by the client, so nothing
closes it. Creating topics at start-up (cancelled when a service is stopped while starting, or
by the relay's stop while it recovers a lost log) and the readiness check's broker probe (its
timeout cancels a start on a slow broker) lost a socket each time. Each waits for its start to
end now, then closes the client."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from branchline_shared.kafka.topics import TopicSpec, broker_is_reachable, ensure_topics
from tests.support import open_sockets
from tests.support.stack import Infra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MOMENTS_MS = [m / 2 for m in range(50)]
"""When the start is cancelled: before and while its connections are made and asked (on the
old code some of these, around 2-3 ms in, left a connection open on the session's broker)."""


async def cancelled_after(ms: float, coroutine: object) -> None:
    task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
    await asyncio.sleep(ms / 1000)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def test_topics_created_at_start_cut_short_leave_no_connection_open(
    infra: Infra, request: pytest.FixtureRequest
) -> None:
    for ms in MOMENTS_MS:
        spec = TopicSpec(name=f"cut-{uuid.uuid4().hex}", partitions=1, replication_factor=1)
        await cancelled_after(ms, ensure_topics(infra.kafka_bootstrap, [spec]))
    await asyncio.sleep(0.1)  # a connection the broker answers late is made by now
    assert open_sockets.left_open({request.node.nodeid}) == []


async def test_a_broker_probe_cut_short_leaves_no_connection_open(
    infra: Infra, request: pytest.FixtureRequest
) -> None:
    for ms in MOMENTS_MS:
        await cancelled_after(ms, broker_is_reachable(infra.kafka_bootstrap))
    await asyncio.sleep(0.1)
    assert open_sockets.left_open({request.node.nodeid}) == []
    assert await broker_is_reachable(infra.kafka_bootstrap)
