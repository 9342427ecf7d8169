"""Poison stays local (issue #9, finding 1): one client's bad row or message never stops the
timers, lists and quality measures of every other client."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from branchline_followup.adapters import read_models
from branchline_followup.application.timers import run_due_timers
from branchline_followup.bootstrap import followup_runtime
from branchline_shared.http.auth import Role
from branchline_shared.kafka.topics import declare_topics
from tests.conftest import TokenFactory
from tests.integration.followup.harness import (
    History,
    followup_api,
    followup_db,
    now_utc,
    produce_events,
    running_worker,
    wire,
)
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_timer_that_cannot_fire_is_dead_lettered_and_the_others_fire(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path, followup_timer_poll_interval_s=3600)
    history = History()
    opened = now_utc() - timedelta(minutes=10)
    clients = ["C-POISON", "C-OK-1", "C-OK-2"]
    for n, client in enumerate(clients):
        history.registered(client, opened - timedelta(hours=1))
        history.add(
            "consultation.opened",
            client,
            opened,
            {"consultation_id": f"Q-{n}", "channel": "online", "question": "q"},
            channel=None,
        )
    async with followup_db(settings) as db, running_worker(settings):
        await produce_events(settings, history.events)
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) = 3 FROM fu_timers WHERE fired_at IS NULL AND fire_at <= now()"
            ),
            within=60,
        )
        # a row another release wrote: a timer kind this one does not know
        await db.execute("UPDATE fu_timers SET kind = 'bogus' WHERE client_id = 'C-POISON'")
        async with followup_runtime(settings) as runtime:
            first = await run_due_timers(runtime.context, now_utc())
            again = await run_due_timers(runtime.context, now_utc())
        assert first.fired == 2
        assert first.dead == 1
        assert again.fired == again.dead == 0  # set aside once, never claimed again
        dead = await read_models.dead_timers(db)
        assert len(dead) == 1
        assert "bogus" in dead[0][1]
        overdue = await db.fetch(
            "SELECT client_id FROM es_events WHERE type = 'followup.overdue' ORDER BY client_id"
        )
        assert [r["client_id"] for r in overdue] == ["C-OK-1", "C-OK-2"]


async def test_a_poisoned_date_on_the_topic_stays_with_its_client(
    infra: Infra, tmp_path: Path
) -> None:
    """The event of finding 1 (dated 0001-01-01, as an older intake accepted it) reaches the
    topic: it is dead-lettered, and that client's and everyone else's later events, the lists
    and the quality measures keep working."""
    settings = make_settings(
        infra,
        tmp_path,
        followup_timer_poll_interval_s=0.2,
        staff_supervisors={"rm-7": "sup-1"},
    )
    tokens = TokenFactory(settings)
    at = now_utc() - timedelta(hours=1)
    history = History()
    history.registered("C-DATED", at)
    history.registered("C-FINE", at)
    poisoned = history.add(
        "visit.arrived", "C-DATED", at + timedelta(minutes=1), {"visit_id": "V-1"}
    )
    raw = wire(poisoned).replace(
        poisoned.model_dump(mode="json")["occurred_at"].encode(), b"0001-01-01T00:00:00Z"
    )
    later = [history.visit("C-FINE", "V-2", at + timedelta(minutes=5))]
    later.append(history.visit("C-DATED", "V-3", at + timedelta(minutes=30)))
    async with (
        followup_db(settings) as db,
        running_worker(settings),
        followup_api(settings, tokens) as api,
    ):
        await produce_events(settings, history.events[:2])
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            topic = declare_topics(settings).intake_events.name
            await producer.send_and_wait(topic, value=raw, key=b"C-DATED")
        finally:
            await producer.stop()
        await produce_events(settings, history.events[3:])
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) = 2 FROM fu_visits WHERE visit_id IN ('V-2', 'V-3')"
            ),
            within=60,
        )
        supervisor = api.as_(Role.SUPERVISOR, "sup-1")
        listed = await supervisor.get("/v1/followups", params={"limit": 100})
        assert listed.status_code == 200, listed.text
        assert {t["client_id"] for t in listed.json()["items"]} >= {"C-DATED", "C-FINE"}
        for client in ("C-DATED", "C-FINE"):
            assert (await supervisor.get(f"/v1/clients/{client}")).status_code == 200
        assert (await supervisor.get("/v1/quality")).status_code == 200


def _skipped(metrics: str) -> dict[str, float]:
    """``branchline_unreadable_rows_total`` by query, from a /metrics page."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("branchline_unreadable_rows_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('query="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


async def test_bad_stored_rows_are_skipped_and_everybody_else_is_answered(
    infra: Infra, tmp_path: Path
) -> None:
    """Rows planted behind the service's back (instants Python cannot hold, an unknown rule,
    a score out of range, a client whose own row is bad): the work list (every page), the
    client 360 and the quality measures answer 200 for everybody else, over HTTP on the real
    stack; each bad row is left out and counted in the metric."""
    settings = make_settings(
        infra,
        tmp_path,
        followup_timer_poll_interval_s=3600,
        followup_supervisors={"rm-7": "sup-1"},
    )
    tokens = TokenFactory(settings)
    at = now_utc() - timedelta(hours=3)
    history = History()
    clients = ["C-OK-1", "C-INF", "C-Y10K", "C-CODE", "C-OK-2", "C-FACTS"]
    for n, client in enumerate(clients):
        history.registered(client, at)
        history.add(
            "consultation.opened",
            client,
            at + timedelta(minutes=n),
            {"consultation_id": f"Q-{n}", "channel": "online", "question": "q"},
            channel=None,
        )
        history.visit(client, f"V-{n}", at + timedelta(minutes=10 + n))
    async with (
        followup_db(settings) as db,
        running_worker(settings),
        followup_api(settings, tokens) as api,
    ):
        await produce_events(settings, history.events)
        ids = [e.event_id for e in history.events]
        await eventually(
            lambda: db.fetchval(
                "SELECT count(*) = $2 FROM fu_applied_events WHERE event_id = ANY($1::uuid[])",
                ids,
                len(ids),
            ),
            within=60,
        )
        supervisor = api.as_(Role.SUPERVISOR, "sup-1")
        before = await supervisor.get("/v1/followups", params={"limit": 500})
        assert before.status_code == 200, before.text
        every_task = {t["id"]: t["client_id"] for t in before.json()["items"]}
        assert set(every_task.values()) == set(clients)
        quality_params = {
            "from": (at - timedelta(days=1)).isoformat(),
            "to": (now_utc() + timedelta(days=60)).isoformat(),
        }
        quality_before = await supervisor.get("/v1/quality", params=quality_params)
        assert quality_before.status_code == 200, quality_before.text
        counted_before = _skipped((await supervisor.get("/metrics")).text)

        # planted directly in PostgreSQL, as a buggy release or a hand repair could leave them
        await db.execute("UPDATE fu_tasks SET due_at = 'infinity' WHERE client_id = 'C-INF'")
        await db.execute(
            "UPDATE fu_tasks SET opened_at = '10000-01-01 00:00:00+00' WHERE client_id = 'C-Y10K'"
        )
        await db.execute(
            "UPDATE fu_visits SET ended_at = '10000-01-01 00:00:00+00' WHERE client_id = 'C-Y10K'"
        )
        await db.execute(
            "UPDATE fu_tasks SET rule = 'D-99', status = 'bogus' WHERE client_id = 'C-CODE'"
        )
        await db.execute(
            "INSERT INTO fu_surveys (event_id, client_id, branch_id, rm_id, answered_at, "
            "attitude, professionalism, response_speed, risk_management, convenience) "
            "VALUES (gen_random_uuid(), 'C-CODE', 'BR-001', 'rm-7', now() - interval '1 hour', "
            "1000, 90, 90, 90, 90)"
        )
        await db.execute(
            "UPDATE fu_clients SET registered_at = '-infinity' WHERE client_id = 'C-FACTS'"
        )
        bad_clients = {"C-INF", "C-Y10K", "C-CODE"}

        listed = await supervisor.get("/v1/followups", params={"limit": 500})
        assert listed.status_code == 200, listed.text
        shown = {t["id"]: t["client_id"] for t in listed.json()["items"]}
        assert shown == {i: c for i, c in every_task.items() if c not in bad_clients}
        # page by page (one task a page): the pages go on past every bad row
        paged: dict[str, str] = {}
        cursor: str | None = None
        for _ in range(len(every_task) + 2):
            params: dict[str, str | int] = {"limit": 1}
            if cursor:
                params["cursor"] = cursor
            page = await supervisor.get("/v1/followups", params=params)
            assert page.status_code == 200, page.text
            paged.update({t["id"]: t["client_id"] for t in page.json()["items"]})
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        assert paged == shown

        for client in ("C-OK-1", "C-OK-2", *bad_clients):
            view = await supervisor.get(f"/v1/clients/{client}")
            assert view.status_code == 200, (client, view.text)
            tasks = view.json()["open_tasks"]
            assert (tasks == []) == (client in bad_clients), (client, tasks)
        assert (await supervisor.get("/v1/clients/C-CODE")).json()["satisfaction_history"] == []
        own_row_bad = await supervisor.get("/v1/clients/C-FACTS")
        assert own_row_bad.status_code == 404, own_row_bad.text

        quality = await supervisor.get("/v1/quality", params=quality_params)
        assert quality.status_code == 200, quality.text
        assert quality.json()["measures"] != quality_before.json()["measures"]

        counted = _skipped((await supervisor.get("/metrics")).text)
        for query in (
            "followups.list",
            "client360.tasks",
            "client360.surveys",
            "client360.client",
            "quality.tasks",
            "quality.visits",
            "quality.clients",
        ):
            assert counted.get(query, 0) > counted_before.get(query, 0), (query, counted)
