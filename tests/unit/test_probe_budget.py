"""The consumers' probe budget (#12, docs/reliability.md "A statement cancelled again and
again"): a tenth of the pool's ``statement_timeout``, but at least 50 ms (a busy 2-core
machine answers the probe in up to ~16 ms, so a share of a short timeout would be missed and
a true poison event never dead-lettered), never more than the timeout itself; 2 s without one."""

from __future__ import annotations

import pytest

from branchline_shared.postgres.pool import PROBE_BOUND_S, PROBE_FLOOR_S, probe_budget_s

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("timeout_ms", "budget_s"),
    [
        (0, PROBE_BOUND_S),  # no timeout: the old probe's bound
        (60_000, PROBE_BOUND_S),  # a tenth over the bound
        (1000, 0.1),  # a tenth, above the floor
        (500, PROBE_FLOOR_S),  # a tenth exactly the floor
        (150, PROBE_FLOOR_S),  # a tenth under the floor: the floor
        (100, PROBE_FLOOR_S),
        (30, 0.03),  # the floor over the timeout: the timeout
    ],
    ids=["none", "long", "share", "share-at-floor", "floor-150", "floor-100", "timeout"],
)
def test_a_tenth_of_the_timeout_at_least_the_floor_at_most_the_timeout(
    timeout_ms: int, budget_s: float
) -> None:
    assert probe_budget_s(timeout_ms) == pytest.approx(budget_s)
