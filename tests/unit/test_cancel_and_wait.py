"""Stopping a background task when one cancel can be lost.

Python 3.11's ``asyncio.wait_for`` returns a result that arrives together with a cancel and
drops the cancel; a loop around it then runs on, and a stop that awaits it waits for ever (a CI
run hung 180 s on such a stop). The product waits with ``asyncio.timeout`` instead, and its
stops cancel again until the task has ended, bounded."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from branchline_shared.background import cancel_and_wait, running_task

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

PRODUCT = [Path(__file__).parents[2] / part for part in ("shared", "services", "cli")]


async def swallows_one_cancel(cancels_to_swallow: int) -> None:
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed += 1
            if swallowed > cancels_to_swallow:
                raise


async def test_a_task_that_lost_a_cancel_is_cancelled_again_until_it_ends() -> None:
    task = asyncio.create_task(swallows_one_cancel(1))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.2)
    assert not done  # one cancel is not enough for this task: a plain stop would hang
    await cancel_and_wait(task, again_s=0.05, within_s=5)
    assert task.cancelled()


async def test_a_task_that_survives_every_cancel_is_logged_and_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = asyncio.create_task(swallows_one_cancel(10**9))
    await asyncio.sleep(0)
    with caplog.at_level(logging.CRITICAL, logger="branchline_shared.background"):
        await cancel_and_wait(task, again_s=0.02, within_s=0.2)
    assert not task.done()
    assert "survives its cancellation" in caplog.text
    task.get_coro().close()  # type: ignore[union-attr]  # let the test end without a warning


async def test_the_error_a_task_ended_with_is_raised_as_awaiting_it_would() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    task = asyncio.create_task(fails())
    await asyncio.wait([task])
    with pytest.raises(ValueError, match="broken"):
        await cancel_and_wait(task)


async def test_running_task_stops_a_loop_whose_wait_completes_with_the_cancel() -> None:
    woken = asyncio.Event()
    rounds = 0

    async def loop_on_wake_ups() -> None:
        nonlocal rounds
        while True:
            # the pattern that lost the cancel on 3.11: a result and the cancel together
            try:
                await asyncio.wait_for(woken.wait(), timeout=3600)
            except TimeoutError:
                pass
            woken.clear()
            rounds += 1

    async with running_task(loop_on_wake_ups(), name="test-loop") as task:
        await asyncio.sleep(0)
        woken.set()  # the wait completes in the same turn as the exit's cancel
    assert task.done()


def test_the_product_waits_with_asyncio_timeout_not_wait_for() -> None:
    offenders = [
        f"{path}:{number}"
        for root in PRODUCT
        for path in root.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "asyncio.wait_for(" in line
    ]
    assert offenders == [], "asyncio.wait_for can lose a cancel on Python 3.11: " + ", ".join(
        offenders
    )
