"""How the outbox relay groups its rounds (#12): wake-ups that arrive while a round runs make
one more round, not one each; with a minimum interval, commits made while a round runs go out
together, while a commit to an idle relay goes out at once; a drain publishes everything
committed without waiting out the interval."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from tests.support.batching import SendsInBatches
from tests.support.events import recorded_event

from branchline_shared.eventstore.memory import InMemoryEventStore, InMemoryOutbox
from branchline_shared.eventstore.ports import PendingPublication
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.postgres.pool import PgConnection

pytestmark = pytest.mark.timeout(30)

TOPIC = "branchline.test.followup"
LONG_S = 60.0  # longer than any wait below: only a wake-up or the drain starts a round


class CountingOutbox:
    """The in-memory outbox, recording how many rows each round read; ``hold`` (when set)
    keeps a round between its read and its publishing until released."""

    def __init__(self, inner: InMemoryOutbox) -> None:
        self._inner = inner
        self.rounds: list[int] = []
        self.hold: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def pending(self, limit: int) -> list[PendingPublication]:
        rows = await self._inner.pending(limit)
        self.rounds.append(len(rows))
        self.reading.set()
        if self.hold is not None:
            await self.hold.wait()
        return rows

    async def mark_published(
        self, outbox_ids: Any, positions: Any = None
    ) -> None:  # the port's signature
        await self._inner.mark_published(outbox_ids, positions)

    async def backlog(self) -> int:
        return await self._inner.backlog()


class FakeProducer(SendsInBatches):
    """Acknowledges every send at once, into a broker that lists the test's topic."""

    def __init__(self) -> None:
        self.sent = 0
        metadata = SimpleNamespace(topics=lambda: {TOPIC})

        async def fetch_all_metadata() -> SimpleNamespace:
            return metadata

        self.client = SimpleNamespace(fetch_all_metadata=fetch_all_metadata)

    async def send(self, topic: str, **_: object) -> asyncio.Future[SimpleNamespace]:
        future: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(partition=0, offset=self.sent))
        self.sent += 1
        return future


class LockConnection:
    """The relay lock's session: the lock is always free."""

    async def fetchval(self, *_: object) -> bool:
        return True

    async def execute(self, *_: object) -> str:
        return ""

    async def add_listener(self, *_: object) -> None:
        return None

    async def remove_listener(self, *_: object) -> None:
        return None

    def is_closed(self) -> bool:
        return False

    async def close(self) -> None:
        return None


async def lock_connect() -> PgConnection:
    return cast("PgConnection", LockConnection())


def relay_over(
    store: InMemoryEventStore, *, min_interval_s: float
) -> tuple[OutboxRelay, CountingOutbox]:
    outbox = CountingOutbox(store.outbox_port())
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", None),  # the lock has its own connection; no NOTIFY
        producer=cast("AIOKafkaProducer", FakeProducer()),
        store_name="test",
        poll_interval_s=LONG_S,
        min_interval_s=min_interval_s,
        outbox=outbox,
        lock_connect=lock_connect,
    )
    return relay, outbox


async def commit(store: InMemoryEventStore, count: int, first_client: int) -> None:
    for n in range(first_client, first_client + count):
        event = recorded_event(
            "client.registered",
            {"client_type": "individual", "rm_id": "rm-7"},
            at=datetime(2026, 12, 4, 5, 0, tzinfo=UTC),
            client_id=f"C-{n}",
        )
        async with store.unit_of_work() as uow:
            uow.stage(event, topic=TOPIC, submission_hash=None)
            await uow.commit()


