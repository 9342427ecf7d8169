"""D-07 complaints: the closed loop and the clocks of each jurisdiction profile."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from followup_factories import MONDAY_9, RM_ID, TaskBook, a_client, an_event, created

from branchline_followup.domain import (
    ClientContext,
    ComplaintClocks,
    FollowupPolicy,
    ProfileName,
    TaskKind,
    TaskRule,
    TaskStatus,
    decide,
    statistics_quarter,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import UnreadablePayload, decode

pytestmark = pytest.mark.unit

BRANCH = "BR-001"


def received(
    severity: str = "general", at: datetime = MONDAY_9, complaint_id: str = "K-1", **extra: Any
) -> RecordedEvent:
    data = {"complaint_id": complaint_id, "severity": severity, "summary": "wrong fee"} | extra
    return an_event("complaint.received", data, at=at)


def complaint_event(
    event_type: str, at: datetime, complaint_id: str = "K-1", **data: Any
) -> RecordedEvent:
    return an_event(event_type, {"complaint_id": complaint_id} | data, at=at)


def due_by_kind(
    policy: FollowupPolicy,
    event: RecordedEvent | None = None,
    client: ClientContext | None = None,
) -> dict[TaskKind, datetime]:
    tasks = created(decide(decode(event or received()), client or a_client(), [], policy))
    assert all(t.rule is TaskRule.COMPLAINT for t in tasks)
    return {t.kind: t.due_at for t in tasks}


def profile_policy(profile: ProfileName, zone: str = "UTC", **more: Any) -> FollowupPolicy:
    return FollowupPolicy(
        branch_profiles=MappingProxyType({BRANCH: profile.value}),
        branch_timezones=MappingProxyType({BRANCH: zone}),
        **more,
    )


# default profile


def test_d07_default_general_complaint_gets_a_24h_response_only() -> None:
    assert due_by_kind(FollowupPolicy()) == {
        TaskKind.COMPLAINT_RESPONSE: MONDAY_9 + timedelta(hours=24)
    }


@pytest.mark.parametrize("severity", ["important", "urgent"])
def test_d07_default_major_complaint_is_also_handled_within_48h(severity: str) -> None:
    assert due_by_kind(FollowupPolicy(), received(severity)) == {
        TaskKind.COMPLAINT_RESPONSE: MONDAY_9 + timedelta(hours=24),
        TaskKind.COMPLAINT_HANDLING: MONDAY_9 + timedelta(hours=48),
    }


def test_d07_tasks_store_their_profile_and_go_to_the_rm() -> None:
    tasks = created(decide(decode(received("urgent")), a_client(), [], FollowupPolicy()))
    assert {t.deadline_profile for t in tasks} == {"default"}
    assert {t.assignee for t in tasks} == {RM_ID}
    assert {t.subject for t in tasks} == {"complaint:K-1"}


def test_d07_personal_data_complaint_goes_to_the_rms_supervisor() -> None:
    policy = FollowupPolicy(supervisors=MappingProxyType({RM_ID: "sup-3"}))
    tasks = created(
        decide(decode(received("urgent", topic="personal_data")), a_client(), [], policy)
    )
    assert {t.assignee for t in tasks} == {"sup-3"}


def test_d07_personal_data_complaint_without_rm_goes_to_the_default_supervisor() -> None:
    policy = FollowupPolicy(default_supervisor_id="duty-supervisor")
    event = received(topic="personal_data")
    tasks = created(decide(decode(event), a_client(rm_id=None), [], policy))
    assert {t.assignee for t in tasks} == {"duty-supervisor"}


def test_d07_closed_loop_acknowledge_resolve_follow_up_confirm() -> None:
    book = TaskBook()
    book.feed(received("important"))
    ack_at = MONDAY_9 + timedelta(hours=3)
    book.feed(complaint_event("complaint.acknowledged", ack_at, owner_id="staff-9"))
    response = book.one(TaskKind.COMPLAINT_RESPONSE)
    assert response.status is TaskStatus.DONE
    assert response.met_deadline()
    handling = book.one(TaskKind.COMPLAINT_HANDLING)
    assert handling.is_open
    assert handling.assignee == "staff-9"  # the owner takes the open clocks

    resolved_at = MONDAY_9 + timedelta(hours=50)
    book.feed(complaint_event("complaint.resolved", resolved_at, resolution="refund"))
    handling = book.one(TaskKind.COMPLAINT_HANDLING)
    assert handling.status is TaskStatus.DONE
    assert not handling.met_deadline()  # 50 h > 48 h
    follow_up = book.one(TaskKind.COMPLAINT_FOLLOW_UP)
    assert follow_up.due_at == resolved_at + timedelta(days=7)
    assert follow_up.assignee == "staff-9"

    confirmed_at = resolved_at + timedelta(days=6)
    book.feed(complaint_event("complaint.confirmed_by_client", confirmed_at, satisfied=False))
    follow_up = book.one(TaskKind.COMPLAINT_FOLLOW_UP)
    assert follow_up.status is TaskStatus.DONE
    assert follow_up.met_deadline()
    assert book.feed(complaint_event("complaint.closed", confirmed_at)) == ()


def test_d07_follow_up_of_a_general_complaint_goes_to_the_rm() -> None:
    book = TaskBook()
    book.feed(received())
    book.feed(complaint_event("complaint.acknowledged", MONDAY_9, owner_id="staff-9"))
    book.feed(complaint_event("complaint.resolved", MONDAY_9 + timedelta(days=1), resolution="x"))
    assert book.one(TaskKind.COMPLAINT_FOLLOW_UP).assignee == RM_ID


def test_d07_follow_up_delay_is_configurable() -> None:
    book = TaskBook(policy=FollowupPolicy(complaint_follow_up_after=timedelta(days=2)))
    book.feed(received())
    book.feed(complaint_event("complaint.resolved", MONDAY_9, resolution="x"))
    assert book.one(TaskKind.COMPLAINT_FOLLOW_UP).due_at == MONDAY_9 + timedelta(days=2)


def test_d07_resolution_without_acknowledgement_also_completes_the_response() -> None:
    book = TaskBook()
    book.feed(received("urgent"))
    book.feed(complaint_event("complaint.resolved", MONDAY_9 + timedelta(hours=30), resolution="x"))
    assert book.one(TaskKind.COMPLAINT_RESPONSE).status is TaskStatus.DONE
    assert book.one(TaskKind.COMPLAINT_HANDLING).status is TaskStatus.DONE


def test_d07_closing_a_complaint_completes_all_its_open_tasks_only() -> None:
    book = TaskBook()
    book.feed(received("urgent"))
    book.feed(received("urgent", complaint_id="K-2"))
    book.feed(complaint_event("complaint.closed", MONDAY_9 + timedelta(hours=1)))
    by_subject = {(t.subject, t.kind): t.status for t in book.tasks.values()}
    assert by_subject == {
        ("complaint:K-1", TaskKind.COMPLAINT_RESPONSE): TaskStatus.DONE,
        ("complaint:K-1", TaskKind.COMPLAINT_HANDLING): TaskStatus.DONE,
        ("complaint:K-2", TaskKind.COMPLAINT_RESPONSE): TaskStatus.OPEN,
        ("complaint:K-2", TaskKind.COMPLAINT_HANDLING): TaskStatus.OPEN,
    }


def test_d07_unknown_severity_is_invalid_data() -> None:
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="severity"):
        decode(received("catastrophic"))


def test_d07_complex_flag_must_be_boolean() -> None:
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="complex"):
        decode(received(complex="yes"))


# cn_regulator


SHANGHAI = "Asia/Shanghai"


def test_d07_cn_regulator_decision_within_15_days_end_of_local_day() -> None:
    policy = profile_policy(ProfileName.CN_REGULATOR, SHANGHAI)
    at = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo(SHANGHAI))  # 01:00 UTC
    dues = due_by_kind(policy, received("urgent", at=at))
    # Day of receipt not counted: day 15 is 8 December; it ends at 9 Dec 00:00 +08 = 8 Dec 16:00 Z
    assert dues[TaskKind.COMPLAINT_DECISION] == datetime(2026, 12, 8, 16, 0, tzinfo=UTC)
    assert dues[TaskKind.COMPLAINT_RESPONSE] == at + timedelta(hours=24)
    assert dues[TaskKind.COMPLAINT_HANDLING] == at + timedelta(hours=48)


def test_d07_cn_regulator_complex_case_flagged_on_receipt_gets_30_days() -> None:
    policy = profile_policy(ProfileName.CN_REGULATOR, SHANGHAI)
    at = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo(SHANGHAI))
    dues = due_by_kind(policy, received(at=at, complex=True))
    assert dues[TaskKind.COMPLAINT_DECISION] == datetime(2026, 12, 23, 16, 0, tzinfo=UTC)


def test_d07_cn_regulator_complex_flagged_later_moves_the_decision_to_30_days() -> None:
    book = TaskBook(policy=profile_policy(ProfileName.CN_REGULATOR, SHANGHAI))
    at = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo(SHANGHAI))
    book.feed(received(at=at))
    book.feed(complaint_event("complaint.progress_reported", at + timedelta(days=3), note="n"))
    assert book.one(TaskKind.COMPLAINT_DECISION).due_at == datetime(2026, 12, 8, 16, tzinfo=UTC)
    book.feed(
        complaint_event(
            "complaint.progress_reported", at + timedelta(days=4), note="n", complex=True
        )
    )
    decision = book.one(TaskKind.COMPLAINT_DECISION)
    assert decision.due_at == datetime(2026, 12, 23, 16, 0, tzinfo=UTC)
    assert decision.is_open


def test_d07_profile_change_never_rewrites_a_stored_deadline() -> None:
    book = TaskBook(policy=profile_policy(ProfileName.CN_REGULATOR, SHANGHAI))
    book.feed(received())
    before = dict(book.tasks)
    # The branch switches to the default profile (which has no decision clock).
    book.policy = FollowupPolicy()
    book.feed(complaint_event("complaint.progress_reported", MONDAY_9, note="n"))
    assert book.tasks == before
    decision = book.one(TaskKind.COMPLAINT_DECISION)
    assert decision.deadline_profile == "cn_regulator"
    # A complexity extension still follows the profile stored with the task.
    book.policy = FollowupPolicy(
        profiles=MappingProxyType(
            dict(FollowupPolicy().profiles)
            | {"cn_regulator": ComplaintClocks(decision_days=15, complex_decision_days=60)}
        ),
        branch_timezones=MappingProxyType({BRANCH: SHANGHAI}),
    )
    book.feed(complaint_event("complaint.progress_reported", MONDAY_9, note="n", complex=True))
    # 23 Nov (17:00 +08) + 60 days = 22 Jan 2027, ending 23 Jan 00:00 +08
    assert book.one(TaskKind.COMPLAINT_DECISION).due_at == datetime(2027, 1, 22, 16, tzinfo=UTC)
    # A complaint received now follows the branch's current (default) profile.
    new_tasks = created(book.feed(received(complaint_id="K-2")))
    assert {t.deadline_profile for t in new_tasks} == {"default"}


# uk_fca_disp

LONDON = "Europe/London"


def test_d07_uk_fca_friday_receipt_summary_resolution_and_8_weeks() -> None:
    policy = profile_policy(ProfileName.UK_FCA_DISP, LONDON)
    at = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo(LONDON))  # Friday
    assert due_by_kind(policy, received("urgent", at=at)) == {
        TaskKind.COMPLAINT_RESPONSE: at + timedelta(hours=24),
        # Mon, Tue, Wed: close of business Wednesday 17:00 GMT
        TaskKind.COMPLAINT_SUMMARY_RESOLUTION: datetime(2026, 11, 25, 17, 0, tzinfo=UTC),
        # 56 days after 20 Nov is 15 Jan 2027; it ends at midnight GMT
        TaskKind.COMPLAINT_FINAL_RESPONSE: datetime(2027, 1, 16, 0, 0, tzinfo=UTC),
    }


def test_d07_uk_fca_holidays_and_dst() -> None:
    policy = profile_policy(
        ProfileName.UK_FCA_DISP,
        LONDON,
        branch_holidays=MappingProxyType({BRANCH: frozenset({date(2026, 4, 3), date(2026, 4, 6)})}),
    )
    at = datetime(2026, 3, 27, 16, 0, tzinfo=ZoneInfo(LONDON))  # Friday before the clocks change
    dues = due_by_kind(policy, received(at=at))
    assert dues[TaskKind.COMPLAINT_SUMMARY_RESOLUTION] == datetime(2026, 4, 1, 16, tzinfo=UTC)
    at = datetime(2026, 4, 2, 16, 0, tzinfo=ZoneInfo(LONDON))  # Thursday before Easter
    dues = due_by_kind(policy, received(at=at))
    assert dues[TaskKind.COMPLAINT_SUMMARY_RESOLUTION] == datetime(2026, 4, 9, 16, tzinfo=UTC)


def test_d07_uk_fca_resolution_completes_every_resolution_clock() -> None:
    book = TaskBook(policy=profile_policy(ProfileName.UK_FCA_DISP, LONDON))
    at = datetime(2026, 11, 20, 10, 0, tzinfo=ZoneInfo(LONDON))
    book.feed(received(at=at))
    book.feed(complaint_event("complaint.resolved", at + timedelta(days=4), resolution="x"))
    assert book.one(TaskKind.COMPLAINT_SUMMARY_RESOLUTION).status is TaskStatus.DONE
    assert book.one(TaskKind.COMPLAINT_SUMMARY_RESOLUTION).met_deadline()  # Tue < Wed 17:00
    assert book.one(TaskKind.COMPLAINT_FINAL_RESPONSE).met_deadline()


# us_broker


def test_d07_us_broker_uses_the_standard_clocks() -> None:
    policy = profile_policy(ProfileName.US_BROKER, "America/New_York")
    assert due_by_kind(policy, received("important")) == due_by_kind(
        FollowupPolicy(), received("important")
    )
    assert policy.clocks_of("us_broker").quarterly_statistics


def test_d07_us_broker_statistics_quarter_follows_the_local_date() -> None:
    calendar = profile_policy(ProfileName.US_BROKER, "America/New_York").calendar_for(BRANCH)
    late_march = datetime(2026, 4, 1, 3, 30, tzinfo=UTC)  # 31 March 23:30 EDT
    quarter = statistics_quarter(late_march, calendar)
    assert (quarter.year, quarter.quarter, quarter.label) == (2026, 1, "2026-Q1")
    assert quarter.starts_on == date(2026, 1, 1)
    assert quarter.ends_on == date(2026, 3, 31)
    assert quarter.report_due_on == date(2026, 4, 15)
    december = statistics_quarter(datetime(2026, 12, 15, 12, tzinfo=UTC), calendar)
    assert (december.quarter, december.ends_on, december.report_due_on) == (
        4,
        date(2026, 12, 31),
        date(2027, 1, 15),
    )


def test_d07_policy_refuses_unknown_profiles_and_zones() -> None:
    with pytest.raises(ValueError, match="unknown profiles"):
        FollowupPolicy(branch_profiles=MappingProxyType({BRANCH: "mars"}))
    with pytest.raises(ValueError, match="default_profile"):
        FollowupPolicy(default_profile="mars")
    with pytest.raises(Exception, match="Nowhere/City"):
        FollowupPolicy(branch_timezones=MappingProxyType({BRANCH: "Nowhere/City"}))


def test_d07_complex_null_is_invalid_data() -> None:
    # the catalogue's ``complex`` is a strict boolean (default false): a stored event never
    # holds null, so one that does is refused, not read as "not complex" (issue #9)
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="complex"):
        decode(received(complex=None))
