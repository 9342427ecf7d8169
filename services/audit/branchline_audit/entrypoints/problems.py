"""How audit's refusals look over HTTP: the one table from a refusal to its problem+json
status, title and problem type (docs/api.md, docs/audit.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from branchline_audit.application.proofs import ProofRefusal, ProofRefused
from branchline_audit.domain.relationships import HoldRefusal, HoldRefused
from branchline_audit.domain.verification import AlteredEntry
from branchline_shared.http.problems import Problem, problem_response


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
    # The stored trail fails its own checks: a conflict with the ledger's state, which the
    # request cannot change; never a 5xx, which would say the server failed (#12).
    ProofRefusal.LEDGER_INTEGRITY: Shape(409, "Ledger integrity failure", "ledger-integrity"),
    HoldRefusal.ALREADY_STANDS: Shape(409, "Conflict", "legal-hold"),
    HoldRefusal.NOT_STANDING: Shape(404, "Not found", "legal-hold"),
}


def problem_of(refused: ProofRefused | HoldRefused) -> Problem:
    shape = PROBLEMS[refused.reason]
    rule = refused.rule if isinstance(refused, HoldRefused) else None
    return Problem(shape.status, shape.title, refused.detail, kind=shape.kind, rule=rule)


def altered_problem(altered: AlteredEntry) -> Problem:
    """An entry altered behind the ledger's back, as the ledger-integrity problem naming it and
    the rule (D-11)."""
    shape = PROBLEMS[ProofRefusal.LEDGER_INTEGRITY]
    return Problem(shape.status, shape.title, altered.detail, kind=shape.kind, rule=altered.rule)


def install_altered_entry_problems(app: FastAPI) -> None:
    """Any route meeting an altered entry (:class:`AlteredEntry`) answers its problem."""

    @app.exception_handler(AlteredEntry)
    async def _altered(_: Request, exc: AlteredEntry) -> JSONResponse:
        return problem_response(altered_problem(exc))
