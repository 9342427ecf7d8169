"""The suite's share among xdist workers (tests/support/schedule.py, #12): whole units, the
longest first, every test kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import schedule
from tests.support.schedule import SHARED_PACKAGES, SLOWEST, slowest_first, unit_of

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

COLLECTED = [
    "tests/browser/test_console_flow.py::test_a",
    "tests/browser/test_console_pages.py::test_b[en]",
    "tests/browser/test_console_pages.py::test_b[zh]",
    "tests/chaos/test_nothing_accepted_is_lost.py::test_c",
    "tests/contract/test_event_store_contract.py::test_d",
    "tests/e2e/test_bench_smoke.py::test_e",
    "tests/e2e/test_other.py::test_f",
    "tests/integration/audit/test_audit_api.py::test_g",
    "tests/integration/audit/test_audit_api.py::Test::test_h",
    "tests/integration/test_relay_broker_restart.py::test_i",
    "tests/unit/test_tokens.py::test_j",
    "tests/unit/test_tokens.py::test_k",
]


def test_a_module_is_a_unit_and_the_browser_package_one_unit() -> None:
    assert unit_of("tests/unit/test_tokens.py::test_j[x::y]") == "tests/unit/test_tokens.py"
    assert unit_of("tests/integration/audit/test_audit_api.py::Test::test_h") == (
        "tests/integration/audit/test_audit_api.py"
    )
    # its package-scoped `branchline dev` stack starts once, in one worker
    assert unit_of(COLLECTED[0]) == unit_of(COLLECTED[1]) == "tests/browser"


def test_the_longest_units_first_then_the_tiers_the_unit_tests_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        schedule,
        "SLOWEST",
        (
            "tests/e2e/test_bench_smoke.py",
            "tests/browser",
            "tests/chaos/test_nothing_accepted_is_lost.py",
            "tests/integration/test_relay_broker_restart.py",
        ),
    )
    ordered = [COLLECTED[i] for i in slowest_first(COLLECTED)]

    assert sorted(ordered) == sorted(COLLECTED)  # every test, once
    units = [unit_of(nodeid) for nodeid in ordered]
    assert units == [
        "tests/e2e/test_bench_smoke.py",
        "tests/browser",
        "tests/browser",
        "tests/browser",
        "tests/chaos/test_nothing_accepted_is_lost.py",
        "tests/integration/test_relay_broker_restart.py",
        "tests/e2e/test_other.py",
        "tests/integration/audit/test_audit_api.py",
        "tests/integration/audit/test_audit_api.py",
        "tests/contract/test_event_store_contract.py",
        "tests/unit/test_tokens.py",
        "tests/unit/test_tokens.py",
    ]
    # a unit's own tests keep their order (module-scoped fixtures, parametrized runs)
    assert ordered[1:4] == COLLECTED[0:3]
    assert ordered[-2:] == COLLECTED[-2:]


@pytest.mark.parametrize("unit", SLOWEST + SHARED_PACKAGES)
def test_every_named_unit_exists(unit: str) -> None:
    # a renamed module would silently lose its early start
    assert (ROOT / unit).exists(), unit
