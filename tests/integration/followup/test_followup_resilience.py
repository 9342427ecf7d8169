"""Effectively once under faults: redelivered events, a worker killed mid-stream and restarted
beside a second replica, timer runners racing for the same timers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_followup.application.timers import run_due_timers
from branchline_followup.bootstrap import followup_runtime, rebuild
from branchline_shared.embedded.ports import free_port
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.kafka.wire import decode_event
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import (
    History,
    followup_db,
    generate_history,
    now_utc,
    produce_events,
    running_worker,
    snapshot,
)
from tests.support.kafka import read_all
from tests.support.processes import settings_env
from tests.support.stack import Infra, eventually, make_settings

# The hang guard must exceed the tests' own progress budgets, which are what assert progress
# (the kill test alone allows 60 + 90 + 30 s of `eventually`, two 20 s stops and a rebuild):
# at 150 s a slow but progressing run on a loaded 2-core machine was cut off mid-test, and the
# worker it left running disturbed every later test of the session.
pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(300)]


def fast_settings(infra: Infra, tmp_path: Path, **overrides: Any) -> BranchlineSettings:
    return make_settings(infra, tmp_path, followup_timer_poll_interval_s=0.2, **overrides)


async def applied(db: asyncpg.Connection[Any], count: int) -> bool:
    """At least ``count`` events applied besides followup's own recorded task creations (D-07:
    one per task, marked applied where recorded, so they would end the wait too early)."""
    return bool(
        await db.fetchval(
            "SELECT count(*) >= $1 FROM fu_applied_events WHERE type <> 'followup.task_created'",
            count,
        )
    )


async def settled(db: asyncpg.Connection[Any]) -> bool:
    """No timer due and unfired, nothing left in the outbox."""
    return bool(
        await db.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM fu_timers "
            "                   WHERE fired_at IS NULL AND fire_at <= now())"
            " AND NOT EXISTS (SELECT 1 FROM es_outbox WHERE published_at IS NULL)"
        )
    )


async def test_redelivered_events_leave_identical_read_models(infra: Infra, tmp_path: Path) -> None:
    settings = fast_settings(infra, tmp_path)
    history = generate_history(60, end=now_utc() - timedelta(minutes=2), span=timedelta(hours=6))
    async with followup_db(settings) as db, running_worker(settings):
        await produce_events(settings, history.events)
        await eventually(lambda: applied(db, len(history.events)), within=60)
        await eventually(lambda: settled(db))
        first = await snapshot(db)
        # The same events again, then one harmless marker per client (an old consent) so we
        # know every partition has been read past the duplicates.
        await produce_events(settings, history.events)
        markers = History()
        markers.versions = dict(history.versions)
        for client_id in sorted(history.versions):
            markers.add(
                "client.consent_granted",
                client_id,
                now_utc() - timedelta(days=400),
                {"purposes": ["service"]},
            )
        await produce_events(settings, markers.events)
        total = len(history.events) + len(markers.events)
        await eventually(lambda: applied(db, total), within=60)
        # One snapshot for both reads: a timer firing between them would count in one only.
        async with db.transaction(isolation="repeatable_read", readonly=True):
            second = await snapshot(db)
            own = await db.fetchval("SELECT count(*) FROM es_events")  # timers that fired
    assert len(second.pop("fu_applied_events")) == total + own
    first.pop("fu_applied_events")
    # The markers themselves are on the console's timeline, and an old consent adds a row
    # only for a purpose the client had none for (it never overrides a later one).
    marker_ids = {m.event_id for m in markers.events}
    second["fu_client_timeline"] = [
        row for row in second["fu_client_timeline"] if row[2] not in marker_ids
    ]
    # Like every applied event, each marker is kept in its client's journal (#13, ADR-0014).
    second["fu_client_events"] = [
        row for row in second["fu_client_events"] if row[0] not in marker_ids
    ]
    known = {(row[0], row[1]) for row in first["fu_client_consents"]}
    second["fu_client_consents"] = [
        row for row in second["fu_client_consents"] if (row[0], row[1]) in known
    ]
    assert second == first


def worker_process(settings: BranchlineSettings, port: int) -> subprocess.Popen[bytes]:
    """``branchline run followup-worker`` with ``settings``, as the dev stack starts it."""
    env = settings_env(settings)
    env["BRANCHLINE_FOLLOWUP_WORKER_PORT"] = str(port)
    env["BRANCHLINE_BIND_HOST"] = "127.0.0.1"
    with open(settings.data_dir / f"worker-{port}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "branchline_cli.main", "run", "followup-worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


async def test_a_worker_killed_mid_stream_loses_nothing_duplicates_nothing_fires_nothing_twice(
    infra: Infra, tmp_path: Path
) -> None:
    # Small batches: the kill must land mid-stream, and a worker applying up to 200 events a
    # transaction could finish the whole history between two polls of the wait below. The
    # worker's default stop bound (30 s): the replica is often stopped while it is still
    # joining the group, and such a stop no longer waits for the join (its start is abandoned,
    # test_consumer_stop_while_joining.py), so it exits well within the 20 s given below.
    # Behind, the fetches grow to the second bound (#12, Round 27): kept small, and above the
    # first, so the kill can land in a larger batch too.
    settings = fast_settings(
        infra, tmp_path, followup_worker_batch_size=25, followup_worker_batch_size_behind=40
    )
    history = generate_history(80, end=now_utc() - timedelta(minutes=2), span=timedelta(hours=6))
    total = len(history.events)
    async with followup_db(settings) as db:
        await produce_events(settings, history.events)
        killed = worker_process(settings, free_port())
        try:
            await eventually(lambda: applied(db, 150), within=60)
        finally:
            killed.send_signal(signal.SIGKILL)
            killed.wait(10)
        assert not await applied(db, total), "the worker finished before it was killed"
        # Restarted as two replicas: two consumers of the group, two timer runners, two relays.
        replica = worker_process(settings, free_port())
        try:
            async with running_worker(settings):
                await eventually(lambda: applied(db, total), within=90)
                await eventually(lambda: settled(db), within=30)
        finally:
            replica.send_signal(signal.SIGTERM)
            replica.wait(20)
        live = await snapshot(db)

        # Each timer fired once: one event per fired timer in the store, the same ids on Kafka.
        overdue = await db.fetchval(
            "SELECT count(*) FROM es_events WHERE type = 'followup.overdue'"
        )
        assert overdue > 0
        assert overdue == await db.fetchval(
            "SELECT count(*) FROM fu_timers WHERE kind = 'overdue' AND fired_event_id IS NOT NULL"
        )
        # ADR-0003: every task creation is recorded once too, and published once.
        creations = await db.fetchval(
            "SELECT count(*) FROM es_events WHERE type = 'followup.task_created'"
        )
        assert creations == await db.fetchval("SELECT count(*) FROM fu_tasks")
        records = await read_all(
            settings.kafka_bootstrap,
            declare_topics(settings).followup_events.name,
            expect=overdue + creations,
        )
        published = {e.event_id: e.type for e in (decode_event(r.value) for r in records)}
        kinds = list(published.values())
        assert kinds.count("followup.overdue") == overdue
        assert kinds.count("followup.task_created") == creations

        # Nothing lost, nothing duplicated: equal to a clean single pass over the same log.
        result = await rebuild(settings, keep_retired=True)
        assert result.retired is not None
        assert await snapshot(db, "fu_read") == live
        assert len(live["fu_applied_events"]) == total + overdue + creations


async def test_racing_timer_runners_fire_each_timer_exactly_once(
    infra: Infra, tmp_path: Path
) -> None:
    # The worker's own runner is kept out of the race (it polls once an hour).
    settings = make_settings(infra, tmp_path, followup_timer_poll_interval_s=3600)
    history = History()
    opened = now_utc() - timedelta(minutes=10)
    clients = 150
    for n in range(clients):
        history.registered(f"C-T{n}", opened - timedelta(hours=1))
        history.add(
            "consultation.opened",
            f"C-T{n}",
            opened,
            {"consultation_id": f"Q-{n}", "channel": "online", "question": "sealed"},
            channel=None,
        )
    async with followup_db(settings) as db, running_worker(settings):
        await produce_events(settings, history.events)
        await eventually(lambda: applied(db, len(history.events)), within=60)
        async with followup_runtime(settings) as one, followup_runtime(settings) as two:
            now = now_utc()
            rounds = await asyncio.gather(
                run_due_timers(one.context, now, batch_size=7),
                run_due_timers(two.context, now, batch_size=11),
                run_due_timers(one.context, now, batch_size=5),
            )
            # whatever was busy in the race is fired by a later round
            rest = await run_due_timers(two.context, now)
        fired = sum(r.fired for r in rounds) + rest.fired
        assert fired == clients
        assert (
            await db.fetchval("SELECT count(*) FROM es_events WHERE type = 'followup.overdue'")
            == clients
        )
        assert (
            await db.fetchval(
                "SELECT count(DISTINCT stream_id) FROM es_events WHERE type = 'followup.overdue'"
            )
            == clients
        )
        assert (
            await db.fetchval("SELECT count(*) FROM fu_tasks WHERE overdue_at IS NOT NULL")
            == clients
        )
