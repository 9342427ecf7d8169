"""Read use cases: the client 360 and the D-12 quality report, computed by the pure domain
from the read models' records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_followup.application.ports import PageReads
from branchline_followup.domain import (
    ClientPeriodRecord,
    ComplaintRecord,
    FollowupPolicy,
    LifecycleStage,
    QualityReport,
    Severity,
    SlaRecord,
    SurveyScores,
    TaskStatus,
    VisitTiming,
    lifecycle_stage,
    quality_report,
)
from branchline_followup.domain.quality import TrainingRecord, training_shortfalls
from branchline_followup.domain.records import ClientFacts
from branchline_shared.postgres.row_guard import decode_rows


def stage_at(facts: ClientFacts, moment: datetime, policy: FollowupPolicy) -> LifecycleStage:
    """D-09 stage at ``moment`` (before registration: prospect)."""
    if moment < facts.registered_at:
        return LifecycleStage.PROSPECT
    return lifecycle_stage(facts.lifecycle(), moment, policy)


@dataclass(frozen=True)
class QualitySelection:
    branch_id: str | None
    rm_id: str | None
    start: datetime
    end: datetime


async def quality(
    reads: PageReads, selection: QualitySelection, *, now: datetime, policy: FollowupPolicy
) -> QualityReport:
    records = await reads.quality_records(
        branch_id=selection.branch_id,
        rm_id=selection.rm_id,
        start=selection.start,
        end=selection.end,
    )
    as_of = min(now, selection.end)

    def client(c: ClientFacts) -> ClientPeriodRecord:
        return ClientPeriodRecord(
            client_id=c.client_id,
            stage_at_start=stage_at(c, selection.start, policy),
            stage_at_end=stage_at(c, as_of, policy),
        )

    # Row by row: one client's bad row is skipped and counted, never a failure for everyone
    # (issue 9; branchline_shared.postgres.row_guard).
    return quality_report(
        tasks=decode_rows(records.tasks, sla_record, query="quality.tasks"),
        visits=decode_rows(
            records.visits,
            lambda v: VisitTiming(v["arrived_at"], v["started_at"], v["ended_at"]),
            query="quality.visits",
        ),
        surveys=decode_rows(records.surveys, lambda s: SurveyScores(**s), query="quality.surveys"),
        complaints=decode_rows(
            records.complaints,
            lambda c: ComplaintRecord(
                f"{c['client_id']}/{c['complaint_id']}", Severity(c["severity"])
            ),
            query="quality.complaints",
        ),
        clients=decode_rows(records.clients, client, query="quality.clients"),
        as_of=as_of,
        training=training_shortfalls(
            records.staff,
            [
                TrainingRecord(t["staff_id"], t["hours"], t["completed_at"])
                for t in records.training
            ],
            start=selection.start,
            end=selection.end,
            hours_per_year=policy.training_hours_per_year,
        ),
    )


def sla_record(t: dict[str, Any]) -> SlaRecord:
    """A task row as the SLA measures count it (an unknown status does not decode)."""
    return SlaRecord(
        rule=t["rule"],
        kind=t["kind"],
        due_at=t["due_at"],
        status=TaskStatus(t["status"]),
        closed_at=t["closed_at"],
    )
