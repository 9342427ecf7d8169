"""A rebuild analyses its own tables as it goes (#12, Round 10: the fresh schema's plans had
no statistics) and its read models are row for row those of the same rebuild that never
analyses, on a mixed log: generated client histories with their tasks; the catalogue's whole
example journey for several clients (consents, suitability, sales, complaints, closures,
erasure); a shelf and staff; an event published twice; an event delivered late; one the rules
refuse and one that is not an envelope, both skipped as the live worker dead-letters them;
the stage changes by time due at the swap."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from branchline_followup.adapters import pg_schemas, rebuild_target
from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget
from branchline_followup.adapters.topic_replay import ReplayedMessage
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.rebuild import RebuildResult, rebuild_read_models
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.wire import event_headers
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import (
    followup_db,
    generate_history,
    now_utc,
    snapshot,
    wire,
)
from tests.support.examples import EXAMPLE_JOURNEY, EXAMPLE_SHELF, JourneyStep
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def journey(steps: Sequence[JourneyStep], client_id: str, start: datetime) -> list[RecordedEvent]:
    """``steps`` recorded one minute apart from ``start``, the client steps for ``client_id``."""
    versions: dict[str, int] = {}
    events = []
    for n, step in enumerate(steps):
        subject_id = step.subject_id or client_id
        versions[subject_id] = versions.get(subject_id, 0) + 1
        at = start + timedelta(minutes=n)
        events.append(
            RecordedEvent.model_validate(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": step.type,
                    "occurred_at": at.isoformat(),
                    "recorded_at": at.isoformat(),
                    "source": "followup" if step.type.startswith("followup.") else "intake",
                    "actor": {"id": step.actor_id, "role": step.actor_role},
                    step.subject_field: subject_id,
                    "branch_id": "BR-001" if step.subject_id is None else None,
                    "channel": step.channel if step.subject_id is None else None,
                    "stream_id": f"{step.subject_field}-{subject_id}",
                    "stream_version": versions[subject_id],
                    "data": dict(step.data),
                }
            )
        )
    return events


def mixed_log() -> tuple[list[RecordedEvent], list[tuple[bytes, list[tuple[str, bytes]]]]]:
    """The events (their store order) and the log replayed: (value, headers) in log order."""
    end = now_utc() - timedelta(hours=1)
    events = list(generate_history(10, end=end, span=timedelta(days=40)).events)
    start = end - timedelta(days=20)
    events += journey(EXAMPLE_SHELF, "unused", start - timedelta(days=1))
    for n in range(4):
        events += journey(EXAMPLE_JOURNEY, f"J-{n}", start + timedelta(days=n))
    events.sort(key=lambda e: e.recorded_at)
    refused = next(e for e in events if e.type == "visit.closed").model_copy(
        update={"event_id": uuid.uuid4(), "data": {"outcome": "normal"}}  # no visit: refused
    )
    place = {e.event_id: n + 1 for n, e in enumerate(events)}
    place[refused.event_id] = len(events) + 1
    first = events[0].client_id
    late = next(e for e in events if e.client_id == first and e.type != "client.registered")
    in_log = [e for e in events if e is not late]
    at = len(in_log) // 2
    in_log[at:at] = [refused, events[3]]  # refused, and one published again
    in_log.append(late)  # delivered after the client's later events: re-projected
    log = [(wire(e), event_headers(e, place[e.event_id])) for e in in_log]
    log.insert(len(log) // 3, (b"not an envelope", []))
    return events, log


class LogSource:
    def __init__(self, log: Sequence[tuple[bytes, list[tuple[str, bytes]]]]) -> None:
        self._log = log
        self._read = False

    async def start(self) -> int:
        return len(self._log)

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        if self._read:
            return
        self._read = True
        for offset, (value, headers) in enumerate(self._log):
            yield ReplayedMessage("intake", 0, offset, 0, value, headers)

    async def extend_to_current_end(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


async def rebuild(
    settings: BranchlineSettings,
    log: Sequence[tuple[bytes, list[tuple[str, bytes]]]],
) -> RebuildResult:
    admin = await open_pool(
        pg_schemas.with_search_path(settings.followup_database_url, "public"),
        min_size=1,
        max_size=2,
    )
    now = now_utc()

    async def clock() -> datetime:
        return now

    try:
        return await rebuild_read_models(
            target=PostgresRebuildTarget(admin, settings.followup_database_url),
            source=LogSource(log),
            policy=policy_from_settings(settings),
            batch_size=40,
            keep_retired=True,
            clock=clock,
        )
    finally:
        await admin.close()


async def timers_analysed(db: Any, schema: str) -> int:
    return int(
        await db.fetchval(
            "SELECT analyze_count FROM pg_stat_user_tables "
            "WHERE schemaname = $1 AND relname = 'fu_timers'",
            schema,
        )
    )


async def test_a_rebuild_that_analyses_its_tables_writes_the_rows_one_that_never_does_writes(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(infra, tmp_path)
    _, log = mixed_log()
    async with followup_db(settings) as db:
        monkeypatch.setattr(rebuild_target, "FIRST_ANALYZE", 10**9)
        never = await rebuild(settings, log)
        expected = await snapshot(db)
        # analysed after 100 events written, then after twice as many, and so on
        monkeypatch.setattr(rebuild_target, "FIRST_ANALYZE", 100)
        monkeypatch.setattr(rebuild_target, "ANALYZE_GROWTH", 2)
        analysing = await rebuild(settings, log)
        rebuilt = await snapshot(db)
        assert analysing.retired is not None
        assert await snapshot(db, analysing.retired) == expected
        assert await timers_analysed(db, analysing.retired) == 0
        assert await timers_analysed(db, "fu_read") >= 2
    assert (analysing.applied, analysing.skipped) == (never.applied, never.skipped)
    assert analysing.skipped == 2  # the refused event and the message that is not an envelope
    for table in expected:
        assert rebuilt[table] == expected[table], table
    assert rebuilt == expected
    filled = {table for table, rows in rebuilt.items() if rows}
    assert {
        "fu_applied_events",
        "fu_clients",
        "fu_client_events",
        "fu_client_timeline",
        "fu_client_consents",
        "fu_tasks",
        "fu_timers",
    } <= filled, sorted(filled)
    assert len(rebuilt["fu_applied_events"]) == len(log) - 3  # less the two skipped, the repeat
    assert any(row[0].startswith("J-") for row in rebuilt["fu_clients"])
