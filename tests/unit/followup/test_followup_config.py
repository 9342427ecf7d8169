"""The FollowupPolicy built from settings: docs/rules.md defaults, every number overridable."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from branchline_followup.application.config import DURATION_FIELDS, policy_from_settings
from branchline_followup.domain import FollowupPolicy, LifecycleStage
from branchline_shared.settings import BranchlineSettings, FollowupSettings

pytestmark = pytest.mark.unit


def settings(**values: object) -> BranchlineSettings:
    return BranchlineSettings.model_validate({"jwt_secret": "x" * 40, **values})


def test_defaults_are_the_domain_defaults() -> None:
    policy = policy_from_settings(settings())
    defaults = FollowupPolicy()
    assert policy.survey_within == timedelta(days=3)
    assert policy.escalate_after == timedelta(hours=24)
    assert policy.due_soon_window == defaults.due_soon_window
    assert policy.revisit_cadence == defaults.revisit_cadence
    assert policy.default_supervisor_id == "supervisor"
    assert policy.high_net_worth_aum == defaults.high_net_worth_aum


def test_settings_override_profiles_supervisors_deadlines_and_calendars() -> None:
    policy = policy_from_settings(
        settings(
            followup_branch_profiles={"BR-LDN": "uk_fca_disp"},
            calendar_branch_timezones={"BR-LDN": "Europe/London"},
            calendar_branch_holidays={"BR-LDN": ["2026-12-25"]},
            staff_supervisors={"rm-7": "sup-1"},
            staff_default_supervisor="duty",
            followup_escalate_after_hours=None,
            followup_due_soon_hours=1,
            followup_durations_s={"survey_within": 86400},
            followup_revisit_cadence_days={"high_net_worth": 15, "churned": None},
        )
    )
    assert policy.profile_for("BR-LDN") == "uk_fca_disp"
    assert policy.profile_for("BR-001") == "default"
    assert policy.calendar_for("BR-LDN").timezone == "Europe/London"
    assert date(2026, 12, 25) in policy.calendar_for("BR-LDN").holidays
    assert policy.supervisor_of("rm-7") == "sup-1"
    assert policy.supervisor_of("rm-9") == "duty"
    assert policy.escalate_after is None
    assert policy.due_soon_window == timedelta(hours=1)
    assert policy.survey_within == timedelta(days=1)
    assert policy.cadence_for(LifecycleStage.HIGH_NET_WORTH) == timedelta(days=15)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"followup_durations_s": {"survey_in": 1}}, "survey_in"),
        ({"followup_revisit_cadence_days": {"vip": 1}}, "vip"),
        ({"followup_branch_profiles": {"BR-1": "mars"}}, "mars"),
        ({"followup_access_request_days_by_profile": {"mars": 3}}, "mars"),
        ({"calendar_default_timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"calendar_branch_timezones": {"BR-1": "Mars/Olympus"}}, "Mars/Olympus"),
    ],
)
def test_unknown_names_are_refused_when_the_settings_are_read(
    values: dict[str, object], named: str
) -> None:
    # Typed maps: refused at start, by the settings, before any rule needs them (#16).
    with pytest.raises(ValidationError, match=named):
        FollowupSettings.model_validate({"jwt_secret": "x" * 40, **values})


def test_the_overridable_deadlines_are_durations_of_the_policy() -> None:
    durations = {
        f.name for f in dataclasses.fields(FollowupPolicy) if f.type in ("timedelta", timedelta)
    }
    assert durations >= DURATION_FIELDS, DURATION_FIELDS - durations
    assert "survey_within" in DURATION_FIELDS
