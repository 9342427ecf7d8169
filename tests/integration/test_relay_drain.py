"""SIGTERM to the standalone outbox relay (``branchline run intake-relay``, #13): readiness
turns unready first, then the relay publishes what is committed in the outbox, each row once,
and the process exits 0 without waiting for its next poll."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from branchline_intake.bootstrap import prepare_database
from branchline_shared.embedded.ports import free_port
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.test_reconcile import recorded
from tests.support.kafka import read_all
from tests.support.processes import process_env, readiness
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# The relay polls this rarely, so only a wake-up publishes a row: the drain's, since the test
# commits without NOTIFY. A drain that waited for the next poll would outlast the bound below.
POLL_S = 60.0
FLUSH_TIMEOUT_S = 45.0
EXIT_WITHIN_S = 25.0
DRAIN_WINDOW_S = 6.0
"""``shutdown_drain_s``: the relay is unready this long before its drain publishes the rows, so
the test must see both (503 "draining", the rows still pending) inside it. 1.5 s before Round
34's #12: a starved test process saw the rows already published."""


def relay_env(settings: BranchlineSettings) -> dict[str, str]:
    return process_env(
        settings,
        "data_dir",
        "intake_database_url",
        "kafka_bootstrap",
        "topic_namespace",
        "jwt_secret",
        "intake_relay_port",
        "relay_poll_interval_s",
        "shutdown_drain_s",
        "shutdown_flush_timeout_s",
    )


async def commit(store: PostgresEventStore, client_ids: list[str], topic: str) -> list[str]:
    """One transaction per event, as intake commits them (no NOTIFY: no on_commit)."""
    ids = []
    for client_id in client_ids:
        event = recorded(client_id)
        async with store.unit_of_work() as uow:
            await uow.lock_streams([event.stream_id])
            uow.stage(event, topic=topic, submission_hash=None)
            await uow.commit()
        ids.append(str(event.event_id))
    return ids


async def test_sigterm_makes_the_relay_unready_then_it_flushes_the_outbox_once_and_exits_0(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(
        infra,
        tmp_path,
        intake_relay_port=free_port(),
        relay_poll_interval_s=POLL_S,
        shutdown_drain_s=DRAIN_WINDOW_S,
        shutdown_flush_timeout_s=FLUSH_TIMEOUT_S,
    )
    topic = declare_topics(settings).intake_events.name
    await prepare_database(settings)
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    store = PostgresEventStore(pool)
    # committed before the relay starts: its first round publishes them
    early = await commit(store, [f"E-{n}" for n in range(3)], topic)
    log = (tmp_path / "relay.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - a short start, then only signals
        [sys.executable, "-m", "branchline_cli.main", "run", "intake-relay"],
        env=relay_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    async def backlog() -> int:
        return int(await pool.fetchval("SELECT count(*) FROM es_outbox WHERE published_at IS NULL"))

    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.intake_relay_port}", timeout=5
        ) as client:

            async def ready() -> bool:
                return await readiness(client) == (200, "ready")

            async def nothing_pending() -> bool:
                return await backlog() == 0

            await eventually(ready, within=90, interval=0.3)
            await eventually(nothing_pending, within=30, interval=0.2)
            # committed just before SIGTERM; the relay sleeps until its next poll
            late = await commit(store, [f"L-{n}" for n in range(20)], topic)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            async def draining() -> bool:
                return await readiness(client) == (503, "draining")

            await eventually(draining, within=DRAIN_WINDOW_S - 2, interval=0.05)
            # unready first: the process runs, the rows wait for the drain to publish them
            assert process.poll() is None
            assert await backlog() == len(late)
        assert await asyncio.to_thread(process.wait, FLUSH_TIMEOUT_S + 30) == 0
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()
        pending = await backlog()
        await pool.close()
    assert pending == 0
    # published by the drain, not by giving up at the flush timeout or waiting for a poll
    assert took < EXIT_WITHIN_S, f"the relay took {took:.1f} s to stop"
    records = await read_all(
        settings.kafka_bootstrap, topic, expect=len(early) + len(late), within=30
    )
    published = [json.loads(r.value)["event_id"] for r in records]
    assert sorted(published) == sorted(early + late)  # each committed event, once
