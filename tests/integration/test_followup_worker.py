"""The followup worker's consumer on the real broker and PostgreSQL: effectively once, poison
events dead-lettered, restarts survived."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from branchline_followup.bootstrap import prepare_database
from branchline_followup.entrypoints.worker import CONSUMER, create_worker_consumer
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.consuming import DeadLetters, stop_batch_consumer
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.support.events import recorded_event
from tests.support.kafka import produce, read_all
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def registered(client_id: str, rm_id: str = "rm-7") -> RecordedEvent:
    return recorded_event(
        "client.registered",
        {"client_type": "corporate", "rm_id": rm_id},
        at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
        client_id=client_id,
        branch_id="BR-001",
    )


class Worker:
    """The worker as its process runs it, started and stopped in-process."""

    def __init__(self, settings: BranchlineSettings, *, pool_min: int = 1) -> None:
        self.settings = settings
        self.topics = declare_topics(settings)
        self.pool_min = pool_min

    async def __aenter__(self) -> Worker:
        await prepare_database(self.settings)
        await ensure_topics(self.settings.kafka_bootstrap, self.topics.all())
        self.pool = await open_pool(self.settings.followup_database_url, min_size=self.pool_min)
        self.producer = make_producer(self.settings, client_id="test-dlq")
        await self.producer.start()
        self.consumer = create_worker_consumer(
            self.settings,
            self.topics,
            self.pool,
            DeadLetters(self.producer, self.topics.followup_worker_dlq.name, CONSUMER),
        )
        self.task = asyncio.create_task(self.consumer.run())
        return self

    async def __aexit__(self, *_: object) -> None:
        await stop_batch_consumer(self.consumer, self.task, timeout_s=20)
        await self.producer.stop()
        await self.pool.close()


@pytest.fixture
async def db(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Connection[Any]]:
    await prepare_database(settings)
    conn = await asyncpg.connect(settings.followup_database_url)
    yield conn
    await conn.close()


async def send(settings: BranchlineSettings, *events: RecordedEvent) -> None:
    topic = declare_topics(settings).intake_events.name
    await produce(
        settings.kafka_bootstrap,
        topic,
        [(e.client_id.encode(), e.model_dump_json().encode()) for e in events],
    )


async def test_registered_client_reaches_the_read_model(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    async with Worker(settings):
        await send(settings, registered("C-1"))
        row = await eventually(
            lambda: db.fetchrow("SELECT * FROM fu_clients WHERE client_id = 'C-1'")
        )
    assert row["client_type"] == "corporate"
    assert row["rm_id"] == "rm-7"


async def test_redelivered_event_changes_nothing(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    first = registered("C-2", rm_id="rm-1")
    async with Worker(settings):
        await send(settings, first, first, first)
        await send(settings, registered("C-marker"))  # same partition order is not assumed
        await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM fu_applied_events"))
        await eventually(lambda: db.fetchrow("SELECT 1 FROM fu_clients WHERE client_id='C-2'"))
    assert (
        await db.fetchval(
            "SELECT count(*) FROM fu_applied_events WHERE event_id = $1", first.event_id
        )
        == 1
    )
    assert await db.fetchval("SELECT count(*) FROM fu_clients") == 2


async def test_poison_event_is_dead_lettered_with_the_reason_and_the_rest_goes_on(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    topics = declare_topics(settings)
    async with Worker(settings):
        await produce(
            settings.kafka_bootstrap,
            topics.intake_events.name,
            [(b"C-3", b"{not json"), (b"C-3", b'{"type": "client.registered"}')],
        )
        await send(settings, registered("C-3"))
        await eventually(lambda: db.fetchrow("SELECT 1 FROM fu_clients WHERE client_id='C-3'"))
    dead = await read_all(settings.kafka_bootstrap, topics.followup_worker_dlq.name, expect=2)
    assert [r.value for r in dead] == [b"{not json", b'{"type": "client.registered"}']
    reasons = [dict(r.headers)["dlq_reason"].decode() for r in dead]
    assert all("not a Branchline event envelope" in r for r in reasons)
    assert dict(dead[0].headers)["dlq_consumer"] == CONSUMER.encode()


async def test_restarted_worker_loses_nothing_and_applies_nothing_twice(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    events = [registered(f"C-r{i}") for i in range(30)]
    async with Worker(settings):
        await send(settings, *events[:15])
        await eventually(lambda: db.fetchval("SELECT count(*) >= 5 FROM fu_clients"))
    await send(settings, *events[15:])
    async with Worker(settings):
        await eventually(lambda: db.fetchval("SELECT count(*) = 30 FROM fu_clients"))
    assert await db.fetchval("SELECT count(*) FROM fu_applied_events") == 30


@pytest.mark.chaos
async def test_the_worker_waits_out_a_database_outage_and_loses_nothing(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """PostgreSQL unreachable mid-stream: the agent retries the event it holds (offsets are not
    committed past it); once the database is back every event is applied once."""
    from urllib.parse import urlsplit, urlunsplit

    from prometheus_client import REGISTRY

    from tests.support.proxy import cuttable

    def retries() -> float:
        value = REGISTRY.get_sample_value(
            "branchline_consumer_retries_total", {"consumer": CONSUMER}
        )
        return value or 0.0

    target = urlsplit(settings.followup_database_url)
    async with cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        cut_off = settings.model_copy(
            update={"followup_database_url": urlunsplit(target._replace(netloc=netloc))}
        )
        async with Worker(cut_off):
            await send(settings, *[registered(f"C-o{i}") for i in range(5)])
            await eventually(lambda: db.fetchval("SELECT count(*) = 5 FROM fu_clients"))
            before = retries()
            await proxy.cut()
            await send(settings, *[registered(f"C-o{i}") for i in range(5, 10)])

            async def retried() -> bool:
                return retries() > before

            await eventually(retried)
            await proxy.restore()
            await eventually(lambda: db.fetchval("SELECT count(*) = 10 FROM fu_clients"))
    assert await db.fetchval("SELECT count(*) FROM fu_applied_events") == 10


async def test_the_worker_retries_a_batch_on_a_connection_whose_session_was_ended(
    settings: BranchlineSettings, db: asyncpg.Connection[Any]
) -> None:
    """PostgreSQL ends the sessions of the worker's idle pooled connections (a restart, an
    idle session timeout); a proxy passes each one's FATAL error on at once and holds its close
    until the test is done (a fixed 5 s was a deadline a loaded machine could outrun), so the
    next batch takes a connection in between. asyncpg failed it with an ``InternalClientError``,
    no transient fault: the batch was dead-lettered (#12). Now the connection ends itself as
    lost, the pool drops it, the batch is retried and applied."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.proxy import cuttable, end_sessions_behind

    target = urlsplit(settings.followup_database_url)
    async with cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        via_proxy = settings.model_copy(
            update={"followup_database_url": urlunsplit(target._replace(netloc=netloc))}
        )
        async with Worker(via_proxy, pool_min=4):  # four idle connections, all ended
            await send(settings, *[registered(f"C-g{i}") for i in range(5)])
            await eventually(lambda: db.fetchval("SELECT count(*) = 5 FROM fu_clients"))
            with proxy.holding_closes():  # until the batch is applied, however late
                await end_sessions_behind(proxy, settings.followup_database_url)
                passed = proxy.closes_passed
                await send(settings, *[registered(f"C-g{i}") for i in range(5, 10)])
                await eventually(lambda: db.fetchval("SELECT count(*) = 10 FROM fu_clients"))
                assert proxy.closes_passed == passed  # applied before the ended ones' close came
    assert await db.fetchval("SELECT count(*) FROM fu_applied_events") == 10
