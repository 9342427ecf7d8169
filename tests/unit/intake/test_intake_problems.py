"""Intake's refusals become problem+json through one table (HTTP only at the edge, #16)."""

from __future__ import annotations

import pytest

from branchline_intake.application.outcomes import Refusal, Refused
from branchline_intake.entrypoints.problems import PROBLEMS, problem_of
from branchline_shared.field_issues import FieldIssue

pytestmark = pytest.mark.unit


def test_every_refusal_has_its_problem() -> None:
    assert set(PROBLEMS) == set(Refusal)


def test_a_version_conflict_names_the_field_and_the_current_version() -> None:
    refused = Refused(
        Refusal.VERSION_CONFLICT,
        "expected version 1 of client-C-1, but it is at 2",
        issues=(FieldIssue("expected_version", "stream is at 2", "conflict"),),
        current_version=2,
    )
    problem = problem_of(refused)
    assert problem.status == 409
    assert problem.body() == {
        "type": "https://branchline.dev/problems/version-conflict",
        "title": "Stream version mismatch",
        "status": 409,
        "detail": "expected version 1 of client-C-1, but it is at 2",
        "errors": [{"field": "expected_version", "message": "stream is at 2", "type": "conflict"}],
        "current_version": 2,
    }


def test_a_rule_violation_is_titled_by_its_rule() -> None:
    refused = Refused(
        Refusal.RULE_VIOLATION, "no consent on file", rule="D-04", rule_title="Consent required"
    )
    assert problem_of(refused).body() == {
        "type": "https://branchline.dev/problems/rule-violation",
        "title": "Consent required",
        "status": 409,
        "detail": "no consent on file",
        "rule": "D-04",
    }
