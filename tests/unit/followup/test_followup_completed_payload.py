"""``followup.completed``'s payload is made by its catalogue model (#12): the bytes on the
wire are exactly those of the dict it replaces, for every outcome and kind, with and without
each optional part, and what the dict let through and what it refused is the same."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from branchline_followup.application.actions import completion
from branchline_followup.application.recording import normalised
from branchline_followup.domain import FollowupTask, TaskKind
from branchline_followup.domain.vocabulary import TaskRule
from branchline_shared.events.catalogue import EventType, SatisfactionScores
from branchline_shared.events.vocabulary import FollowupOutcome

COMPLETED = EventType.FOLLOWUP_COMPLETED.value
T = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def task(kind: TaskKind) -> FollowupTask:
    return FollowupTask(
        id=uuid.UUID(int=7),
        kind=kind,
        rule=next(iter(TaskRule)),
        client_id="C-1",
        assignee="rm-1",
        subject="client",
        opened_at=T,
        due_at=T + timedelta(days=3),
        deadline_profile="calendar",
        source_event_id=uuid.UUID(int=8),
    )


def dict_data(
    task: FollowupTask,
    outcome: str,
    note: str | None,
    next_contact_at: datetime | None,
    scores: dict[str, Any] | None,
    client_warned: bool | None,
) -> dict[str, Any]:
    """The payload as ``complete_task`` built it before #12, verbatim."""
    data: dict[str, Any] = {"task_id": str(task.id), "outcome": outcome, "kind": task.kind.value}
    if note is not None:
        data["note"] = note
    if next_contact_at is not None:
        data["next_contact_at"] = next_contact_at
    if scores is not None:
        data["scores"] = scores
    if client_warned is not None:
        data["client_warned"] = client_warned
    return data


def model_data(
    task: FollowupTask,
    outcome: str,
    note: str | None,
    next_contact_at: datetime | None,
    scores: dict[str, Any] | None,
    client_warned: bool | None,
) -> dict[str, Any]:
    """The payload as ``complete_task`` builds it now, from the same inputs as its callers
    give them (the API's and the console's models)."""
    return completion(
        task,
        outcome=FollowupOutcome(outcome),
        note=note,
        next_contact_at=next_contact_at,
        scores=None if scores is None else SatisfactionScores.model_validate(scores),
        client_warned=client_warned,
    ).model_dump(mode="json", exclude_none=True)


SCORES = (
    None,
    {
        "attitude": 0,
        "professionalism": 100,
        "response_speed": 87,
        "risk_management": 50,
        "convenience": 1,
    },
    # in another order than the model's
    {
        "convenience": 90,
        "risk_management": 80,
        "response_speed": 70,
        "professionalism": 60,
        "attitude": 40,
    },
)
WHEN = (
    None,
    datetime(2026, 12, 11, 9, 0, tzinfo=UTC),
    datetime(2026, 12, 11, 17, 0, 0, 123456, tzinfo=timezone(timedelta(hours=8))),
    datetime(2027, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
)
NOTES = (None, "Called back: fine.", "回访\uff0c客户满意 \u00e9")


@pytest.mark.parametrize("kind", list(TaskKind))
def test_the_wire_bytes_are_those_of_the_dict(kind: TaskKind) -> None:
    for outcome, scores, when, note, warned in itertools.product(
        list(FollowupOutcome), SCORES, WHEN, NOTES, (None, True, False)
    ):
        args = (task(kind), outcome.value, note, when, scores, warned)
        before = normalised(COMPLETED, dict_data(*args))
        after = normalised(COMPLETED, model_data(*args))
        assert orjson.dumps(after) == orjson.dumps(before), args
        assert model_data(*args) == before  # already in its normalised form


@pytest.mark.parametrize(
    "bad",
    [
        {"note": "x" * 2001},
        {"note": ""},
        {"scores": {"attitude": 101}},
        {"scores": {"attitude": 80.0}},
        {"next_contact_at": datetime(2026, 12, 11, 9, 0)},  # naive
        {"client_warned": "yes"},
    ],
)
def test_what_the_dict_refused_the_model_refuses(bad: dict[str, Any]) -> None:
    values: dict[str, Any] = {
        "note": None,
        "next_contact_at": None,
        "scores": None,
        "client_warned": None,
    }
    if "scores" in bad:
        bad = {"scores": {**SCORES[1], **bad["scores"]}}  # type: ignore[dict-item]
    values.update(bad)
    args = (task(TaskKind.SATISFACTION_SURVEY), "contacted", *values.values())
    with pytest.raises(ValidationError):
        normalised(COMPLETED, dict_data(*args))
    with pytest.raises(ValidationError):
        model_data(*args)
