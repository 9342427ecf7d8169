"""A stop with the broker down after the relay saw it fail: the drain ends at once instead of
retrying until its bound (``OutboxRelay.drain_given_up``, #12, Round 33).

Before, a drain asked for while the relay retried (a round failed: its sends expired with the
broker down) backed off and retried until ``shutdown_flush_timeout_s``; the rows stay in the
outbox either way and the next relay publishes them. Here the drain's bound is set far above
the stop's, so a stop that waited for it fails the bound check; the rows are left unmarked, and
a service started once the broker is back publishes them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.pool import open_pool
from tests.integration.test_relay_drain import commit
from tests.integration.test_stop_with_the_broker_down import SERVICES, unmarked
from tests.support.held_broker import held_broker
from tests.support.kafka import read_all
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DRAIN_S = 60.0
"""The relay's drain bound (``shutdown_flush_timeout_s``), far above the stop's."""
FLUSH_S = 120.0
"""The producer's flush bound (``kafka_producer_stop_flush_s``), far above the stop's."""
STOP_S = 5.0
"""What the stop may take (the pools' and key pool's closes, a round's cancel). The old drain
retried until its bound."""


def failed_rounds(store: str) -> float:
    found = REGISTRY.get_sample_value("branchline_outbox_publish_failures_total", {"store": store})
    return found or 0.0


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_drain_that_saw_the_broker_fail_ends_at_once_and_loses_nothing(
    infra: Infra, tmp_path: Path, service: str
) -> None:
    running, prepare, database_setting, topic_name = SERVICES[service]
    async with held_broker() as broker:
        settings = make_settings(
            infra,
            tmp_path,
            kafka_bootstrap=broker.bootstrap,
            shutdown_flush_timeout_s=DRAIN_S,
            kafka_producer_stop_flush_s=FLUSH_S,
        )
        topic = getattr(declare_topics(settings), topic_name).name
        await prepare(settings)
        pool = await open_pool(getattr(settings, database_setting), min_size=1, max_size=2)
        try:
            store = PostgresEventStore(pool)  # commits without waking: the relay polls
            loop = asyncio.get_running_loop()

            async def all_marked() -> bool:
                return await unmarked(pool) == []

            async with running(settings):
                before = await commit(store, ["C-before"], topic)
                await eventually(all_marked, within=30, interval=0.1)
                failures = failed_rounds(service)
                broker.hold()
                broker.cut()  # the broker gone: the relay's sends wait, then expire
                after = await commit(store, ["C-after-1", "C-after-2"], topic)

                async def a_round_failed() -> bool:
                    return failed_rounds(service) > failures

                # a round's sends expire after the producer's request timeout (10 s)
                await eventually(a_round_failed, within=60, interval=0.1)
                assert await unmarked(pool) == sorted(after)
                stopping = loop.time()
            took = loop.time() - stopping
            # nothing marked published that the broker did not acknowledge
            assert await unmarked(pool) == sorted(after)
            assert took < STOP_S, (
                f"the stop took {took:.1f} s (drain bound {DRAIN_S} s, flush bound {FLUSH_S} s)"
            )
            broker.release()
            # the broker back: a relay started now publishes what the stopped one had not
            async with running(settings):
                await eventually(all_marked, within=60, interval=0.2)
            records = await read_all(broker.bootstrap, topic, expect=3, within=30)
        finally:
            await pool.close()
    published = [json.loads(r.value)["event_id"] for r in records]
    assert set(published) == set(before + after)
