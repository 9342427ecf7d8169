"""A batch consumer whose stop is cut short (the worker's stop bound cancels it) leaves nothing
of aiokafka's open (#12).

The followup worker and the audit consumer ask their consumer to stop and cancel it past their
stop bound (``stop_batch_consumer``). aiokafka's ``AIOKafkaConsumer.stop()``, cancelled while
it leaves its group (or waits for a join in flight), has marked itself closed and never reaches
its fetcher's and client's close: their tasks and the connections to the broker stayed open for
the life of the process. Here the group's leave is never answered (a broker that does not
answer it), so the stop waits there until the bound cancels it."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest
from aiokafka.consumer.group_coordinator import GroupCoordinator

from branchline_shared.background import cancel_and_wait
from branchline_shared.kafka.consuming import (
    BatchConsumer,
    DeadLetters,
    RawMessage,
    stop_batch_consumer,
)
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import TopicSpec, ensure_topics
from tests.support import open_sockets
from tests.support.stack import Infra, make_settings, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _aiokafka_tasks() -> set[asyncio.Task[Any]]:
    """The running tasks of aiokafka's own coroutines (a client's, a fetcher's, a group's)."""
    return {
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and "/aiokafka/" in getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "")
    }


@pytest.mark.parametrize("how", ["stop-bound", "cancelled-while-fetching"])
async def test_a_batch_consumer_whose_stop_is_cut_short_closes_its_client(
    infra: Infra,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    settings = make_settings(infra, tmp_path)
    producer = make_producer(settings, client_id="unstarted")  # dead letters: none here
    leaving = asyncio.Event()

    async def unanswered_leave(self: GroupCoordinator) -> None:
        leaving.set()
        await asyncio.Event().wait()

    async def handled(messages: list[RawMessage]) -> None:
        pass

    before = _aiokafka_tasks()
    topic = unique("stopcut-")
    await ensure_topics(settings.kafka_bootstrap, [TopicSpec(topic, 2, 1)])
    consumer = BatchConsumer(
        settings=settings,
        topics=[topic],
        group_id=unique("g-"),
        name="stopcut",
        dead_letters=DeadLetters(producer, f"{topic}.dlq", "stopcut"),
        handle_raw=handled,
    )
    task = asyncio.ensure_future(consumer.run())
    try:
        async with asyncio.timeout(60):
            await consumer.started.wait()
        await asyncio.sleep(0.05)  # assigned, fetching
        monkeypatch.setattr(GroupCoordinator, "_maybe_leave_group", unanswered_leave)
        async with asyncio.timeout(30):
            if how == "stop-bound":  # the workers' stop: asked, then cancelled past the bound
                await stop_batch_consumer(consumer, task, timeout_s=1.0)
            else:  # cancelled where it fetches, then again in its stop (cancel_and_wait)
                await cancel_and_wait(task, again_s=0.5, within_s=10)
        assert leaving.is_set()  # the stop was cut where it waited
        assert task.done()
    finally:
        if not task.done():
            task.cancel()
        await producer.stop()
    await asyncio.sleep(0.1)
    left = _aiokafka_tasks() - before
    assert left == set(), "aiokafka's tasks still running:\n" + "\n".join(map(repr, left))
    assert open_sockets.left_open({request.node.nodeid}) == []
    gc.collect()  # an unclosed connection warns as it is collected (an error in this suite)
