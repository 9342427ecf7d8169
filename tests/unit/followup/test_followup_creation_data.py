"""A task creation's payload built without its model, and its envelope copied from a
validated one (#12), are what the validated models make, and refuse what they refuse with
their own errors (D-07: what a creation records)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from branchline_followup.application.task_creations import (
    PendingCreations,
    _decided_by,
    creation_event,
    validated_creation_event,
)
from branchline_followup.domain import TaskKind
from branchline_followup.domain.opening import (
    CREATION_FIELDS,
    MAX_HOLDINGS,
    SUITABILITY_SUBJECT_PREFIX,
    creation_data,
    creation_record,
)
from branchline_followup.domain.tasks import FollowupTask, new_task
from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.catalogue import FollowupTaskCreated

pytestmark = pytest.mark.unit

MONDAY_9 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

# identifiers and near misses: stripped, empty, spaced, controls, format characters, the
# reserved prefix of sealed values, non-ASCII, too long
TEXTS = st.one_of(
    st.sampled_from(
        [
            "rm-7",
            "default",
            "client",
            "visit:V-1",
            " rm-7 ",
            "",
            "rm 7",
            "rm\x00",
            "rm\u200b7",
            SEALED_PREFIX + "abc",
            "Zoë",
            "x" * 128,
            "x" * 129,
        ]
    ),
    st.text(max_size=20),
    st.from_regex(r"[A-Za-z0-9._:@\-]{1,12}", fullmatch=True),
)
INSTANTS = st.one_of(
    st.datetimes(
        min_value=datetime(1890, 1, 1),
        max_value=datetime(2210, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=15))]
        ),
    ),
    st.sampled_from(
        [MONDAY_9, MONDAY_9.replace(microsecond=120), datetime(2200, 1, 1, tzinfo=UTC)]
    ),
)


def _outcome(build: Any, task: FollowupTask) -> tuple[str, Any]:
    try:
        document = build(task)
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    return ("made", (list(document), document))


def _task(
    kind: TaskKind, assignee: str, subject: str, profile: str, due_at: datetime
) -> FollowupTask:
    task = new_task(
        kind=kind,
        source_event_id=uuid.UUID(int=7),
        client_id="C-1",
        branch_id="BR-001",
        assignee="rm-7",
        subject="client",
        opened_at=MONDAY_9,
        due_at=MONDAY_9 + timedelta(days=2),
        deadline_profile="default",
    )
    # the values as given (not normalised by the task's own validation), as a copy may carry
    return task.model_copy(
        update={
            "assignee": assignee,
            "subject": subject,
            "deadline_profile": profile,
            "due_at": due_at,
        }
    )


def _model(task: FollowupTask) -> dict[str, Any]:
    return creation_record(task).model_dump(mode="json", exclude_none=True)


@given(
    kind=st.sampled_from(list(TaskKind)),
    assignee=TEXTS,
    subject=TEXTS,
    profile=TEXTS,
    due_at=INSTANTS,
)
@example(TaskKind.SATISFACTION_SURVEY, "rm-7", "client", "default", MONDAY_9)
@example(TaskKind.REVISIT, " rm-7 ", "visit:V-1 ", "default", MONDAY_9)
@example(TaskKind.REVISIT, "rm-7", "client", "default", datetime(2200, 1, 1, tzinfo=UTC))
def test_the_payload_is_the_models_document_or_its_error(
    kind: TaskKind, assignee: str, subject: str, profile: str, due_at: datetime
) -> None:
    task = _task(kind, assignee, subject, profile, due_at)
    assert _outcome(creation_data, task) == _outcome(_model, task)


@given(
    holdings=st.lists(TEXTS, max_size=4)
    | st.lists(st.just("P-1"), min_size=MAX_HOLDINGS - 1, max_size=MAX_HOLDINGS + 2),
    assignee=TEXTS,
)
def test_a_suitability_reviews_holdings_are_the_models(holdings: list[str], assignee: str) -> None:
    subject = SUITABILITY_SUBJECT_PREFIX + ",".join(holdings)
    task = _task(TaskKind.SUITABILITY_REVIEW, assignee, subject, "default", MONDAY_9)
    assert _outcome(creation_data, task) == _outcome(_model, task)


def test_a_task_of_another_type_of_value_is_left_to_the_model() -> None:
    task = _task(TaskKind.REVISIT, "rm-7", "client", "default", MONDAY_9)
    for odd in (
        {"source_event_id": str(uuid.UUID(int=7))},
        {"due_at": MONDAY_9.isoformat()},
        {"assignee": 7},
        {"kind": "revisit"},
    ):
        changed = task.model_copy(update=odd)
        assert _outcome(creation_data, changed) == _outcome(_model, changed)


def test_the_payload_builder_knows_every_field_of_the_catalogues_model() -> None:
    # a field added to followup.task_created must be added to creation_data (or it is lost)
    assert tuple(FollowupTaskCreated.model_fields) == CREATION_FIELDS


def _event_outcome(build: Any, task: FollowupTask, now: datetime) -> tuple[str, Any]:
    try:
        event = build(task, stream_version=1, now=now)
    except Exception as exc:
        return ("raised", (type(exc), str(exc)))
    return ("made", (event, event.model_fields_set, event.model_dump_json()))


@given(
    opened_at=INSTANTS,
    now=INSTANTS,
    client_id=st.sampled_from(["C-1", "", "C 1"]),
    branch_id=st.sampled_from([None, "BR-001", ""]),
    assignee=st.sampled_from(["rm-7", " rm-7", "rm 7"]),
)
@example(MONDAY_9, MONDAY_9, "C-1", "BR-001", "rm-7")
def test_the_creation_is_the_validated_envelope_or_its_error(
    opened_at: datetime, now: datetime, client_id: str, branch_id: str | None, assignee: str
) -> None:
    task = _task(TaskKind.REVISIT, assignee, "client", "default", MONDAY_9).model_copy(
        update={"opened_at": opened_at, "client_id": client_id, "branch_id": branch_id}
    )
    assert _event_outcome(creation_event, task, now) == _event_outcome(
        validated_creation_event, task, now
    )


def test_a_creation_of_values_of_another_type_is_left_to_the_validated_envelope() -> None:
    task = _task(TaskKind.REVISIT, "rm-7", "client", "default", MONDAY_9)
    for odd in (
        {"client_id": 7},
        {"branch_id": 7},
        {"opened_at": MONDAY_9.isoformat()},
        {"source_event_id": "not-a-uuid"},
    ):
        changed = task.model_copy(update=odd)
        assert _event_outcome(creation_event, changed, MONDAY_9) == _event_outcome(
            validated_creation_event, changed, MONDAY_9
        )
    assert _event_outcome(creation_event, task, MONDAY_9.date()) == _event_outcome(  # type: ignore[arg-type]
        validated_creation_event,
        task,
        MONDAY_9.date(),  # type: ignore[arg-type]
    )


@given(kind=st.sampled_from(list(TaskKind)), source=st.uuids(), opened_at=INSTANTS)
def test_a_pending_creation_is_known_by_what_its_event_states(
    kind: TaskKind, source: uuid.UUID, opened_at: datetime
) -> None:
    # PendingCreations keeps (source, task id) as added instead of parsing them back when it
    # records the creation: the same pair the event states
    task = new_task(
        kind=kind,
        source_event_id=source,
        client_id="C-1",
        branch_id=None,
        assignee="rm-7",
        subject="client",
        opened_at=MONDAY_9,
        due_at=MONDAY_9 + timedelta(days=2),
        deadline_profile="default",
    )
    try:
        event = creation_event(task, stream_version=1, now=opened_at)
    except ValueError:  # a creation instant outside the stores' window: no creation at all
        return
    pending = PendingCreations()
    pending.add([(task, event)])
    assert pending.decided[event.event_id] == _decided_by(event) == (source, task.id)
