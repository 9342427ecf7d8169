"""bench.steady_lag_stack's budget of the followup lag (#12, Round 34): the lag's course over
the load, and PostgreSQL's CPU per database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bench.steady_lag_stack import cpu_by_database, timeline

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_timeline_gives_each_two_seconds_of_stored_events_their_lag_p99_in_order() -> None:
    # stored at 0.0, 0.5 (first bin), 2.5 (second) and 4.1 (third); committed later and later
    stored = {"a": (_at(0.0), _at(0.01)), "b": (_at(0.5), _at(0.51)), "c": (_at(2.5), _at(2.6))}
    stored["d"] = (_at(4.1), _at(4.2))
    stored["lost"] = (_at(1.0), _at(1.1))  # never applied: not counted
    applied = [
        ("a", _at(0.1), _at(0.2), "1"),
        ("b", _at(0.6), _at(0.9), "2"),
        ("c", _at(3.0), _at(3.5), "3"),
        ("d", _at(5.0), _at(6.1), "4"),
        ("own", _at(5.0), _at(6.1), "4"),  # a row the load did not store: not counted
    ]
    assert timeline(stored, applied) == [400.0, 1000.0, 2000.0]


def test_postgres_cpu_is_summed_per_database_over_backends_alive_at_both_looks() -> None:
    before = {1: ("branchline_followup", 1.0), 2: ("branchline_followup", 2.0)}
    before |= {3: ("branchline_intake", 0.5), 4: ("branchline_audit", 9.0)}
    after = {1: ("branchline_followup", 1.5), 2: ("branchline_followup", 2.25)}
    after |= {3: ("branchline_intake", 0.75), 5: ("branchline_audit", 3.0)}  # 4 gone, 5 new
    assert cpu_by_database(before, after) == {"followup": 0.75, "intake": 0.25}
