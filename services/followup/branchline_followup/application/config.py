"""The :class:`FollowupPolicy` of a deployment, built from its settings (docs/rules.md defaults
unless overridden)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, get_args

from branchline_followup.domain import FollowupPolicy
from branchline_shared.settings import FollowupDeadline, FollowupSettings

DURATION_FIELDS = frozenset(get_args(FollowupDeadline))
"""The FollowupPolicy deadlines that ``followup_durations_s`` may override."""


class PolicySettingsError(ValueError):
    """The followup settings name an unknown rule, stage or profile."""


def policy_from_settings(settings: FollowupSettings) -> FollowupPolicy:
    # The settings' types already refused unknown deadlines, stages, profiles and zones (at
    # start); what is left here is the policy's own consistency check.
    values: dict[str, Any] = {
        name: timedelta(seconds=seconds) for name, seconds in settings.followup_durations_s.items()
    }
    defaults = FollowupPolicy()
    cadence = dict(defaults.revisit_cadence)
    for stage, days in settings.followup_revisit_cadence_days.items():
        cadence[stage] = None if days is None else timedelta(days=days)
    kyc_refresh = dict(defaults.kyc_refresh_months)
    kyc_refresh.update({str(level): m for level, m in settings.followup_kyc_refresh_months.items()})
    escalate = settings.followup_escalate_after_hours
    try:
        return dataclasses.replace(
            defaults,
            **values,
            default_profile=str(settings.followup_default_profile),
            branch_profiles=MappingProxyType(
                {b: str(p) for b, p in settings.followup_branch_profiles.items()}
            ),
            default_timezone=settings.calendar_default_timezone,
            branch_timezones=MappingProxyType(dict(settings.calendar_branch_timezones)),
            default_holidays=frozenset(settings.calendar_holidays),
            branch_holidays=MappingProxyType(
                {b: frozenset(days) for b, days in settings.calendar_branch_holidays.items()}
            ),
            supervisors=MappingProxyType(dict(settings.staff_supervisors)),
            default_supervisor_id=settings.staff_default_supervisor,
            escalate_after=None if escalate is None else timedelta(hours=escalate),
            feedback_low_score=settings.followup_feedback_low_score,
            due_soon_window=timedelta(hours=settings.followup_due_soon_hours),
            revisit_cadence=MappingProxyType(cadence),
            access_request_within=timedelta(days=settings.followup_access_request_days),
            access_request_within_by_profile=MappingProxyType(
                {
                    str(profile): timedelta(days=days)
                    for profile, days in settings.followup_access_request_days_by_profile.items()
                }
            ),
            privacy_officer=settings.followup_privacy_officer,
            kyc_refresh_months=MappingProxyType(kyc_refresh),
            # D-03: what counts as due diligence is intake's identity gate
            kyc_verification_methods=frozenset(str(m) for m in settings.identity_gate_methods),
            gift_accept_threshold=settings.followup_gift_threshold,
            training_hours_per_year=settings.followup_training_hours_per_year,
            # D-09 numbers are the institution's (branchline_shared.domain.classification).
            new_client_period=timedelta(days=settings.lifecycle_new_client_days),
            churn_after_inactivity=timedelta(days=settings.lifecycle_churn_after_days),
            high_net_worth_aum=Decimal(settings.lifecycle_high_net_worth_threshold),
        )
    except (ValueError, KeyError) as exc:  # KeyError: ZoneInfoNotFoundError
        raise PolicySettingsError(f"followup settings: {exc}") from exc
