"""A re-queued outbox row is published with the ``requeued`` header, a first publication
without (#12, eventstore migration 005): the followup worker skips the first copy of its own
events unread and must still apply one that a repair re-queued because its read models miss
it. End to end: the worker's self-repair restores an own event its read models lost."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from branchline_followup.adapters.reconciling import read_models_have
from branchline_followup.bootstrap import running_worker, worker_self_repair
from branchline_intake.bootstrap import create_app
from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.eventstore.relay import OutboxRelay
from branchline_shared.http.auth import Role
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.migrations import EVENT_STORE_MIGRATIONS, load_migrations, migrate
from branchline_shared.postgres.pool import ensure_database, open_pool
from branchline_shared.reconcile.stores import read_store_page, requeue
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_intake_api import registration
from tests.support.events import recorded_event
from tests.support.published import published
from tests.support.stack import Infra, eventually, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def on_the_broker(
    settings: BranchlineSettings, topic: str, count: int
) -> list[dict[str, bytes]]:
    """The headers of the first ``count`` messages of ``topic`` (all partitions, no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(settings.topic_partitions)])
        found: list[dict[str, bytes]] = []

        async def all_read() -> bool | None:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(dict(r.headers) for r in records)
            return True if len(found) >= count else None

        await eventually(all_read, within=30)
        return found
    finally:
        await consumer.stop()


async def test_the_relay_marks_only_the_rows_a_repair_re_queued(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)
    await published(settings, 3)  # three first publications, by the real relay
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    producer = make_producer(settings, client_id="test-relay")
    await producer.start()
    try:
        async with pool.acquire() as conn:
            page = await read_store_page(conn, "intake", after=LogPosition.start(), limit=10)
            assert len(page) == 3
            # as the repair re-queues it: with the topic of its outbox row
            again = dataclasses.replace(page[1], topic=declare_topics(settings).intake_events.name)
            assert await requeue(conn, [again]) == 1
        assert await OutboxRelay(pool=pool, producer=producer, store_name="intake").publish_once()
        rows = await pool.fetch("SELECT event_id, requeued FROM es_outbox ORDER BY id")
    finally:
        await producer.stop()
        await pool.close()
    assert [(r["event_id"] == again.event_id, r["requeued"]) for r in rows[3:]] == [(True, True)]
    assert not any(r["requeued"] for r in rows[:3])

    copies = await on_the_broker(settings, declare_topics(settings).intake_events.name, 4)
    assert len(copies) == 4
    marked = [h for h in copies if "requeued" in h]
    assert [(h["event_id"], h["requeued"]) for h in marked] == [
        (str(again.event_id).encode(), b"1")
    ]
    assert sorted(h["event_id"] for h in copies if "requeued" not in h) == sorted(
        str(r["event_id"]).encode() for r in rows[:3]
    )


async def _fetch(dsn: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def test_the_self_repair_restores_an_own_event_the_read_models_lost(
    infra: Infra, tmp_path: Path
) -> None:
    """followup's read models lose one of its own events (swapped in by a rebuild from a
    broker that had lost it): the worker skipped its first copy unread, as every first copy of
    its own; its self-check re-queues it, the relay marks the copy re-queued and the worker
    applies it (without the mark it would skip that copy too, and the check re-queue it at
    every run, for good)."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    tokens = TokenFactory(settings)
    dsn = settings.followup_database_url
    async with (
        serve(create_app(settings)) as url,
        running_worker(settings) as runtime,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=10
        ) as intake,
    ):
        assert (await intake.post("/v1/events", json=registration("C-OWN"))).status_code == 202

        async def creation_published() -> uuid.UUID | None:
            found: uuid.UUID | None = await _fetch(
                dsn,
                "SELECT e.event_id FROM public.es_events e JOIN public.es_outbox o "
                "USING (event_id) WHERE e.type = 'followup.task_created' "
                "AND o.published_at IS NOT NULL LIMIT 1",
            )
            return found

        lost = await eventually(creation_published, within=30)
        assert await read_models_have(runtime.pool, [lost]) == {lost}
        await _fetch(dsn, "DELETE FROM fu_read.fu_applied_events WHERE event_id = $1", lost)

        repair = worker_self_repair(settings, runtime)
        assert repair is not None

        async def re_queued() -> int | None:
            # owed once the worker's group committed past the first copy (acked unread)
            return await repair.check() or None

        assert await eventually(re_queued, within=40, interval=0.5) == 1

        async def applied_again() -> bool | None:
            return True if await read_models_have(runtime.pool, [lost]) == {lost} else None

        await eventually(applied_again, within=30)
        marks = await _fetch(
            dsn,
            "SELECT array_agg(requeued ORDER BY id) FROM public.es_outbox WHERE event_id = $1",
            lost,
        )
        assert marks == [False, True]


async def test_migration_005_marks_the_rows_re_queued_before_it_that_are_unpublished(
    infra: Infra, tmp_path: Path
) -> None:
    """Rows an older version re-queued and its relay has not published yet go out marked
    after the upgrade; a first row is never marked, nor a row already published (its copy
    went out without the header whatever the column says)."""
    settings = make_settings(infra, tmp_path)
    dsn = settings.intake_database_url
    await ensure_database(dsn)
    _, package = EVENT_STORE_MIGRATIONS
    series = load_migrations(package)
    assert [m.version for m in series][4] == 5
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, "eventstore", series[:4])
        events = [
            recorded_event(
                "client.registered",
                {"client_type": "individual", "rm_id": "rm-7"},
                at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
                client_id=client,
                branch_id="BR-001",
            )
            for client in ("C-1", "C-2")
        ]
        pool = await open_pool(dsn, min_size=1, max_size=1)
        try:
            async with PostgresEventStore(pool).unit_of_work() as uow:
                for event in events:
                    uow.stage(event, topic="t", submission_hash=None)
                await uow.commit()
        finally:
            await pool.close()
        # as the older version's requeue left them: C-1's second row published, its third
        # and C-2's second not yet
        await conn.execute("UPDATE es_outbox SET published_at = now()")
        for again, published_at in ((events[0], "now()"), (events[0], "NULL"), (events[1], "NULL")):
            await conn.execute(
                "INSERT INTO es_outbox (event_id, topic, message_key, published_at) "
                f"SELECT event_id, topic, message_key, {published_at} FROM es_outbox "
                "WHERE event_id = $1 ORDER BY id LIMIT 1",
                again.event_id,
            )
        await migrate(conn, "eventstore", series)
        rows = await conn.fetch("SELECT event_id, requeued FROM es_outbox ORDER BY id")
    finally:
        await conn.close()
    first, second = (e.event_id for e in events)
    assert [(r["event_id"], r["requeued"]) for r in rows] == [
        (first, False),
        (second, False),
        (first, False),
        (first, True),
        (second, True),
    ]
