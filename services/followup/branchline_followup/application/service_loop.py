"""Read use cases of the service loop: the improvement measures of ``GET /v1/quality`` (D-17),
the regulatory complaint statistics (D-17) and a client's behaviour class and account status
(D-09), computed by the pure domain from the read models' records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from branchline_followup.application.ports import PageReads
from branchline_followup.application.queries import sla_record
from branchline_followup.domain import FollowupPolicy
from branchline_followup.domain.improvement import (
    AnalysedComplaint,
    Behaviour,
    BusinessRecord,
    CorrectiveActionRecord,
    ImprovementReport,
    behaviour_class,
    complaint_analysis,
    corrective_action_completion,
    promises_kept,
)
from branchline_followup.domain.statistics import (
    StatisticsComplaint,
    StatisticsReport,
    complaint_statistics,
)
from branchline_shared.postgres.row_guard import decode_rows


class UnknownProfile(ValueError):
    def __init__(self, profile: str, known: list[str]) -> None:
        super().__init__(f"unknown jurisdiction profile {profile!r}; known: {known}")
        self.profile = profile
        self.known = known


async def improvement(
    reads: PageReads,
    *,
    branch_id: str | None,
    rm_id: str | None,
    start: datetime,
    end: datetime,
    now: datetime,
) -> ImprovementReport:
    records = await reads.improvement_records(
        branch_id=branch_id, rm_id=rm_id, start=start, end=end
    )
    as_of = min(now, end)
    return ImprovementReport(
        # Row by row: a bad row is skipped and counted (issue 9; postgres.row_guard).
        complaint_analysis=complaint_analysis(
            decode_rows(
                records.complaints,
                lambda c: AnalysedComplaint(
                    branch_id=c["branch_id"],
                    root_cause=c["root_cause"],
                    product=c["product_id"] or c["product_category"],
                ),
                query="improvement.complaints",
            )
        ),
        corrective_actions=corrective_action_completion(
            decode_rows(
                records.actions,
                lambda a: CorrectiveActionRecord(a["root_cause"], a["due_at"], a["completed_at"]),
                query="improvement.actions",
            ),
            as_of,
        ),
        promises=promises_kept(
            decode_rows(records.promise_tasks, sla_record, query="improvement.promises"),
            records.renegotiations,
            as_of,
        ),
    )


@dataclass(frozen=True)
class StatisticsSelection:
    profile: str
    start: datetime
    end: datetime


async def statistics(
    reads: PageReads, selection: StatisticsSelection, *, now: datetime, policy: FollowupPolicy
) -> StatisticsReport:
    """D-17 statistics of the complaints received at the branches of ``selection.profile``."""
    if selection.profile not in policy.profiles:
        raise UnknownProfile(selection.profile, sorted(policy.profiles))
    rows = await reads.statistics_records(branch_ids=None, start=selection.start, end=selection.end)
    complaints = [
        StatisticsComplaint(
            branch_id=r["branch_id"],
            received_at=r["received_at"],
            problem=r["problem"],
            product_category=r["product_category"],
            complex_case=r["complex_case"],
            resolved_at=r["resolved_at"],
        )
        for r in rows
        if policy.profile_for(r["branch_id"]) == selection.profile
    ]
    return complaint_statistics(
        complaints,
        profile=selection.profile,
        clocks=policy.clocks_of(selection.profile),
        calendar_for=policy.calendar_for,
        period_from=selection.start,
        period_to=selection.end,
        as_of=min(now, selection.end),
    )


@dataclass(frozen=True)
class ClientServiceLoop:
    account_status: str
    account_closure_reason: str | None
    behaviour: Behaviour


async def client_service_loop(
    reads: PageReads, client_id: str, *, account_closed_at: datetime | None, now: datetime
) -> ClientServiceLoop:
    record = await reads.client_service_loop(client_id)
    closed = account_closed_at is not None and account_closed_at <= now
    return ClientServiceLoop(
        account_status="closed" if closed else "open",
        account_closure_reason=record["account_closure_reason"] if closed else None,
        behaviour=behaviour_class(
            decode_rows(
                record["business"],
                lambda b: BusinessRecord(
                    occurred_at=b["occurred_at"],
                    product_risk=b["product_risk"],
                    amount=None if b["amount"] is None else Decimal(b["amount"]),
                ),
                query="client360.business",
            ),
            now,
        ),
    )
