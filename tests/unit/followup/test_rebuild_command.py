"""``branchline rebuild followup`` says plainly why nothing was swapped when the swap's bounded
waits ran out (#12), and exits 1."""

from __future__ import annotations

import io
from typing import Any

import pytest
import typer
from pydantic import ValidationError
from rich.console import Console
from typer.testing import CliRunner

import branchline_followup.bootstrap as bootstrap
from branchline_cli.followup_commands import rebuild_followup_read_models
from branchline_cli.main import app
from branchline_followup.adapters.rebuild_target import SwapAbandoned, SwapLockBusy
from branchline_followup.application.rebuild import RebuildResult
from branchline_followup.domain.stream_order import TooManyHeld
from branchline_shared.settings import BranchlineSettings


@pytest.mark.parametrize(
    "error",
    [
        SwapLockBusy("the swap lock was busy"),
        SwapAbandoned("idle"),
        TooManyHeld(10_000, "product-P-L", 2),
    ],
)
def test_a_swap_that_gave_up_is_reported_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    async def rebuild(*_: Any, **__: Any) -> None:
        raise error

    monkeypatch.setattr(bootstrap, "rebuild", rebuild)
    out = io.StringIO()
    with pytest.raises(typer.Exit) as exited:
        rebuild_followup_read_models(
            BranchlineSettings(),
            keep_previous=False,
            batch_size=500,
            console=Console(file=out, width=400),
        )
    assert exited.value.exit_code == 1
    assert f"not swapped: {error}" in out.getvalue()


def test_the_command_settles_its_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    # its own process (#12): the heap frozen as the rebuild goes (a test's never is)
    asked: dict[str, Any] = {}

    async def rebuild(*_: Any, **kwargs: Any) -> RebuildResult:
        asked.update(kwargs)
        return RebuildResult(
            schema="fu_rebuild_1", total=0, applied=0, skipped=0, caught_up=0, retired=None
        )

    monkeypatch.setattr(bootstrap, "rebuild", rebuild)
    rebuild_followup_read_models(
        BranchlineSettings(),
        keep_previous=False,
        batch_size=500,
        console=Console(file=io.StringIO(), width=200),
    )
    assert asked["settle_heap"] is True


def test_the_processes_option_reaches_the_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    # --processes N (#12): the main phase in N processes; 1 (the default) as before
    asked: dict[str, Any] = {}

    async def rebuild(*_: Any, **kwargs: Any) -> RebuildResult:
        asked.update(kwargs)
        return RebuildResult(
            schema="fu_rebuild_1", total=0, applied=0, skipped=0, caught_up=0, retired=None
        )

    monkeypatch.setattr(bootstrap, "rebuild", rebuild)
    monkeypatch.delenv("BRANCHLINE_FOLLOWUP_REBUILD_PROCESSES", raising=False)
    result = CliRunner().invoke(app, ["rebuild", "followup", "--processes", "3"])
    assert result.exit_code == 0, result.output
    assert asked["processes"] == 3
    result = CliRunner().invoke(app, ["rebuild", "followup"])
    assert result.exit_code == 0, result.output
    assert asked["processes"] == 1


def test_the_processes_setting_is_the_commands_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # BRANCHLINE_FOLLOWUP_REBUILD_PROCESSES (#12): the default of --processes, which overrides it
    asked: dict[str, Any] = {}

    async def rebuild(*_: Any, **kwargs: Any) -> RebuildResult:
        asked.update(kwargs)
        return RebuildResult(
            schema="fu_rebuild_1", total=0, applied=0, skipped=0, caught_up=0, retired=None
        )

    monkeypatch.setattr(bootstrap, "rebuild", rebuild)
    monkeypatch.setenv("BRANCHLINE_FOLLOWUP_REBUILD_PROCESSES", "2")
    result = CliRunner().invoke(app, ["rebuild", "followup"])
    assert result.exit_code == 0, result.output
    assert asked["processes"] == 2
    result = CliRunner().invoke(app, ["rebuild", "followup", "--processes", "1"])
    assert result.exit_code == 0, result.output
    assert asked["processes"] == 1


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_bad_processes_setting_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    asked: list[Any] = []

    async def rebuild(*_: Any, **kwargs: Any) -> RebuildResult:
        asked.append(kwargs)
        raise AssertionError("not reached")

    monkeypatch.setattr(bootstrap, "rebuild", rebuild)
    monkeypatch.setenv("BRANCHLINE_FOLLOWUP_REBUILD_PROCESSES", value)
    with pytest.raises(ValidationError, match="followup_rebuild_processes"):
        BranchlineSettings()
    result = CliRunner().invoke(app, ["rebuild", "followup"])
    assert isinstance(result.exception, ValidationError), result.output
    assert "followup_rebuild_processes" in str(result.exception)
    assert result.exit_code != 0
    assert asked == []


def test_the_max_held_option_overrides_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    # --max-held N (#12): the topic order's bound on held events; its default the setting
    seen: list[int] = []

    async def rebuild(settings: BranchlineSettings, **_: Any) -> RebuildResult:
        seen.append(settings.followup_rebuild_max_held)
        return RebuildResult(
            schema="fu_rebuild_1", total=0, applied=0, skipped=0, caught_up=0, retired=None
        )

    monkeypatch.setattr(bootstrap, "rebuild", rebuild)
    monkeypatch.setenv("BRANCHLINE_FOLLOWUP_REBUILD_MAX_HELD", "20000")
    for args in (["rebuild", "followup"], ["rebuild", "followup", "--max-held", "50000"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    assert seen == [20_000, 50_000]
    result = CliRunner().invoke(app, ["rebuild", "followup", "--max-held", "0"])
    assert result.exit_code != 0
    assert seen == [20_000, 50_000]
