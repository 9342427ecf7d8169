"""The followup domain's shortcuts (#12) answer as the longer ways they replace.

- :func:`require_aware` returns a moment already in UTC as it is: the same object
  ``astimezone(UTC)`` returns, and every other moment as before (converted, or refused naive);
- :func:`decide` asks only the rules of the event's type: the same commands, in the same
  order, as asking every rule of :data:`RULES` (for every catalogue example, with open tasks
  of every kind, each on a client of every stage);
- :func:`timers_for` names its timers as :func:`timer_id_for` does (``uuid5`` of the task id
  and the kind's value).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.examples import EXAMPLE_PAYLOADS
from tests.unit.followup.followup_factories import CLIENT_ID, MONDAY_9, a_client, an_event

from branchline_followup.domain import (
    ClientContext,
    FollowupPolicy,
    FollowupTask,
    LifecycleStage,
    TaskCommand,
    TaskKind,
    TimerKind,
    client_context,
    decide,
    timer_id_for,
    timers_for,
)
from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.rules import RULES
from branchline_followup.domain.tasks import TaskStatus, new_task
from branchline_followup.domain.timers import TIMER_NAMESPACE
from branchline_shared.events.typed import Decoded, decode

ZONES = [
    UTC,
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=14)),
    ZoneInfo("Europe/London"),
]


class _Later(datetime):
    """A subclass of datetime (the shortcut is only for ``datetime`` itself)."""


@settings(max_examples=400, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(1990, 1, 1),
        max_value=datetime(2090, 1, 1),
        timezones=st.sampled_from(ZONES),
    ),
    subclass=st.booleans(),
)
def test_require_aware_answers_as_astimezone_utc(moment: datetime, subclass: bool) -> None:
    if subclass:
        moment = _Later.fromtimestamp(moment.timestamp(), moment.tzinfo)
    expected = moment.astimezone(UTC)
    got = require_aware(moment)
    assert got == expected
    assert got.tzinfo is UTC
    assert got.isoformat() == expected.isoformat()
    assert type(got) is type(expected)
    if moment.tzinfo is UTC:
        assert got is moment


def test_require_aware_still_refuses_a_naive_moment() -> None:
    with pytest.raises(ValueError, match="when is naive"):
        require_aware(datetime(2026, 11, 23, 9, 0), "when")


def _every_rule(
    typed: Decoded,
    client: ClientContext,
    open_tasks: Sequence[FollowupTask],
    policy: FollowupPolicy,
) -> tuple[TaskCommand, ...]:
    """:func:`decide` as it was: every rule asked whether it reacts to the event's type."""
    event = typed.envelope
    relevant = [
        t
        for t in open_tasks
        if t.is_open and t.client_id == event.client_id and t.source_event_id != event.event_id
    ]
    commands: list[TaskCommand] = []
    for rule in RULES:
        if event.type in rule.event_types:
            commands.extend(rule.decide(typed, client, relevant, policy))
    return tuple(commands)


def _open_tasks() -> list[FollowupTask]:
    """An open task of every kind, about the client and about a catalogue example's subject."""
    cause = uuid.uuid4()
    tasks = []
    for kind in TaskKind:
        for subject in ("client", "visit:V-1", "appointment:A-1", "due_diligence"):
            tasks.append(
                new_task(
                    kind=kind,
                    source_event_id=uuid.uuid5(cause, f"{kind.value}/{subject}"),
                    client_id=CLIENT_ID,
                    branch_id="BR-001",
                    assignee="rm-7",
                    subject=subject,
                    opened_at=MONDAY_9 - timedelta(days=30),
                    due_at=MONDAY_9 + timedelta(days=3),
                    deadline_profile="default",
                )
            )
    return tasks


@pytest.mark.parametrize("event_type", sorted(EXAMPLE_PAYLOADS))
def test_decide_gives_the_commands_of_asking_every_rule(event_type: str) -> None:
    policy = FollowupPolicy()
    open_tasks = _open_tasks()
    typed = decode(an_event(event_type, dict(EXAMPLE_PAYLOADS[event_type])))
    asked = 0
    for stage in LifecycleStage:
        for rm_id in ("rm-7", None):
            client = a_client(stage=stage, rm_id=rm_id)
            for tasks in ([], open_tasks):
                try:
                    expected = _every_rule(typed, client, tasks, policy)
                except ValueError as refused:
                    with pytest.raises(type(refused), match=str(refused)):
                        decide(typed, client, tasks, policy)
                    continue
                assert decide(typed, client, tasks, policy) == expected
                asked += 1
    assert asked


@settings(max_examples=200, deadline=None)
@given(
    task_id=st.uuids(),
    due_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
    ),
    escalated=st.booleans(),
    escalate_hours=st.one_of(st.none(), st.integers(min_value=1, max_value=200)),
    status=st.sampled_from(list(TaskStatus)),
)
def test_timers_are_named_as_timer_id_for_names_them(
    task_id: uuid.UUID,
    due_at: datetime,
    escalated: bool,
    escalate_hours: int | None,
    status: TaskStatus,
) -> None:
    task = new_task(
        kind=TaskKind.REVISIT,
        source_event_id=uuid.uuid4(),
        client_id=CLIENT_ID,
        branch_id=None,
        assignee="rm-7",
        subject="client",
        opened_at=due_at - timedelta(days=1),
        due_at=due_at,
        deadline_profile="default",
    ).model_copy(
        update={"id": task_id, "status": status, "escalated_to": "sup-1" if escalated else None}
    )
    policy = FollowupPolicy(
        escalate_after=None if escalate_hours is None else timedelta(hours=escalate_hours)
    )
    timers = timers_for(task, policy)
    if status is not TaskStatus.OPEN:
        assert timers == ()
        return
    kinds = [TimerKind.OVERDUE]
    if escalate_hours is not None and not escalated:
        kinds.append(TimerKind.ESCALATE)
    assert [t.kind for t in timers] == kinds
    for timer in timers:
        assert timer.task_id == task_id
        assert timer.id == timer_id_for(task_id, timer.kind)
        assert timer.id == uuid.uuid5(TIMER_NAMESPACE, f"{task_id}/{timer.kind.value}")
        assert timer.fire_at.tzinfo is UTC


@settings(max_examples=200, deadline=None)
@given(
    client_id=st.sampled_from(["C-1", "C-2", CLIENT_ID]),
    rm_id=st.one_of(st.none(), st.sampled_from(["rm-1", "rm-7"])),
    stage=st.sampled_from(list(LifecycleStage)),
    branch_id=st.one_of(st.none(), st.sampled_from(["BR-001", "BR-002"])),
    risk_level=st.one_of(st.none(), st.sampled_from(["low", "medium", "high", "very_high"])),
)
def test_a_remembered_client_context_equals_the_one_validated(
    client_id: str,
    rm_id: str | None,
    stage: LifecycleStage,
    branch_id: str | None,
    risk_level: str | None,
) -> None:
    expected = ClientContext(
        client_id=client_id, rm_id=rm_id, stage=stage, branch_id=branch_id, risk_level=risk_level
    )
    got = client_context(client_id, rm_id, stage, branch_id, risk_level)
    assert got == expected
    assert got.model_dump() == expected.model_dump()
    assert got.model_fields_set == expected.model_fields_set
    assert client_context(client_id, rm_id, stage, branch_id, risk_level) is got
