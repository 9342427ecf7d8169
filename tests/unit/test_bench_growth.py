"""The benchmark's growth step (bench/scale.py, #12): the write path is read once both
consumers hold every event intake stored, the catch-up is reported apart, and a catch-up that
does not finish within its bound is said, not hidden in the figures."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from bench import scale

pytestmark = pytest.mark.unit


class Steps:
    """What the growth step did, in order, with the consumers holding or not."""

    def __init__(self, *, catches_up: bool) -> None:
        self.catches_up = catches_up
        self.done: list[str] = []

    async def fill_to(self, stack: object, events: int) -> None:
        self.done.append(f"fill {events}")

    async def followup_share(self, stack: object) -> float:
        self.done.append("share")
        return 0.7

    async def caught_up(self, stack: object, *, followup: bool, within_s: float = 0) -> bool:
        self.done.append(f"caught_up followup={followup}")
        return self.catches_up

    async def audit_caught_up(self, stack: object, within_s: float = 0) -> None:
        self.done.append("audit")

    async def write_path(
        self, stack: object, sample: int, batch_events: int | None = None
    ) -> tuple[float, float]:
        self.done.append(f"write_path {sample}" + (f" {batch_events}" if batch_events else ""))
        return 5_000.0, 0.5

    async def sleep(self, seconds: float) -> None:
        self.done.append(f"rest {seconds:g}")

    def rss_mb(self, stack: object, component: str) -> float:
        if "rss" not in self.done:
            self.done.append("rss")
        return 100.0


STACK = SimpleNamespace(settings=SimpleNamespace(malloc_trim_interval_s=10.0))
"""The stack's settings the step reads: the consumers' trim interval."""


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> Any:
    def patch(steps: Steps) -> Steps:
        for name in ("fill_to", "followup_share", "caught_up", "audit_caught_up", "write_path"):
            monkeypatch.setattr(scale, name, getattr(steps, name))
        monkeypatch.setattr(scale, "rss_mb", steps.rss_mb)
        monkeypatch.setattr(scale, "asyncio", SimpleNamespace(sleep=steps.sleep))
        return steps

    return patch


async def test_the_write_path_is_read_after_both_consumers_caught_up(patched: Any) -> None:
    steps = patched(Steps(catches_up=True))
    warnings: list[str] = []
    figures = await scale.growth_step(STACK, 10_000, 1280, warnings)  # type: ignore[arg-type]
    assert steps.done == [
        "fill 10000",
        "audit",
        "share",
        "caught_up followup=True",
        "write_path 1280",
        # memory at rest: both consumers hold the write path's events, one trim interval idle
        "caught_up followup=True",
        f"rest {10.0 + scale.REST_MARGIN_S:g}",
        "rss",
    ]
    assert figures["grow_followup_applied_10k"] == 0.7
    assert figures["grow_catchup_10k"] >= 0
    assert (figures["grow_batch_10k"], figures["grow_single_cpu_ms_10k"]) == (5_000.0, 0.5)
    assert warnings == []


async def test_a_catch_up_past_its_bound_is_warned_and_has_no_figure(patched: Any) -> None:
    steps = patched(Steps(catches_up=False))
    warnings: list[str] = []
    figures = await scale.growth_step(STACK, 100_000, 1280, warnings)  # type: ignore[arg-type]
    assert not any(step.startswith("rest") for step in steps.done)  # no rest to wait for
    assert "grow_catchup_100k" not in figures
    assert figures["grow_batch_100k"] == 5_000.0  # still measured, and said to be beside a backlog
    assert len(warnings) == 1
    assert "100,000" in warnings[0]
    assert "not caught up" in warnings[0]


def test_the_catch_up_is_a_measure_of_each_step() -> None:
    keys = [key for key, _, _ in scale.growth_measures((10_000, 100_000))]
    assert "grow_catchup_10k" in keys
    assert "grow_catchup_100k" in keys


async def test_a_profile_may_size_the_write_paths_batches(
    patched: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The smoke's growth step posts one batch of 1,000 (its rebuilds replay every batch
    # posted, #12, Round 38); every other caller keeps the floor of 3,000.
    steps = patched(Steps(catches_up=True))
    await scale.growth_step(STACK, 1_000, 160, [], batch_events=1_000)  # type: ignore[arg-type]
    assert "write_path 160 1000" in steps.done
    monkeypatch.undo()

    asked: list[tuple[str, int]] = []

    async def batches(port: int, token: str, events: int) -> float:
        asked.append(("batches", events))
        return 5_000.0

    async def single_posts(port: int, token: str, requests: int) -> None:
        asked.append(("singles", requests))

    monkeypatch.setattr(scale.branchline_measures, "batches", batches)
    monkeypatch.setattr(scale.branchline_measures, "single_posts", single_posts)
    stack: Any = SimpleNamespace(
        settings=SimpleNamespace(intake_port=1), token="t", cpu_seconds=lambda name: 1.0
    )
    await scale.write_path(stack, 160, 1_000)
    await scale.write_path(stack, 160)
    await scale.write_path(stack, 4_000)
    assert asked == [
        ("batches", 1_000),
        ("singles", 160),
        ("batches", 3_000),
        ("singles", 160),
        ("batches", 4_000),
        ("singles", 4_000),
    ]
