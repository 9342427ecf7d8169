"""``branchline loadgen`` against intake on the real stack: journeys accepted, counted right."""

from __future__ import annotations

import asyncpg
import pytest

from branchline_cli.loadgen import LoadGenerator, branch_steps
from branchline_intake.bootstrap import create_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.examples import EXAMPLE_ADMIN_ID
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_journeys_are_accepted_and_every_202_is_in_the_store(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    token = tokens.headers(Role.BRANCH_SYSTEM, sub="loadgen")["Authorization"].split()[1]
    # the shelf steps name the examples' admin as actor: an admin token speaks as itself
    admin = tokens.headers(Role.ADMIN, sub=EXAMPLE_ADMIN_ID)["Authorization"].split()[1]
    async with serve(create_app(settings)) as url:
        generator = LoadGenerator(
            url, token, rate=40, duration_s=4, clients=3, seed=7, batch_share=0.3, admin_token=admin
        )
        result = await generator.run()
    print(result.summary())
    assert not result.refused, result.summary()  # the journey is valid as the catalogue is
    assert not result.unanswered
    assert len(result.accepted) >= 40
    assert result.batches > 0
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, type FROM es_events "
            "WHERE type <> 'rule.violation_refused' AND stream_id LIKE 'client-%'"
        )
    finally:
        await conn.close()
    assert {r["event_id"] for r in rows} == set(result.accepted)
    types = {a.type for a in result.accepted.values()}
    assert {"client.registered", "visit.arrived"} <= types
    assert len(branch_steps()) > 30


def test_same_seed_same_journeys() -> None:
    def first_ids(seed: int) -> list[str]:
        generator = LoadGenerator("http://unused", "t", rate=1, duration_s=1, seed=seed)
        client_id, rng = generator._next_client()
        from datetime import UTC, datetime, timedelta

        from branchline_cli.loadgen import _TimeMap

        times = _TimeMap(generator._steps, datetime(2026, 12, 3, tzinfo=UTC), timedelta(minutes=10))
        return [generator._body(s, client_id, times, rng)["event_id"] for s in generator._steps[:5]]

    assert first_ids(3) == first_ids(3)
    assert first_ids(3) != first_ids(4)
