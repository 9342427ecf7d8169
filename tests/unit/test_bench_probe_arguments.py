"""The pure parts of the probes moved onto bench/probe_stack.py in Round 36 (#12): what their
arguments ask for (the events to report at, the verifies to run, the outbox layout, the order
of a pair's variants)."""

from __future__ import annotations

import pytest
from bench.migration_blocking import pair_order
from bench.profile_ledger import verify_modes
from bench.profile_memory import step_counts
from bench.profile_publish import fillfactor

pytestmark = pytest.mark.unit


def test_the_memory_probe_reports_at_its_steps_in_increasing_order() -> None:
    assert step_counts("100000,10000,50000") == [10_000, 50_000, 100_000]
    assert step_counts("500") == [500]


def test_the_ledger_probe_verifies_as_listed_repeated_auto_as_the_command() -> None:
    assert verify_modes("1", 1) == [1]
    assert verify_modes("auto,4,api", 1) == [None, 4, "api"]
    assert verify_modes("1,2", 2) == [1, 2, 1, 2]
    with pytest.raises(ValueError, match="many"):
        verify_modes("many", 1)


def test_the_publish_probe_sets_the_fillfactor_its_variant_names() -> None:
    assert fillfactor("fillfactor100") == 100
    assert fillfactor("fillfactor") == 50
    assert fillfactor("current") is None
    assert fillfactor("pending") is None


def test_a_migration_pair_runs_its_variants_alternately_first() -> None:
    names = ["blocking", "concurrent"]
    assert pair_order(names, 0) == ["blocking", "concurrent"]
    assert pair_order(names, 1) == ["concurrent", "blocking"]
    assert pair_order(names, 2) == ["blocking", "concurrent"]
    assert names == ["blocking", "concurrent"]
