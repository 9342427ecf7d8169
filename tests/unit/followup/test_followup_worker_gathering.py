"""The worker's agent gathers a batch while its partition holds more records (#12): Faust
hands it one message per turn of its fetcher, so a worker that is behind found its queue
empty after nearly every message and applied batches of one; idle, it must still apply an
event at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from branchline_followup.entrypoints.worker import GATHER_POLLS, more_arrives, records_behind

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]


async def put_after_turns(queue: asyncio.Queue[Any], turns: int) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)
    queue.put_nowait("next")


async def test_an_event_handed_over_a_few_turns_later_joins_the_batch() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    handover = asyncio.create_task(put_after_turns(queue, 3))
    assert await more_arrives(queue, GATHER_POLLS)
    await handover


async def test_without_polls_an_empty_queue_ends_the_batch_at_once() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    handover = asyncio.create_task(put_after_turns(queue, 1))
    assert not await more_arrives(queue, 0)
    await handover
    assert await more_arrives(queue, 0)


async def test_polls_are_bounded_when_nothing_comes() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    assert not await asyncio.wait_for(more_arrives(queue, GATHER_POLLS), timeout=1)


def app_with_highwater(highwater: Any) -> Any:
    def read(tp: Any) -> Any:
        if isinstance(highwater, Exception):
            raise highwater
        return highwater

    return SimpleNamespace(consumer=SimpleNamespace(highwater=read))


@pytest.mark.parametrize(
    ("highwater", "offset", "behind"),
    [(10, 5, 4), (6, 5, 0), (None, 5, 0), (RuntimeError("no consumer"), 5, 0), (3, 5, 0)],
)
def test_records_behind_counts_what_the_partition_holds_past_the_message(
    highwater: Any, offset: int, behind: int
) -> None:
    message = SimpleNamespace(tp=("t", 0), offset=offset)
    assert records_behind(app_with_highwater(highwater), message) == behind