async def let_run(turns: int = 50) -> None:
    """Enough turns of the loop for a round over in-memory fakes to finish."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_wake_ups_during_a_round_make_one_more_round_and_leave_nothing_unpublished() -> None:
    store = InMemoryEventStore()
    relay, outbox = relay_over(store, min_interval_s=0.0)
    outbox.hold = asyncio.Event()
    await commit(store, 1, first_client=0)
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(outbox.reading.wait(), timeout=10)  # the first round has read
    for n in range(20):
        await commit(store, 1, first_client=1 + n)
        relay.wake()
    outbox.hold.set()
    outbox.hold = None
    await let_run()
    assert await outbox.backlog() == 0
    assert outbox.rounds == [1, 20]
    await relay.drain(task, timeout_s=10)
    assert outbox.rounds == [1, 20, 0]


async def test_commits_during_a_round_go_out_together_and_a_drain_does_not_wait() -> None:
    """Busy (#12): what is committed while a round runs waits out the interval and goes out
    in one round; a drain publishes it at once."""
    store = InMemoryEventStore()
    relay, outbox = relay_over(store, min_interval_s=LONG_S)
    outbox.hold = asyncio.Event()
    await commit(store, 1, first_client=0)
    task = asyncio.create_task(relay.run())
    await asyncio.wait_for(outbox.reading.wait(), timeout=10)  # the first round has read
    await commit(store, 1, first_client=1)
    relay.wake()
    outbox.hold.set()
    outbox.hold = None
    await let_run()
    assert outbox.rounds == [1]  # the commit during the round waits out the interval
    for n in range(4):
        await commit(store, 1, first_client=2 + n)
        relay.wake()
        await let_run()  # time enough for a round each, were they not spaced
    assert outbox.rounds == [1]
    assert await outbox.backlog() == 5
    relay.request_drain()
    await asyncio.wait_for(asyncio.shield(task), timeout=10)  # well before the interval ends
    assert outbox.rounds == [1, 5, 0]
    assert await outbox.backlog() == 0


async def test_a_commit_to_an_idle_relay_is_published_without_waiting_the_interval() -> None:
    """Idle (#12, Round 29): a round that ended with nothing new committed leaves the relay
    idle; the next commit starts a round at once, not the interval after the last one."""
    store = InMemoryEventStore()
    relay, outbox = relay_over(store, min_interval_s=LONG_S)
    await commit(store, 1, first_client=0)
    task = asyncio.create_task(relay.run())
    await let_run()
    assert outbox.rounds == [1]
    await commit(store, 1, first_client=1)
    relay.wake()
    await let_run()
    assert outbox.rounds == [1, 1]
    assert await outbox.backlog() == 0
    await relay.drain(task, timeout_s=10)


class NotifyingPool:
    """The write pool as a relay not holding the lock uses it: records each NOTIFY."""

    def __init__(self) -> None:
        self.notified = 0

    async def execute(self, query: str, *_: object) -> str:
        assert "pg_notify" in query
        self.notified += 1
        return "SELECT 1"


def notifier(min_interval_s: float) -> tuple[OutboxRelay, NotifyingPool]:
    pool = NotifyingPool()
    relay = OutboxRelay(
        pool=cast("asyncpg.Pool[Any]", pool),
        producer=cast("AIOKafkaProducer", FakeProducer()),
        store_name="test",
        poll_interval_s=LONG_S,
        min_interval_s=min_interval_s,
        lock_connect=lock_connect,
    )
    return relay, pool


async def test_a_process_without_the_lock_sends_one_wake_up_per_interval() -> None:
    """#12: commits in a process that does not hold the relay lock wake the holder by
    NOTIFY; those of one interval share one, and none is lost: the last commit's goes out
    when the interval ends."""
    relay, pool = notifier(min_interval_s=0.2)
    for _ in range(5):
        relay.committed()
        await let_run()  # time enough for a NOTIFY each, were they not spaced
    assert pool.notified == 1
    await asyncio.sleep(0.3)
    assert pool.notified == 2  # the commits after the first, together
    await asyncio.sleep(0.3)
    assert pool.notified == 2  # nothing committed since


async def test_without_an_interval_each_commit_after_a_sent_wake_up_sends_one() -> None:
    relay, pool = notifier(min_interval_s=0.0)
    for _ in range(5):
        relay.committed()
        await let_run()
    assert pool.notified == 5


async def test_a_cancel_that_comes_with_a_wake_up_stops_the_relay() -> None:
    # Python 3.11's wait_for dropped a cancel that came with the wake-up it waited for, and
    # the relay ran on: a stop awaiting it hung. One cancel must end it.
    store = InMemoryEventStore()
    relay, _ = relay_over(store, min_interval_s=0.0)
    task = asyncio.create_task(relay.run())
    await let_run()
    relay.wake()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=2)
    assert done
    assert task.cancelled()
