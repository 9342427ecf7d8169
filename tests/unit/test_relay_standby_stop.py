"""A relay that does not hold the relay lock (intake's other processes, followup's API or
worker, whichever lost the race) stops as soon as its drain is asked for (#12): before, it
finished its pause between two tries of the lock (4 x the poll interval, 2 s by default)
first, in every stop of intake's API and of followup. The pause here is 4 minutes: the old
relay was still in it when its drain's bound cut it (cancelled)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from branchline_shared.eventstore.memory import InMemoryEventStore
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.postgres.pool import PgConnection

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class HeldElsewhere:
    """The relay lock's session while another process holds the lock."""

    def __init__(self) -> None:
        self.tried = asyncio.Event()
        self.closed = False

    async def fetchval(self, *_: object) -> bool:
        self.tried.set()
        return False

    async def close(self) -> None:
        self.closed = True


async def test_a_stand_by_relay_ends_its_drain_at_once_without_cancelling() -> None:
    session = HeldElsewhere()

    async def lock_connect() -> PgConnection:
        return cast("PgConnection", session)

    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),
        producer=cast("AIOKafkaProducer", None),  # never reached: it publishes nothing
        store_name="test",
        poll_interval_s=60.0,
        outbox=InMemoryEventStore().outbox_port(),
        lock_connect=lock_connect,
    )
    task = asyncio.create_task(relay.run())
    await session.tried.wait()  # in its pause before the next try

    await relay.drain(task, timeout_s=5)

    assert task.done()
    assert not task.cancelled()  # it returned by itself; the old one was cut at the bound
    assert task.exception() is None
    assert not relay.drain_given_up
    assert session.closed
