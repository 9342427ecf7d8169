"""#12: an answer of known length leaves the server's protocol in one write, head and body
together; the bytes are those uvicorn wrote in two. A streamed answer, a HEAD answer and an
app that fails after its head go out as before."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from branchline_shared.http.bounded_headers import bounded_http_protocol

pytestmark = pytest.mark.timeout(30)

BODY = b'{"status":"accepted"}'


class RecordingTransport(asyncio.Transport):
    """Records each write; closed when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8001)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def known_length(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def in_two_parts(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY[:5], "more_body": True})
    await send({"type": "http.response.body", "body": BODY[5:]})


async def streamed(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": BODY, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def fails_after_head(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    raise RuntimeError("the app fails after its head")


async def serve(app: Any, method: bytes = b"POST", requests: int = 1) -> RecordingTransport:
    config = Config(app=app, lifespan="off", server_header=False, date_header=False)
    protocol = bounded_http_protocol(32_768)(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(
        requests * (method + b" /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    )
    for _ in range(100):  # the app's task runs on the loop
        await asyncio.sleep(0)
    return transport


HEAD_202 = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 21\r\n\r\n"


async def test_an_answer_of_known_length_is_one_write_of_the_same_bytes() -> None:
    transport = await serve(known_length)
    assert transport.writes == [HEAD_202 + BODY]
    pipelined = await serve(known_length, requests=2)  # each request of a connection alike
    assert pipelined.writes == [HEAD_202 + BODY, HEAD_202 + BODY]


async def test_later_parts_of_a_body_are_written_as_they_come() -> None:
    transport = await serve(in_two_parts)
    assert len(transport.writes) == 2
    assert transport.writes[0].endswith(b"\r\n\r\n" + BODY[:5])
    assert transport.writes[1] == BODY[5:]


async def test_a_streamed_answer_and_a_head_answer_go_out_as_before() -> None:
    transport = await serve(streamed)
    assert transport.writes[0].endswith(b"transfer-encoding: chunked\r\n\r\n")
    assert transport.writes[1:] == [b"15\r\n" + BODY + b"\r\n", b"0\r\n\r\n"]
    head = await serve(known_length, method=b"HEAD")
    assert head.writes == [HEAD_202]


async def test_an_app_failing_after_its_head_still_sends_the_head_then_closes() -> None:
    transport = await serve(fails_after_head)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 21\r\n\r\n"]
    assert transport.closed


async def test_a_finished_request_is_freed_without_the_cyclic_collector() -> None:
    """The cycle and its joined writer do not refer to each other in a loop: once the next
    request replaces it, reference counting alone frees the cycle (its scope, its event),
    instead of every request leaving garbage for the cyclic collector."""
    config = Config(app=known_length, lifespan="off", server_header=False, date_header=False)
    protocol = bounded_http_protocol(32_768)(config, ServerState(), {})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    request = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
    gc.disable()
    try:
        protocol.data_received(request)
        for _ in range(100):
            await asyncio.sleep(0)
        first = weakref.ref(protocol.cycle)
        protocol.data_received(request)
        for _ in range(100):
            await asyncio.sleep(0)
        assert transport.writes == [HEAD_202 + BODY, HEAD_202 + BODY]
        assert first() is None
    finally:
        gc.enable()
