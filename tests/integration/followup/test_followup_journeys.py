"""The followup service on the real stack (PostgreSQL, broker, worker, API): tasks made due by
the rules, SLA clocks that go overdue and escalate with the test clock, RM actions recorded as
events that reach Kafka, refusals that change nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_shared.crypto.keystore import PostgresClientKeyStore
from branchline_shared.crypto.sealing import DataKey, MasterKey, is_sealed, unseal_paths
from branchline_shared.http.auth import Role
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.kafka.wire import decode_event
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.followup.harness import (
    ApiClients,
    History,
    followup_api,
    now_utc,
    produce_events,
    snapshot,
)
from tests.support.kafka import read_all
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


CREATIONS = "SELECT count(*) FROM es_events WHERE type = 'followup.task_created'"
ACTIONS = "SELECT count(*) FROM es_events WHERE type <> 'followup.task_created'"


async def followup_events(
    settings: BranchlineSettings, expect: int, db: asyncpg.Connection[Any]
) -> list[Any]:
    """followup's events on Kafka besides the recorded task creations (one per task)."""
    creations = int(await db.fetchval(CREATIONS))
    records = await read_all(
        settings.kafka_bootstrap,
        declare_topics(settings).followup_events.name,
        expect=expect + creations,
    )
    events = [decode_event(r.value) for r in records]
    assert sum(e.type == "followup.task_created" for e in events) == creations
    return [e for e in events if e.type != "followup.task_created"]


async def test_d01b_the_reception_journey_makes_the_survey_due_for_the_rm(
    settings: BranchlineSettings, stack: ApiClients
) -> None:
    history = History()
    start = now_utc() - timedelta(hours=2)
    history.registered("C-J1", start)
    closed = history.visit("C-J1", "V-1", start + timedelta(minutes=5))
    await produce_events(settings, history.events)
    rm = stack.as_(Role.RM, "rm-7")

    async def survey() -> dict[str, Any] | None:
        page = (await rm.get("/v1/followups", params={"kind": "satisfaction_survey"})).json()
        return page["items"][0] if page["items"] else None

    task = await eventually(survey)
    assert task["rule"] == "D-01b"
    assert task["assignee"] == "rm-7"
    assert task["client_id"] == "C-J1"
    assert task["source_event_id"] == str(closed.event_id)
    assert task["sla_state"] == "on_track"
    assert task["subject"] == "visit:V-1"
    assert task["due_at"].startswith((closed.occurred_at + timedelta(days=3)).date().isoformat())

    view = (await rm.get("/v1/clients/C-J1")).json()
    assert view["rm_id"] == "rm-7"
    assert view["lifecycle_stage"] == "prospect"
    assert {t["kind"] for t in view["open_tasks"]} == {"satisfaction_survey", "revisit"}
    assert view["last_contact_at"] is not None
    quality = (await rm.get("/v1/quality", params={"rm_id": "rm-7"})).json()
    assert quality["measures"]["waiting_time"]["count"] == 1
    assert quality["measures"]["handling_time"]["mean_seconds"] == 12 * 60


