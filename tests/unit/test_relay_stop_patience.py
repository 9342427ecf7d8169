"""A drain while a round waits on the broker (#12, Round 34): once the round has waited the
stop's patience, the broker is asked for its metadata; a broker that answers nothing within
the patience either is gone, and the drain ends (``drain_given_up``: the producer is closed
without a flush, the rows stay unmarked for the next relay); a broker that answers has the
round waited for. A round whose statement waits on the database (a lock held elsewhere) for
the patience ends the drain without a probe (Round 35): the round cancelled, nothing marked."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from tests.support.batching import SendsInBatches
from tests.unit.test_relay_rounds import (
    TOPIC,
    CountingOutbox,
    FakeProducer,
    commit,
    lock_connect,
)

from branchline_shared.eventstore.memory import InMemoryEventStore
from branchline_shared.eventstore.ports import PendingPublication
from branchline_shared.eventstore.relay import OutboxRelay

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

PATIENCE_S = 0.01
DRAIN_S = 20.0
"""The drain's bound, beyond the test's timeout: a drain that waited for it fails the test."""


class SilentBroker(SendsInBatches):
    """Takes every send and acknowledges none until :meth:`acknowledge_all`; its metadata
    answers after ``answers_after`` asks (None: never)."""

    def __init__(self, answers_after: int | None) -> None:
        self.held: list[asyncio.Future[SimpleNamespace]] = []
        self.sending = asyncio.Event()
        self.asked = 0
        self._answers_after = answers_after
        self.client = SimpleNamespace(fetch_all_metadata=self._metadata)

    async def send(self, topic: str, **_: object) -> asyncio.Future[SimpleNamespace]:
        future: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        self.held.append(future)
        self.sending.set()
        return future

    async def _metadata(self) -> SimpleNamespace:
        self.asked += 1
        if self._answers_after is None:
            await asyncio.Event().wait()
        if self.asked >= (self._answers_after or 0):
            self.acknowledge_all()
        return SimpleNamespace(topics=lambda: {TOPIC})

    def acknowledge_all(self) -> None:
        for offset, future in enumerate(self.held):
            if not future.done():
                future.set_result(SimpleNamespace(partition=0, offset=offset))


async def draining(broker: SilentBroker) -> tuple[OutboxRelay, CountingOutbox]:
    """A relay over ``broker`` with one row committed, drained once its round is sending."""
    store = InMemoryEventStore()
    outbox = CountingOutbox(store.outbox_port())
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),
        producer=cast("AIOKafkaProducer", broker),
        store_name="test",
        poll_interval_s=60.0,
        outbox=outbox,
        lock_connect=lock_connect,
        stop_patience_s=PATIENCE_S,
    )
    await commit(store, 1, first_client=0)
    task = asyncio.create_task(relay.run())
    await broker.sending.wait()
    await relay.drain(task, timeout_s=DRAIN_S)
    return relay, outbox


async def test_a_drain_ends_when_a_round_waits_on_a_broker_that_answers_nothing() -> None:
    broker = SilentBroker(answers_after=None)
    relay, outbox = await draining(broker)
    assert relay.drain_given_up
    assert broker.asked == 1
    assert await outbox.backlog() == 1  # unmarked: the next relay publishes it


async def test_a_drain_waits_for_a_slow_round_while_the_broker_answers() -> None:
    broker = SilentBroker(answers_after=3)
    relay, outbox = await draining(broker)
    assert not relay.drain_given_up
    assert broker.asked == 3 + 1  # asked at each patience while the round waited; its topic check
    assert await outbox.backlog() == 0


class StuckOutbox(CountingOutbox):
    """A statement that waits (a lock held elsewhere) until cancelled: the outbox read when
    ``stuck`` is "pending", the marking when it is "mark"; ``waiting`` set once it waits."""

    def __init__(self, store: InMemoryEventStore, stuck: str) -> None:
        super().__init__(store.outbox_port())
        self.stuck = stuck
        self.waiting = asyncio.Event()
        self.cancelled = False

    async def _wait(self) -> None:
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def pending(self, limit: int) -> list[PendingPublication]:
        if self.stuck == "pending":
            await self._wait()
        return await super().pending(limit)

    async def mark_published(self, outbox_ids: Any, positions: Any = None) -> None:
        if self.stuck == "mark":
            await self._wait()
        await super().mark_published(outbox_ids, positions)


@pytest.mark.parametrize("stuck", ["pending", "mark"])
async def test_a_drain_ends_when_a_rounds_statement_waits_on_the_database(stuck: str) -> None:
    store = InMemoryEventStore()
    outbox = StuckOutbox(store, stuck)
    producer = FakeProducer()
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),
        producer=cast("AIOKafkaProducer", producer),
        store_name="test",
        poll_interval_s=60.0,
        outbox=outbox,
        lock_connect=lock_connect,
        stop_patience_s=PATIENCE_S,
    )
    await commit(store, 1, first_client=0)
    task = asyncio.create_task(relay.run())
    await outbox.waiting.wait()
    await relay.drain(task, timeout_s=DRAIN_S)
    assert relay.drain_given_up
    assert outbox.cancelled  # the statement cancelled, not waited for
    assert producer.sent == (1 if stuck == "mark" else 0)
    assert await outbox.backlog() == 1  # unmarked: the next relay publishes it
