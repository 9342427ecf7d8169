"""D-08 revisits by lifecycle stage, product performance reviews, win-back on churn."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from followup_factories import MONDAY_9, RM_ID, TaskBook, a_client, an_event, only_created

from branchline_followup.domain import (
    FollowupPolicy,
    FollowupTask,
    LifecycleStage,
    TaskKind,
    TaskRule,
    TaskStatus,
    apply_commands,
    decide,
    on_stage_changed,
)
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import decode

pytestmark = pytest.mark.unit


def registered(at: datetime = MONDAY_9) -> RecordedEvent:
    return an_event("client.registered", {"client_type": "individual", "rm_id": "rm-9"}, at=at)


def completed(task: FollowupTask, at: datetime, **data: object) -> RecordedEvent:
    return an_event(
        "followup.completed", {"task_id": str(task.id), "outcome": "contacted"} | data, at=at
    )


def test_d08_registration_plans_the_first_revisit_14_days_later_for_the_rm() -> None:
    task = only_created(decide(decode(registered()), a_client(rm_id=None), [], FollowupPolicy()))
    assert task.kind is TaskKind.REVISIT
    assert task.rule is TaskRule.REVISIT
    assert task.due_at == MONDAY_9 + timedelta(days=14)
    assert task.assignee == "rm-9"  # from the event: the read model may not know it yet
    assert task.subject == "client"


@pytest.mark.parametrize(
    ("stage", "cadence"),
    [
        (LifecycleStage.NEW, timedelta(days=90)),
        (LifecycleStage.MATURE, timedelta(days=90)),
        (LifecycleStage.HIGH_NET_WORTH, timedelta(days=30)),
    ],
)
def test_d08_completed_revisit_is_replanned_at_the_stage_cadence(
    stage: LifecycleStage, cadence: timedelta
) -> None:
    book = TaskBook(client=a_client(stage=stage))
    book.feed(registered())
    first = book.one(TaskKind.REVISIT)
    done_at = MONDAY_9 + timedelta(days=13)
    book.feed(completed(first, done_at))
    first_after, second = book.of_kind(TaskKind.REVISIT)
    assert first_after.id == first.id
    assert first_after.status is TaskStatus.DONE
    assert first_after.met_deadline()
    assert second.is_open
    assert second.due_at == done_at + cadence
    assert second.assignee == RM_ID


def test_d08_next_contact_at_overrides_the_cadence() -> None:
    book = TaskBook()
    book.feed(registered())
    first = book.one(TaskKind.REVISIT)
    book.feed(
        completed(first, MONDAY_9 + timedelta(days=1), next_contact_at="2027-01-05T10:00:00Z")
    )
    _, second = book.of_kind(TaskKind.REVISIT)
    assert second.due_at == datetime(2027, 1, 5, 10, 0, tzinfo=UTC)


def test_d08_next_contact_at_on_another_task_replaces_the_open_revisit() -> None:
    book = TaskBook()
    book.feed(registered())
    book.feed(an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"}))
    survey = book.one(TaskKind.SATISFACTION_SURVEY)
    book.feed(
        completed(survey, MONDAY_9 + timedelta(days=1), next_contact_at="2026-12-01T09:00:00Z")
    )
    old, new = book.of_kind(TaskKind.REVISIT)
    assert old.status is TaskStatus.CANCELLED
    assert new.is_open
    assert new.due_at == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert book.one(TaskKind.SATISFACTION_SURVEY).status is TaskStatus.DONE


def test_d08_completing_another_task_without_next_contact_plans_nothing() -> None:
    book = TaskBook()
    book.feed(an_event("visit.closed", {"visit_id": "V-1", "outcome": "normal"}))
    survey = book.one(TaskKind.SATISFACTION_SURVEY)
    commands = book.feed(completed(survey, MONDAY_9))
    assert len(commands) == 1
    assert book.of_kind(TaskKind.REVISIT) == []


def test_d08_churned_client_gets_no_further_revisit_after_the_win_back() -> None:
    book = TaskBook(client=a_client(stage=LifecycleStage.CHURNED))
    book.feed(registered())
    commands = book.feed(completed(book.one(TaskKind.REVISIT), MONDAY_9))
    assert len(commands) == 1  # the completion only
    assert book.one(TaskKind.REVISIT).status is TaskStatus.DONE


def test_d08_completion_of_an_unknown_or_closed_task_changes_nothing() -> None:
    book = TaskBook()
    book.feed(registered())
    task = book.one(TaskKind.REVISIT)
    book.feed(completed(task, MONDAY_9))
    before = dict(book.tasks)
    assert book.feed(completed(task, MONDAY_9 + timedelta(days=1))) == ()
    assert book.tasks == before


def test_d08_cadence_is_configurable() -> None:
    policy = FollowupPolicy(
        revisit_cadence={**FollowupPolicy().revisit_cadence, LifecycleStage.MATURE: timedelta(7)}
    )
    book = TaskBook(policy=policy)
    book.feed(registered())
    book.feed(completed(book.one(TaskKind.REVISIT), MONDAY_9))
    assert book.of_kind(TaskKind.REVISIT)[-1].due_at == MONDAY_9 + timedelta(days=7)


def test_d08_product_sale_makes_a_review_due_in_90_days_and_reviews_recur() -> None:
    book = TaskBook()
    book.feed(an_event("product.sold", {"product_id": "P-1", "amount": "1000"}))
    review = book.one(TaskKind.PRODUCT_REVIEW)
    assert review.due_at == MONDAY_9 + timedelta(days=90)
    assert review.subject == "product:P-1"
    assert review.rule is TaskRule.REVISIT
    done_at = MONDAY_9 + timedelta(days=88)
    book.feed(completed(review, done_at))
    first, second = book.of_kind(TaskKind.PRODUCT_REVIEW)
    assert first.status is TaskStatus.DONE
    assert second.due_at == done_at + timedelta(days=90)
    assert second.subject == "product:P-1"
    assert book.of_kind(TaskKind.REVISIT) == []


def test_d08_product_reviews_need_not_recur() -> None:
    book = TaskBook(policy=FollowupPolicy(product_review_recurring=False))
    book.feed(an_event("product.sold", {"product_id": "P-1", "amount": "1000"}))
    book.feed(completed(book.one(TaskKind.PRODUCT_REVIEW), MONDAY_9))
    assert len(book.of_kind(TaskKind.PRODUCT_REVIEW)) == 1


def tasks_after_registration() -> dict[uuid.UUID, FollowupTask]:
    book = TaskBook()
    book.feed(registered())
    return book.tasks


def test_d08_becoming_churned_cancels_revisits_and_plans_one_win_back() -> None:
    tasks = tasks_after_registration()
    cause = uuid.uuid4()
    at = MONDAY_9 + timedelta(days=400)
    commands = on_stage_changed(
        a_client(stage=LifecycleStage.CHURNED),
        LifecycleStage.MATURE,
        at=at,
        cause_event_id=cause,
        open_tasks=list(tasks.values()),
        policy=FollowupPolicy(),
    )
    after = apply_commands(tasks, commands)
    by_kind = {t.kind: t for t in after.values()}
    assert by_kind[TaskKind.REVISIT].status is TaskStatus.CANCELLED
    win_back = by_kind[TaskKind.WIN_BACK]
    assert win_back.due_at == at + timedelta(days=14)
    assert win_back.source_event_id == cause
    assert win_back.rule is TaskRule.REVISIT
    # the same change computed again (re-run) yields the same task
    again = on_stage_changed(
        a_client(stage=LifecycleStage.CHURNED),
        LifecycleStage.MATURE,
        at=at,
        cause_event_id=cause,
        open_tasks=[t for t in after.values() if t.is_open],
        policy=FollowupPolicy(),
    )
    assert apply_commands(after, again) == after


def test_d08_back_from_churned_cancels_the_win_back_and_plans_a_revisit() -> None:
    win_back_commands = on_stage_changed(
        a_client(stage=LifecycleStage.CHURNED),
        LifecycleStage.MATURE,
        at=MONDAY_9,
        cause_event_id=uuid.uuid4(),
        open_tasks=[],
        policy=FollowupPolicy(),
    )
    tasks = apply_commands({}, win_back_commands)
    at = MONDAY_9 + timedelta(days=3)
    commands = on_stage_changed(
        a_client(stage=LifecycleStage.HIGH_NET_WORTH),
        LifecycleStage.CHURNED,
        at=at,
        cause_event_id=uuid.uuid4(),
        open_tasks=list(tasks.values()),
        policy=FollowupPolicy(),
    )
    after = {t.kind: t for t in apply_commands(tasks, commands).values()}
    assert after[TaskKind.WIN_BACK].status is TaskStatus.CANCELLED
    assert after[TaskKind.REVISIT].due_at == at + timedelta(days=30)


def test_d08_becoming_high_net_worth_brings_the_revisit_forward() -> None:
    book = TaskBook()
    book.feed(registered())
    book.feed(completed(book.one(TaskKind.REVISIT), MONDAY_9))  # next in 90 days
    at = MONDAY_9 + timedelta(days=10)
    commands = on_stage_changed(
        a_client(stage=LifecycleStage.HIGH_NET_WORTH),
        LifecycleStage.MATURE,
        at=at,
        cause_event_id=uuid.uuid4(),
        open_tasks=[t for t in book.tasks.values() if t.is_open],
        policy=FollowupPolicy(),
    )
    after = apply_commands(book.tasks, commands)
    open_revisit = next(t for t in after.values() if t.is_open)
    assert open_revisit.due_at == at + timedelta(days=30)


def test_d08_no_stage_change_or_a_longer_cadence_changes_nothing() -> None:
    tasks = tasks_after_registration()  # due in 14 days
    for previous, current in [
        (LifecycleStage.MATURE, LifecycleStage.MATURE),
        (LifecycleStage.NEW, LifecycleStage.MATURE),
    ]:
        assert (
            on_stage_changed(
                a_client(stage=current),
                previous,
                at=MONDAY_9,
                cause_event_id=uuid.uuid4(),
                open_tasks=list(tasks.values()),
                policy=FollowupPolicy(),
            )
            == ()
        )
