"""A producer's or consumer's start cut short leaves no connection open (#12).

aiokafka's start cannot be cancelled cleanly: cancelled while its bootstrap connection waits for
the broker's metadata, that connection is neither closed nor kept by the client, so its stop
never reaches it. The admin client's starts were fixed in Round 20
(test_kafka_admin_cancelled.py); these are the producers' (the services' relay and dead-letter
producers) and the consumers' (the batch consumers, the self-check's group reader, the rebuild's
topic replay). Each is cut short at many moments of its start, as a SIGTERM while a service
starts (a cancelled start-up) or a worker stopped while it joins would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from branchline_followup.adapters.topic_replay import TopicReplay
from branchline_intake.bootstrap import started_producer
from branchline_shared.kafka.consuming import BatchConsumer, DeadLetters, RawMessage
from branchline_shared.kafka.group_offsets import GroupOffsets
from branchline_shared.kafka.producer import make_producer
from tests.support import open_sockets
from tests.support.stack import Infra, make_settings, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MOMENTS_MS = [m / 2 for m in range(50)]
"""When the start is cut short: before, while and after its bootstrap connection is made and
asked for metadata (on the dev broker that takes 1-3 ms)."""


async def cancelled_after(ms: float, start: Callable[[], Awaitable[object]]) -> None:
    task = asyncio.ensure_future(start())
    await asyncio.sleep(ms / 1000)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def nothing_left_open(request: pytest.FixtureRequest) -> None:
    await asyncio.sleep(0.1)  # a connection the broker answers late is made by now
    left = open_sockets.left_open({request.node.nodeid})
    assert left == [], "\n".join(left)


async def test_a_relay_producer_start_cut_short_leaves_no_connection_open(
    infra: Infra, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(infra, tmp_path)

    async def start() -> None:
        async with contextlib.AsyncExitStack() as opened:
            await started_producer(opened, settings)

    for ms in MOMENTS_MS:
        await cancelled_after(ms, start)
    await nothing_left_open(request)


async def test_a_batch_consumer_stopped_or_cancelled_while_starting_leaves_no_connection_open(
    infra: Infra, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(infra, tmp_path)
    producer = make_producer(settings, client_id="unstarted")  # dead letters: none here

    async def handled(messages: list[RawMessage]) -> None:
        pass

    def consumer() -> BatchConsumer:
        topic = unique("startcut-")
        return BatchConsumer(
            settings=settings,
            topics=[topic],
            group_id=unique("g-"),
            name="startcut",
            dead_letters=DeadLetters(producer, f"{topic}.dlq", "startcut"),
            handle_raw=handled,
        )

    try:
        for ms in MOMENTS_MS[:24]:  # a start that got further only waits for its group
            # the run's task cancelled (a service's start-up cancelled by a signal) ...
            await cancelled_after(ms, consumer().run)
            # ... and a stop requested while the start waits (the worker's own stop)
            stopped = consumer()
            running = asyncio.ensure_future(stopped.run())
            await asyncio.sleep(ms / 1000)
            stopped.request_stop()
            async with asyncio.timeout(30):
                await running
    finally:
        await producer.stop()
    await nothing_left_open(request)


async def test_a_self_check_cut_short_while_starting_leaves_no_connection_open(
    infra: Infra, request: pytest.FixtureRequest
) -> None:
    async def check() -> None:
        async with GroupOffsets(infra.kafka_bootstrap, unique("g-"), [unique("t-")]) as group:
            await group.partitions()

    for ms in MOMENTS_MS:
        await cancelled_after(ms, check)
    await nothing_left_open(request)


async def test_a_topic_replay_cut_short_while_starting_leaves_no_connection_open(
    infra: Infra, request: pytest.FixtureRequest
) -> None:
    async def replay() -> None:
        source = TopicReplay(infra.kafka_bootstrap, [unique("t-")])
        try:
            await source.start()
        finally:
            await source.stop()

    for ms in MOMENTS_MS:
        await cancelled_after(ms, replay)
    await nothing_left_open(request)
