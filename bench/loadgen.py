"""Load generators that cost far less than the server they measure.

httpx spends milliseconds of CPU per request; on a 2-core machine that would measure the
client. A minimal HTTP/1.1 keep-alive client over asyncio streams costs tens of microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass


class RawHttpClient:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.use_token(token)

    def use_token(self, token: str) -> None:
        """Send with ``token`` from now on (a connection opened before its caller was known:
        ``bench.intake_split.balanced_clients``)."""
        self.token = token
        self._head = (
            f"Host: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()

    async def __aenter__(self) -> RawHttpClient:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()
        await self.writer.wait_closed()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\n"
            + self._head
            + b"Content-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line.split(b":")[1])
        return status, await self.reader.readexactly(length)


@dataclass(frozen=True)
class Latencies:
    count: int
    elapsed_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def per_s(self) -> float:
        return self.count / self.elapsed_s

    @classmethod
    def of(cls, samples: list[float], elapsed_s: float) -> Latencies:
        ordered = sorted(samples)
        return cls(
            len(ordered),
            elapsed_s,
            1000 * statistics.median(ordered),
            1000 * percentile(ordered, 0.90),
            1000 * percentile(ordered, 0.99),
            1000 * ordered[-1],
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def closed_loop(
    port: int,
    token: str | list[str],
    path: str,
    bodies: list[bytes],
    connections: int,
    expect: int | frozenset[int],
    opened: list[RawHttpClient] | None = None,
) -> Latencies:
    """``connections`` clients, each sending its next request when the last is answered.
    ``token``: one for every client, or several (connection ``c`` sends with
    ``token[c % len(token)]``: several callers, as several branch systems are). ``expect``:
    the status every answer has, or the statuses answers may have. ``opened``: ``connections``
    connections opened already (e.g. balanced over the server's processes), used instead of
    new ones and closed at the end."""
    expected = frozenset({expect}) if isinstance(expect, int) else expect
    latencies: list[float] = []
    tokens = [token] if isinstance(token, str) else token
    shares = [(bodies[c::connections], tokens[c % len(tokens)]) for c in range(connections)]

    async def client(mine: list[bytes], token: str, http: RawHttpClient) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if opened is None:
                await stack.enter_async_context(http)
            else:
                http.use_token(token)
                stack.push_async_exit(http.__aexit__)
            for body in mine:
                started = time.perf_counter()
                status, answer = await http.post(path, body)
                latencies.append(time.perf_counter() - started)
                if status not in expected:
                    raise AssertionError(f"{path} answered {status}: {answer[:300]!r}")

    https = opened or [RawHttpClient("127.0.0.1", port, t) for _b, t in shares]
    if len(https) != connections:
        raise ValueError(f"{len(https)} connections opened for {connections}")
    started = time.perf_counter()
    async with asyncio.timeout(600):
        await asyncio.gather(*(client(b, t, h) for (b, t), h in zip(shares, https, strict=True)))
    return Latencies.of(latencies, time.perf_counter() - started)
