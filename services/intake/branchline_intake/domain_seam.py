"""Chooses the decider that enforces the standard on the write path."""

from __future__ import annotations

from datetime import timedelta

from branchline_intake.application.deciding import Decider
from branchline_intake.domain import IntakePolicy, RecordedDecider
from branchline_shared.events.vocabulary import IdentityMethod
from branchline_shared.settings import IntakeSettings


def intake_policy(settings: IntakeSettings) -> IntakePolicy:
    """The numbers of the rules, from settings (defaults: docs/rules.md)."""
    return IntakePolicy(
        assessment_validity_months=settings.assessment_validity_months,
        identity_gate_methods=frozenset(IdentityMethod(m) for m in settings.identity_gate_methods),
        screening_required=settings.intake_screening_required,
        clock_skew=timedelta(seconds=settings.intake_clock_skew_seconds),
        late_entry_window=timedelta(hours=settings.intake_late_entry_window_hours),
    )


def build_decider(settings: IntakeSettings) -> Decider:
    return RecordedDecider(intake_policy(settings))
