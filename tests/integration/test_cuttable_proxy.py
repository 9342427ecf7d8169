"""The suite's cuttable TCP proxy (the database outages of the chaos and outage tests) closes
both ends of every connection however it ends: cancelled while it connects upstream (the
proxy's close), or cut meanwhile. A connection left open there was found by the garbage
collector later, an unclosed-socket warning failing whichever test ran then (#12: the chaos
test failed so once in four parallel runs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import proxy as proxy_module
from tests.support.proxy import CuttableProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


_OPEN = asyncio.open_connection  # the real one: the proxy's own is held by the fixture


@dataclass
class Upstream:
    released: asyncio.Event
    connecting: asyncio.Event


@pytest.fixture
async def upstream(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Upstream]:
    """A real upstream server whose connections stay open, reached by the proxy only once
    ``released`` is set (its connect is held until then; ``connecting`` says it started)."""
    released, connecting = asyncio.Event(), asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def connect(*_: Any) -> Any:
        connecting.set()
        await released.wait()
        return await _OPEN("127.0.0.1", port)

    monkeypatch.setattr(proxy_module.asyncio, "open_connection", connect)
    try:
        yield Upstream(released, connecting)
    finally:
        monkeypatch.undo()
        for writer in held:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def proxied(upstream: Upstream) -> AsyncIterator[tuple[CuttableProxy, asyncio.StreamReader]]:
    """A proxy and a client connected through it, whose upstream connect is held."""
    proxy = CuttableProxy("127.0.0.1", 1)
    await proxy.start()
    reader, writer = await _OPEN("127.0.0.1", proxy.port)
    try:
        await asyncio.wait_for(upstream.connecting.wait(), 10)
        yield proxy, reader
    finally:
        writer.close()
        await proxy.cut()


async def test_a_connection_cancelled_while_connecting_upstream_is_closed(
    proxied: tuple[CuttableProxy, asyncio.StreamReader],
) -> None:
    _, reader = proxied
    accepting = [t for t in asyncio.all_tasks() if "_accept" in repr(t.get_coro())]
    for task in accepting:
        task.cancel()
    await asyncio.gather(*accepting, return_exceptions=True)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, not left open


async def test_a_connection_whose_upstream_answers_after_a_cut_is_closed(
    upstream: Upstream, proxied: tuple[CuttableProxy, asyncio.StreamReader]
) -> None:
    proxy, reader = proxied
    await proxy.cut()
    upstream.released.set()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the outage holds
