"""How followup's refusals look over HTTP: the one table from a use case's refusal to its
problem+json status, title and problem type (docs/api.md). The use cases raise plain
exceptions; the routes hand them to :func:`problem_of`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from branchline_followup.application.actions import (
    ClientNotWarned,
    NotYourTask,
    SelfGrading,
    TaskClosed,
    TaskNotFound,
    TaskRefused,
)
from branchline_followup.application.clock import ClockWouldGoBackwards
from branchline_followup.application.personal_data import (
    ClientUnknown,
    PersonalDataRestricted,
    PersonalDataShredded,
    StaffUnknown,
)
from branchline_followup.application.service_loop import UnknownProfile
from branchline_shared.crypto.keystore import KeyDestroyed
from branchline_shared.http.problems import Problem


def _detail(refused: Any) -> str:
    return str(refused.detail) if hasattr(refused, "detail") else str(refused)


def _none(_: Any) -> None:
    return None


def _nothing(_: Any) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Shape:
    status: int
    title: str
    kind: str
    """The problem type: ``https://branchline.dev/problems/<kind>``."""
    rule: str | None = None
    detail: Callable[[Any], str] = _detail
    errors: Callable[[Any], list[dict[str, str]] | None] = _none
    members: Callable[[Any], dict[str, Any]] = field(default=_nothing)
    """Extension members of the problem (RFC 9457)."""


def _invalid(name: str, message: Callable[[Any], str]) -> Shape:
    return Shape(
        422,
        "Invalid request",
        "validation",
        detail=lambda _: f"invalid fields: {name}",
        errors=lambda refused: [
            {"field": name, "message": message(refused), "type": "value_error"}
        ],
    )


PROBLEMS: dict[type[Exception], Shape] = {
    TaskNotFound: Shape(404, "Not found", "task-not-found"),
    # Out of scope answers as absent, so another team's task's existence does not leak.
    NotYourTask: Shape(
        404, "Not found", "task-not-found", detail=lambda r: f"no follow-up task {r.task_id}"
    ),
    TaskClosed: Shape(
        409, "Task closed", "task-closed", members=lambda r: {"task_status": r.status}
    ),
    SelfGrading: Shape(
        403,
        "Forbidden",
        "self-grading",
        rule="D-10",
        errors=lambda r: [{"field": "scores", "message": r.detail, "type": "forbidden"}],
    ),
    ClientNotWarned: Shape(
        409,
        ClientNotWarned.title,
        "rule-violation",
        rule=ClientNotWarned.rule,
        errors=lambda r: [{"field": f, "message": r.detail, "type": "rule"} for f in r.fields],
    ),
    TaskRefused: Shape(409, "Refused", "task-refused"),
    # A note about a client whose key is destroyed (a task's completion) cannot be sealed.
    KeyDestroyed: Shape(
        409,
        "Personal data destroyed",
        "personal-data-shredded",
        rule="D-04",
        detail=lambda _: (
            "the client's personal data was destroyed (D-04): a note about them "
            "can no longer be recorded; complete the task without one"
        ),
        errors=lambda _: [{"field": "note", "message": "client erased", "type": "rule"}],
    ),
    ClientUnknown: Shape(404, "Not found", "client-not-found"),
    StaffUnknown: Shape(404, "Not found", "staff-not-found"),
    PersonalDataRestricted: Shape(
        409, "Personal data restricted", "personal-data-restricted", rule="D-04"
    ),
    PersonalDataShredded: Shape(
        410, "Personal data destroyed", "personal-data-shredded", rule="D-04"
    ),
    UnknownProfile: _invalid("profile", lambda r: f"unknown profile; known: {', '.join(r.known)}"),
    ClockWouldGoBackwards: Shape(
        422,
        "Clock would go backwards",
        "clock-backwards",
        errors=lambda r: [{"field": "set", "message": str(r), "type": "value_error"}],
        members=lambda r: {"now": r.now.isoformat()},
    ),
}
"""Looked up by the refusal's class, then its bases (a subclass of ``TaskRefused`` without an
entry of its own answers as a plain refusal)."""


def problem_of(refused: Exception) -> Problem:
    shape = next(PROBLEMS[cls] for cls in type(refused).__mro__ if cls in PROBLEMS)
    return Problem(
        shape.status,
        shape.title,
        shape.detail(refused),
        kind=shape.kind,
        rule=shape.rule,
        errors=shape.errors(refused),
        extra=shape.members(refused),
    )
