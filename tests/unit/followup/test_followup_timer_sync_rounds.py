"""A unit's timer syncs merged in rounds (#12): running the rounds in turn leaves the timers'
rows what running every sync in turn, as made, leaves, and no round changes a row twice (one
statement cannot). The statement is modelled here as ``read_models.SYNC_TIMERS`` states it:
its ``DELETE`` and its upsert see the same snapshot, the upsert re-arms a timer only when its
instant moved."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_followup.adapters.collected_writes import merged_timer_syncs, timer_sync_rounds

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
TASKS = [uuid.UUID(int=i + 1) for i in range(4)]
KINDS = ("overdue", "escalate")

Row = tuple[uuid.UUID, datetime, bool]  # task id, fire_at, fired


def timer_id(task_id: uuid.UUID, kind: str) -> uuid.UUID:
    return uuid.uuid5(task_id, kind)


def sync_args(changes: list[tuple[uuid.UUID, dict[str, int]]]) -> tuple[Any, ...]:
    """``read_models.sync_timers_args``'s columns for tasks and their wanted timers."""
    wanted = [(task_id, kind, day) for task_id, timers in changes for kind, day in timers.items()]
    return (
        [timer_id(t, k) for t, k, _ in wanted],
        [t for t, _, _ in wanted],
        ["c-1" for _ in wanted],
        [k for _, k, _ in wanted],
        [T0 + timedelta(days=d) for _, _, d in wanted],
        [t for t, _ in changes],
    )


def run_statement(rows: dict[uuid.UUID, Row], args: tuple[Any, ...]) -> None:
    ids, task_ids, _, _, fire_ats, synced = args
    assert len(set(ids)) == len(ids), "a statement would change a row twice"
    wanted = set(ids)
    for row_id, (task_id, _, fired) in list(rows.items()):
        if task_id in synced and not fired and row_id not in wanted:
            del rows[row_id]
    for row_id, task_id, fire_at in zip(ids, task_ids, fire_ats, strict=True):
        stored = rows.get(row_id)
        if stored is None:
            rows[row_id] = (task_id, fire_at, False)
        elif stored[1] != fire_at:
            rows[row_id] = (stored[0], fire_at, False)


WANTED = st.dictionaries(st.sampled_from(KINDS), st.integers(0, 3), max_size=2)
CHANGES = st.lists(
    st.tuples(st.sampled_from(TASKS), WANTED), min_size=1, max_size=3, unique_by=lambda c: c[0]
)
STORED = st.dictionaries(
    st.tuples(st.sampled_from(TASKS), st.sampled_from(KINDS)),
    st.tuples(st.integers(0, 3), st.booleans()),
    max_size=6,
)


@given(stored=STORED, syncs=st.lists(CHANGES, min_size=1, max_size=6))
def test_rounds_in_turn_leave_what_every_sync_in_turn_leaves(
    stored: dict[tuple[uuid.UUID, str], tuple[int, bool]],
    syncs: list[list[tuple[uuid.UUID, dict[str, int]]]],
) -> None:
    start = {
        timer_id(t, k): (t, T0 + timedelta(days=d), fired) for (t, k), (d, fired) in stored.items()
    }
    made = [sync_args(changes) for changes in syncs]
    one_by_one, in_rounds = dict(start), dict(start)
    for args in made:
        run_statement(one_by_one, args)
    rounds = timer_sync_rounds(made)
    for merged in rounds:
        assert len(set(merged[5])) == len(merged[5])  # each task synced once per round
        run_statement(in_rounds, merged)
    assert in_rounds == one_by_one
    synced = [t for args in made for t in args[5]]
    most = max(synced.count(t) for t in set(synced))
    assert most <= len(rounds) <= len(made)
    if all(len(args[5]) == 1 for args in made):
        assert len(rounds) == most  # one task a sync: as many rounds as its most synced task
    if most == 1:
        assert rounds == [merged_timer_syncs(made)]


def test_a_task_created_and_closed_in_a_batch_makes_two_rounds_not_one_per_sync() -> None:
    a, b, c = TASKS[:3]
    made = [
        sync_args([(a, {"overdue": 1, "escalate": 2})]),
        sync_args([(b, {"overdue": 1})]),
        sync_args([(a, {})]),  # closed: its unfired timers dropped
        sync_args([(c, {"escalate": 3})]),
    ]
    first, second = timer_sync_rounds(made)
    assert first[5] == [a, b, c]
    assert second[5] == [a]
    assert second[0] == []
