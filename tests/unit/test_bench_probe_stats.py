"""The repetition probe's per-part statistics: counters as differences, gauges as before/after
pairs, only what changed (#12)."""

from __future__ import annotations

from bench.probe_repetitions import stats_delta


def test_counters_are_differences_and_gauges_pairs() -> None:
    before = {"fu_timers": {"n_tup_ins": 10, "idx_scan": 5, "n_dead_tup": 0, "pages": 4}}
    after = {"fu_timers": {"n_tup_ins": 25, "idx_scan": 5, "n_dead_tup": 3, "pages": 6}}
    assert stats_delta(before, after) == {
        "fu_timers": {"n_tup_ins": 15, "n_dead_tup": [0, 3], "pages": [4, 6]}
    }


def test_unchanged_relations_are_left_out_but_standing_dead_tuples_are_kept() -> None:
    same = {"n_tup_ins": 7, "n_dead_tup": 0, "pages": 2}
    dead = {"n_tup_ins": 7, "n_dead_tup": 9, "pages": 2}
    assert stats_delta({"a": same, "b": dead}, {"a": same, "b": dead}) == {
        "b": {"n_dead_tup": [9, 9]}
    }


def test_a_relation_created_during_the_part_counts_from_zero() -> None:
    assert stats_delta({}, {"i:new": {"idx_scan": 4, "pages": 1}}) == {
        "i:new": {"idx_scan": 4, "pages": [0, 1]}
    }
