"""A consumer's self-check re-queues what the consumer skipped, not what it has not reached
yet (#12).

The check used to count every event published more than the grace period ago and not
applied as owed, so a consumer lagging further behind had every event it had not read yet
re-queued at each check (2,811 events after a 60,000-event fill). Now the relay records
where the broker put each event, and the check compares that with the consumer group's
committed offsets: an event ahead of them is left alone, one they passed is re-queued."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.reconciling import ledger_has
from branchline_audit.bootstrap import self_repair as audit_self_repair
from branchline_followup.bootstrap import worker_self_repair
from branchline_followup.entrypoints.worker import create_worker_consumer
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.kafka.group_offsets import GroupOffsets
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, migrate_database
from branchline_shared.postgres.pool import open_pool
from branchline_shared.reconcile import self_repair
from branchline_shared.reconcile.running import ConsumerSource
from branchline_shared.reconcile.self_repair import SelfRepair
from branchline_shared.settings import BranchlineSettings
from tests.support.consumers import audit_consumer
from tests.support.events import recorded_event
from tests.support.published import published
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

EVENTS = 24


class Consumer:
    def __init__(self) -> None:
        self.applied: set[uuid.UUID] = set()

    async def has(self, event_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        return self.applied & set(event_ids)

    async def everything(self) -> list[Any]:
        raise AssertionError("the self-check must not read everything the consumer applied")


@pytest.fixture
def no_dead_letters(monkeypatch: pytest.MonkeyPatch) -> None:
    async def none(*_: object, **__: object) -> set[uuid.UUID]:
        return set()

    monkeypatch.setattr(self_repair, "dead_lettered_among", none)


async def commit(settings: BranchlineSettings, group: str, offsets: dict[int, int]) -> None:
    """The group's committed offsets on intake's topic, as a consumer that read up to them
    would have left them (assigned, not joined: nothing else is in the group)."""
    topic = declare_topics(settings).intake_events.name
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in offsets])
        await consumer.commit({TopicPartition(topic, p): o for p, o in offsets.items()})
    finally:
        await consumer.stop()


async def outbox_rows(settings: BranchlineSettings) -> dict[uuid.UUID, int]:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch("SELECT event_id, count(*) AS n FROM es_outbox GROUP BY event_id")
    finally:
        await conn.close()
    return {r["event_id"]: r["n"] for r in rows}


def checker(settings: BranchlineSettings, consumer: Consumer, group: str | None) -> SelfRepair:
    topics = declare_topics(settings)
    return SelfRepair(
        settings,
        ConsumerSource(
            "test-consumer",
            topics.audit_consumer_dlq.name,
            consumer.everything,
            has=consumer.has,
            group_id=group,
            topics=tuple(topics.event_topics()),
        ),
        interval_s=60,
        grace_s=10,
    )


async def test_a_lagging_consumer_gets_only_what_it_skipped_re_queued(
    infra: Infra, tmp_path: Path, no_dead_letters: None
) -> None:
    settings = make_settings(infra, tmp_path)
    positions = await published(settings, EVENTS)
    assert all(p is not None and o is not None for p, o in positions.values())
    # The consumer read each partition half-way (committed: the next offset it reads) and
    # applied what it read, except one event it skipped; the rest it has not reached.
    ends: dict[int, int] = {}
    for partition, offset in positions.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    committed = {p: end // 2 for p, end in ends.items()}
    passed = {e for e, (p, o) in positions.items() if o < committed[p]}
    ahead = set(positions) - passed
    skipped = min(passed, key=lambda e: positions[e])
    # Both kinds are there: the test can tell them apart.
    assert ahead
    assert len(passed) > 1
    group = f"group-{uuid.uuid4().hex[:8]}"
    await commit(settings, group, committed)
    consumer = Consumer()
    consumer.applied = passed - {skipped}

    check = checker(settings, consumer, group)
    repaired = await check.check()

    assert repaired == 1
    assert check.not_reached == len(ahead)
    rows = await outbox_rows(settings)
    assert rows[skipped] == 2
    assert {e for e, n in rows.items() if n > 1} == {skipped}

    # The consumer reads on to the end, applying everything: nothing is owed any more.
    consumer.applied = set(positions)
    await commit(settings, group, ends)
    assert await checker(settings, consumer, group).check() == 0


async def test_a_jump_triggered_check_re_queues_what_was_skipped_not_what_lags(
    infra: Infra, tmp_path: Path, no_dead_letters: None
) -> None:
    # A position jump used to re-queue every event published and not applied, so a lagging
    # consumer had everything ahead of it re-published at each jump. Now the jump's check
    # judges by the group's offsets too; where the broker cannot tell (no position
    # recorded) it still re-queues at once, without waiting for a grace period.
    settings = make_settings(infra, tmp_path)
    positions = await published(settings, EVENTS)
    ends: dict[int, int] = {}
    for partition, offset in positions.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    committed = {p: end // 2 for p, end in ends.items()}
    passed = {e for e, (p, o) in positions.items() if o < committed[p]}
    ahead = set(positions) - passed
    skipped = min(passed, key=lambda e: positions[e])
    assert ahead
    assert len(passed) > 1
    conn = await asyncpg.connect(settings.intake_database_url)
    try:  # published a moment ago, where the broker cannot be asked about it
        unplaced = await conn.fetchval(
            "UPDATE es_outbox SET published_at = now(), published_partition = NULL, "
            "published_offset = NULL WHERE event_id = ("
            "SELECT event_id FROM es_outbox ORDER BY id DESC LIMIT 1) RETURNING event_id"
        )
    finally:
        await conn.close()
    group = f"group-{uuid.uuid4().hex[:8]}"
    await commit(settings, group, committed)
    consumer = Consumer()
    consumer.applied = passed - {skipped, unplaced}

    check = checker(settings, consumer, group)
    repaired = await check.check(trigger="position_jump", grace_s=0)  # as run() calls it

    assert repaired == 2
    assert check.not_reached == len(ahead - {unplaced})
    rows = await outbox_rows(settings)
    assert {e for e, n in rows.items() if n > 1} == {skipped, unplaced}


@pytest.mark.parametrize("cut_in", ["committed", "has"])
async def test_a_check_cut_short_closes_its_broker_client(
    infra: Infra,
    tmp_path: Path,
    no_dead_letters: None,
    monkeypatch: pytest.MonkeyPatch,
    cut_in: str,
) -> None:
    # A worker stopping mid-check cancels it: while the group's offsets are read, or while
    # the consumer is asked what it applied. Either way the client must be stopped; left
    # open, its broker connections leaked (an unclosed socket, seen in CI).
    settings = make_settings(infra, tmp_path)
    await published(settings, EVENTS)
    inside = asyncio.Event()
    opened: list[GroupOffsets] = []

    async def stuck(*_: object) -> Any:
        inside.set()
        await asyncio.Event().wait()

    real_enter = GroupOffsets.__aenter__

    async def enter(self: GroupOffsets) -> GroupOffsets:
        opened.append(self)
        return await real_enter(self)

    monkeypatch.setattr(GroupOffsets, "__aenter__", enter)
    consumer = Consumer()
    if cut_in == "committed":
        monkeypatch.setattr(GroupOffsets, "committed", stuck)
    else:
        consumer.has = stuck  # type: ignore[method-assign]
    running = asyncio.create_task(checker(settings, consumer, "group-cut").check())
    await asyncio.wait_for(inside.wait(), 30)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert len(opened) == 1
    assert getattr(opened[0], "_consumer")._closed  # noqa: B009


async def test_without_the_group_the_grace_period_judges_as_before(
    infra: Infra, tmp_path: Path, no_dead_letters: None
) -> None:
    settings = make_settings(infra, tmp_path)
    positions = await published(settings, EVENTS)
    consumer = Consumer()  # applied nothing, and its group never committed anything

    assert await checker(settings, consumer, f"group-{uuid.uuid4().hex[:8]}").check() == 0
    assert await checker(settings, consumer, None).check() == len(positions)
    # Each copy with its original's key (its partition), queued in log order.
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        copies = await conn.fetch(
            "SELECT c.message_key AS copy, o.message_key AS original, e.global_position "
            "FROM es_outbox c JOIN es_outbox o ON o.event_id = c.event_id AND o.id < c.id "
            "JOIN es_events e ON e.event_id = c.event_id ORDER BY c.id"
        )
    finally:
        await conn.close()
    assert len(copies) == len(positions)
    assert all(r["copy"] == r["original"] for r in copies)
    order = [r["global_position"] for r in copies]
    assert order == sorted(order)


async def test_an_unreachable_broker_falls_back_to_the_grace_period_and_says_so_once(
    postgres_admin_url: str,
    tmp_path: Path,
    no_dead_letters: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(Infra(postgres_admin_url, "127.0.0.1:9"), tmp_path)
    await migrate_database(settings.followup_database_url, [EVENT_STORE_MIGRATIONS])
    await migrate_database(settings.intake_database_url, [EVENT_STORE_MIGRATIONS])
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    at = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    try:
        async with PostgresEventStore(pool).unit_of_work() as uow:
            uow.stage(
                recorded_event(
                    "client.registered",
                    {"client_type": "individual", "rm_id": "rm-7"},
                    at=at,
                    client_id="C-1",
                    branch_id="BR-001",
                ),
                topic="intake.events",
                submission_hash=None,
            )
            await uow.commit()
        # Published an hour ago, at a recorded position the broker cannot be asked about.
        await pool.execute(
            "UPDATE es_outbox SET published_at = now() - interval '1 hour', "
            "published_partition = 0, published_offset = 0"
        )
    finally:
        await pool.close()
    check = checker(settings, Consumer(), "some-group")

    with caplog.at_level(logging.WARNING, logger=self_repair.__name__):
        assert await check.check() == 1
        # The copy it re-queued published long ago too, still not applied: owed again by
        # the grace rule, the broker still away; no new warning.
        conn = await asyncpg.connect(settings.intake_database_url)
        try:
            await conn.execute("UPDATE es_outbox SET published_at = now() - interval '1 hour'")
        finally:
            await conn.close()
        assert await check.check() == 1

    said = [r for r in caplog.records if "offsets not readable" in r.getMessage()]
    assert len(said) == 1


async def test_the_audit_consumer_checks_itself_by_its_own_group(
    infra: Infra, tmp_path: Path, no_dead_letters: None
) -> None:
    """The audit consumer's self-check, wired as it runs, asks the broker about the group
    the consumer commits in: after the consumer read a first batch and stopped, a second
    batch is not reached (not re-queued), and an event whose recorded position it passed
    without applying it is re-queued."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600)
    read = await published(settings, 6)
    async with audit_consumer(settings):
        pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
        try:
            await eventually(lambda: _has_all(pool, read), within=60)
        finally:
            await pool.close()
    behind = set(await published(settings, 6, first=100)) - set(read)
    # An event stored and dated published at the position of one the consumer read: as if
    # the broker had lost it there (the consumer passed that offset; it never got the event).
    store = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    try:
        lost = recorded_event(
            "client.registered",
            {"client_type": "individual", "rm_id": "rm-7"},
            at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
            client_id="C-lost",
            branch_id="BR-001",
        )
        async with PostgresEventStore(store).unit_of_work() as uow:
            uow.stage(lost, topic=declare_topics(settings).intake_events.name, submission_hash=None)
            await uow.commit()
        partition, offset = min(read.values())
        await store.execute(
            "UPDATE es_outbox SET published_at = now() - interval '1 hour', "
            "published_partition = $2, published_offset = $3 WHERE event_id = $1",
            lost.event_id,
            partition,
            offset,
        )
    finally:
        await store.close()

    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
    try:
        repair = audit_self_repair(settings, pool)
        assert repair is not None
        assert await repair.check() == 1
    finally:
        await pool.close()
    assert repair.not_reached == len(behind)
    rows = await outbox_rows(settings)
    assert {e for e, n in rows.items() if n > 1} == {lost.event_id}


async def test_the_followup_worker_checks_itself_by_its_consumers_group(
    settings: BranchlineSettings,
) -> None:
    """The worker's self-check asks about the group its consumer commits in and the topics it
    reads (a check of the wiring only; the audit test above runs it)."""
    topics = declare_topics(settings)
    consumer = create_worker_consumer(settings, topics, None, None)  # type: ignore[arg-type]
    repair = worker_self_repair(settings, SimpleNamespace(pool=None, topics=topics))  # type: ignore[arg-type]
    assert repair is not None
    assert repair.consumer.group_id == consumer._group_id
    assert set(repair.consumer.topics) == set(consumer._topics)


async def _has_all(pool: Any, events: dict[uuid.UUID, tuple[int, int]]) -> bool:
    return await ledger_has(pool, list(events)) == set(events)
