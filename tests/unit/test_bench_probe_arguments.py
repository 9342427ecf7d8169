"""The pure parts of the probes moved onto bench/probe_stack.py in Round 36 (#12): what their
arguments ask for (the events to report at, the verifies to run, the outbox layout, the order
of a pair's variants)."""

from __future__ import annotations

import pytest
from bench.migration_blocking import pair_order
from bench.profile_ledger import verify_modes
from bench.profile_memory import step_counts
from bench.profile_publish import fillfactor
from bench.profile_status_page import arguments, page_cursor

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


def test_the_status_page_probe_refuses_a_fill_without_a_next_page_before_it_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Round 36's run: 2,000 tasks at 0.001 cancelled hold about 2, and its cursor is the 50th
    with pytest.raises(SystemExit):
        arguments(["--tasks", "2000", "--writes", "50", "--pairs", "1"])
    assert "--cancelled" in capsys.readouterr().err
    assert arguments(["--tasks", "2000", "--cancelled", "0.1"]).cancelled == 0.1
    assert arguments([]).tasks == 100_000  # the defaults: about 95 cancelled
    rows = [{"due_at": n, "id": f"t{n}"} for n in range(60)]
    assert page_cursor(rows) == (49, "t49")
    with pytest.raises(SystemExit, match="fewer than a page"):
        page_cursor(rows[:49])
