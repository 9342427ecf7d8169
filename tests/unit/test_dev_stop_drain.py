"""``branchline dev`` starts its services with no readiness drain on stop (#12): the drain
keeps a stopped service unready while it still serves, for a load balancer polling /readyz;
nothing polls the dev stack's services after its start, and the default 2 s was more than half
of an idle Ctrl-C. What protects data comes after the drain and is untouched (requests in
flight finish, consumers commit, relays publish). An operator's own setting still wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from branchline_cli.devstack import DevStack
from branchline_shared.settings import BranchlineSettings

pytestmark = pytest.mark.unit


def _child_drain(tmp_path: Path) -> float:
    stack = DevStack(BranchlineSettings(data_dir=tmp_path))
    drain: float = stack.child_settings(stack.child_env()).shutdown_drain_s
    return drain


def test_the_dev_stacks_services_stop_without_a_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRANCHLINE_SHUTDOWN_DRAIN_S", raising=False)
    assert BranchlineSettings.model_fields["shutdown_drain_s"].default > 0  # what they'd wait
    assert _child_drain(tmp_path) == 0


def test_an_operators_drain_still_reaches_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRANCHLINE_SHUTDOWN_DRAIN_S", "3")
    assert _child_drain(tmp_path) == 3
