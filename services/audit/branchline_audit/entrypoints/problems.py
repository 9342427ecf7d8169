"""How audit's refusals look over HTTP: the one table from a refusal to its problem+json
status, title and problem type (docs/api.md, docs/audit.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from branchline_audit.application.proofs import ProofRefusal, ProofRefused
from branchline_audit.domain.relationships import HoldRefusal, HoldRefused
from branchline_shared.http.problems import Problem


@dataclass(frozen=True)
class Shape:
    status: int
    title: str
    kind: str
    """The problem type: ``https://branchline.dev/problems/<kind>``."""


PROBLEMS: dict[StrEnum, Shape] = {
    ProofRefusal.UNKNOWN_POSITION: Shape(404, "Not found", "unknown-position"),
    ProofRefusal.UNKNOWN_CHECKPOINT: Shape(404, "Not found", "unknown-checkpoint"),
    ProofRefusal.SIZES_OUT_OF_ORDER: Shape(422, "Invalid request", "validation"),
    ProofRefusal.LEDGER_INTEGRITY: Shape(500, "Ledger integrity failure", "ledger-integrity"),
    HoldRefusal.ALREADY_STANDS: Shape(409, "Conflict", "legal-hold"),
    HoldRefusal.NOT_STANDING: Shape(404, "Not found", "legal-hold"),
}


def problem_of(refused: ProofRefused | HoldRefused) -> Problem:
    shape = PROBLEMS[refused.reason]
    rule = refused.rule if isinstance(refused, HoldRefused) else None
    return Problem(shape.status, shape.title, refused.detail, kind=shape.kind, rule=rule)
