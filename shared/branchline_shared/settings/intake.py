"""The intake service's settings: the numbers of the standard's rules and throughput."""

from __future__ import annotations

from pydantic import Field

from branchline_shared.settings.sections import (
    AssessmentSettings,
    IdentityGateSettings,
    PersonalDataSettings,
    StaffSettings,
)


class IntakeSettings(PersonalDataSettings, AssessmentSettings, IdentityGateSettings, StaffSettings):
    """What the intake API and its outbox relay read."""

    # --- intake: the numbers of the standard's rules (docs/rules.md defaults) ---
    intake_screening_required: bool = Field(
        default=True, description="D-03: an account opening or sale needs a clear screening."
    )
    intake_clock_skew_seconds: float = Field(
        default=300, ge=0, description="D-05b: how far occurred_at may lie after receipt."
    )
    intake_late_entry_window_hours: float = Field(
        default=24,
        gt=0,
        description="D-05b: how far before receipt occurred_at may lie without late_entry.",
    )

    # --- intake: throughput (docs/performance.md) ---
    intake_processes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Intake API processes sharing its port (0: one per core); one of them "
        "runs the outbox relay at a time.",
    )
    intake_reuse_port: bool = Field(
        default=False,
        description="With several intake processes: each listens on a socket of its own bound "
        "with SO_REUSEPORT (the kernel spreads new connections between them by hash) instead "
        "of all accepting from one shared socket (whichever wakes first takes the connection).",
    )
    intake_group_commit_writers: int = Field(
        default=2,
        ge=0,
        le=16,
        description="Group commit of POST /v1/events: groups written at once per process "
        "(0: every request is its own transaction).",
    )
    intake_group_commit_max_events: int = Field(
        default=500, ge=1, le=10_000, description="Most events in one group commit."
    )
    intake_group_commit_window_ms: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description="How long a group waits for more requests before it is written (0: it is "
        "written at once, and whoever arrives meanwhile joins the next group).",
    )
    intake_group_commit_guess_new_streams: bool = Field(
        default=True,
        description="A group of one caller (of several: "
        "intake_group_commit_guess_several_callers) whose streams may all be new (no ids sent, no "
        "references, none the decider remembers) is first decided as new streams and written "
        "by one self-committing statement that creates them (one round trip, not three); if a "
        "stream exists or the decisions need more, nothing is written and the group runs the "
        "ordinary way.",
    )
    intake_group_commit_guess_several_callers: bool = Field(
        default=True,
        description="With intake_group_commit_guess_new_streams, a group of several callers "
        "(several branch systems' requests) whose streams may all be new, each stream one "
        "caller's, is guessed too: each caller decides on its own streams as it does alone, "
        "and all their events are written by the one statement; if any caller's guess cannot "
        "stand, nothing is written and the group runs the ordinary way, each caller in a "
        "savepoint of its own.",
    )
    # 0.04 since Round 38: against 0.02 the standalone relay's CPU an event separated, a
    # round's fixed cost spread over more events (docs/performance.md, "The relay's pool and
    # interval, measured on main"); the published events' p99 rose by 13-33 ms, inside the
    # 300 ms budget (#12).
    intake_relay_min_interval_s: float = Field(
        default=0.04,
        ge=0,
        le=1.0,
        description="Least time between the starts of two rounds of intake's outbox relay "
        "woken by commits made while the previous round ran (a commit to an idle relay is "
        "published at once), and between two wake-ups (NOTIFY) an intake process not holding "
        "the relay lock sends (0: a round and a NOTIFY per group commit): under load the "
        "commits go out in fewer, bigger rounds. Delays intake's published events by at most "
        "this; a drain does not wait (#12).",
    )
