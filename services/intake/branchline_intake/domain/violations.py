"""Refusals by a rule of the standard: each carries the rule id of docs/rules.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

D01: Final = "D-01"
"""Visit lifecycle: unknown visit, a step after the visit closed, a second open visit."""
D01A: Final = "D-01a"
"""Visit handling order: needs confirmed (and documents complete) before business."""
D02: Final = "D-02"
D03: Final = "D-03"
D04: Final = "D-04"
D05: Final = "D-05"
D05B: Final = "D-05b"
"""No backdating: ``occurred_at`` within the clock skew and the late-entry window."""
D06: Final = "D-06"
D07: Final = "D-07"
D09: Final = "D-09"
"""Client register: events of an unregistered client, a second registration; account closure
and reopening in order."""
D17: Final = "D-17"
"""Promises kept (renegotiated before their deadline) and corrective actions tracked to done."""
D13: Final = "D-13"
"""Product shelf: only approved products on sale, at the institution's rating."""
D14: Final = "D-14"
"""Qualified staff: a valid qualification for the product's category."""
D16: Final = "D-16"
"""Conflicts of interest: a declared interest disclosed to the client."""


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """Why a rule refused an event: maps onto an RFC 9457 problem (``rule``, ``title``,
    ``detail``) and, when one field is to blame, its path (e.g. ``data.product_risk``)."""

    rule: str
    title: str
    detail: str
    field: str | None = None


class RuleViolationError(Exception):
    """Raised by the ``check_*`` guards; :func:`~.decision.decide` turns it into a refusal."""

    def __init__(self, violation: RuleViolation) -> None:
        super().__init__(f"{violation.rule}: {violation.title}: {violation.detail}")
        self.violation = violation


def refuse(rule: str, title: str, detail: str, field: str | None = None) -> RuleViolationError:
    """The error a guard raises: ``raise refuse(D05, "...", "...")``."""
    return RuleViolationError(RuleViolation(rule=rule, title=title, detail=detail, field=field))
