"""A consumer's self-check holds a page of events at a time, never everything (#12).

It used to load every event of the stores and every event the consumer applied, each check
(about 400 MB at 200,000 events in the audit consumer, growing with the events:
bench/profile_memory.py). Now it reads the stores' logs a page at a time, asks the consumer
about that page only, and starts the next check where every event was applied."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database
from branchline_shared.postgres.pool import open_pool
from branchline_shared.reconcile import self_repair
from branchline_shared.reconcile.compare import StoreEvent
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


asked: list[list[uuid.UUID]] = []
"""What the self-check asked the dead-letter topic, an ask a list of ids (:func:`dead_letters`)."""


@pytest.fixture
def dead_letters(monkeypatch: pytest.MonkeyPatch) -> set[uuid.UUID]:
    """The consumer's dead-letter topic (no broker in these tests)."""
    dead: set[uuid.UUID] = set()
    asked.clear()

    async def among(_bootstrap: str, _topic: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        asked.append(list(ids))
        return dead & set(ids)

    monkeypatch.setattr(self_repair, "dead_lettered_among", among)
    return dead


def checker(
    settings: BranchlineSettings,
    consumer: Consumer,
    full_scan_every: int,
    *,
    page_size: int = PAGE,
    walk_slice: int = 500,
) -> SelfRepair:
    return SelfRepair(
        settings,
        ConsumerSource("test-consumer", "dlq", consumer.everything, has=consumer.has),  # type: ignore[arg-type]
        interval_s=60,
        grace_s=0,
        page_size=page_size,
        full_scan_every=full_scan_every,
        walk_slice=walk_slice,
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


async def test_a_check_asks_the_dead_letter_topic_only_about_the_events_it_found_owed(
    postgres_admin_url: str, tmp_path: Path, dead_letters: set[uuid.UUID]
) -> None:
    """Not every id of the topic, each check (#12): a healthy stack reads no topic, and a
    check with events owed asks about those of a page, no more."""
    settings = make_settings(Infra(postgres_admin_url, "127.0.0.1:9"), tmp_path)
    events = await stored(settings, 25)
    consumer = Consumer()
    consumer.applied = {e.event_id for e in events}

    assert await checker(settings, consumer, full_scan_every=1).check(grace_s=0) == 0
    assert asked == []

    owed = {3, 11, 12}
    consumer.applied = {e.event_id for n, e in enumerate(events) if n not in owed}
    dead_letters.add(events[11].event_id)
    assert await checker(settings, consumer, full_scan_every=1).check(grace_s=0) == 2
    assert asked
    assert max(len(ids) for ids in asked) <= PAGE
    assert sorted(i for ids in asked for i in ids) == sorted(events[n].event_id for n in owed)


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


async def requeued_ids(settings: BranchlineSettings) -> list[uuid.UUID]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch("SELECT event_id FROM es_outbox WHERE requeued ORDER BY id")
        await conn.execute("DELETE FROM es_outbox WHERE requeued")
        return [r["event_id"] for r in rows]
    finally:
        await conn.close()


async def test_the_verdicts_do_not_depend_on_the_page_or_the_slice_walked_at_once(
    postgres_admin_url: str, tmp_path: Path, dead_letters: set[uuid.UUID]
) -> None:
    """The page is walked in slices with the loop free between them (#12): what a check
    re-queues, what it finds owed and where the next one starts are the same whatever the
    sizes."""
    settings = make_settings(Infra(postgres_admin_url, "127.0.0.1:9"), tmp_path)
    events = await stored(settings, 25)
    conn = await asyncpg.connect(settings.intake_database_url)
    try:  # event 17 not published yet: in flight, neither owed nor settled past
        await conn.execute(
            "UPDATE es_outbox SET published_at = NULL WHERE event_id = $1", events[17].event_id
        )
    finally:
        await conn.close()
    not_applied = {3, 10, 11, 17, 24}
    dead_letters.add(events[11].event_id)
    seen = set()
    for page_size, walk_slice in ((4, 500), (4, 1), (25, 3), (7, 2), (100, 500)):
        consumer = Consumer()
        consumer.applied = {e.event_id for n, e in enumerate(events) if n not in not_applied}
        check = checker(
            settings, consumer, full_scan_every=10, page_size=page_size, walk_slice=walk_slice
        )
        repaired = await check.check(grace_s=0)
        requeued = await requeued_ids(settings)
        consumer.asked.clear()
        await check.check(grace_s=0)  # starts where every event before was applied
        await requeued_ids(settings)
        seen.add((repaired, tuple(requeued), consumer.first_asked()))
    assert seen == {
        (3, (events[3].event_id, events[10].event_id, events[24].event_id), events[3].event_id)
    }


async def test_a_page_is_walked_in_slices_with_the_loop_free_between_them(
    postgres_admin_url: str,
    tmp_path: Path,
    dead_letters: set[uuid.UUID],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A consumer's own work runs between the slices of a page's walk, not only at the
    check's reads (#12: the walk was one step of the consumer's event loop per page)."""
    settings = make_settings(Infra(postgres_admin_url, "127.0.0.1:9"), tmp_path)
    await stored(settings, 20)
    ticks = 0
    at_each: list[int] = []
    build = self_repair.store_event

    def store_event(*args: Any) -> StoreEvent:
        at_each.append(ticks)
        return build(*args)

    monkeypatch.setattr(self_repair, "store_event", store_event)

    async def other_work() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    working = asyncio.create_task(other_work())
    try:
        repaired = await checker(
            settings, Consumer(), full_scan_every=10, page_size=20, walk_slice=5
        ).check(grace_s=0)
    finally:
        working.cancel()
    assert repaired == 20  # nothing applied: every event owed, one page
    slices = [at_each[n : n + 5] for n in range(0, 20, 5)]
    assert all(len(set(s)) == 1 for s in slices)  # a slice at once
    assert [s[0] for s in slices] == sorted({s[0] for s in slices})  # other work in between
