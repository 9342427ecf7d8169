"""ADR-0001: a reader that follows the global position never skips an event whose
transaction took a lower position but committed later (the projection-gap bug)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.eventstore.postgres import PostgresEventStore, PostgresUnitOfWork
from branchline_shared.postgres.migrations import load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database, open_pool
from tests.support.stack import Infra, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def event(client: str) -> RecordedEvent:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type="client.registered",
        occurred_at=now,
        recorded_at=now,
        source="test",
        actor=Actor(id="s", role="teller"),
        client_id=client,
        stream_id=f"client-{client}",
        stream_version=1,
        data={"client_type": "individual", "rm_id": "rm-1"},
    )


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool[Any]]:
    url = infra.database_url(unique("gap_"))
    await ensure_database(url)
    pool = await open_pool(url, max_size=20)
    async with pool.acquire() as conn:
        await migrate(
            conn, "eventstore", load_migrations("branchline_shared.eventstore.migrations")
        )
    yield pool
    await pool.close()


async def test_a_late_commit_with_a_lower_position_is_not_skipped(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresEventStore(pool)
    slow_conn = await pool.acquire()
    try:
        slow_tx = slow_conn.transaction()
        await slow_tx.start()
        slow = PostgresUnitOfWork(slow_conn)
        await slow.lock_streams(["client-slow"])
        slow.stage(event("slow"), topic="t", submission_hash=None)
        (slow_position,) = await slow.commit()  # inserted, transaction still open

        async with store.unit_of_work() as fast:
            await fast.lock_streams(["client-fast"])
            fast.stage(event("fast"), topic="t", submission_hash=None)
            (fast_position,) = await fast.commit()
        assert slow_position.global_position < fast_position.global_position

        # The fast event is committed, but reading it now would let the reader move past
        # the slow one's lower position: the log must hold it back.
        assert await store.read_log(LogPosition.start()) == []
        await slow_tx.commit()
    finally:
        await pool.release(slow_conn)

    records = await store.read_log(LogPosition.start())
    assert [r.event.client_id for r in records] == ["slow", "fast"]


async def test_many_concurrent_writers_a_follower_sees_every_event_exactly_once(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresEventStore(pool)
    written: list[str] = []
    seen: list[str] = []
    done = asyncio.Event()

    async def writer(n: int) -> None:
        for i in range(25):
            async with store.unit_of_work() as uow:
                client = f"w{n}-{i}"
                await uow.lock_streams([f"client-{client}"])
                uow.stage(event(client), topic="t", submission_hash=None)
                await uow.commit()
                await asyncio.sleep(0.001 * ((n + i) % 3))  # commit after a pause, sometimes
            written.append(client)

    async def follower() -> None:
        after = LogPosition.start()
        while True:
            # Asked before the read: a read already under way when the last writer commits
            # may come back empty (its snapshot predates that commit) after ``done`` is set.
            writers_finished = done.is_set()
            page = await store.read_log(after, limit=7)
            seen.extend(r.event.client_id for r in page)
            if page:
                after = page[-1].log_position
            elif writers_finished:
                return
            await asyncio.sleep(0.001)

    reader = asyncio.create_task(follower())
    await asyncio.gather(*[writer(n) for n in range(8)])
    done.set()
    await asyncio.wait_for(reader, timeout=20)
    assert len(seen) == len(set(seen)) == 200
    assert set(seen) == set(written)
