"""The benchmark's rebuild figures (#12, Round 26): `make bench` times the rebuild once in one
process and then, on the same stack right after it, in two (`--processes 2`), each with its
ratios; a rebuild that does not finish is reported and the next one is not run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bench import run, scale

pytestmark = pytest.mark.unit


class Stack:
    settings = object()


async def test_the_rebuild_is_timed_in_one_process_then_in_two(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []

    async def rebuild_rate(settings: Any, processes: int = 1) -> tuple[float, int]:
        assert settings is Stack.settings
        asked.append(processes)
        return 1000.0 * processes, 28_000

    monkeypatch.setattr(scale, "rebuild_rate", rebuild_rate)
    warnings: list[str] = []
    figures = await run.rebuilds(Stack(), warnings)  # type: ignore[arg-type]
    assert asked == [1, 2]
    assert figures == {"rebuild": 1000.0, "rebuild_events": 28_000, "rebuild_p2": 2000.0}
    assert warnings == []


async def test_a_rebuild_that_did_not_finish_is_reported_and_the_next_not_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []

    async def rebuild_rate(settings: Any, processes: int = 1) -> tuple[float, int]:
        asked.append(processes)
        await asyncio.Event().wait()  # never finishes
        raise AssertionError("not reached")

    monkeypatch.setattr(scale, "rebuild_rate", rebuild_rate)
    monkeypatch.setattr(run, "REBUILD_LIMIT_S", 0.01)
    warnings: list[str] = []
    assert await run.rebuilds(Stack(), warnings) == {}  # type: ignore[arg-type]
    assert asked == [1]
    assert warnings == ["the rebuild in 1 process(es) had not finished after 0.01 s"]


def test_the_two_process_rebuild_is_summarised_beside_the_one_process_rebuild() -> None:
    runs = [
        {"raw_copy": 100_000.0, "rebuild": 5_000.0, "rebuild_events": 28_000, "rebuild_p2": 6_000},
        {"raw_copy": 50_000.0},
    ]
    measures = run.summarise(runs, run.PROFILES["standard"])
    ratios = measures["rebuild_p2"]["ratios"]
    assert measures["rebuild_p2"]["runs"] == [6_000]
    assert ratios["raw_copy"]["runs"] == [0.06]
    assert ratios["rebuild"]["runs"] == [1.2]
    assert "2 processes" in measures["rebuild_p2"]["title"]
