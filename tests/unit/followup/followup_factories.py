"""Builders for the followup domain's unit tests: recorded events, client contexts and a tiny
in-memory task store that applies the rules' commands (the reference semantics)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from branchline_followup.application import rebuild
from branchline_followup.domain import (
    ClientContext,
    CreateTask,
    FollowupPolicy,
    FollowupTask,
    LifecycleStage,
    TaskCommand,
    TaskKind,
    apply_commands,
    decide,
)
from branchline_followup.entrypoints import worker
from branchline_shared.events import typed
from branchline_shared.events.envelope import Actor, Channel, RecordedEvent
from branchline_shared.events.typed import decode

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
"""A controlled clock: Monday 23 November 2026, 09:00 UTC."""

CLIENT_ID = "C-10001"
BRANCH_ID = "BR-001"
RM_ID = "rm-7"


SCORES = {
    "attitude": 90,
    "professionalism": 90,
    "response_speed": 90,
    "risk_management": 90,
    "convenience": 90,
}
"""A complete D-10 score sheet (the catalogue requires all five dimensions)."""


def an_event(
    event_type: str,
    data: dict[str, Any] | None = None,
    *,
    at: datetime = MONDAY_9,
    client_id: str = CLIENT_ID,
    branch_id: str | None = BRANCH_ID,
    channel: Channel | None = None,
    event_id: uuid.UUID | None = None,
    actor_id: str = "staff-17",
) -> RecordedEvent:
    return RecordedEvent(
        event_id=event_id or uuid.uuid4(),
        type=event_type,
        occurred_at=at,
        recorded_at=at,
        source="test",
        actor=Actor(id=actor_id, role="teller"),
        client_id=client_id,
        branch_id=branch_id,
        channel=channel,
        stream_id=f"client-{client_id}",
        stream_version=1,
        data=data or {},
    )


def a_client(
    *,
    rm_id: str | None = RM_ID,
    stage: LifecycleStage = LifecycleStage.MATURE,
    client_id: str = CLIENT_ID,
    branch_id: str | None = BRANCH_ID,
) -> ClientContext:
    return ClientContext(client_id=client_id, rm_id=rm_id, stage=stage, branch_id=branch_id)


def created(commands: Iterable[TaskCommand]) -> list[FollowupTask]:
    return [c.task for c in commands if isinstance(c, CreateTask)]


def only_created(commands: Iterable[TaskCommand]) -> FollowupTask:
    tasks = created(commands)
    assert len(tasks) == 1, tasks
    return tasks[0]


@dataclass
class TaskBook:
    """An in-memory task store fed event by event through :func:`decide`."""

    policy: FollowupPolicy = field(default_factory=FollowupPolicy)
    client: ClientContext = field(default_factory=a_client)
    tasks: dict[uuid.UUID, FollowupTask] = field(default_factory=dict)

    def feed(self, event: RecordedEvent) -> tuple[TaskCommand, ...]:
        open_tasks = [
            t for t in self.tasks.values() if t.is_open and t.client_id == event.client_id
        ]
        commands = decide(decode(event), self.client, open_tasks, self.policy)
        self.tasks = apply_commands(self.tasks, commands)
        return commands

    def of_kind(self, kind: TaskKind) -> list[FollowupTask]:
        return sorted((t for t in self.tasks.values() if t.kind is kind), key=lambda t: t.opened_at)

    def one(self, kind: TaskKind) -> FollowupTask:
        tasks = self.of_kind(kind)
        assert len(tasks) == 1, tasks
        return tasks[0]


def count_payload_parses(monkeypatch: Any) -> list[str]:
    """The event types the catalogue parses a payload for from now on, in order (#12: the
    tests that a consumer decodes each event once)."""
    parsed: list[str] = []
    real = typed.parse_payload

    def counting(event_type: str, data: dict[str, Any], *, stored: bool = False) -> Any:
        parsed.append(event_type)
        return real(event_type, data, stored=stored)

    monkeypatch.setattr(typed, "parse_payload", counting)
    plain = rebuild.plain_payload

    def counting_plain(event: RecordedEvent) -> Any:  # a rebuild's plain topic message
        parsed.append(event.type)
        return plain(event)

    monkeypatch.setattr(rebuild, "plain_payload", counting_plain)
    monkeypatch.setattr(worker, "plain_payload", counting_plain)  # the worker's plain message
    return parsed
