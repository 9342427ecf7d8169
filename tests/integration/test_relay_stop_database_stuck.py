"""A stop while the relay's round waits on PostgreSQL, the broker up (#12, Round 35): the drain
gives the round's statement the stop's patience (``relay.STOP_PATIENCE_S``, 1 s), then ends;
the round is cancelled (asyncpg cancels the statement) and its rows stay unmarked for the next
relay. Before, the drain waited for its whole bound (``shutdown_flush_timeout_s``).

Another session holds what the round's statement needs: the rows' locks (``FOR UPDATE``: the
marking waits, after the broker acknowledged the sends) or the table's (``ACCESS EXCLUSIVE``:
the outbox read waits). The test's steps follow ``pg_stat_activity`` (the relay's statement
waiting on a lock) and the relay's NOTIFY wake-up (its poll set far away), not sleeps. After a
restart every event is on the topic at least once (the marking's sends went out before it was
cancelled: those reach the topic twice, which the consumers' event ids absorb).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.pool import open_pool
from tests.integration.test_relay_drain import commit
from tests.integration.test_stop_with_the_broker_down import SERVICES, unmarked
from tests.support.kafka import read_all
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DRAIN_S = 40.0
"""The relay's drain bound (``shutdown_flush_timeout_s``), far above the stop's."""
STOP_S = 10.0
"""What the stop may take: the statement's patience (1 s), its cancel and the closes (~1.5 s
measured), widened for a loaded machine; far under the old drain's bound (``DRAIN_S``)."""

HOLDS = {
    # what the other session holds: (its statement, the relay's statement that waits on it)
    "mark": (
        "SELECT id FROM es_outbox WHERE published_at IS NULL FOR UPDATE",
        "UPDATE es_outbox",
    ),
    "read": ("LOCK TABLE es_outbox IN ACCESS EXCLUSIVE MODE", "SELECT o.id"),
}


async def waiting_on_a_lock(pool: asyncpg.Pool, statement: str) -> bool:
    """Whether a session's statement beginning with ``statement`` waits on a lock."""
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND starts_with(query, $1)",
            statement,
        )
    )


@pytest.mark.parametrize("held", sorted(HOLDS))
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_stop_while_a_round_waits_on_a_lock_ends_promptly_and_loses_nothing(
    infra: Infra, tmp_path: Path, service: str, held: str
) -> None:
    running, prepare, database_setting, topic_name = SERVICES[service]
    holding, waiting = HOLDS[held]
    settings = make_settings(
        infra,
        tmp_path,
        shutdown_flush_timeout_s=DRAIN_S,
        relay_poll_interval_s=120.0,  # rounds only when the test wakes the relay
    )
    topic = getattr(declare_topics(settings), topic_name).name
    dsn = getattr(settings, database_setting)
    await prepare(settings)
    pool = await open_pool(dsn, min_size=1, max_size=2)
    holder = await asyncpg.connect(dsn)
    try:
        store = PostgresEventStore(pool)  # commits without waking: the test wakes the relay
        loop = asyncio.get_running_loop()

        async def wake_the_relay() -> None:
            await pool.execute("SELECT pg_notify($1, '')", f"branchline_outbox_{service}")

        async def all_marked() -> bool:
            await wake_the_relay()
            return await unmarked(pool) == []

        async with running(settings):
            before = await commit(store, ["C-before"], topic)
            await eventually(all_marked, within=30, interval=0.2)
            after = await commit(store, ["C-after-1", "C-after-2"], topic)
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute(holding)
            await wake_the_relay()

            async def the_round_waits() -> bool:
                return await waiting_on_a_lock(pool, waiting)

            await eventually(the_round_waits, within=30, interval=0.05)
            stopping = loop.time()
        took = loop.time() - stopping
        await transaction.rollback()
        # the round cancelled: nothing marked, its marking rolled back whole
        assert await unmarked(pool) == sorted(after)
        # a relay started now publishes what the stopped one had not
        async with running(settings):
            await eventually(all_marked, within=60, interval=0.2)
        expect = 3 if held == "read" else 5  # the marking's sends went out: twice
        records = await read_all(infra.kafka_bootstrap, topic, expect=expect, within=30)
    finally:
        await holder.close()
        await pool.close()
    published = [json.loads(r.value)["event_id"] for r in records]
    assert set(published) == set(before + after)  # at least once each
    assert took < STOP_S, f"the stop took {took:.1f} s (drain bound {DRAIN_S} s)"
