"""A stop asked for while a worker starts cuts the start short (#12, worker_runtime)."""

from __future__ import annotations

import asyncio

import pytest

from branchline_shared.http.worker_runtime import cut_short_by

pytestmark = pytest.mark.timeout(10)


async def test_a_stop_while_starting_cancels_the_start_and_ends_there() -> None:
    stop = asyncio.Event()
    steps: list[str] = []
    asyncio.get_running_loop().call_later(0.01, stop.set)
    async with cut_short_by(stop):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            steps.append("start unwound")
            raise
        steps.append("started")
    await asyncio.sleep(0)  # the task is not cancelled any more
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0
    assert steps == ["start unwound"]


async def test_a_stop_asked_for_before_the_start_cuts_it_at_its_first_wait() -> None:
    stop = asyncio.Event()
    stop.set()
    started = False
    async with cut_short_by(stop):
        await asyncio.sleep(30)
        started = True
    assert not started


async def test_without_a_stop_the_start_runs_and_a_later_stop_is_the_callers() -> None:
    stop = asyncio.Event()
    async with cut_short_by(stop):
        await asyncio.sleep(0)
    stop.set()
    await asyncio.sleep(0.01)  # the stop does not cancel what follows the start
    assert stop.is_set()


async def test_a_cancellation_from_outside_still_goes_through() -> None:
    stop = asyncio.Event()

    async def starting() -> None:
        async with cut_short_by(stop):
            await asyncio.sleep(30)

    task = asyncio.create_task(starting())
    await asyncio.sleep(0.01)
    task.cancel()
    stop.set()
    with pytest.raises(asyncio.CancelledError):
        await task
