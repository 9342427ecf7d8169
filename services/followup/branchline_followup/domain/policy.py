"""Every number of the follow-up rules, with the docs/rules.md defaults (all configurable).

The application builds one :class:`FollowupPolicy` from its settings and passes it to the pure
functions of this package; nothing here reads the environment or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal
from types import MappingProxyType

from branchline_followup.domain.business_days import BusinessCalendar
from branchline_followup.domain.vocabulary import LifecycleStage, ProfileName


@dataclass(frozen=True)
class ComplaintClocks:
    """The complaint deadlines of one jurisdiction profile (D-07). ``None`` = no such clock.

    - ``response``: respond to every complaint (closed by ``complaint.acknowledged``).
    - ``major_handling``: handle a major (important/urgent) complaint (closed by
      ``complaint.resolved``).
    - ``decision_days`` / ``complex_decision_days``: decide within so many local calendar days
      after the day of receipt, ending at the end of the local day (closed by
      ``complaint.resolved``).
    - ``summary_resolution_business_days``: resolve by close of business on that business day
      after the day of receipt (closed by ``complaint.resolved``).
    - ``final_response_days``: final response within so many local calendar days (8 weeks = 56),
      ending at the end of the local day (closed by ``complaint.resolved``).
    - ``quarterly_statistics``: complaints are reported in quarterly statistics (FINRA 4530(d));
      informational: see :func:`branchline_followup.domain.jurisdictions.statistics_quarter`.
    """

    response: timedelta | None = timedelta(hours=24)
    major_handling: timedelta | None = timedelta(hours=48)
    decision_days: int | None = None
    complex_decision_days: int | None = None
    summary_resolution_business_days: int | None = None
    final_response_days: int | None = None
    quarterly_statistics: bool = False

    def __post_init__(self) -> None:
        for name in ("response", "major_handling"):
            value: timedelta | None = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        for name in (
            "decision_days",
            "complex_decision_days",
            "summary_resolution_business_days",
            "final_response_days",
        ):
            days: int | None = getattr(self, name)
            if days is not None and days < 0:
                raise ValueError(f"{name} must not be negative")


def _shipped_profiles() -> Mapping[str, ComplaintClocks]:
    return MappingProxyType(
        {
            # The standard's own clocks: 24 h response, 48 h for a major complaint.
            ProfileName.DEFAULT.value: ComplaintClocks(),
            # Standard clocks plus the regulator's decision within 15 days (complex: 30).
            ProfileName.CN_REGULATOR.value: ComplaintClocks(
                decision_days=15, complex_decision_days=30
            ),
            # DISP 1.5 summary resolution by close of the 3rd business day after receipt and
            # DISP 1.6 final response within 8 weeks replace the 48 h major clock; the
            # standard's 24 h response (prompt acknowledgement) stays.
            ProfileName.UK_FCA_DISP.value: ComplaintClocks(
                major_handling=None,
                summary_resolution_business_days=3,
                final_response_days=56,
            ),
            # FINRA 4530: the standard's clocks, plus quarterly complaint statistics.
            ProfileName.US_BROKER.value: ComplaintClocks(quarterly_statistics=True),
        }
    )


def _default_cadence() -> Mapping[LifecycleStage, timedelta | None]:
    return MappingProxyType(
        {
            LifecycleStage.PROSPECT: timedelta(days=90),
            LifecycleStage.NEW: timedelta(days=90),
            LifecycleStage.MATURE: timedelta(days=90),
            LifecycleStage.HIGH_NET_WORTH: timedelta(days=30),
            LifecycleStage.CHURNED: None,  # one win-back contact instead (win_back_within)
        }
    )


def _default_kyc_refresh() -> Mapping[str, int]:
    # D-03: 12 months for high risk (and very high), 36 months otherwise
    return MappingProxyType({"low": 36, "medium": 36, "high": 12, "very_high": 12})


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


def _empty_durations() -> Mapping[str, timedelta]:
    return MappingProxyType({})


def _empty_holidays() -> Mapping[str, frozenset[date]]:
    return MappingProxyType({})


@dataclass(frozen=True)
class FollowupPolicy:
    """Configuration of the follow-up rules; defaults are docs/rules.md's."""

    # D-01b
    survey_within: timedelta = timedelta(days=3)
    # D-02
    appointment_preparation_lead: timedelta = timedelta(hours=1)
    # D-06
    online_consultation_response: timedelta = timedelta(seconds=30)
    offline_consultation_response: timedelta = timedelta(hours=24)
    """Offline consultations are answered "as soon as possible": by default within one day."""
    online_channels: frozenset[str] = frozenset({"online", "app"})
    # D-07
    complaint_follow_up_after: timedelta = timedelta(days=7)
    feedback_response_within: timedelta = timedelta(hours=24)
    """Every piece of feedback is responded to within 24 hours (not only complaints)."""
    feedback_low_score: int = 60
    """A survey with any dimension below this score needs a response (D-07)."""
    personal_data_topic: str = "personal_data"
    profiles: Mapping[str, ComplaintClocks] = field(default_factory=_shipped_profiles)
    default_profile: str = ProfileName.DEFAULT.value
    branch_profiles: Mapping[str, str] = field(default_factory=_empty_mapping)
    # Branch calendars (D-07 business days)
    default_timezone: str = "UTC"
    branch_timezones: Mapping[str, str] = field(default_factory=_empty_mapping)
    default_holidays: frozenset[date] = frozenset()
    branch_holidays: Mapping[str, frozenset[date]] = field(default_factory=_empty_holidays)
    close_of_business: time = time(17, 0)
    # D-08
    new_client_first_revisit: timedelta = timedelta(days=14)
    revisit_cadence: Mapping[LifecycleStage, timedelta | None] = field(
        default_factory=_default_cadence
    )
    win_back_within: timedelta = timedelta(days=14)
    product_review_every: timedelta = timedelta(days=90)
    # D-03
    kyc_refresh_months: Mapping[str, int] = field(default_factory=_default_kyc_refresh)
    """Months from an identity verification to the KYC refresh due, by D-09 risk level."""
    kyc_refresh_months_otherwise: int = 36
    """Months for a client without a risk level (not assessed yet)."""
    kyc_verification_methods: frozenset[str] = frozenset({"networked_id_check"})
    """The verifications that count as due diligence done (intake's gate methods)."""
    # D-16
    gift_accept_threshold: Decimal = Decimal(0)
    """An accepted gift worth more than this is escalated to the staff member's supervisor."""
    gift_escalation_within: timedelta = timedelta(hours=24)
    """When the supervisor's decision on an accepted gift is due."""
    # D-14 (training shortfalls in the D-12 measures)
    training_hours_per_year: Decimal = Decimal(40)
    # D-15
    suitability_review_business_days: int = 5
    """A holding that no longer fits is reviewed by close of business this many business
    days after the reassessment or re-rating."""
    product_review_recurring: bool = True
    escalate_after: timedelta | None = timedelta(hours=24)
    """``None`` switches escalation off."""
    supervisors: Mapping[str, str] = field(default_factory=_empty_mapping)
    """Staff id (RM, teller) → their supervisor's id."""
    default_supervisor_id: str = "supervisor"
    unassigned: str = "unassigned"
    """Assignee of a task when the client has no known RM (a supervisor reassigns it)."""
    # API sla_state
    due_soon_window: timedelta = timedelta(hours=4)
    # D-04 access requests: answered within 15 days unless the branch's profile says otherwise
    access_request_within: timedelta = timedelta(days=15)
    access_request_within_by_profile: Mapping[str, timedelta] = field(
        default_factory=_empty_durations
    )
    privacy_officer: str = "privacy-officer"
    """Who answers access requests (an admin with the data-protection officer's duty)."""
    # D-09
    new_client_period: timedelta = timedelta(days=90)
    high_net_worth_aum: Decimal = Decimal(6_000_000)
    churn_after_inactivity: timedelta = timedelta(days=365)

    def __post_init__(self) -> None:
        if self.default_profile not in self.profiles:
            raise ValueError(f"default_profile {self.default_profile!r} is not a known profile")
        unknown = {p for p in self.branch_profiles.values() if p not in self.profiles}
        if unknown:
            raise ValueError(f"branch_profiles name unknown profiles: {sorted(unknown)}")
        missing = set(LifecycleStage) - set(self.revisit_cadence)
        if missing:
            raise ValueError(f"revisit_cadence lacks stages: {sorted(missing)}")
        if self.escalate_after is not None and self.escalate_after < timedelta(0):
            raise ValueError("escalate_after must not be negative")
        unknown_access = set(self.access_request_within_by_profile) - set(self.profiles)
        if unknown_access:
            raise ValueError(
                f"access_request_within_by_profile names unknown profiles: {sorted(unknown_access)}"
            )
        if any(
            d <= timedelta(0)
            for d in (self.access_request_within, *self.access_request_within_by_profile.values())
        ):
            raise ValueError("access request deadlines must be positive")
        if any(
            m <= 0 for m in (self.kyc_refresh_months_otherwise, *self.kyc_refresh_months.values())
        ):
            raise ValueError("kyc refresh periods must be positive")
        if self.gift_escalation_within <= timedelta(0):
            raise ValueError("gift_escalation_within must be positive")
        if self.due_soon_window < timedelta(0):
            raise ValueError("due_soon_window must not be negative")
        # Build every calendar once so a bad zone name fails at start-up, not at 3 a.m.
        for branch_id in {None, *self.branch_timezones, *self.branch_holidays}:
            self.calendar_for(branch_id)

    def profile_for(self, branch_id: str | None) -> str:
        """The jurisdiction profile in force for a branch (D-07)."""
        if branch_id is None:
            return self.default_profile
        return self.branch_profiles.get(branch_id, self.default_profile)

    def clocks_of(self, profile: str) -> ComplaintClocks:
        try:
            return self.profiles[profile]
        except KeyError:
            raise ValueError(f"unknown jurisdiction profile {profile!r}") from None

    def calendar_for(self, branch_id: str | None) -> BusinessCalendar:
        """The branch's business calendar (its zone, its holidays)."""
        zone = self.default_timezone
        holidays = self.default_holidays
        if branch_id is not None:
            zone = self.branch_timezones.get(branch_id, zone)
            holidays = self.branch_holidays.get(branch_id, holidays)
        return BusinessCalendar(
            timezone=zone, holidays=holidays, close_of_business=self.close_of_business
        )

    def supervisor_of(self, staff_id: str) -> str:
        """Whom an overdue task of ``staff_id`` escalates to (D-08). Someone who is their own
        supervisor (or has none configured) escalates to the default supervisor."""
        supervisor = self.supervisors.get(staff_id, self.default_supervisor_id)
        if supervisor == staff_id:
            return self.default_supervisor_id
        return supervisor

    def access_request_within_for(self, profile: str) -> timedelta:
        """D-04: how long a client's access request may take under a jurisdiction profile."""
        return self.access_request_within_by_profile.get(profile, self.access_request_within)

    def cadence_for(self, stage: LifecycleStage) -> timedelta | None:
        return self.revisit_cadence[stage]

    def kyc_refresh_months_for(self, risk_level: str | None) -> int:
        """D-03: months between due diligence and its refresh at ``risk_level`` (D-09)."""
        if risk_level is None:
            return self.kyc_refresh_months_otherwise
        return self.kyc_refresh_months.get(risk_level, self.kyc_refresh_months_otherwise)
