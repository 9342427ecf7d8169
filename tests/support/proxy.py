"""A TCP proxy that a test can cut and restore: a network outage between a service and its
database, on demand, without stopping the database other tests use."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from branchline_shared.embedded.ports import free_port

COMMIT = re.compile(rb"Q.{4}COMMIT", re.DOTALL)
"""A simple-query ``COMMIT`` (asyncpg's ``transaction()`` sends ``COMMIT;``, an
``execute("COMMIT")`` sends ``COMMIT``): the message type, its length, the text."""

TERMINATE = b"X\x00\x00\x00\x04"
"""The protocol's Terminate message: the client closes the session itself."""


@dataclass
class Trap:
    """A cut timed on one connection's bytes (:meth:`CuttableProxy.trap`)."""

    marker: bytes
    at: re.Pattern[bytes] | None
    delivered: bool
    refuse: bool
    early: bool = False
    hold: Callable[[int], Awaitable[None]] | None = None
    sprung: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Pipe:
    marked: bool = False
    swallow: bool = False  # the trapped message was delivered: its answer is dropped
    trap: Trap | None = None
    client_gone: bool = False  # the client's end closed (or the pipe was cut)
    held: bool = False  # an early trap closed the server's end: the client hears of it later
    terminated: bool = False  # the client sent Terminate: the server's close is its answer


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int, *, close_late: float = 0) -> None:
        self.target = (target_host, target_port)
        self.close_late = close_late
        self._closes_pass = asyncio.Event()  # cleared while closes are held (holding_closes)
        self._closes_pass.set()
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self._cuts = 0  # a connection accepted before a cut never opens after it
        self._trap: Trap | None = None
        self._upstream: set[asyncio.StreamWriter] = set()
        self.server_closes = 0  # connections the server closed (their close passed on or not)
        self.closes_passed = 0  # ... whose close then reached a client still there, late
        self._server_closed = asyncio.Event()

    def trap(
        self,
        marker: bytes,
        *,
        at: re.Pattern[bytes] | None = COMMIT,
        delivered: bool,
        refuse: bool = False,
        early: bool = False,
        hold: Callable[[int], Awaitable[None]] | None = None,
    ) -> Trap:
        """Cut the one connection whose client sends ``marker`` (bytes only its write
        carries, e.g. a correlation id in an envelope) at the first chunk from then on that
        matches ``at`` (``None``: the marker's chunk itself, a statement that commits by
        itself). ``delivered``: the chunk reaches the server and the connection is cut when
        the server's answer comes back (so the server has acted on it), the answer dropped;
        else it never reaches the server. ``refuse``: then every connection is cut and new
        ones refused (:meth:`cut`) until :meth:`restore`. ``early`` (with ``delivered``): the
        connection is cut as soon as the chunk is sent on, while the server may still be
        working on it (a ``COMMIT`` flushing its WAL record); ``hold`` (with ``early``) is
        awaited with the server connection's local port (its backend's ``client_port``)
        between the two, to let the server reach a given point before the client hears of
        the loss. Once; ``sprung`` is set then."""
        self._trap = Trap(marker, at, delivered, refuse, early, hold)
        return self._trap

    def server_ports(self) -> set[int]:
        """The local ports of the proxy's open connections to the server: the
        ``client_port`` of their backends in ``pg_stat_activity``."""
        return {writer.get_extra_info("sockname")[1] for writer in self._upstream}

    async def server_closed(self, count: int) -> None:
        """Until the server has closed ``count`` of the proxy's connections (with
        ``close_late`` or closes held, their last bytes are then with the client, their close
        not yet)."""
        while self.server_closes < count:
            self._server_closed.clear()
            await self._server_closed.wait()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    @contextlib.contextmanager
    def holding_closes(self) -> Iterator[None]:
        """Hold every close the server makes, until the block ends (then they pass at once).
        The gap between a session's last error and its close then lasts as long as the test's
        work in it: ``close_late`` makes it a wall-clock deadline, which a loaded machine's
        work outran (the checkpointer's in CI at load 7-11, #12). End the block before
        stopping what owns the pool: closing a connection waits for the server's close."""
        self._closes_pass.clear()
        try:
            yield
        finally:
            self._closes_pass.set()

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
            self._upstream.add(up_writer)
            pipe = _Pipe()
            await asyncio.gather(
                self._requests(reader, up_writer, writer, pipe),
                self._answers(up_reader, writer, up_writer, pipe),
                return_exceptions=True,
            )
        finally:
            for end in (writer, up_writer):
                if end is not None:
                    self._pipes.discard(end)
                    self._upstream.discard(end)
                    end.transport.abort()

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        pipe: _Pipe,
    ) -> None:
        """Client to server, watched for the trap."""
        try:
            while data := await reader.read(65536):
                if data.endswith(TERMINATE):
                    pipe.terminated = True
                trap = self._trap
                if trap is not None and not pipe.marked and trap.marker in data:
                    pipe.marked, pipe.trap = True, trap
                    self._trap = None  # one connection only
                trap = pipe.trap
                if (
                    trap is not None
                    and not pipe.swallow
                    and (trap.at is None or trap.at.search(data))
                ):
                    if not trap.delivered:
                        await self._spring(trap, client, writer)
                        return
                    pipe.swallow = True  # sprung by _answers, on the answer
                    writer.write(data)
                    await writer.drain()
                    if trap.early:  # sent on: the client hears of the loss at once
                        # The server's end closed, not aborted: a reset may reach the server
                        # before it read the chunk, which is then dropped unread (the COMMIT
                        # never ran: a test expecting it committed failed by chance, #12).
                        port = writer.get_extra_info("sockname")[1]
                        self._pipes.discard(writer)
                        pipe.held = True  # not passed on to the client by _answers
                        writer.close()
                        if trap.hold is not None:
                            await trap.hold(port)
                        await self._spring(trap, client, None)
                        return
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            pipe.client_gone = True
            self._pipes.discard(writer)
            if not writer.is_closing():  # closed above, its chunk on its way: not reset
                writer.transport.abort()

    async def _answers(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        server: asyncio.StreamWriter,
        pipe: _Pipe,
    ) -> None:
        """Server to client; after a delivered trap, its answer is dropped and both ends cut.
        The server's end closed by an early trap (``pipe.held``) is not passed on here: the
        client hears of the loss from the trap, once its ``hold`` is over (until Round 26 it
        was passed on at once, the hold held nothing: #12)."""
        try:
            while data := await self._server_bytes(reader):
                if pipe.swallow and pipe.trap is not None:
                    await self._spring(pipe.trap, writer, server)
                    return
                writer.write(data)
                await writer.drain()
            if pipe.held:
                return
            # The server closed: its last bytes were passed on at once, its close is passed
            # on ``close_late`` seconds later (a close the client reads well after them).
            # Counted whoever asked: a client that answers an ended session's error with its
            # own Terminate before the server's close is read still had its session ended
            # (not counting it left end_sessions_behind waiting for ever, #12).
            self.server_closes += 1
            self._server_closed.set()
            if pipe.terminated:
                # A close the client asked for is not held: held like an ended session's,
                # every pool close through the proxy took ``close_late`` (the checkpointer
                # test ran 60 s and counted its set-up's closes as the ended session's, #12).
                return
            if self.close_late:
                await asyncio.sleep(self.close_late)
            await self._closes_pass.wait()
            if not pipe.client_gone:
                self.closes_passed += 1
        finally:
            if not pipe.held:
                self._pipes.discard(writer)
                writer.transport.abort()

    @staticmethod
    async def _server_bytes(reader: asyncio.StreamReader) -> bytes:
        """The server's next bytes; b"" once it closed, by a close or a reset: a query the
        client sent after an ended session's error meets the reset of the gone backend, and
        that close must be counted like any other (end_sessions_behind waited for ever, #12)."""
        try:
            return await reader.read(65536)
        except ConnectionError:
            return b""

    async def _spring(
        self, trap: Trap, client: asyncio.StreamWriter, server: asyncio.StreamWriter | None
    ) -> None:
        if trap.refuse:
            # Refused before the client hears of the loss: its first new connection (the
            # question what was stored) must meet the outage. No wait_closed here: this runs
            # in one of the server's own connections.
            self._cuts += 1
            if self._server is not None:
                self._server.close()
                self._server = None
            for pipe in list(self._pipes):
                pipe.transport.abort()
            self._pipes.clear()
        client.transport.abort()
        if server is not None:
            server.transport.abort()
        trap.sprung.set()


