"""The numbers of the standard, in one frozen object (docs/rules.md "default" values).

Nothing in the domain hard-codes a threshold: every rule takes an :class:`IntakePolicy`, and
the application builds one from settings. :data:`DEFAULT_POLICY` holds docs/rules.md's defaults.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta

from branchline_shared.events.vocabulary import (
    IdentityMethod,
    VisitCategory,
)

_CONTRACT_CATEGORIES = frozenset(
    {
        VisitCategory.ACCOUNT,
        VisitCategory.LOAN,
        VisitCategory.WEALTH_PRODUCT,
        VisitCategory.INSURANCE,
    }
)


@dataclass(frozen=True, slots=True)
class IntakePolicy:
    """Configurable numbers of the rules intake enforces (D-09's classification is derived
    elsewhere: ``branchline_shared.domain.classification``)."""

    assessment_validity_months: int = 12
    """D-05: a risk assessment without ``valid_until`` is valid this many calendar months."""
    documents_required_categories: frozenset[VisitCategory] = _CONTRACT_CATEGORIES
    """D-01a: needs whose business waits for ``visit.documents_checked`` with complete true."""
    identity_required_categories: frozenset[VisitCategory] = _CONTRACT_CATEGORIES
    """D-03: needs whose business waits for ``client.identity_verified`` (account opening and
    contracts: loans, wealth products, insurance). Set to ``{ACCOUNT}`` for the narrow reading."""
    identity_gate_methods: frozenset[IdentityMethod] = frozenset(
        {IdentityMethod.NETWORKED_ID_CHECK}
    )
    """D-03: the verification methods that open the gate (others are recorded only)."""
    screening_required: bool = True
    """D-03: an account opening or sale needs a screening result, and it must be clear."""
    clock_skew: timedelta = timedelta(minutes=5)
    """D-05b: how far ``occurred_at`` may lie after the time of receipt."""
    late_entry_window: timedelta = timedelta(hours=24)
    """D-05b: how far before its receipt an event may lie without being a flagged late entry."""

    def __post_init__(self) -> None:
        if self.assessment_validity_months < 1:
            raise ValueError("assessment_validity_months must be at least 1")
        if not self.identity_gate_methods:
            raise ValueError("identity_gate_methods must name at least one method")
        if self.clock_skew < timedelta(0) or self.late_entry_window <= timedelta(0):
            raise ValueError("clock_skew must not be negative, late_entry_window positive")

    def assessment_valid_until(self, assessed_at: datetime) -> datetime:
        """D-05: the default end of validity of an assessment made at ``assessed_at``."""
        return add_months(assessed_at, self.assessment_validity_months)


DEFAULT_POLICY = IntakePolicy()
"""docs/rules.md's defaults."""


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months; the day is clamped to the month's end (31 Jan + 1 month
    is 28/29 Feb), the time and offset are kept."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
