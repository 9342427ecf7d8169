"""What the benchmark's smoke profile waits for (#12, docs/performance.md, Round 25): its
consumers' settling is short (its figures are not read), every other profile settles as
before, and no bench stack's stop waits out a load balancer's drain."""

from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from bench import run
from bench.stack import stack_env

from branchline_shared.settings import BranchlineSettings

pytestmark = pytest.mark.unit


async def _quiet_of(profile: run.Profile, monkeypatch: pytest.MonkeyPatch) -> float:
    asked: list[dict[str, Any]] = []

    async def drain(followup_dsn: str, audit_dsn: str, **kwargs: Any) -> dict[str, float]:
        asked.append({"dsns": (followup_dsn, audit_dsn), **kwargs})
        return {"followup": 0.0, "audit": 0.0}

    monkeypatch.setattr(run.latency, "drain", drain)
    settings = SimpleNamespace(followup_database_url="fu", audit_database_url="au")
    stack: Any = SimpleNamespace(settings=settings)
    await run.settle(stack, profile)
    [call] = asked
    assert call["dsns"] == ("fu", "au")
    return float(call["quiet_s"])


async def test_the_smoke_settles_quicker_than_the_measuring_profiles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default_quiet = inspect.signature(run.latency.drain).parameters["quiet_s"].default
    smoke = await _quiet_of(run.PROFILES["smoke"], monkeypatch)
    assert 0 < smoke < default_quiet
    for name in ("standard", "full"):
        assert await _quiet_of(run.PROFILES[name], monkeypatch) == default_quiet, name


def test_a_bench_stacks_services_stop_without_a_drain(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    assert env["BRANCHLINE_SHUTDOWN_DRAIN_S"] == "0"
    drain = BranchlineSettings.model_fields["shutdown_drain_s"].default
    assert drain > 0  # what the services would wait otherwise
    # A probe that needs the drain still asks for it.
    assert (
        stack_env(tmp_path, {"BRANCHLINE_SHUTDOWN_DRAIN_S": "2"})["BRANCHLINE_SHUTDOWN_DRAIN_S"]
        == "2"
    )
