"""A client's ``stop()`` that ends in a ``CancelledError`` of its own (nobody cancelled its
caller: aiokafka's fetcher's close awaiting a fetch task it cancelled in its retry back-off)
is a stop to ``closed`` and ``stopped`` (#12): they return, and an error a stop raises is
still raised. The real consumer's case: tests/integration/test_kafka_stop_broker_restarting.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from branchline_shared.kafka.starting import closed, stopped

pytestmark = pytest.mark.unit


class EndsShort:
    """A stand-in whose stop ends as aiokafka's does when a task it cancels ends cancelled."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.stops = 0

    async def stop(self) -> None:
        self.stops += 1
        if self.error is not None:
            raise self.error
        inner = asyncio.ensure_future(asyncio.sleep(3600))
        await asyncio.sleep(0)
        inner.cancel()
        await inner  # raises CancelledError: the stop's own task's, not its caller's


@pytest.mark.parametrize("stop", [closed, stopped], ids=["closed", "stopped"])
async def test_a_stop_cancelled_by_its_own_task_ends_as_a_stop(
    stop: Callable[[Any], Awaitable[None]],
) -> None:
    client = EndsShort()
    await stop(client)  # the old code: CancelledError
    assert client.stops == 1


@pytest.mark.parametrize("stop", [closed, stopped], ids=["closed", "stopped"])
async def test_an_error_a_stop_raises_is_raised(stop: Callable[[Any], Awaitable[None]]) -> None:
    with pytest.raises(RuntimeError, match="broker said no"):
        await stop(EndsShort(RuntimeError("broker said no")))


async def test_a_caller_cancelled_while_stopping_is_still_cancelled() -> None:
    class Slow:
        async def stop(self) -> None:
            await asyncio.sleep(0.05)

    task = asyncio.ensure_future(stopped(Slow()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
