"""The words of the follow-up domain: rules, task kinds and states, lifecycle stages.

Plain string enums, so every value serialises as the string API.md shows.
"""

from __future__ import annotations

from enum import StrEnum


class RuleId(StrEnum):
    """The DOMAIN.md rule that made a task due (API.md: the task's ``rule``)."""

    SATISFACTION_SURVEY = "D-01b"
    APPOINTMENT = "D-02"
    CONSULTATION = "D-06"
    COMPLAINT = "D-07"
    REVISIT = "D-08"
    LIFECYCLE = "D-09"


class TaskKind(StrEnum):
    SATISFACTION_SURVEY = "satisfaction_survey"
    """D-01b: survey the client after a closed visit."""
    APPOINTMENT_PREPARATION = "appointment_preparation"
    """D-02: the assigned staff prepares before the booked slot."""
    CONSULTATION_RESPONSE = "consultation_response"
    """D-06: first answer to a consultation (30 s online)."""
    CONSULTATION_PROMISE = "consultation_promise"
    """D-06: the answer promised for a question that could not be answered at once."""
    COMPLAINT_RESPONSE = "complaint_response"
    """D-07: respond to (acknowledge) a complaint (24 h)."""
    COMPLAINT_HANDLING = "complaint_handling"
    """D-07: handle a major complaint (48 h, default profile)."""
    COMPLAINT_DECISION = "complaint_decision"
    """D-07, cn_regulator: decide on the complaint (15 days, complex 30)."""
    COMPLAINT_SUMMARY_RESOLUTION = "complaint_summary_resolution"
    """D-07, uk_fca_disp: resolve by close of the third business day (DISP 1.5)."""
    COMPLAINT_FINAL_RESPONSE = "complaint_final_response"
    """D-07, uk_fca_disp: final response within eight weeks (DISP 1.6)."""
    COMPLAINT_FOLLOW_UP = "complaint_follow_up"
    """D-07: follow up with the client after the resolution (7 days)."""
    REVISIT = "revisit"
    """D-08: periodic revisit at the lifecycle stage's cadence."""
    WIN_BACK = "win_back"
    """D-08: the one win-back contact for a churned client."""
    PRODUCT_REVIEW = "product_review"
    """D-08: periodic performance review after a product purchase (90 days)."""


RULE_OF_KIND: dict[TaskKind, RuleId] = {
    TaskKind.SATISFACTION_SURVEY: RuleId.SATISFACTION_SURVEY,
    TaskKind.APPOINTMENT_PREPARATION: RuleId.APPOINTMENT,
    TaskKind.CONSULTATION_RESPONSE: RuleId.CONSULTATION,
    TaskKind.CONSULTATION_PROMISE: RuleId.CONSULTATION,
    TaskKind.COMPLAINT_RESPONSE: RuleId.COMPLAINT,
    TaskKind.COMPLAINT_HANDLING: RuleId.COMPLAINT,
    TaskKind.COMPLAINT_DECISION: RuleId.COMPLAINT,
    TaskKind.COMPLAINT_SUMMARY_RESOLUTION: RuleId.COMPLAINT,
    TaskKind.COMPLAINT_FINAL_RESPONSE: RuleId.COMPLAINT,
    TaskKind.COMPLAINT_FOLLOW_UP: RuleId.COMPLAINT,
    TaskKind.REVISIT: RuleId.REVISIT,
    TaskKind.WIN_BACK: RuleId.REVISIT,
    TaskKind.PRODUCT_REVIEW: RuleId.REVISIT,
}
"""Every kind belongs to exactly one rule."""

COMPLAINT_RESOLUTION_KINDS: frozenset[TaskKind] = frozenset(
    {
        TaskKind.COMPLAINT_HANDLING,
        TaskKind.COMPLAINT_DECISION,
        TaskKind.COMPLAINT_SUMMARY_RESOLUTION,
        TaskKind.COMPLAINT_FINAL_RESPONSE,
    }
)
"""The complaint clocks that ``complaint.resolved`` satisfies."""

CONTACT_PLAN_KINDS: frozenset[TaskKind] = frozenset({TaskKind.REVISIT, TaskKind.WIN_BACK})
"""A client has at most one open planned contact; a new plan replaces the old one."""


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


class SlaState(StrEnum):
    """API.md ``sla_state``."""

    ON_TRACK = "on_track"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    DONE = "done"


class LifecycleStage(StrEnum):
    """D-09 lifecycle stage."""

    PROSPECT = "prospect"
    NEW = "new"
    MATURE = "mature"
    HIGH_NET_WORTH = "high_net_worth"
    CHURNED = "churned"


class Severity(StrEnum):
    """D-07 complaint severity. Major = important or urgent."""

    GENERAL = "general"
    IMPORTANT = "important"
    URGENT = "urgent"

    @property
    def is_major(self) -> bool:
        return self is not Severity.GENERAL


class ProfileName(StrEnum):
    """The jurisdiction profiles shipped with the product (D-07). An institution may add its own
    under any other name in :attr:`FollowupPolicy.profiles`."""

    DEFAULT = "default"
    CN_REGULATOR = "cn_regulator"
    UK_FCA_DISP = "uk_fca_disp"
    US_BROKER = "us_broker"


class TimerKind(StrEnum):
    OVERDUE = "overdue"
    ESCALATE = "escalate"