@contextlib.asynccontextmanager
async def cuttable(
    target_host: str, target_port: int, *, close_late: float = 0, hold_closes: bool = False
) -> AsyncIterator[CuttableProxy]:
    """``hold_closes``: every close the server makes is held for the proxy's life (as in
    :meth:`CuttableProxy.holding_closes`), for a test whose client never needs one."""
    proxy = CuttableProxy(target_host, target_port, close_late=close_late)
    await proxy.start()
    try:
        if hold_closes:
            with proxy.holding_closes():
                yield proxy
        else:
            yield proxy
    finally:
        await proxy.cut()


async def end_sessions_behind(proxy: CuttableProxy, dsn: str) -> int:
    """End (``pg_terminate_backend``) the server session of every connection open through
    ``proxy``, as a server shutdown or an idle session timeout does; waits until the server
    has closed them all (with ``close_late`` or :meth:`CuttableProxy.holding_closes`, each
    one's FATAL error is then with its client, its close not yet). Asked on a connection of
    its own, straight to the server; returns how many were ended."""
    import asyncpg

    ports = proxy.server_ports()
    assert ports, "no connection through the proxy"
    before = proxy.server_closes
    conn = await asyncpg.connect(dsn)
    try:
        ended = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE client_port = ANY($1::int[]) AND pid <> pg_backend_pid()",
            sorted(ports),
        )
    finally:
        await conn.close()
    assert ended, ports
    await proxy.server_closed(before + int(ended))
    # The client reads the error its connection was sent on the loop's next turns.
    await asyncio.sleep(0.1)
    return int(ended)
