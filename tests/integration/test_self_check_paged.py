"""A consumer's self-check holds a page of events at a time, never everything (#12).

It used to load every event of the stores and every event the consumer applied, each check
(about 400 MB at 200,000 events in the audit consumer, growing with the events:
bench/profile_memory.py). Now it reads the stores' logs a page at a time, asks the consumer
about that page only, and starts the next check where every event was applied."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database
from branchline_shared.postgres.pool import open_pool
from branchline_shared.reconcile import self_repair
from branchline_shared.reconcile.running import ConsumerSource
from branchline_shared.reconcile.self_repair import SelfRepair
from branchline_shared.settings import BranchlineSettings
from tests.support.events import recorded_event
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PAGE = 4


class Consumer:
    """What the consumer applied, and every question the self-check asked it."""

    def __init__(self) -> None:
        self.applied: set[uuid.UUID] = set()
        self.asked: list[list[uuid.UUID]] = []

    async def has(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        self.asked.append(list(event_ids))
        return self.applied & set(event_ids)

    async def everything(self) -> list[object]:
        raise AssertionError("the self-check must not read everything the consumer applied")

    def first_asked(self) -> uuid.UUID:
        return self.asked[0][0]


async def stored(settings: BranchlineSettings, count: int) -> list[RecordedEvent]:
    """``count`` events in intake's store, published an hour ago (owed to every consumer);
    followup's store empty."""
    await migrate_database(settings.followup_database_url, [EVENT_STORE_MIGRATIONS])
    await migrate_database(settings.intake_database_url, [EVENT_STORE_MIGRATIONS])
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    at = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    events = [
        recorded_event(
            "client.registered",
            {"client_type": "individual", "rm_id": "rm-7"},
            at=at,
            client_id=f"C-{n}",
            branch_id="BR-001",
        )
        for n in range(count)
    ]
    try:
        async with PostgresEventStore(pool).unit_of_work() as uow:
            for event in events:
                uow.stage(event, topic="intake.events", submission_hash=None)
            await uow.commit()
        await pool.execute("UPDATE es_outbox SET published_at = now() - interval '1 hour'")
    finally:
        await pool.close()
    return events


async def outbox_rows(settings: BranchlineSettings, event: RecordedEvent) -> int:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM es_outbox WHERE event_id = $1", event.event_id
            )
        )
    finally:
        await conn.close()


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> set[uuid.UUID]:
    """The consumer's dead-letter topic (no broker in these tests)."""
    dead: set[uuid.UUID] = set()

    async def read(*_: object, **__: object) -> set[uuid.UUID]:
        return set(dead)

    monkeypatch.setattr(self_repair, "dead_lettered_ids", read)
    return dead


def checker(settings: BranchlineSettings, consumer: Consumer, full_scan_every: int) -> SelfRepair:
    return SelfRepair(
        settings,
        ConsumerSource("test-consumer", "dlq", consumer.everything, has=consumer.has),  # type: ignore[arg-type]
        interval_s=60,
        grace_s=0,
        page_size=PAGE,
        full_scan_every=full_scan_every,
    )


async def test_a_check_asks_about_a_page_at_a_time_and_repairs_what_is_missing(
    postgres_admin_url: str, tmp_path: Path, dead_letters: set[uuid.UUID]
) -> None:
    settings = make_settings(Infra(postgres_admin_url, "127.0.0.1:9"), tmp_path)
    events = await stored(settings, 25)
    consumer = Consumer()
    consumer.applied = {e.event_id for n, e in enumerate(events) if n not in (10, 11)}
    dead_letters.add(events[11].event_id)

    repaired = await checker(settings, consumer, full_scan_every=10).check(grace_s=0)

    assert repaired == 1  # event 10; event 11 waits in the dead-letter topic for its replay
    assert consumer.asked
    assert max(len(ids) for ids in consumer.asked) <= PAGE
    assert [i for ids in consumer.asked for i in ids] == [e.event_id for e in events]
    assert await outbox_rows(settings, events[10]) == 2
    assert await outbox_rows(settings, events[11]) == 1


async def test_the_next_check_starts_where_every_event_was_applied(
    postgres_admin_url: str, tmp_path: Path, dead_letters: set[uuid.UUID]
) -> None:
    settings = make_settings(Infra(postgres_admin_url, "127.0.0.1:9"), tmp_path)
    events = await stored(settings, 25)
    consumer = Consumer()
    consumer.applied = {e.event_id for n, e in enumerate(events) if n != 10}
    check = checker(settings, consumer, full_scan_every=3)

    await check.check(grace_s=0)  # the first check reads everything, repairs event 10
    consumer.asked.clear()
    await check.check(grace_s=0)
    assert consumer.first_asked() == events[10].event_id  # 0-9 were settled
    consumer.applied.add(events[10].event_id)  # the repair arrived
    consumer.asked.clear()
    await check.check(grace_s=0)
    assert consumer.first_asked() == events[10].event_id
    consumer.asked.clear()
    await check.check(grace_s=0)  # the third after a full one: from the beginning again
    assert consumer.first_asked() == events[0].event_id
    consumer.asked.clear()
    await check.check(grace_s=0)
    assert consumer.asked == []  # everything settled: nothing after it
    consumer.asked.clear()
    await check.check(trigger="log_reset", grace_s=0)  # the broker lost its log: all again
    assert consumer.first_asked() == events[0].event_id
