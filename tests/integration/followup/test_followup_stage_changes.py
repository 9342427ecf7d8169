"""D-08/D-09 on the real stack: a client's lifecycle stage changes with time alone (churned
after a year without business), and the durable stage-change timer makes the stored stage and
the task that follows (one win-back contact) without any new event of the client: exactly once,
whichever runner gets there, and a rebuild ends with the same read models."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_followup.application.timers import run_due_timers
from branchline_followup.bootstrap import followup_runtime, rebuild
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import (
    ApiClients,
    History,
    followup_db,
    now_utc,
    produce_events,
    running_worker,
    snapshot,
)
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

YEAR = timedelta(days=365)


def dormant_client(history: History, client_id: str, now: datetime) -> Any:
    """A client onboarded yesterday whose only business was 364 days ago: still ``new`` now,
    churned (365 days without business) one day from now. Returns the business event."""
    business_at = now - timedelta(days=364)
    history.registered(client_id, business_at - timedelta(days=1))
    history.visit(client_id, f"V-{client_id}", business_at - timedelta(minutes=20))
    business = next(
        e
        for e in reversed(history.events)
        if e.client_id == client_id and e.type == "visit.business_handled"
    )
    history.add(
        "client.identity_verified",
        client_id,
        now - timedelta(days=1),
        {"method": "networked_id_check", "document_type": "resident_id"},
    )
    return business


async def applied(db: asyncpg.Connection[Any], count: int) -> bool:
    """At least ``count`` events applied besides followup's own recorded task creations (D-07:
    one per task, marked applied where recorded, so they would end the wait too early)."""
    return bool(
        await db.fetchval(
            "SELECT count(*) >= $1 FROM fu_applied_events WHERE type <> 'followup.task_created'",
            count,
        )
    )


async def win_backs(db: asyncpg.Connection[Any], client_id: str | None = None) -> list[Any]:
    return list(
        await db.fetch(
            "SELECT id, client_id, source_event_id, opened_at, due_at, status FROM fu_tasks "
            "WHERE kind = 'win_back' AND ($1::text IS NULL OR client_id = $1) ORDER BY client_id",
            client_id,
        )
    )


async def test_d09_a_dormant_client_churns_with_the_clock_and_gets_one_win_back(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    history = History()
    now = now_utc()
    business = dormant_client(history, "C-S1", now)
    churns_at = business.occurred_at + YEAR
    await produce_events(settings, history.events)
    await eventually(lambda: applied(db, len(history.events)))
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")
    admin = stack.as_(Role.ADMIN, "admin-1")

    client = await db.fetchrow(
        "SELECT lifecycle_stage, stage_changes_at FROM fu_clients WHERE client_id = 'C-S1'"
    )
    assert client is not None
    assert client["lifecycle_stage"] == "new"
    assert client["stage_changes_at"] == churns_at
    assert await win_backs(db) == []

    # The clock passes the churn instant: no event of the client, yet it churns.
    moved = await admin.post("/v1/dev/clock", json={"advance_seconds": 2 * 24 * 3600})
    assert moved.status_code == 200, moved.text
    page = (
        await supervisor.get("/v1/followups", params={"client_id": "C-S1", "kind": "win_back"})
    ).json()
    assert len(page["items"]) == 1
    task = page["items"][0]
    assert task["source_event_id"] == str(business.event_id)
    [row] = await win_backs(db, "C-S1")
    assert row["opened_at"] == churns_at
    assert row["due_at"] == churns_at + timedelta(days=14)
    assert row["status"] == "open"
    client = await db.fetchrow(
        "SELECT lifecycle_stage, stage_as_of, stage_changes_at FROM fu_clients "
        "WHERE client_id = 'C-S1'"
    )
    assert client is not None
    assert client["lifecycle_stage"] == "churned"
    assert client["stage_as_of"] == churns_at
    assert client["stage_changes_at"] is None

    # Moving on (and the worker's own runner on the same durable clock) creates nothing more.
    await admin.post("/v1/dev/clock", json={"advance_seconds": 3600})
    await asyncio.sleep(0.5)
    assert len(await win_backs(db, "C-S1")) == 1

    # A rebuild, by the same clock, ends with the same read models.
    await eventually(
        lambda: db.fetchval("SELECT count(*) = 0 FROM es_outbox WHERE published_at IS NULL")
    )
    live = await snapshot(db)
    result = await rebuild(settings, keep_retired=True)
    assert result.retired is not None
    assert await snapshot(db, result.retired) == live
    assert await snapshot(db, "fu_read") == live


async def test_racing_runners_make_each_stage_change_once(infra: Infra, tmp_path: Path) -> None:
    # The worker's own runner is kept out of the race (it polls once an hour).
    settings = make_settings(infra, tmp_path, followup_timer_poll_interval_s=3600)
    history = History()
    now = now_utc()
    clients = 60
    businesses = {
        f"C-R{n}": dormant_client(history, f"C-R{n}", now).event_id for n in range(clients)
    }
    async with followup_db(settings) as db, running_worker(settings):
        await produce_events(settings, history.events)
        await eventually(lambda: applied(db, len(history.events)), within=60)
        assert await win_backs(db) == []
        later = now + timedelta(days=2)
        async with followup_runtime(settings) as one, followup_runtime(settings) as two:
            rounds = await asyncio.gather(
                run_due_timers(one.context, later, batch_size=7),
                run_due_timers(two.context, later, batch_size=11),
                run_due_timers(one.context, later, batch_size=5),
                run_due_timers(two.context, later, batch_size=3),
            )
            # whatever was busy in the race is done by a later round; then nothing is left
            rest = await run_due_timers(two.context, later)
            again = await run_due_timers(one.context, later + timedelta(hours=1))
        assert sum(r.stage_changes for r in rounds) + rest.stage_changes == clients
        assert again.stage_changes == 0
        rows = await win_backs(db)
        assert len(rows) == clients
        assert {r["client_id"]: r["source_event_id"] for r in rows} == businesses
        assert (
            await db.fetchval(
                "SELECT count(*) FROM fu_clients WHERE lifecycle_stage = 'churned' "
                "AND stage_changes_at IS NULL"
            )
            == clients
        )
