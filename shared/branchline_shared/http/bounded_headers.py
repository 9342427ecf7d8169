"""A cap on the size of a request's head (request line plus headers): 431, then close.

uvicorn's httptools protocol buffers a header of any size before the application sees it (a
64 MB ``Authorization`` header took 8 s and hundreds of MB): the cap has to sit in the
protocol, before the parser has gathered the whole head. At most one read (≤ 256 KiB) more
than the cap is ever buffered.

After the 431 the connection lingers a little, reading and dropping what the client still
sends (as nginx's lingering close does): a client that writes its whole request before it
reads then sees the 431 instead of a connection reset.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from branchline_shared.http.joined_writes import JoinedWrites
from branchline_shared.http.problems import PROBLEM_JSON, Problem

__all__ = ["bounded_http_protocol"]


_LINGER_SECONDS = 5.0
_LINGER_BYTES = 64 * 1024 * 1024


class _BoundedHeadProtocol(HttpToolsProtocol):
    max_head_bytes: ClassVar[int] = 32_768

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_head = True
        self._dropped: int | None = None

    def data_received(self, data: bytes) -> None:
        if self._dropped is not None:  # refused: drop what still comes, then close
            self._dropped += len(data)
            if self._dropped > _LINGER_BYTES:
                self.transport.close()
            return
        counting = self._in_head
        if counting:
            self._head_bytes += len(data)
        super().data_received(data)
        if counting and self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not before:  # a new request; its app not run yet
            # Its answer's head and body in one write (#12, joined_writes).
            cycle.transport = cast("asyncio.Transport", JoinedWrites(self.transport, cycle))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def _refuse_head(self) -> None:
        self._in_head = False
        body = json.dumps(
            Problem(
                431,
                "Request header fields too large",
                f"the request line and headers exceed {self.max_head_bytes} bytes",
                kind="header-too-large",
            ).body()
        ).encode()
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\n"
            f"content-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self._dropped = 0
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)


def bounded_http_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The uvicorn ``http=`` protocol class refusing heads over ``max_head_bytes`` (and
    writing an answer of known length in one write: ``joined_writes``)."""
    return type("BoundedHeadProtocol", (_BoundedHeadProtocol,), {"max_head_bytes": max_head_bytes})
