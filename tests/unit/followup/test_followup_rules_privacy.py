"""D-04 access requests: answered within 15 days (or the profile's figure) by the privacy
officer; the recorded answer closes the task; an erasure request cancels it."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest
from followup_factories import MONDAY_9, TaskBook, an_event

from branchline_followup.domain import FollowupPolicy, TaskKind, TaskRule, TaskStatus

pytestmark = pytest.mark.unit


def test_d04_access_request_is_due_in_15_days_for_the_privacy_officer() -> None:
    book = TaskBook()
    request = an_event("client.data_access_requested", {"channel": "online"})
    book.feed(request)
    task = book.one(TaskKind.DATA_ACCESS_REQUEST)
    assert task.rule is TaskRule.PERSONAL_DATA
    assert task.assignee == "privacy-officer"
    assert task.due_at == MONDAY_9 + timedelta(days=15)
    assert task.source_event_id == request.event_id
    assert book.feed(request) == book.feed(request)  # redelivery: the same task, once
    assert len(book.of_kind(TaskKind.DATA_ACCESS_REQUEST)) == 1


def test_d04_access_deadline_per_jurisdiction_profile() -> None:
    policy = FollowupPolicy(
        branch_profiles=MappingProxyType({"BR-001": "uk_fca_disp"}),
        access_request_within_by_profile=MappingProxyType({"uk_fca_disp": timedelta(days=30)}),
    )
    book = TaskBook(policy=policy)
    book.feed(an_event("client.data_access_requested", {"channel": "phone"}))
    task = book.one(TaskKind.DATA_ACCESS_REQUEST)
    assert task.deadline_profile == "uk_fca_disp"
    assert task.due_at == MONDAY_9 + timedelta(days=30)


def test_d04_access_deadline_for_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profiles"):
        FollowupPolicy(access_request_within_by_profile=MappingProxyType({"mars": timedelta(1)}))
    with pytest.raises(ValueError, match="positive"):
        FollowupPolicy(access_request_within=timedelta(0))


def test_d04_the_recorded_answer_naming_the_request_closes_it() -> None:
    book = TaskBook()
    request = an_event("client.data_access_requested", {"channel": "online"})
    book.feed(request)
    other = an_event("client.data_access_requested", {"channel": "online"})
    book.feed(other)
    book.feed(
        an_event(
            "client.personal_data_accessed",
            {"fields": ["name"], "purpose": "investigation"},  # no request named: closes none
            at=MONDAY_9 + timedelta(days=1),
        )
    )
    assert all(t.is_open for t in book.of_kind(TaskKind.DATA_ACCESS_REQUEST))
    book.feed(
        an_event(
            "client.personal_data_accessed",
            {"fields": ["name"], "purpose": "access", "request_event_id": str(request.event_id)},
            at=MONDAY_9 + timedelta(days=2),
        )
    )
    statuses = {t.source_event_id: t.status for t in book.of_kind(TaskKind.DATA_ACCESS_REQUEST)}
    assert statuses == {request.event_id: TaskStatus.DONE, other.event_id: TaskStatus.OPEN}


def test_d04_an_erasure_request_cancels_open_access_requests() -> None:
    book = TaskBook()
    book.feed(an_event("client.data_access_requested", {"channel": "online"}))
    book.feed(
        an_event("client.erasure_requested", {"reason": "bl:pii:v1:x"}, at=MONDAY_9 + timedelta(1))
    )
    assert book.one(TaskKind.DATA_ACCESS_REQUEST).status is TaskStatus.CANCELLED
