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
