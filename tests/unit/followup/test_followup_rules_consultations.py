"""D-06 consultations: 30 s online, offline as soon as possible, promised answers tracked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from followup_factories import MONDAY_9, TaskBook, a_client, an_event, created, only_created

from branchline_followup.domain import (
    FollowupPolicy,
    TaskKind,
    TaskRule,
    TaskStatus,
    decide,
)
from branchline_shared.events.envelope import Channel, RecordedEvent
from branchline_shared.events.typed import UnreadablePayload, decode

pytestmark = pytest.mark.unit


def opened(
    channel: str | None = "online", *, envelope_channel: Channel | None = None
) -> RecordedEvent:
    data = {"consultation_id": "Q-1", "question": "fees?"}
    if channel is not None:
        data["channel"] = channel
    return an_event("consultation.opened", data, channel=envelope_channel)


def answered(at: datetime, promised_by: str | None = None) -> RecordedEvent:
    data = {"consultation_id": "Q-1", "answer": "..."}
    if promised_by is not None:
        data["promised_by"] = promised_by
    return an_event("consultation.answered", data, at=at)


@pytest.mark.parametrize("channel", ["online", "app"])
def test_d06_online_consultation_is_due_in_30_seconds(channel: str) -> None:
    task = only_created(decide(decode(opened(channel)), a_client(), [], FollowupPolicy()))
    assert task.kind is TaskKind.CONSULTATION_RESPONSE
    assert task.rule is TaskRule.CONSULTATION
    assert task.due_at == MONDAY_9 + timedelta(seconds=30)
    assert task.subject == "consultation:Q-1"


@pytest.mark.parametrize("channel", ["walk_in", "phone", "appointment"])
def test_d06_offline_consultation_is_due_as_soon_as_possible_one_day(channel: str) -> None:
    task = only_created(decide(decode(opened(channel)), a_client(), [], FollowupPolicy()))
    assert task.due_at == MONDAY_9 + timedelta(days=1)


def test_d06_offline_delay_is_configurable() -> None:
    policy = FollowupPolicy(offline_consultation_response=timedelta(hours=1))
    task = only_created(decide(decode(opened("phone")), a_client(), [], policy))
    assert task.due_at == MONDAY_9 + timedelta(hours=1)


def test_d06_a_consultation_without_its_channel_is_invalid_data() -> None:
    # the catalogue requires ``data.channel``: the envelope's is not a fallback (issue #9)
    event = opened(None, envelope_channel=Channel.APP)
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="channel"):
        decode(event)


def test_d06_answer_completes_the_response() -> None:
    book = TaskBook()
    book.feed(opened())
    book.feed(answered(MONDAY_9 + timedelta(seconds=20)))
    task = book.one(TaskKind.CONSULTATION_RESPONSE)
    assert task.status is TaskStatus.DONE
    assert task.met_deadline()


def test_d06_answer_after_30_seconds_is_late() -> None:
    book = TaskBook()
    book.feed(opened())
    book.feed(answered(MONDAY_9 + timedelta(seconds=31)))
    task = book.one(TaskKind.CONSULTATION_RESPONSE)
    assert task.status is TaskStatus.DONE
    assert not task.met_deadline()


def test_d06_promised_answer_is_tracked_until_answered() -> None:
    book = TaskBook()
    book.feed(opened())
    book.feed(answered(MONDAY_9 + timedelta(seconds=25), promised_by="2026-11-24T18:00:00+08:00"))
    response = book.one(TaskKind.CONSULTATION_RESPONSE)
    assert response.status is TaskStatus.DONE
    assert response.met_deadline()  # a promised deadline is a response in time
    promise = book.one(TaskKind.CONSULTATION_PROMISE)
    assert promise.is_open
    assert promise.due_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert promise.rule is TaskRule.CONSULTATION
    answered_at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    book.feed(answered(answered_at))
    promise = book.one(TaskKind.CONSULTATION_PROMISE)
    assert promise.status is TaskStatus.DONE
    assert promise.closed_at == answered_at
    assert promise.met_deadline()


def test_d06_a_new_promise_replaces_the_previous_one() -> None:
    book = TaskBook()
    book.feed(opened())
    book.feed(answered(MONDAY_9 + timedelta(seconds=10), promised_by="2026-11-24T09:00:00Z"))
    late = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    book.feed(answered(late, promised_by="2026-11-25T09:00:00Z"))
    first, second = book.of_kind(TaskKind.CONSULTATION_PROMISE)
    assert first.status is TaskStatus.DONE
    assert not first.met_deadline()  # re-promised after the first deadline: a miss
    assert second.is_open
    assert second.due_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_d06_redelivered_promise_does_not_complete_itself() -> None:
    book = TaskBook()
    book.feed(opened())
    event = answered(MONDAY_9 + timedelta(seconds=10), promised_by="2026-11-24T09:00:00Z")
    first = book.feed(event)
    again = book.feed(event)
    assert created(first) == created(again)
    assert book.one(TaskKind.CONSULTATION_PROMISE).is_open


def test_d06_promised_by_without_offset_is_invalid_data() -> None:
    event = answered(MONDAY_9, promised_by="2026-11-24T09:00:00")
    # refused where the event is received, decoded once (#12), before any rule reads it
    with pytest.raises(UnreadablePayload, match="promised_by"):
        decode(event)
