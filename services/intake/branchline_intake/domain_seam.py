"""Chooses the decider that enforces the standard on the write path."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from branchline_intake.application.deciding import Decider
from branchline_intake.domain import IntakePolicy, RecordedDecider
from branchline_shared.events.vocabulary import IdentityMethod
from branchline_shared.settings import IntakeSettings


def intake_policy(settings: IntakeSettings) -> IntakePolicy:
    """The numbers of the rules, from settings (defaults: docs/rules.md)."""
    return IntakePolicy(
        assessment_validity_months=settings.assessment_validity_months,
        new_client_period=timedelta(days=settings.lifecycle_new_client_days),
        churn_after=timedelta(days=settings.lifecycle_churn_after_days),
        high_net_worth_threshold=Decimal(settings.lifecycle_high_net_worth_threshold),
        identity_gate_methods=frozenset(
            IdentityMethod(m) for m in settings.intake_identity_gate_methods
        ),
        screening_required=settings.intake_screening_required,
        clock_skew=timedelta(seconds=settings.intake_clock_skew_seconds),
        late_entry_window=timedelta(hours=settings.intake_late_entry_window_hours),
    )


def build_decider(settings: IntakeSettings) -> Decider:
    return RecordedDecider(intake_policy(settings))
