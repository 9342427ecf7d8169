"""``branchline rebuild followup``: rebuilt read models equal the incrementally built ones, on a
generated history of more than 10,000 events, swapped in while the API keeps serving."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from branchline_followup.bootstrap import rebuild
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.followup.harness import (
    followup_api,
    followup_db,
    generate_history,
    now_utc,
    produce_events,
    running_worker,
    snapshot,
)
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]


async def test_rebuild_equals_incremental_on_more_than_10000_events(
    infra: Infra, tmp_path: Path
) -> None:
    settings: BranchlineSettings = make_settings(
        infra,
        tmp_path,
        followup_timer_poll_interval_s=0.2,
        db_pool_max=8,
        # sup-1 supervises every RM of the generated history (supervisors see their team only)
        staff_default_supervisor="sup-1",
    )
    tokens = TokenFactory(settings)
    history = generate_history(700, end=now_utc() - timedelta(minutes=2), span=timedelta(hours=10))
    assert len(history.events) >= 10_000
    async with (
        followup_db(settings) as db,
        running_worker(settings),
        followup_api(settings, tokens) as api,
    ):
        started = asyncio.get_running_loop().time()
        await produce_events(settings, history.events)
        total = len(history.events)
        await eventually(
            # followup's own recorded task creations (D-07) are applied too: not counted here
            lambda: db.fetchval(
                "SELECT count(*) >= $1 FROM fu_applied_events "
                "WHERE type <> 'followup.task_created'",
                total,
            ),
            within=300,  # a bounded wait for 10,000+ events, not a speed goal (bench/)
        )
        incremental_s = asyncio.get_running_loop().time() - started
        # Online consultations never answered went overdue (30 s): the worker's timer runner
        # recorded followup.overdue events.
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) = 0 FROM fu_timers WHERE fired_at IS NULL AND fire_at <= now()"
            )
        )
        assert (
            await db.fetchval("SELECT count(*) FROM es_events WHERE type = 'followup.overdue'") > 5
        )

        # RMs and supervisors act: followup.* events in the store, on Kafka, in the read models.
        supervisor = api.as_(Role.SUPERVISOR, "sup-1")
        surveys = (
            await supervisor.get(
                "/v1/followups",
                params={"kind": "satisfaction_survey", "status": "open", "limit": 40},
            )
        ).json()["items"]
        assert surveys, "the supervisor sees the team's open surveys"
        for i, task in enumerate(surveys):
            if i % 4 == 0:
                r = await supervisor.post(
                    f"/v1/followups/{task['id']}/reassign", json={"assignee": "rm-0"}
                )
            else:
                body: dict[str, Any] = {"outcome": "contacted"}
                if i % 3 == 0:
                    body["next_contact_at"] = (now_utc() + timedelta(days=20)).isoformat()
                r = await supervisor.post(f"/v1/followups/{task['id']}/complete", json=body)
            assert r.status_code == 200, r.text
        await eventually(
            lambda: db.fetchval("SELECT count(*) = 0 FROM es_outbox WHERE published_at IS NULL")
        )
        incremental = await snapshot(db)
        assert len(incremental["fu_tasks"]) > 2000

        # Rebuild while the API serves the old tables.
        reads: list[int] = []

        async def keep_reading() -> None:
            while True:
                r = await supervisor.get("/v1/followups", params={"limit": 5})
                reads.append(r.status_code)
                await asyncio.sleep(0.05)

        reader = asyncio.create_task(keep_reading())
        progressed: list[int] = []
        started = asyncio.get_running_loop().time()
        try:
            result = await rebuild(
                settings, on_progress=progressed.append, keep_retired=True, batch_size=500
            )
        finally:
            reader.cancel()
        rebuild_s = asyncio.get_running_loop().time() - started
        assert result.retired is not None
        assert sum(progressed) >= total
        assert reads
        assert set(reads) == {200}

        rebuilt = await snapshot(db, "fu_read")
        retired = await snapshot(db, result.retired)
        assert retired == incremental
        for table in incremental:
            only_rebuilt = set(rebuilt[table]) - set(incremental[table])
            only_incremental = set(incremental[table]) - set(rebuilt[table])
            assert not only_rebuilt, (table, sorted(only_rebuilt, key=repr)[:3])
            assert not only_incremental, (table, sorted(only_incremental, key=repr)[:3])
        # The API serves the swapped-in tables.
        page = await supervisor.get("/v1/followups", params={"status": "done", "limit": 500})
        assert page.status_code == 200
        assert (
            len(page.json()["items"])
            == sum(1 for row in incremental["fu_tasks"] if row[11] == "done")
            or page.json()["next_cursor"]
        )
        print(f"incremental {incremental_s:.1f}s, rebuild {rebuild_s:.1f}s for {total} events")

        # #12 --processes: the same topics rebuilt again with the main phase in two processes
        # (each the clients of its share), while the API serves: the read models it swaps in
        # equal those it replaces (the first rebuild's)
        reader = asyncio.create_task(keep_reading())
        try:
            again = await rebuild(settings, keep_retired=True, batch_size=500, processes=2)
        finally:
            reader.cancel()
        assert again.retired is not None
        assert set(reads) == {200}
        in_two = await snapshot(db, "fu_read")
        replaced = await snapshot(db, again.retired)
        assert replaced.keys() == in_two.keys()
        for table in replaced:
            only_two = set(in_two[table]) - set(replaced[table])
            only_one = set(replaced[table]) - set(in_two[table])
            assert not only_two, (table, sorted(only_two, key=repr)[:3])
            assert not only_one, (table, sorted(only_one, key=repr)[:3])
