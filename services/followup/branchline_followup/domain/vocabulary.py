"""The words of the follow-up domain: rules, task kinds and states, lifecycle stages.

Plain string enums, so every value serialises as the string docs/api.md shows.
"""

from __future__ import annotations

from enum import StrEnum

from branchline_shared.events.vocabulary import ComplaintSeverity, FollowupKind, JurisdictionProfile
from branchline_shared.events.vocabulary import LifecycleStage as LifecycleStage

# One vocabulary for the whole product: the catalogue's value sets, named as this domain reads.
TaskKind = FollowupKind
"""What a follow-up task is for; each kind names the rule that makes it due."""
Severity = ComplaintSeverity
"""D-07 complaint severity. Major = important or urgent."""
ProfileName = JurisdictionProfile
"""The jurisdiction profiles shipped with the product (D-07). An institution may add its own
under any other name in :attr:`FollowupPolicy.profiles`."""


class TaskRule(StrEnum):
    """The docs/rules.md rule that made a task due (docs/api.md: the task's ``rule``)."""

    SATISFACTION_SURVEY = "D-01b"
    APPOINTMENT = "D-02"
    DUE_DILIGENCE = "D-03"
    PERSONAL_DATA = "D-04"
    CONSULTATION = "D-06"
    COMPLAINT = "D-07"
    REVISIT = "D-08"
    LIFECYCLE = "D-09"
    ONGOING_SUITABILITY = "D-15"
    CONFLICTS = "D-16"
    IMPROVEMENT = "D-17"


RULE_OF_KIND: dict[TaskKind, TaskRule] = {
    TaskKind.SATISFACTION_SURVEY: TaskRule.SATISFACTION_SURVEY,
    TaskKind.APPOINTMENT_PREPARATION: TaskRule.APPOINTMENT,
    TaskKind.CONSULTATION_RESPONSE: TaskRule.CONSULTATION,
    TaskKind.CONSULTATION_PROMISE: TaskRule.CONSULTATION,
    TaskKind.COMPLAINT_RESPONSE: TaskRule.COMPLAINT,
    TaskKind.COMPLAINT_HANDLING: TaskRule.COMPLAINT,
    TaskKind.COMPLAINT_DECISION: TaskRule.COMPLAINT,
    TaskKind.COMPLAINT_SUMMARY_RESOLUTION: TaskRule.COMPLAINT,
    TaskKind.COMPLAINT_FINAL_RESPONSE: TaskRule.COMPLAINT,
    TaskKind.COMPLAINT_FOLLOW_UP: TaskRule.COMPLAINT,
    TaskKind.REVISIT: TaskRule.REVISIT,
    TaskKind.WIN_BACK: TaskRule.REVISIT,
    TaskKind.PRODUCT_REVIEW: TaskRule.REVISIT,
    TaskKind.DATA_ACCESS_REQUEST: TaskRule.PERSONAL_DATA,
    TaskKind.FEEDBACK_RESPONSE: TaskRule.COMPLAINT,
    TaskKind.COMPLAINT_PROGRESS_PROMISE: TaskRule.IMPROVEMENT,
    TaskKind.CORRECTIVE_ACTION: TaskRule.IMPROVEMENT,
    TaskKind.SUITABILITY_REVIEW: TaskRule.ONGOING_SUITABILITY,
    TaskKind.KYC_REFRESH: TaskRule.DUE_DILIGENCE,
    TaskKind.GIFT_ESCALATION: TaskRule.CONFLICTS,
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
    """docs/api.md ``sla_state``."""

    ON_TRACK = "on_track"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    DONE = "done"


class TimerKind(StrEnum):
    OVERDUE = "overdue"
    ESCALATE = "escalate"
