"""D-12 quality measures: SLA compliance, waiting/handling times, satisfaction, complaints,
revisit completion, retention."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_followup.domain import (
    ClientPeriodRecord,
    ComplaintRecord,
    LifecycleStage,
    Severity,
    SlaRecord,
    SurveyScores,
    TaskStatus,
    VisitTiming,
    complaints_by_severity,
    handling_times,
    quality_report,
    retention,
    revisit_completion,
    satisfaction_by_dimension,
    sla_compliance,
    waiting_times,
)
from branchline_followup.domain.quality import percentile

pytestmark = pytest.mark.unit

T = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
AS_OF = T + timedelta(days=10)


def record(
    rule: str,
    due_in_days: float,
    status: TaskStatus,
    closed_in_days: float | None = None,
    kind: str = "revisit",
) -> SlaRecord:
    return SlaRecord(
        rule=rule,
        kind=kind,
        due_at=T + timedelta(days=due_in_days),
        status=status,
        closed_at=None if closed_in_days is None else T + timedelta(days=closed_in_days),
    )


def test_d12_sla_compliance_per_rule_counts_done_by_due_over_all_due() -> None:
    records = [
        record("D-07", 1, TaskStatus.DONE, 0.5),  # met
        record("D-07", 1, TaskStatus.DONE, 1),  # met at the due instant
        record("D-07", 1, TaskStatus.DONE, 2),  # late
        record("D-07", 2, TaskStatus.OPEN),  # overdue, still open: due, not met
        record("D-07", 20, TaskStatus.OPEN),  # not due yet: excluded
        record("D-07", 1, TaskStatus.CANCELLED, 0.5),  # cancelled: excluded
        record("D-06", 20, TaskStatus.DONE, 0.1),  # done early, due later: counted, met
    ]
    by_rule = {c.rule: c for c in sla_compliance(records, AS_OF)}
    assert [c.rule for c in sla_compliance(records, AS_OF)] == ["D-06", "D-07"]
    assert (by_rule["D-07"].due, by_rule["D-07"].met, by_rule["D-07"].rate) == (4, 2, 0.5)
    assert (by_rule["D-06"].due, by_rule["D-06"].met, by_rule["D-06"].rate) == (1, 1, 1.0)


def test_d12_sla_compliance_of_nothing_is_empty() -> None:
    assert sla_compliance([], AS_OF) == ()


def test_d12_revisit_completion_rate() -> None:
    records = [
        record("D-08", 1, TaskStatus.DONE, 0.5),
        record("D-08", 1, TaskStatus.DONE, 3),  # late but completed
        record("D-08", 2, TaskStatus.OPEN),
        record("D-08", 3, TaskStatus.DONE, 1, kind="win_back"),
        record("D-08", 3, TaskStatus.OPEN, kind="product_review"),  # not a revisit
        record("D-08", 30, TaskStatus.OPEN),  # not due
    ]
    result = revisit_completion(records, AS_OF)
    assert (result.due, result.completed, result.on_time, result.rate) == (4, 3, 2, 0.75)
    assert revisit_completion([], AS_OF).rate is None


def test_d12_waiting_and_handling_time_mean_and_p90() -> None:
    visits = [
        VisitTiming(T, T + timedelta(minutes=m), T + timedelta(minutes=m + 2 * m))
        for m in range(1, 11)  # waits 1..10 min, handling 2..20 min
    ]
    visits.append(VisitTiming(T, None, None))  # not started yet: ignored
    visits.append(VisitTiming(T, T - timedelta(minutes=1), T))  # started before arrival
    waiting = waiting_times(visits)
    assert (waiting.count, waiting.excluded) == (10, 1)
    assert waiting.mean_seconds == pytest.approx(5.5 * 60)
    assert waiting.p90_seconds == 9 * 60
    handling = handling_times(visits)
    assert handling.count == 11  # the bad-arrival visit has a valid handling time (1 min)
    assert handling.p90_seconds == 18 * 60
    empty = waiting_times([])
    assert (empty.count, empty.mean_seconds, empty.p90_seconds) == (0, None, None)


def test_percentile_nearest_rank() -> None:
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0], 0.9) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.9) == 90.0
    with pytest.raises(ValueError, match="fraction"):
        percentile([1.0], 0)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_d12_p90_is_a_sample_with_at_least_90_percent_at_or_below(values: list[float]) -> None:
    p90 = percentile(values, 0.9)
    assert p90 in values
    assert sum(v <= p90 for v in values) >= 0.9 * len(values)
    assert sum(v < p90 for v in values) < 0.9 * len(values)


def test_d12_satisfaction_average_per_d10_dimension() -> None:
    surveys = [
        SurveyScores(80, 70, 60, 50, 40),
        SurveyScores(100, 90, 80, 70, 60),
    ]
    result = satisfaction_by_dimension(surveys)
    assert result.surveys == 2
    assert (result.attitude, result.professionalism, result.response_speed) == (90, 80, 70)
    assert (result.risk_management, result.convenience) == (60, 50)
    assert result.overall == 70
    assert satisfaction_by_dimension([]).overall is None


def test_d10_scores_outside_0_100_are_refused() -> None:
    with pytest.raises(ValueError, match="D-10"):
        SurveyScores(101, 0, 0, 0, 0)


def test_d12_complaints_by_severity() -> None:
    result = complaints_by_severity(
        [
            ComplaintRecord("K-1", Severity.GENERAL),
            ComplaintRecord("K-2", Severity.URGENT),
            ComplaintRecord("K-3", Severity.IMPORTANT),
            ComplaintRecord("K-4", Severity.GENERAL),
            ComplaintRecord("K-1", Severity.IMPORTANT),  # re-graded: counts once, as important
        ]
    )
    assert (result.general, result.important, result.urgent) == (1, 2, 1)
    assert (result.major, result.total) == (3, 4)


def test_d12_retention_and_churn_against_the_75_percent_reference() -> None:
    active, churned = LifecycleStage.MATURE, LifecycleStage.CHURNED
    clients = [ClientPeriodRecord(f"C-{i}", active, active) for i in range(7)]
    clients += [ClientPeriodRecord(f"X-{i}", active, churned) for i in range(3)]
    clients.append(ClientPeriodRecord("P-1", LifecycleStage.PROSPECT, LifecycleStage.NEW))
    clients.append(ClientPeriodRecord("Z-1", churned, churned))
    result = retention(clients)
    assert (result.base, result.retained, result.churned) == (10, 7, 3)
    assert result.retention_rate == pytest.approx(0.7)
    assert result.churn_rate == pytest.approx(0.3)
    assert result.meets_reference is False
    assert retention(clients, reference_rate=0.6).meets_reference is True
    assert retention([]).retention_rate is None
    assert retention([]).meets_reference is None


def test_d12_quality_report_is_json_ready() -> None:
    report = quality_report(
        tasks=[record("D-07", 1, TaskStatus.DONE, 0.5)],
        visits=[VisitTiming(T, T + timedelta(minutes=5), T + timedelta(minutes=15))],
        surveys=[SurveyScores(90, 90, 90, 90, 90)],
        complaints=[ComplaintRecord("K-1", Severity.URGENT)],
        clients=[ClientPeriodRecord("C-1", LifecycleStage.NEW, LifecycleStage.MATURE)],
        as_of=AS_OF,
    )
    dumped = json.loads(report.model_dump_json())
    assert dumped["sla_compliance"] == [{"rule": "D-07", "due": 1, "met": 1, "rate": 1.0}]
    assert dumped["waiting_time"]["mean_seconds"] == 300.0
    assert dumped["complaints"]["urgent"] == 1
    assert dumped["retention"]["retention_rate"] == 1.0


def test_d12_sla_record_of_a_task() -> None:
    from followup_factories import SCORES, TaskBook, an_event

    from branchline_followup.domain import TaskKind

    book = TaskBook()
    book.feed(an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"}, at=T))
    book.feed(
        an_event(
            "feedback.survey_answered",
            {"visit_id": "V-1", "scores": SCORES},
            at=T + timedelta(days=1),
        )
    )
    row = SlaRecord.of(book.one(TaskKind.SATISFACTION_SURVEY))
    assert (row.rule, row.kind, row.status) == ("D-01b", "satisfaction_survey", TaskStatus.DONE)
    assert sla_compliance([row], AS_OF)[0].rate == 1.0
