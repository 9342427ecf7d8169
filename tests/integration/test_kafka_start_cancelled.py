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
from branchline_followup.bootstrap import followup_runtime
from branchline_intake.bootstrap import started_producer
from branchline_shared.embedded.ports import free_port
from branchline_shared.eventstore.relay_stop import RelayStop
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
            await started_producer(opened, settings, RelayStop())

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


class SlowBroker:
    """A proxy in front of the broker that holds each answer ``delay_s``, and tells when the
    ``nth`` connection made through it (a client's bootstrap: the broker's metadata then names
    the broker itself) waits for its second answer (the metadata, after the version lookup)."""

    def __init__(self, bootstrap: str, nth: int, delay_s: float) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.target = (host, int(port))
        self.port = free_port()
        self.nth = nth
        self.delay_s = delay_s
        self.waiting = asyncio.Event()
        self._accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def accepted(self) -> int:
        """The connections made through it so far (each a client's bootstrap)."""
        return self._accepted

    async def __aenter__(self) -> SlowBroker:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        watched = self._accepted == self.nth
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.update({writer, up_writer})

        async def upward() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)

        async def downward() -> None:
            answers = 0
            while data := await up_reader.read(65536):
                answers += 1
                if watched and answers == 2:
                    self.waiting.set()
                await asyncio.sleep(self.delay_s)
                writer.write(data)

        await asyncio.gather(upward(), downward(), return_exceptions=True)


@pytest.mark.parametrize("nth", [1, 2])
async def test_a_service_start_up_cancelled_while_the_broker_is_slow_leaves_nothing_open(
    infra: Infra, tmp_path: Path, request: pytest.FixtureRequest, nth: int
) -> None:
    """followup's start-up (as its API's lifespan runs it) cancelled while a client's bootstrap
    waits for the broker's metadata: topic creation's admin client (1), the relay's producer
    (2). The start-up ends cancelled within the broker's answer time, and leaves no socket."""
    async with SlowBroker(infra.kafka_bootstrap, nth, delay_s=0.3) as broker:
        settings = make_settings(infra, tmp_path, kafka_bootstrap=f"127.0.0.1:{broker.port}")

        async def start_up() -> None:
            async with followup_runtime(settings):
                pytest.fail("the start-up was to be cancelled")

        task = asyncio.ensure_future(start_up())
        async with asyncio.timeout(60):
            await broker.waiting.wait()
        task.cancel()
        async with asyncio.timeout(5):  # the held answer (0.3 s), then the stop
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.1)
        ours = [
            line
            for line in open_sockets.left_open({request.node.nodeid})
            if f"('127.0.0.1', {broker.port})" in line
        ]
    assert ours == [], "\n".join(ours)
