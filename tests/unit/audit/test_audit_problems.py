"""Audit's refusals become problem+json through one table (HTTP only at the edge, #16)."""

from __future__ import annotations

import pytest

from branchline_audit.application.proofs import ProofRefusal, ProofRefused
from branchline_audit.domain.relationships import HoldRefusal, HoldRefused
from branchline_audit.entrypoints.problems import PROBLEMS, problem_of

pytestmark = pytest.mark.unit


def test_every_refusal_has_its_problem() -> None:
    assert set(PROBLEMS) == set(ProofRefusal) | set(HoldRefusal)


@pytest.mark.parametrize(
    ("reason", "status", "kind"),
    [
        (ProofRefusal.UNKNOWN_POSITION, 404, "unknown-position"),
        (ProofRefusal.SIZES_OUT_OF_ORDER, 422, "validation"),
        (ProofRefusal.LEDGER_INTEGRITY, 409, "ledger-integrity"),
    ],
)
def test_a_refused_proof(reason: ProofRefusal, status: int, kind: str) -> None:
    body = problem_of(ProofRefused(reason, "why")).body()
    assert (body["status"], body["type"], body["detail"]) == (
        status,
        f"https://branchline.dev/problems/{kind}",
        "why",
    )
    assert "rule" not in body


def test_a_refused_hold_names_d11() -> None:
    body = problem_of(HoldRefused("no standing legal hold H-9", reason=HoldRefusal.NOT_STANDING))
    assert body.body() == {
        "type": "https://branchline.dev/problems/legal-hold",
        "title": "Not found",
        "status": 404,
        "detail": "no standing legal hold H-9",
        "rule": "D-11",
    }
