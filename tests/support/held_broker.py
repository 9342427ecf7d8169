"""A broker of a test's own, reached only through a proxy the test can cut and hold (#12).

tansu listens on a port of its own and advertises the proxy's, so every connection a client
makes (its bootstrap, and each one its metadata, coordinator or fetch tasks open later to the
broker the metadata names) goes through the proxy. :meth:`HeldBroker.cut` breaks the
connections open now (a broker restarting, as the client sees it); while :meth:`HeldBroker.hold`
is in force, a new connection is accepted (its TCP connect succeeds) and nothing it sends is
passed on: the client waits inside aiokafka's ``create_conn`` (its version lookup) until the
hold ends or the client gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from branchline_shared.embedded.ports import free_port, wait_for_port
from branchline_shared.embedded.tansu import tansu_binary
from tests.support import open_sockets

HOST = "127.0.0.1"


class HeldBroker:
    def __init__(self) -> None:
        self.port = free_port()
        self._broker_port = free_port()
        self._server: asyncio.Server | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._held = False
        self._refused = False
        self._released = asyncio.Event()
        self.held_one = asyncio.Event()
        self.refused_one = asyncio.Event()

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def hold(self) -> None:
        """New connections from now on are accepted and get no answer (until :meth:`release`)."""
        self._held = True
        self._released = asyncio.Event()
        self.held_one = asyncio.Event()

    def release(self) -> None:
        self._held = False
        self._refused = False
        self._released.set()

    def refuse(self) -> None:
        """New connections from now on are accepted and broken at once (a broker restarting)."""
        self._refused = True
        self.refused_one = asyncio.Event()

    def cut(self) -> None:
        """Every connection open now is broken (the clients read end of file)."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def _launch(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://{HOST}:{self._broker_port}",
                "--advertised-listener-url",
                f"tcp://{HOST}:{self.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def start(self) -> None:
        self._process = await asyncio.to_thread(self._launch)
        if not await asyncio.to_thread(wait_for_port, self._broker_port, HOST, 10):
            raise RuntimeError("tansu did not open its port within 10 s")
        self._server = await asyncio.start_server(self._accept, HOST, self.port)

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            self.cut()
            await self._server.wait_closed()
        if self._process is not None:
            self._process.kill()
            await asyncio.to_thread(self._process.wait, 5)
        self.cut()
        if self._handlers:  # each ends as its connections do (all broken by now)
            await asyncio.wait(self._handlers, timeout=10)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        if self._refused:
            self.refused_one.set()
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            if self._held:
                self.held_one.set()
                await self._released.wait()
            up_reader, up_writer = await asyncio.open_connection(HOST, self._broker_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.asynccontextmanager
async def held_broker() -> AsyncIterator[HeldBroker]:
    broker = HeldBroker()
    try:
        await broker.start()
        yield broker
    finally:
        await broker.stop()


METADATA_AGE_MS = 100
"""How often a test client's metadata task refreshes (a left-over task connects again soon)."""


def aiokafka_tasks() -> set[asyncio.Task[Any]]:
    """The running tasks of aiokafka's own coroutines (a client's, a fetcher's, a group's)."""
    return {
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and "/aiokafka/" in getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "")
    }


def sockets_to(broker: HeldBroker, request: pytest.FixtureRequest) -> list[str]:
    """The test's client sockets to the broker still open (not the proxy's own)."""
    return [
        line
        for line in open_sockets.left_open({request.node.nodeid})
        if f"('{HOST}', {broker.port})" in line
    ]


async def left_when_back(
    broker: HeldBroker, request: pytest.FixtureRequest, before: set[asyncio.Task[Any]]
) -> tuple[list[str], set[asyncio.Task[Any]]]:
    """What a stop left behind, read once the broker is back (the hold released): the
    aiokafka tasks started since ``before``, and the test's sockets to the broker still open
    after a few metadata refreshes (a left-over metadata task connects again). The tasks are
    then ended, not to disturb later tests."""
    left = aiokafka_tasks() - before
    broker.release()
    await asyncio.sleep(5 * METADATA_AGE_MS / 1000)
    ours = sockets_to(broker, request)
    for task in left:
        task.cancel()
    if left:
        await asyncio.wait(left, timeout=5)
    return ours, left
