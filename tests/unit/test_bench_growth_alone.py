"""The benchmark's growth part run alone (``python -m bench.growth``, #12): its steps, its
sample and its extra readings as the command line gives them, and what it refuses."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from bench import growth, scale

pytestmark = pytest.mark.unit


def test_defaults_are_the_full_profiles_steps() -> None:
    args = growth.parse([])
    assert args.steps == (10_000, 100_000, 1_000_000)
    assert args.sample == 1280
    assert args.reads == 4
    assert args.rebuild is False
    assert growth.parse(["--rebuild"]).rebuild is True


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("10000,100000", (10_000, 100_000)),
        ("10k,100k,1M", (10_000, 100_000, 1_000_000)),
        (" 5k , 2m", (5_000, 2_000_000)),
        ("1000", (1_000,)),
    ],
)
def test_steps_in_plain_numbers_or_k_and_m(text: str, steps: tuple[int, ...]) -> None:
    assert growth.parse(["--steps", text]).steps == steps


@pytest.mark.parametrize("text", ["100k,10k", "10k,10k", "0", "-5", "10x", "", "10k,,1M"])
def test_steps_not_increasing_or_not_numbers_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        growth.steps_of(text)
    with pytest.raises(SystemExit) as stopped:
        growth.parse(["--steps", text])
    assert stopped.value.code == 2


@pytest.mark.parametrize("argv", [["--sample", "0"], ["--reads", "-1"]])
def test_a_sample_below_one_or_negative_reads_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        growth.parse(argv)
    assert stopped.value.code == 2


def test_the_step_labels_match_the_benchmarks_keys() -> None:
    # The figures the run stores are the benchmark's own keys (bench.scale), so a 1M run
    # alone reads like the full profile's growth rows.
    steps = growth.parse(["--steps", "10k,100k,1M"]).steps
    assert [scale.step_label(s) for s in steps] == ["10k", "100k", "1M"]


def test_ratios_are_each_later_step_over_the_first_where_both_were_measured() -> None:
    figures = {
        "grow_batch_10k": 8000.0,
        "grow_batch_100k": 4000.0,
        "rss_followup-worker_10k": 100.0,
        "rss_followup-worker_100k": 110.0,
        "rss_followup-worker_1M": 120.0,
    }
    got = growth.ratios(figures, (10_000, 100_000, 1_000_000))
    assert got == {
        "grow_batch_100k": 0.5,
        "rss_followup-worker_100k": 1.1,
        "rss_followup-worker_1M": 1.2,
    }


def test_the_extra_readings_alternate_in_both_orders() -> None:
    assert [growth.read_mode(i) for i in range(8)] == [
        "running",
        "paused",
        "paused",
        "running",
    ] * 2


async def test_the_benchmarks_own_reading_is_watched_and_then_left_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def measured(
        stack: object, sample: int, batch_events: int | None = None
    ) -> tuple[float, float]:
        return 5_000.0, 0.4

    async def beside(stack: object, mode: str, reading: Any) -> tuple[Any, dict[str, Any]]:
        return await reading(), {"mode": mode, "checkpoints": 1}

    monkeypatch.setattr(scale, "write_path", measured)
    monkeypatch.setattr(growth, "beside", beside)
    seen: list[dict[str, Any]] = []
    with growth.watched_write_path(object(), seen):  # type: ignore[arg-type]
        assert await scale.write_path(object(), 1280) == (5_000.0, 0.4)  # type: ignore[arg-type]
    assert seen == [{"batch_per_s": 5_000.0, "mode": "running", "checkpoints": 1}]
    assert scale.write_path is measured
