"""The console's forms meet free text the event catalogue refuses with the form's own error,
never a 5xx (a control character in a note or a reason: nothing recorded, the task as it was)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import ApiClients, History, now_utc, produce_events
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def open_revisit(settings: BranchlineSettings, stack: ApiClients) -> str:
    history = History()
    start = now_utc() - timedelta(hours=3)
    history.registered("C-FT", start)
    history.visit("C-FT", "V-FT", start + timedelta(minutes=1))
    await produce_events(settings, history.events)
    rm = stack.as_(Role.RM, "rm-7")

    async def task_id() -> str | None:
        page = (await rm.get("/v1/followups", params={"client_id": "C-FT"})).json()
        return page["items"][0]["id"] if page["items"] else None

    found = await eventually(task_id)
    assert found is not None
    return found


async def test_a_note_or_reason_with_a_control_character_is_the_forms_error(
    settings: BranchlineSettings,
    stack: ApiClients,
    db: asyncpg.Connection[Any],
) -> None:
    task_id = await open_revisit(settings, stack)
    before = await db.fetchval("SELECT count(*) FROM es_events")
    rm = stack.console_as(Role.RM, "rm-7")
    done = await rm.post(
        f"/console/tasks/{task_id}/complete",
        data={"outcome": "contacted", "note": "by\x07phone"},
        headers={"hx-request": "true"},
    )
    assert done.status_code < 500, done.text
    assert "cannot be recorded (a control character)" in done.text
    supervisor = stack.console_as(Role.SUPERVISOR, "sup-1")
    moved = await supervisor.post(
        f"/console/tasks/{task_id}/reassign",
        data={"assignee": "rm-8", "reason": "on\x1bleave"},
        headers={"hx-request": "true"},
    )
    assert moved.status_code < 500, moved.text
    assert "cannot be recorded (a control character)" in moved.text
    assert await db.fetchval("SELECT count(*) FROM es_events") == before
    task = await db.fetchrow(
        "SELECT status, assignee FROM fu_read.fu_tasks WHERE id = $1::uuid", task_id
    )
    assert (task["status"], task["assignee"]) == ("open", "rm-7")
