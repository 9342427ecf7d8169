"""The transactional outbox survives a broker outage: events are accepted and stored while the
broker is away, and reach the ledger and the read model once it is back, none twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_audit.adapters.ledger import PostgresLedger
from branchline_intake.bootstrap import create_app
from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_followup_worker import Worker
from tests.integration.test_intake_api import registration
from tests.support.consumers import audit_consumer
from tests.support.kafka import crash
from tests.support.stack import Infra, eventually, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(120)]


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[TansuBroker]:
    broker = TansuBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


async def unpublished(settings: BranchlineSettings) -> int:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM es_outbox WHERE published_at IS NULL"))
    finally:
        await conn.close()


async def test_events_posted_while_the_broker_is_down_arrive_once_when_it_is_back(
    infra: Infra, own_broker: TansuBroker, tmp_path: Path
) -> None:
    settings = make_settings(
        Infra(infra.postgres_admin_url, own_broker.bootstrap),
        tmp_path,
    )
    tokens = TokenFactory(settings)
    followup_db: asyncpg.Connection[Any] | None = None
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=10
        ) as intake,
    ):
        async with audit_consumer(settings) as ledger:
            before = [registration(f"C-before-{i}") for i in range(3)]
            for event in before:
                assert (await intake.post("/v1/events", json=event)).status_code == 202
            await eventually(lambda: _size_is(ledger, 3))

            crash(own_broker)
            during = [registration(f"C-during-{i}") for i in range(5)]
            for event in during:
                response = await intake.post("/v1/events", json=event)
                assert response.status_code == 202, response.text  # stored, not lost
            assert await unpublished(settings) == 5

            own_broker.start()  # a fresh, empty broker: the memory store lost everything
            await eventually(lambda: _equals(unpublished(settings), 0), within=60)
            await eventually(lambda: _size_is(ledger, 8), within=60)
            verdict_ids = [e.event["client_id"] async for e in ledger.scan()]
            assert sorted(verdict_ids) == sorted(
                [e["client_id"] for e in before] + [e["client_id"] for e in during]
            )

        async with Worker(settings):
            followup_db = await asyncpg.connect(settings.followup_database_url)
            try:
                await eventually(
                    lambda: followup_db.fetchval(  # type: ignore[union-attr]
                        "SELECT count(*) = 5 FROM fu_clients WHERE client_id LIKE 'C-during-%'"
                    )
                )
                assert await followup_db.fetchval("SELECT count(*) FROM fu_applied_events") == 5
            finally:
                await followup_db.close()


async def _size_is(ledger: PostgresLedger, expected: int) -> bool:
    size = await ledger.size()
    assert size <= expected, f"ledger grew past {expected}: {size} (a duplicate?)"
    return size == expected


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
