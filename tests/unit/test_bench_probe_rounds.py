"""The followup round probe's split of a record's lag: queueing behind the loop's commits and
handling, the fetch, the apply (#12)."""

from __future__ import annotations

import pytest
from bench.probe_followup_rounds import split_lag

LOOP = [
    ("getmany", 0.0, 0.1),
    ("handle", 0.1, 1.0),
    ("commit", 1.0, 1.2),
    ("getmany", 1.2, 1.3),
    ("handle own-only", 1.3, 1.35),
    ("commit own-only", 1.35, 1.5),
    ("getmany", 1.5, 1.6),
    ("handle", 1.6, 2.0),
]


def test_a_record_sent_while_the_loop_was_busy_waits_for_its_handling_and_commits() -> None:
    busy, in_commit, in_handle, fetch, apply_ = split_lag(0.5, 1.5, 1.6, 2.0, LOOP)
    assert busy == pytest.approx(1.0)
    assert in_commit == pytest.approx(0.2 + 0.15)
    assert in_handle == pytest.approx(0.5 + 0.05)
    assert fetch == pytest.approx(0.1)
    assert apply_ == pytest.approx(0.4)


def test_a_record_sent_during_the_fetch_is_not_busy() -> None:
    busy, in_commit, in_handle, fetch, apply_ = split_lag(1.55, 1.5, 1.6, 2.0, LOOP)
    assert (busy, in_commit, in_handle) == (0.0, 0.0, 0.0)
    assert fetch == pytest.approx(0.05)
    assert apply_ == pytest.approx(0.4)
