"""The producer's close after the relay's drain (``eventstore.relay_stop``, #12): flushed, bounded
by the setting, after a drain that finished; not flushed after one that did not (cut at its
bound, or the relay died of an error), whose rows stay unmarked for the next relay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from branchline_shared.eventstore.relay_stop import RelayStop
from branchline_shared.kafka import starting

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

FLUSH_S = 3.0


class Relay:
    """A stand-in with :meth:`OutboxRelay.drain`'s contract: waits for the task, bounded, then
    cancels it."""

    drain_given_up = False

    async def drain(self, task: asyncio.Task[None], *, timeout_s: float) -> None:
        await asyncio.wait([task], timeout=timeout_s)
        task.cancel()
        await asyncio.wait([task])


async def finishes() -> None:
    await asyncio.sleep(0)


async def hangs() -> None:
    await asyncio.Event().wait()


async def fails() -> None:
    raise ConnectionError("the relay lock's connection is gone")


@pytest.mark.parametrize(
    ("run", "flushed_within"),
    [(finishes, FLUSH_S), (hangs, 0), (fails, 0)],
    ids=["drained", "cut-at-the-bound", "died"],
)
async def test_the_producer_is_flushed_only_after_a_drain_that_finished(
    monkeypatch: pytest.MonkeyPatch, run: Any, flushed_within: float
) -> None:
    closes: list[float | None] = []

    async def closed(_: object, *, flush_within_s: float | None) -> None:
        closes.append(flush_within_s)

    monkeypatch.setattr(starting, "closed", closed)
    stop = RelayStop()
    task = asyncio.create_task(run())
    await stop.drain(Relay(), task, timeout_s=0.2)  # type: ignore[arg-type]
    await stop.producer_closed(object(), flush_within_s=FLUSH_S)  # type: ignore[arg-type]
    assert closes == [flushed_within]


async def test_without_a_drain_the_producer_is_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay switched off (``relay_enabled``): no drain, the flush as before."""
    closes: list[float | None] = []

    async def closed(_: object, *, flush_within_s: float | None) -> None:
        closes.append(flush_within_s)

    monkeypatch.setattr(starting, "closed", closed)
    await RelayStop().producer_closed(object(), flush_within_s=FLUSH_S)  # type: ignore[arg-type]
    assert closes == [FLUSH_S]