async def test_d07_a_major_complaint_not_acknowledged_goes_overdue_then_escalates(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    history = History()
    received_at = now_utc() - timedelta(minutes=5)
    history.registered("C-J2", received_at - timedelta(days=1))
    complaint = history.add(
        "complaint.received",
        "C-J2",
        received_at,
        {"complaint_id": "K-1", "severity": "urgent", "summary": "sealed"},
    )
    await produce_events(settings, history.events)
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")
    admin = stack.as_(Role.ADMIN, "admin-1")

    async def complaint_tasks() -> list[dict[str, Any]] | None:
        page = (await supervisor.get("/v1/followups", params={"client_id": "C-J2"})).json()
        kinds = {t["kind"] for t in page["items"]}
        return page["items"] if {"complaint_response", "complaint_handling"} <= kinds else None

    tasks = {t["kind"]: t for t in await eventually(complaint_tasks)}
    assert tasks["complaint_handling"]["rule"] == "D-07"
    assert tasks["complaint_handling"]["source_event_id"] == str(complaint.event_id)
    assert tasks["complaint_handling"]["profile"] == "default"

    # 25 h later: the 24 h response is overdue, the 48 h handling not yet.
    moved = await admin.post("/v1/dev/clock", json={"advance_seconds": 25 * 3600})
    assert moved.status_code == 200, moved.text
    assert moved.json()["timers_fired"] == 1
    overdue = (await supervisor.get("/v1/followups", params={"status": "overdue"})).json()
    assert [t["kind"] for t in overdue["items"]] == ["complaint_response"]

    # Past 48 h: the handling clock is overdue and the response (24 h after due) escalates.
    moved = await admin.post(
        "/v1/dev/clock", json={"set": (received_at + timedelta(hours=48, minutes=1)).isoformat()}
    )
    assert moved.status_code == 200, moved.text
    page = (await supervisor.get("/v1/followups", params={"client_id": "C-J2"})).json()
    by_kind = {t["kind"]: t for t in page["items"]}
    assert by_kind["complaint_handling"]["sla_state"] == "overdue"
    assert by_kind["complaint_response"]["escalated_to"] == "sup-1"
    assert by_kind["complaint_handling"]["escalated_to"] is None

    events = await followup_events(settings, expect=3, db=db)
    assert sorted(e.type for e in events) == [
        "followup.escalated",
        "followup.overdue",
        "followup.overdue",
    ]
    # Caused by the test clock, dated after the real time: marked as not real-world facts.
    assert all(e.synthetic for e in events)
    assert all(e.submitted_by is None for e in events)  # the timers, not a caller
    escalated = next(e for e in events if e.type == "followup.escalated")
    assert escalated.data == {
        "task_id": by_kind["complaint_response"]["id"],
        "supervisor_id": "sup-1",
    }

    # The worker's timer runner reads the same durable clock: nothing fires twice.
    await admin.post("/v1/dev/clock", json={"advance_seconds": 60})
    assert await db.fetchval(ACTIONS) == 3
    # and the clock never goes backwards
    back = await admin.post("/v1/dev/clock", json={"set": received_at.isoformat()})
    assert back.status_code == 422
    assert back.headers["content-type"] == "application/problem+json"
    assert back.json()["errors"][0]["field"] == "set"


async def test_a_task_is_completed_and_the_event_reaches_kafka(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    history = History()
    start = now_utc() - timedelta(hours=3)
    history.registered("C-J3", start)
    history.visit("C-J3", "V-3", start + timedelta(minutes=1))
    await produce_events(settings, history.events)
    rm = stack.as_(Role.RM, "rm-7")

    async def survey_id() -> str | None:
        page = (await rm.get("/v1/followups", params={"kind": "satisfaction_survey"})).json()
        return page["items"][0]["id"] if page["items"] else None

    task_id = await eventually(survey_id)
    scores = {
        "attitude": 90,
        "professionalism": 85,
        "response_speed": 70,
        "risk_management": 88,
        "convenience": 80,
    }
    # The RM may not grade themselves (D-10): the scores feed their own measures.
    graded = await rm.post(
        f"/v1/followups/{task_id}/complete",
        json={"outcome": "contacted", "note": "by phone", "scores": scores},
    )
    assert graded.status_code == 403, graded.text
    assert graded.json()["rule"] == "D-10"
    assert graded.json()["errors"][0]["field"] == "scores"
    # Their supervisor, having called the client, may.
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")
    done = await supervisor.post(
        f"/v1/followups/{task_id}/complete",
        json={"outcome": "contacted", "note": "by phone", "scores": scores},
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "done"
    assert done.json()["sla_state"] == "done"
    assert done.json()["outcome"] == "contacted"

    [event] = await followup_events(settings, expect=1, db=db)
    assert event.type == "followup.completed"
    assert event.source == "followup"
    assert event.actor.id == "sup-1"
    assert event.submitted_by is not None
    assert (event.submitted_by.sub, event.submitted_by.roles) == ("sup-1", ("supervisor",))
    assert event.synthetic is False
    assert event.client_id == "C-J3"
    assert event.data["task_id"] == task_id
    assert event.data["kind"] == "satisfaction_survey"
    assert event.data["scores"] == scores
    # The RM's note is personal (ADR-0007): sealed with the client's key, never in clear.
    assert is_sealed(event.data["note"])
    assert b"by phone" not in event.model_dump_json().encode()
    key = await keys_of(settings).existing_key("C-J3")
    assert key is not None
    assert unseal_paths(event.data, ("note",), key, client_id="C-J3")["note"] == "by phone"

    view = (await rm.get("/v1/clients/C-J3")).json()
    assert [s["attitude"] for s in view["satisfaction_history"]] == [90]
    assert task_id not in {t["id"] for t in view["open_tasks"]}


def keys_of(settings: BranchlineSettings) -> _KeysForTest:
    return _KeysForTest(settings)


class _KeysForTest:
    """The client key store, opened for one look-up."""

    def __init__(self, settings: BranchlineSettings) -> None:
        self.settings = settings

    async def existing_key(self, client_id: str) -> DataKey | None:
        pool = await open_pool(self.settings.keys_database_url)
        try:
            store = PostgresClientKeyStore(pool, MasterKey(self.settings.resolved_master_key()))
            return await store.existing_key(client_id)
        finally:
            await pool.close()


async def test_refusals_are_problems_and_change_nothing(
    settings: BranchlineSettings, stack: ApiClients, db: asyncpg.Connection[Any]
) -> None:
    history = History()
    start = now_utc() - timedelta(hours=3)
    history.registered("C-J4", start, rm_id="rm-7")
    history.visit("C-J4", "V-4", start + timedelta(minutes=1))
    history.registered("C-J5", start, rm_id="rm-8")
    await produce_events(settings, history.events)
    rm7 = stack.as_(Role.RM, "rm-7")
    rm8 = stack.as_(Role.RM, "rm-8")
    supervisor = stack.as_(Role.SUPERVISOR, "sup-1")

    async def survey_id() -> str | None:
        page = (await rm7.get("/v1/followups", params={"kind": "satisfaction_survey"})).json()
        return page["items"][0]["id"] if page["items"] else None

    task_id = await eventually(survey_id)
    await eventually(lambda: db.fetchval("SELECT count(*) = 2 FROM fu_clients"))
    before = await snapshot(db)

    async def refused(response: Any, status: int, kind: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body: dict[str, Any] = response.json()
        assert body["type"].endswith(kind)
        assert body["status"] == status
        return body

    unknown = "00000000-0000-4000-8000-000000000000"
    await refused(
        await rm7.post(f"/v1/followups/{unknown}/complete", json={"outcome": "other"}),
        404,
        "task-not-found",
    )
    await refused(  # another RM's task answers as absent (its existence does not leak)
        await rm8.post(f"/v1/followups/{task_id}/complete", json={"outcome": "other"}),
        404,
        "task-not-found",
    )
    await refused(
        await rm7.post(f"/v1/followups/{task_id}/reassign", json={"assignee": "rm-8"}),
        403,
        "forbidden",
    )
    others = await rm7.get("/v1/followups", params={"assignee": "rm-8"})
    assert others.status_code == 200
    assert others.json()["items"] == []  # outside an RM's scope: nothing
    bad = await refused(
        await rm7.post(
            f"/v1/followups/{task_id}/complete",
            json={"outcome": "", "scores": {"attitude": 101}, "extra": 1},
        ),
        422,
        "validation",
    )
    fields = {e["field"] for e in bad["errors"]}
    assert {"outcome", "scores.attitude", "scores.professionalism", "extra"} <= fields
    body = await refused(
        await rm7.get("/v1/followups", params={"cursor": "not-a-cursor"}), 422, "validation"
    )
    assert body["errors"][0]["field"] == "cursor"
    await refused(await rm7.get("/v1/followups", params={"status": "late"}), 422, "validation")
    await refused(await rm7.post("/v1/dev/clock", json={"advance_seconds": 1}), 403, "forbidden")
    assert await snapshot(db) == before
    assert await db.fetchval(ACTIONS) == 0

    # A supervisor reassigns; then the task completed twice: the same completion again is
    # answered with the task as it is, another is refused; either changes nothing.
    moved = await supervisor.post(f"/v1/followups/{task_id}/reassign", json={"assignee": "rm-8"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["assignee"] == "rm-8"
    done = await rm8.post(f"/v1/followups/{task_id}/complete", json={"outcome": "completed"})
    assert done.status_code == 200, done.text
    after = await snapshot(db)
    again = await rm8.post(f"/v1/followups/{task_id}/complete", json={"outcome": "completed"})
    assert again.status_code == 200, again.text
    assert again.json() == done.json()
    await refused(
        await rm8.post(f"/v1/followups/{task_id}/complete", json={"outcome": "other"}),
        409,
        "task-closed",
    )
    assert await snapshot(db) == after
    assert await db.fetchval(ACTIONS) == 2


async def test_the_dev_clock_is_404_unless_dev_mode(
    infra: Infra, tmp_path: Path, tokens: TokenFactory
) -> None:
    settings = make_settings(infra, tmp_path, dev_mode=False)
    async with followup_api(settings, TokenFactory(settings)) as api:
        admin = api.as_(Role.ADMIN, "admin-1")
        response = await admin.get("/v1/dev/clock")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
