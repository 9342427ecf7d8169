"""A TCP proxy that a test can cut and restore: a network outage between a service and its
database, on demand, without stopping the database other tests use."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from branchline_shared.embedded.ports import free_port


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._cuts = 0  # a connection accepted before a cut never opens after it

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Drop every connection and refuse new ones (the database is unreachable)."""
        self._cuts += 1
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def restore(self) -> None:
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Both ends are closed however this ends: a cut, the upstream refused, or the task
        # cancelled while it connects upstream (the proxy's close), which left the accepted
        # connection open for the garbage collector to find (an unclosed socket warning,
        # failing whichever test was running then).
        cuts = self._cuts
        up_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            if self._cuts != cuts:  # cut while connecting upstream: the outage holds
                return
            self._pipes.update({writer, up_writer})
            await asyncio.gather(
                self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
            )
        finally:
            for end in (writer, up_writer):
                if end is not None:
                    self._pipes.discard(end)
                    end.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._pipes.discard(writer)
            writer.transport.abort()


@contextlib.asynccontextmanager
async def cuttable(target_host: str, target_port: int) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(target_host, target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.cut()
