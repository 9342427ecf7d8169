"""A followup worker's stop is bounded: a Faust app that never finishes stopping has its
consumer thread ended, so neither a SIGTERMed worker process nor an in-process worker (tests,
tools) is kept alive by a thread that goes on polling the broker."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import faust
import pytest

from branchline_followup.bootstrap import followup_runtime, worker_app
from branchline_followup.entrypoints import worker
from branchline_followup.entrypoints.worker import stop_worker_app
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, now_utc, produce_events
from tests.support.processes import settings_env

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(120)]


def consumer_thread(app: faust.App) -> Any:
    """The mode ``WorkerThread`` running ``app``'s consumer (Faust keeps it private)."""
    thread = getattr(app, "_consumer")._thread._thread  # noqa: B009
    assert isinstance(thread, threading.Thread)
    return thread


@pytest.fixture
async def started_app(settings: BranchlineSettings) -> AsyncIterator[faust.App]:
    async with followup_runtime(settings) as runtime:
        app = worker_app(settings, runtime)
        await app.start()
        try:
            yield app
        finally:
            if consumer_thread(app).is_alive():  # the test failed before its stop
                await stop_worker_app(app, timeout_s=20)


async def test_a_stop_does_not_wait_for_a_batch_in_hand(
    settings: BranchlineSettings, started_app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust clears the stream buffers before it waits for acks, so an agent holding a part-
    # gathered batch would never ack and that wait never end (seen as a worker frozen in a
    # rebalance or a stop). Here the batch in hand never finishes: the stop must not wait for
    # it (its events are not acked, so they are redelivered and recognised by id, ADR-0003).
    entered = asyncio.Event()

    async def never_finishes(*args: Any, **kwargs: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(worker, "handle_batch", never_finishes)
    history = History()
    history.registered("C-STOP-1", now_utc() - timedelta(days=1))
    await produce_events(settings, history.events)
    await asyncio.wait_for(entered.wait(), 60)
    thread = consumer_thread(started_app)
    await asyncio.wait_for(started_app.stop(), 20)  # Faust's own stop, not the bounded one
    assert not thread.is_alive()


@pytest.mark.parametrize("how", ["await", "block"])
async def test_a_worker_whose_stop_never_returns_still_exits(
    settings: BranchlineSettings, how: str
) -> None:
    # "await": Faust waits for something that never comes; "block": the event loop's own
    # thread is blocked joining the consumer thread, where no coroutine timeout can fire.
    settings = settings.model_copy(update={"followup_worker_stop_timeout_s": 2.0})
    env = settings_env(settings)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.hung_stop_worker",
        how,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()[-3000:]
    assert out.decode().split() == ["started", "stopped", "0"], err.decode()[-3000:]
    assert b"did not stop in time" in err
