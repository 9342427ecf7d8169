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
    "tests/e2e/test_bench_smoke.py",  # 109 s (R23)
    "tests/browser",  # 103 s (R23)
    "tests/chaos/test_nothing_accepted_is_lost.py",  # 58 s (R23)
    "tests/integration/followup/test_followup_read_plans.py",  # 26-35 s (R36, was 48-128)
    "tests/integration/test_stop_while_starting.py",  # 33 s (R23)
    "tests/e2e/test_intake_processes.py",  # 31 s (R23)
    "tests/e2e/test_dev_stack.py",  # 30 s (R23)
    "tests/integration/test_graceful_shutdown.py",  # 25 s (R23)
    "tests/integration/audit/tamper/test_tamper_any_column.py",  # 24 s (R36)
    "tests/unit/audit/test_audit_segments.py",  # 24 s (R36)
    "tests/integration/followup/test_followup_rebuild.py",  # 22 s (R36)
    "tests/integration/audit/test_audit_unwritten_times.py",  # 22 s (R36)
    "tests/integration/audit/tamper/test_tamper_segments.py",  # 20 s (R36)
    "tests/integration/audit/test_audit_consumer.py",  # 20 s (R36)
    "tests/integration/followup/test_followup_order.py",  # 19 s (R36)
    "tests/integration/test_long_log_fetch_wait.py",  # 19 s (R36)
    "tests/integration/followup/test_followup_resilience.py",  # 18 s (R36)
    "tests/unit/intake/test_intake_properties.py",  # 17 s (R36)
    "tests/integration/test_intake_standard.py",  # 13 s (R36, was 56-87)
    "tests/unit/audit/test_audit_canonical.py",  # 12 s (R36)
    "tests/integration/test_kafka_start_cancelled.py",  # 11 s (R36)
    "tests/unit/audit/test_audit_export_fast_lines.py",  # 6 s (R36)
)
"""The longest units, longest first, with their summed test times (junit, setup and teardown
included). "R23": the longer of two 3-worker `make test` runs (Round 23, docs/performance.md).
"R36": the unit run alone by path (`pytest FILE`, one process), on a machine loaded by other
runs, the integration ones at 2-6 load on 2 cores, the unit-test ones at 0.5-2 (Round 36's
"CI time" section); a range is two such runs. A unit not named here is not wrong, only later:
it goes by its tier. The slow unit-test modules are here too: last in line, they would end
the run."""

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
