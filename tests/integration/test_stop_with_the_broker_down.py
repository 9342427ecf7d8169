"""A service stopped while the broker is down: its relay's drain does not finish, and its
producer is then closed without a flush (``eventstore.relay_stop``, #12).

Before, the producer's close flushed for ``kafka_producer_stop_flush_s`` after the drain's bound
(``shutdown_flush_timeout_s``), batches that could not be delivered and that the next relay
publishes again anyway (their outbox rows never marked): a stop took drain + flush. Here the
flush bound is set far above everything else, so a stop that waited for it fails the bound
check; the rows are left unmarked, and a relay started once the broker is back publishes them.

The broker is reached through a proxy (``tests/support/held_broker.py``) that breaks the open
connections and holds new ones: the relay's send waits in the connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from branchline_followup.bootstrap import followup_runtime
from branchline_followup.bootstrap import prepare_database as prepare_followup
from branchline_intake.bootstrap import create_app as create_intake_app
from branchline_intake.bootstrap import prepare_database as prepare_intake
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.pool import PgPool, open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_relay_drain import commit
from tests.support.held_broker import HeldBroker, held_broker
from tests.support.kafka import read_all
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DRAIN_S = 2.0
"""The relay's drain bound (``shutdown_flush_timeout_s``): the stop's bound now."""
FLUSH_S = 120.0
"""The producer's flush bound (``kafka_producer_stop_flush_s``), far above the stop's."""
MARGIN_S = 8.0
"""What the stop may take beyond the drain's bound (the pools' and key pool's closes; 5 s before
Round 34's #12, widened for a loaded machine). The old close waited until the held batch
expired (the producer's request timeout, 10 s, after its retries), at least."""


@contextlib.asynccontextmanager
async def intake_running(settings: BranchlineSettings) -> AsyncIterator[None]:
    app = create_intake_app(settings)
    async with app.router.lifespan_context(app):
        yield


@contextlib.asynccontextmanager
async def followup_running(settings: BranchlineSettings) -> AsyncIterator[None]:
    async with followup_runtime(settings):
        yield


SERVICES: dict[str, tuple[Callable[[BranchlineSettings], Any], Any, str, str]] = {
    # service: (running it, its database's preparation, its database's setting, its topic)
    "intake": (intake_running, prepare_intake, "intake_database_url", "intake_events"),
    "followup": (followup_running, prepare_followup, "followup_database_url", "followup_events"),
}


async def unmarked(pool: PgPool) -> list[str]:
    rows = await pool.fetch("SELECT event_id FROM es_outbox WHERE published_at IS NULL")
    return sorted(str(row["event_id"]) for row in rows)


async def stop_with_the_broker_gone(
    infra: Infra,
    tmp_path: Path,
    service: str,
    *,
    drain_s: float,
    while_gone: Callable[[HeldBroker], Awaitable[None]],
    request_timeout_ms: int | None = None,
) -> float:
    """One event published, then the broker gone (held and cut) and two more committed;
    ``while_gone`` waits for what the test needs; then the service is stopped. Returns how long
    the stop took, having checked that nothing the broker did not acknowledge was marked
    published and that a service started once the broker is back publishes all three.
    ``request_timeout_ms``: the producers' (``kafka_producer_request_timeout_ms``), for a test
    that waits for a round's sends to expire."""
    running, prepare, database_setting, topic_name = SERVICES[service]
    async with held_broker() as broker:
        settings = make_settings(
            infra,
            tmp_path,
            kafka_bootstrap=broker.bootstrap,
            shutdown_flush_timeout_s=drain_s,
            kafka_producer_stop_flush_s=FLUSH_S,
        )
        if request_timeout_ms is not None:
            settings = settings.model_copy(
                update={"kafka_producer_request_timeout_ms": request_timeout_ms}
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
                broker.hold()
                broker.cut()  # the broker gone: the relay's producer connects again, held
                after = await commit(store, ["C-after-1", "C-after-2"], topic)
                await while_gone(broker)
                assert await unmarked(pool) == sorted(after)
                stopping = loop.time()
            took = loop.time() - stopping
            # nothing marked published that the broker did not acknowledge
            assert await unmarked(pool) == sorted(after)
            broker.release()
            # the broker back: a relay started now publishes what the stopped one had not
            async with running(settings):
                await eventually(all_marked, within=60, interval=0.2)
            records = await read_all(broker.bootstrap, topic, expect=3, within=30)
        finally:
            await pool.close()
    published = [json.loads(r.value)["event_id"] for r in records]
    assert sorted(published) == sorted(before + after)  # each once: the held proxy passed none
    return took


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_stop_with_the_broker_down_takes_the_drains_bound_not_the_producers_flush(
    infra: Infra, tmp_path: Path, service: str
) -> None:
    async def a_round_waits_for_the_broker(broker: HeldBroker) -> None:
        async with asyncio.timeout(30):
            await broker.held_one.wait()
        await asyncio.sleep(1.0)  # a round read them; its send waits for the broker

    took = await stop_with_the_broker_gone(
        infra, tmp_path, service, drain_s=DRAIN_S, while_gone=a_round_waits_for_the_broker
    )
    assert took < DRAIN_S + MARGIN_S, (
        f"the stop took {took:.1f} s (drain bound {DRAIN_S} s, flush bound {FLUSH_S} s)"
    )
