"""The :class:`FollowupPolicy` of a deployment, built from its settings (docs/rules.md defaults
unless overridden)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from branchline_followup.domain import FollowupPolicy, LifecycleStage
from branchline_shared.settings import BranchlineSettings

DURATION_FIELDS = frozenset(
    {
        "survey_within",
        "appointment_preparation_lead",
        "online_consultation_response",
        "offline_consultation_response",
        "complaint_follow_up_after",
        "feedback_response_within",
        "new_client_first_revisit",
        "win_back_within",
        "product_review_every",
    }
)
"""The FollowupPolicy deadlines that ``followup_durations_s`` may override."""


class PolicySettingsError(ValueError):
    """The followup settings name an unknown rule, stage or profile."""


def policy_from_settings(settings: BranchlineSettings) -> FollowupPolicy:
    unknown = set(settings.followup_durations_s) - DURATION_FIELDS
    if unknown:
        raise PolicySettingsError(
            f"followup_durations_s names unknown deadlines {sorted(unknown)}; "
            f"known: {sorted(DURATION_FIELDS)}"
        )
    values: dict[str, Any] = {
        name: timedelta(seconds=seconds) for name, seconds in settings.followup_durations_s.items()
    }
    defaults = FollowupPolicy()
    cadence = dict(defaults.revisit_cadence)
    for stage_name, days in settings.followup_revisit_cadence_days.items():
        try:
            stage = LifecycleStage(stage_name)
        except ValueError:
            raise PolicySettingsError(
                f"followup_revisit_cadence_days names unknown stage {stage_name!r}"
            ) from None
        cadence[stage] = None if days is None else timedelta(days=days)
    kyc_refresh = dict(defaults.kyc_refresh_months)
    unknown_levels = set(settings.followup_kyc_refresh_months) - set(kyc_refresh)
    if unknown_levels:
        raise PolicySettingsError(
            f"followup_kyc_refresh_months names unknown risk levels {sorted(unknown_levels)}"
        )
    kyc_refresh.update(settings.followup_kyc_refresh_months)
    escalate = settings.followup_escalate_after_hours
    try:
        return dataclasses.replace(
            defaults,
            **values,
            default_profile=settings.followup_default_profile,
            branch_profiles=MappingProxyType(dict(settings.followup_branch_profiles)),
            default_timezone=settings.followup_default_timezone,
            branch_timezones=MappingProxyType(dict(settings.followup_branch_timezones)),
            default_holidays=frozenset(settings.followup_holidays),
            branch_holidays=MappingProxyType(
                {b: frozenset(days) for b, days in settings.followup_branch_holidays.items()}
            ),
            supervisors=MappingProxyType(dict(settings.followup_supervisors)),
            default_supervisor_id=settings.followup_default_supervisor,
            escalate_after=None if escalate is None else timedelta(hours=escalate),
            feedback_low_score=settings.followup_feedback_low_score,
            due_soon_window=timedelta(hours=settings.followup_due_soon_hours),
            revisit_cadence=MappingProxyType(cadence),
            access_request_within=timedelta(days=settings.followup_access_request_days),
            access_request_within_by_profile=MappingProxyType(
                {
                    profile: timedelta(days=days)
                    for profile, days in settings.followup_access_request_days_by_profile.items()
                }
            ),
            privacy_officer=settings.followup_privacy_officer,
            kyc_refresh_months=MappingProxyType(kyc_refresh),
            # D-03: what counts as due diligence is intake's identity gate
            kyc_verification_methods=frozenset(settings.intake_identity_gate_methods),
            gift_accept_threshold=settings.followup_gift_threshold,
            training_hours_per_year=settings.followup_training_hours_per_year,
            # D-09 numbers are the institution's, shared with intake's classification.
            new_client_period=timedelta(days=settings.intake_new_client_days),
            churn_after_inactivity=timedelta(days=settings.intake_churn_after_days),
            high_net_worth_aum=Decimal(settings.intake_high_net_worth_threshold),
        )
    except (ValueError, KeyError) as exc:  # KeyError: ZoneInfoNotFoundError (unknown zone)
        raise PolicySettingsError(f"followup settings: {exc}") from exc
