"""The benchmark's summary over repeated runs (#12): a figure measured once (the rebuild and
the growth steps join the first repetition only) must not break the summary of a standard run
of three repetitions; `make test`'s smoke profile runs once and never shows it."""

from __future__ import annotations

import pytest
from bench.run import PROFILES, summarise

pytestmark = pytest.mark.unit


def test_a_figure_measured_once_is_summarised_beside_repeated_ones() -> None:
    runs = [
        {"raw_copy": 100_000.0, "bl_batch": 2_000.0, "rebuild": 500.0},
        {"raw_copy": 50_000.0, "bl_batch": 1_500.0},
        {"raw_copy": 80_000.0, "bl_batch": 1_600.0},
    ]
    measures = summarise(runs, PROFILES["standard"])
    assert measures["rebuild"]["runs"] == [500.0]
    assert measures["rebuild"]["ratios"]["raw_copy"]["runs"] == [0.005]
    assert measures["bl_batch"]["ratios"]["raw_copy"]["runs"] == [0.02, 0.03, 0.02]
    assert measures["bl_batch"]["median"] == 1_600.0


def test_profile_batch_sums_each_statements_time_per_batch() -> None:
    from bench.profile_batch import statement_times

    log = "\n".join(
        [
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 0.500 ms  parse <unnamed>: ",
            "WITH written AS (",
            "    INSERT INTO es_events",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 1.500 ms  bind <unnamed>: ",
            "WITH written AS (",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 8.000 ms  execute <unnamed>: ",
            "WITH written AS (",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 2.000 ms  statement: COMMIT;",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 4.000 ms  execute <unnamed>: SELECT 1",
            "2026-12-04 08:00:00 UTC [1] LOG:  checkpoint starting: time",
        ]
    )
    assert statement_times(log, batches=2) == [
        (5.0, 1, "WITH written AS ("),
        (2.0, 1, "SELECT 1"),
        (1.0, 1, "COMMIT;"),
    ]
