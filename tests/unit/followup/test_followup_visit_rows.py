"""A batch's visit facts reduced to one row per visit (#12): the collected statement writes
each visit once (a statement cannot change a row twice), and what it leaves is what the
upserts of ``read_models.record_visit`` in turn, as made, leave. The upsert is modelled here as
it is stated there: a new row takes the values given; an existing one keeps its branch and RM
when it has them and takes every column the upsert names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from branchline_followup.adapters.collected_writes import latest_visit_rows
from branchline_followup.adapters.read_models import VISIT_COLUMNS

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KEY_WIDTH = 2
Upsert = tuple[str, str, str | None, str | None, dict[str, Any]]


def row(upsert: Upsert) -> tuple[Any, ...]:
    client_id, visit_id, branch_id, rm_id, columns = upsert
    return (client_id, visit_id, branch_id, rm_id, *(columns.get(c) for c in VISIT_COLUMNS))


def in_turn(table: dict[tuple[str, str], list[Any]], upserts: list[Upsert]) -> None:
    """``record_visit``'s upserts one by one."""
    for client_id, visit_id, branch_id, rm_id, columns in upserts:
        kept = table.get((client_id, visit_id))
        if kept is None:
            table[(client_id, visit_id)] = list(
                row((client_id, visit_id, branch_id, rm_id, columns))
            )
            continue
        kept[2] = kept[2] if kept[2] is not None else branch_id
        kept[3] = kept[3] if kept[3] is not None else rm_id
        for i, c in enumerate(VISIT_COLUMNS, start=4):
            if c in columns:
                kept[i] = columns[c]


def as_statement(table: dict[tuple[str, str], list[Any]], rows: list[tuple[Any, ...]]) -> None:
    """The collected part over ``rows`` (``collected_writes._VISITS``): each row changes its
    visit once; COALESCE keeps the table's branch, RM and every column the row leaves null."""
    keys = [r[:KEY_WIDTH] for r in rows]
    assert len(set(keys)) == len(keys), "a row changed twice in one statement"
    for r in rows:
        kept = table.get(r[:KEY_WIDTH])
        if kept is None:
            table[r[:KEY_WIDTH]] = list(r)
            continue
        kept[2] = kept[2] if kept[2] is not None else r[2]
        kept[3] = kept[3] if kept[3] is not None else r[3]
        for i in range(4, len(r)):
            if r[i] is not None:
                kept[i] = r[i]


def test_a_visit_arrived_handled_and_closed_in_one_batch_is_one_row_with_every_fact() -> None:
    upserts: list[Upsert] = [
        ("C-1", "V-1", None, None, {"arrived_at": T0}),
        ("C-1", "V-1", "BR-1", "rm-7", {"category": "deposit"}),
        ("C-1", "V-1", "BR-2", "rm-8", {"started_at": T0, "ended_at": T0 + timedelta(minutes=9)}),
        ("C-2", "V-1", "BR-3", None, {"arrived_at": T0}),
        ("C-1", "V-1", None, None, {"closed_at": T0 + timedelta(minutes=10), "outcome": "normal"}),
    ]
    rows = latest_visit_rows([row(u) for u in upserts])
    assert len(rows) == 2
    one = dict(
        zip(("client_id", "visit_id", "branch_id", "rm_id", *VISIT_COLUMNS), rows[0], strict=True)
    )
    assert one == {
        "client_id": "C-1",
        "visit_id": "V-1",
        "branch_id": "BR-1",  # the first given stays, as the upsert keeps the row's own
        "rm_id": "rm-7",
        "arrived_at": T0,
        "category": "deposit",
        "started_at": T0,
        "ended_at": T0 + timedelta(minutes=9),
        "closed_at": T0 + timedelta(minutes=10),
        "outcome": "normal",
    }


instants = st.integers(0, 5).map(lambda m: T0 + timedelta(minutes=m))
column_values = {
    "arrived_at": instants,
    "category": st.sampled_from(["deposit", "loan"]),
    "started_at": instants,
    "ended_at": instants,
    "closed_at": instants,
    "outcome": st.sampled_from(["normal", "abandoned"]),
}
upserts = st.tuples(
    st.sampled_from(["C-1", "C-2"]),
    st.sampled_from(["V-1", "V-2"]),
    st.sampled_from([None, "BR-1", "BR-2"]),
    st.sampled_from([None, "rm-1", "rm-2"]),
    st.fixed_dictionaries({}, optional=column_values),
)


@given(before=st.lists(upserts, max_size=4), batch=st.lists(upserts, max_size=10))
def test_the_reduced_rows_leave_what_the_upserts_in_turn_leave(
    before: list[Upsert], batch: list[Upsert]
) -> None:
    expected: dict[tuple[str, str], list[Any]] = {}
    in_turn(expected, before)
    got = {k: list(v) for k, v in expected.items()}
    in_turn(expected, batch)
    as_statement(got, latest_visit_rows([row(u) for u in batch]))
    assert got == expected
