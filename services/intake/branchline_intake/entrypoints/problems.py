"""How intake's refusals look over HTTP: the one table from a refusal to its problem+json
status, title and problem type (docs/api.md)."""

from __future__ import annotations

from dataclasses import dataclass

from branchline_intake.application.outcomes import Refusal, Refused
from branchline_shared.http.problems import Problem


@dataclass(frozen=True)
class Shape:
    status: int
    title: str
    kind: str
    """The problem type: ``https://branchline.dev/problems/<kind>``."""


PROBLEMS: dict[Refusal, Shape] = {
    Refusal.INVALID: Shape(422, "Invalid request", "validation"),
    Refusal.WRONG_SUBJECT: Shape(422, "Wrong subject", "validation"),
    Refusal.UNKNOWN_EVENT_TYPE: Shape(422, "Unknown event type", "unknown-event-type"),
    Refusal.SYSTEM_EVENT_TYPE: Shape(422, "Not a branch event", "system-event-type"),
    Refusal.ACTOR_NOT_ALLOWED: Shape(
        403, "Not allowed to speak for this actor", "actor-not-allowed"
    ),
    Refusal.CLIENT_NOT_FOUND: Shape(404, "Not found", "client-not-found"),
    Refusal.CLIENT_ERASED: Shape(409, "Client erased", "rule-violation"),
    Refusal.STAFF_ERASED: Shape(409, "Member of staff erased", "rule-violation"),
    Refusal.INSTITUTION_KEY_DESTROYED: Shape(409, "Institution's key destroyed", "rule-violation"),
    Refusal.IDEMPOTENCY_CONFLICT: Shape(409, "Idempotency key reused", "idempotency-conflict"),
    Refusal.VERSION_CONFLICT: Shape(409, "Stream version mismatch", "version-conflict"),
    Refusal.RULE_VIOLATION: Shape(409, "Refused by a rule", "rule-violation"),
}
"""A rule violation is titled by the refusing rule itself where it has a title. An erasure's
refusals (D-04) keep the problem type ``rule-violation`` (clients branch on it) and are titled by
whose key was destroyed: a client's or a member of staff's."""


def problem_of(refused: Refused) -> Problem:
    shape = PROBLEMS[refused.reason]
    return Problem(
        shape.status,
        refused.rule_title or shape.title,
        refused.detail,
        kind=shape.kind,
        rule=refused.rule,
        errors=None if refused.issues is None else [i.as_dict() for i in refused.issues],
        extra={}
        if refused.current_version is None
        else {"current_version": refused.current_version},
    )


def _extra(refused: Refused) -> dict[str, int]:
    if refused.current_version is None:
        return {}
    return {"current_version": refused.current_version}
