"""How `make test` shares the suite among pytest-xdist workers (#12).

A worker takes whole units: a test module, or a package whose tests share a package-scoped
fixture (the browser tests' one `branchline dev` stack). Keeping a module in one worker is
what the per-module open-socket check (``tests/conftest.py``) and the module-scoped fixtures
rely on. Units go out in the order of :func:`slowest_first`: the longest ones start first, so
that the run does not end with one worker alone on the bench smoke while the others idle; the
many short unit-test modules come last and fill the gaps.
"""

from __future__ import annotations

from collections.abc import Sequence

SHARED_PACKAGES = ("tests/browser/",)
"""Packages taken whole by one worker: their package-scoped fixtures start `branchline dev`
(tens of seconds), which a second worker would start again."""

SLOWEST = (
    "tests/browser",  # 160 s (R38)
    "tests/e2e/test_bench_smoke.py",  # 108 s (R38)
    "tests/integration/test_reconcile.py",  # 85 s (R38)
    "tests/integration/test_stop_at_first_moments.py",  # 71 s (R38)
    "tests/chaos/test_nothing_accepted_is_lost.py",  # 71 s (R38)
    "tests/integration/followup/test_followup_cancelled_statements.py",  # 70 s (R38*, was 147)
    "tests/integration/followup/test_followup_read_plans.py",  # 56 s (R38)
    "tests/integration/test_stop_while_starting.py",  # 49 s (R38)
    "tests/integration/test_graceful_shutdown.py",  # 45 s (R38)
    "tests/integration/audit/test_audit_cancelled_alone.py",  # 40 s (R38)
    "tests/unit/audit/test_audit_fast_verify.py",  # 36 s (R38)
    "tests/integration/test_kafka_start_cancelled.py",  # 31 s (R38)
    "tests/e2e/test_intake_processes.py",  # 30 s (R38)
    "tests/integration/followup/test_console_work_back.py",  # 29 s (R38)
    "tests/integration/followup/test_followup_rebuild.py",  # 27 s (R38)
    "tests/integration/audit/test_audit_unwritten_times.py",  # 25 s (R38)
    "tests/integration/followup/test_followup_order.py",  # 25 s (R38)
    "tests/integration/followup/test_followup_worker_stop.py",  # 25 s (R38)
    "tests/integration/test_long_log_fetch_wait.py",  # 23 s (R38)
    "tests/integration/followup/test_followup_batches.py",  # 23 s (R38)
    "tests/integration/test_relay_drain_gives_up.py",  # 22 s (R38*, was 53)
    "tests/integration/audit/tamper/test_tamper_any_column.py",  # 22 s (R38)
    "tests/integration/audit/tamper/test_tamper_segments.py",  # 22 s (R38)
    "tests/e2e/test_dev_stack.py",  # 22 s (R38)
    "tests/unit/audit/test_audit_export_fast_verify.py",  # 22 s (R38)
    "tests/contract/test_followup_unit_of_work_contract.py",  # 20 s (R38)
    "tests/unit/audit/test_audit_segments.py",  # 17 s (R38)
    "tests/unit/intake/test_intake_properties.py",  # 13 s (R38)
)
"""The longest units, longest first, with their summed test times (junit, setup and teardown
included). "R38": the lead's clean-clone 3-worker `make test` run of Round 38 (its junit file),
which ran beside other sessions' tests on 2 cores: inflated, good for the order, not as
absolute figures. "R38*": that unit's figure after a cut later in the round, its run alone by
path (one process, a lightly loaded machine) with the "was" from that junit; docs/
performance.md, Round 38's "CI time: the integration tier". Earlier rounds' figures (R23, R36)
are replaced; a unit not named here is not wrong, only later: it goes by its tier. The slow
unit-test modules are here too: last in line, they would end the run."""

_TIER_ORDER = ("tests/e2e/", "tests/chaos/", "tests/integration/", "tests/contract/")
"""After :data:`SLOWEST`: the tiers that start processes and brokers, then the rest; the
unit tests (pure, milliseconds each) last."""


def unit_of(nodeid: str) -> str:
    """The unit a test goes to a worker with: its package if shared, else its module."""
    path = nodeid.split("::", 1)[0]
    for package in SHARED_PACKAGES:
        if path.startswith(package):
            return package.rstrip("/")
    return path


def rank(nodeid: str) -> tuple[int, int]:
    unit = unit_of(nodeid)
    if unit in SLOWEST:
        return (0, SLOWEST.index(unit))
    for position, tier in enumerate(_TIER_ORDER):
        if unit.startswith(tier):
            return (1, position)
    return (2, 0)


def slowest_first(nodeids: Sequence[str]) -> list[int]:
    """The positions of ``nodeids`` in the order they should run: by :func:`rank`, a unit's
    tests together and in their own order (the sort is stable; units of one rank keep their
    collection order)."""
    return sorted(range(len(nodeids)), key=lambda i: rank(nodeids[i]))
