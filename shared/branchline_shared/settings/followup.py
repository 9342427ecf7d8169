"""The followup service's settings: its deadlines, profiles and timers (D-04, D-07, D-08).

The maps are typed, so an unknown deadline, stage or profile is refused when the settings are
read, at start, not when a rule first needs it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from branchline_shared.events.vocabulary import JurisdictionProfile, LifecycleStage, RiskLevel
from branchline_shared.settings.sections import (
    AssessmentSettings,
    CalendarSettings,
    ClientLifecycleSettings,
    IdentityGateSettings,
    PersonalDataSettings,
    RetentionSettings,
    StaffSettings,
)

FollowupDeadline = Literal[
    "survey_within",
    "appointment_preparation_lead",
    "online_consultation_response",
    "offline_consultation_response",
    "complaint_follow_up_after",
    "feedback_response_within",
    "new_client_first_revisit",
    "win_back_within",
    "product_review_every",
]
"""The FollowupPolicy deadlines that ``followup_durations_s`` may override."""

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class FollowupSettings(
    PersonalDataSettings,
    ClientLifecycleSettings,
    AssessmentSettings,
    IdentityGateSettings,
    StaffSettings,
    CalendarSettings,
    RetentionSettings,
):
    """What the followup API, its worker (projector, timers, shredder) and relay read."""

    followup_default_profile: JurisdictionProfile = Field(
        default=JurisdictionProfile.DEFAULT,
        description="D-07 jurisdiction profile of branches not in followup_branch_profiles "
        "(default, cn_regulator, uk_fca_disp, us_broker).",
    )
    followup_branch_profiles: dict[str, JurisdictionProfile] = Field(
        default_factory=dict, description="Branch id -> jurisdiction profile (D-07), JSON."
    )
    followup_escalate_after_hours: float | None = Field(
        default=24.0, ge=0, description="D-08: escalate this long after due; null: never."
    )
    followup_due_soon_hours: float = Field(
        default=4.0, ge=0, description="sla_state is due_soon this long before due_at."
    )
    followup_feedback_low_score: int = Field(
        default=60,
        ge=0,
        le=101,
        description="D-07: a survey with any dimension below this score needs a response.",
    )
    followup_durations_s: dict[FollowupDeadline, NonNegative] = Field(
        default_factory=dict,
        description="Overrides of the rules' deadlines in seconds, JSON, by FollowupPolicy "
        "name: survey_within, appointment_preparation_lead, online_consultation_response, "
        "offline_consultation_response, complaint_follow_up_after, feedback_response_within, "
        "new_client_first_revisit, win_back_within, product_review_every.",
    )
    followup_revisit_cadence_days: dict[LifecycleStage, Positive | None] = Field(
        default_factory=dict,
        description="D-08 revisit cadence in days by lifecycle stage, JSON (e.g. "
        '{"high_net_worth": 30, "mature": 90}); null: no periodic revisit.',
    )
    followup_access_request_days: float = Field(
        default=15, gt=0, description="D-04: an access request is answered within this."
    )
    followup_access_request_days_by_profile: dict[JurisdictionProfile, Positive] = Field(
        default_factory=dict,
        description="D-04 access-request deadline in days per jurisdiction profile, JSON.",
    )
    followup_privacy_officer: str = Field(
        default="privacy-officer", description="Assignee of access-request tasks (D-04)."
    )
    followup_kyc_refresh_months: dict[RiskLevel, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="D-03: months between due diligence and its refresh by risk level, JSON "
        '(default {"low": 36, "medium": 36, "high": 12, "very_high": 12}).',
    )
    followup_gift_threshold: Decimal = Field(
        default=Decimal(0), ge=0, description="D-16: accepted gifts above this value escalate."
    )
    followup_training_hours_per_year: Decimal = Field(
        default=Decimal(40), ge=0, description="D-14: training reference (D-12 shortfalls)."
    )
    followup_worker_batch_size: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Events the followup worker applies in one transaction at most (one fetch "
        "of its consumer, #12): a bounded transaction and lock set.",
    )
    followup_worker_batch_size_behind: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Events the followup worker applies in one transaction at most while it is "
        "behind: after a fetch of followup_worker_batch_size events or more, until a fetch brings "
        "fewer (#12, Round 27: a backlog worked off in fewer, larger transactions). Below "
        "followup_worker_batch_size it is that.",
    )
    followup_worker_gc_young_threshold: int = Field(
        default=20_000,
        ge=700,
        le=1_000_000,
        description="Net new container objects between two young-generation collections of "
        "the followup worker (CPython's default: 700, the least accepted): a batch's objects "
        "live until it commits, so fewer young collections walk them (docs/performance.md, "
        'Round 12, "Followup worker: its young objects collected less often", #12).',
    )
    followup_worker_stop_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="How long the followup worker's consumer may take to stop (finish the "
        "batch in hand, commit it, leave its group) before it is cancelled; what it had not "
        "committed is redelivered and recognised (effectively once, ADR-0003).",
    )
    followup_relay_min_interval_s: float = Field(
        default=0.03,
        ge=0,
        le=1.0,
        description="Least time between the starts of two rounds of followup's outbox relay "
        "woken by the worker's commits made while the previous round ran (a commit to an "
        "idle relay is published at once; 0: a round per commit): a busy worker's commits go "
        "out in fewer, bigger rounds. Delays followup's published events (not its read "
        "model) by at most this; a drain does not wait (#12).",
    )
    followup_rebuild_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes `branchline rebuild followup` applies the log's clients in by "
        "default (its `--processes` overrides it): each the clients whose id hashes to it "
        "(docs/followup.md, Rebuild); 1: one process (#12).",
    )
    followup_rebuild_remembered_streams: int = Field(
        default=131_072,
        ge=1,
        le=16_777_216,
        description="Streams whose last applied version `branchline rebuild followup` (from "
        "the topics) remembers to put each stream's versions in order (about 130 bytes each; "
        "the least recently seen forgotten first: a forgotten stream's next event is applied "
        "as it comes) (docs/followup.md, Rebuild, #12).",
    )
    followup_rebuild_max_held: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Events `branchline rebuild followup` (from the topics) holds back at most "
        "while their streams wait for a missing version; one more fails the rebuild (nothing "
        "swapped): raise this, or rebuild with `--from-stores` (docs/followup.md, Rebuild, #12).",
    )
    followup_timer_poll_interval_s: float = Field(
        default=1.0, gt=0, description="How often the timer runner looks for due timers."
    )
    followup_timer_batch_size: int = Field(
        default=200, ge=1, le=10_000, description="Timers claimed per transaction."
    )
    privacy_legal_holds_url: str | None = Field(
        default=None,
        description="The audit API's standing legal holds (GET /v1/audit/legal-holds), asked "
        "before any personal data is destroyed (D-11); default: the audit API on loopback at "
        "audit_port. Unreachable: nothing is destroyed that round.",
    )
    privacy_shred_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often the followup worker shreds clients whose erasure is due (D-04).",
    )
