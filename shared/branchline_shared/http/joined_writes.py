"""An answer of known length written to the socket once, head and body together (#12).

uvicorn's httptools protocol writes an answer's status line and headers when the app sends
``http.response.start`` and its body when the app sends the body: two writes, two system
calls and, on a connection without Nagle's delay, two TCP segments for every answer of a
few hundred bytes (about a third of uvicorn's share of an intake process's CPU, #12). Here
the head of an answer that declares its length is held until the body's first write and
sent with it. What the client receives is byte for byte the same; only a streamed answer
(no ``content-length``: the audit export), a ``HEAD`` answer (no body is written) and
whatever uvicorn writes outside an answer go out as before, at once.

The cycle is held by a weak reference: the cycle holds this object as its transport, and a
strong reference back made every request's cycle (its scope, its event, its body buffer)
garbage that only the cyclic collector could free (#12: nine objects per request, which
kept the collector running every few dozen requests).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, Protocol


class _Cycle(Protocol):
    """What is read of uvicorn's request-response cycle."""

    scope: Any
    response_started: bool
    chunked_encoding: bool | None


class JoinedWrites:
    """The transport as one request-response cycle sees it: the head of an answer of known
    length waits for the body's first write; every other call goes to the transport."""

    __slots__ = ("_cycle", "_head", "_headed", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: _Cycle) -> None:
        self._transport = transport
        # Weak: the cycle holds this object (no reference cycle per request); it is alive
        # whenever it writes through it.
        self._cycle: weakref.ref[_Cycle] = weakref.ref(cycle)
        self._head: bytes | None = None
        self._headed = False  # the head was taken: every later write is the body's

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif not self._headed and self._holds_head():
            self._headed = True
            self._head = data
        else:
            self._transport.write(data)

    def _holds_head(self) -> bool:
        # The cycle's first write after the answer started is its head; its length is
        # declared (chunked_encoding False) and, but for HEAD, a body write follows it.
        cycle = self._cycle()
        return (
            cycle is not None
            and cycle.response_started
            and cycle.chunked_encoding is False
            and cycle.scope["method"] != "HEAD"
        )

    def close(self) -> None:
        # The app failed between the head and the body: uvicorn closes the connection after
        # the head, as it did when the head was already written.
        self.flush()
        self._transport.close()

    def flush(self) -> None:
        head, self._head = self._head, None
        if head is not None:
            self._transport.write(head)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
