"""followup's refusals become problem+json through one table (HTTP only at the edge, #16)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from branchline_followup.application.actions import NotYourTask, TaskNotFound, TaskRefused
from branchline_followup.application.clock import ClockWouldGoBackwards
from branchline_followup.application.personal_data import (
    PersonalDataRefused,
    PersonalDataShredded,
)
from branchline_followup.entrypoints.problems import PROBLEMS, problem_of
from branchline_shared.crypto.keystore import KeyDestroyed

pytestmark = pytest.mark.unit

TASK = uuid.UUID("5d2f1c3a-8e4b-4b7a-9c1d-2e3f4a5b6c7d")


@pytest.mark.parametrize("base", [TaskRefused, PersonalDataRefused])
def test_every_refusal_has_its_own_problem(base: type[Exception]) -> None:
    assert set(base.__subclasses__()) <= set(PROBLEMS)


def test_a_task_out_of_scope_answers_as_absent() -> None:
    out_of_scope = NotYourTask.__new__(NotYourTask)
    TaskRefused.__init__(out_of_scope, TASK, f"task {TASK} is outside the scope of rm-7")
    assert (
        problem_of(out_of_scope).body()
        == problem_of(TaskNotFound(TASK)).body()
        == {
            "type": "https://branchline.dev/problems/task-not-found",
            "title": "Not found",
            "status": 404,
            "detail": f"no follow-up task {TASK}",
        }
    )


def test_a_note_about_an_erased_client_names_the_note_and_d04() -> None:
    body = problem_of(KeyDestroyed("C-1")).body()
    assert (body["status"], body["rule"], body["errors"]) == (
        409,
        "D-04",
        [{"field": "note", "message": "client erased", "type": "rule"}],
    )
    assert "C-1" not in body["detail"]


def test_shredded_personal_data_is_gone() -> None:
    assert problem_of(PersonalDataShredded("C-1")).status == 410


def test_the_test_clock_refuses_to_go_back_and_says_where_it_is() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    body = problem_of(ClockWouldGoBackwards(now, datetime(2026, 11, 1, tzinfo=UTC))).body()
    assert (body["status"], body["now"], body["errors"][0]["field"]) == (
        422,
        now.isoformat(),
        "set",
    )
