"""Stopping an HTTP service without dropping work (SIGTERM from an orchestrator, Ctrl-C).

1. ``/readyz`` answers 503 ``draining`` at once, while requests are still served for
   ``drain_s``: a load balancer that polls readiness stops sending new requests first;
2. then uvicorn's own graceful shutdown: no new connections, in-flight requests finish (up to
   ``timeout_graceful_shutdown``);
3. then the app's lifespan ends: the outbox relay publishes what is committed and not yet
   published before it stops, pools and producers close.

A second signal during the drain stops at once (as uvicorn does on a second Ctrl-C).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn


def is_draining(state: Any) -> bool:
    return bool(getattr(state, "draining", False))


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        *,
        app_state: Any,
        drain_s: float,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._app_state = app_state
        self._drain_s = drain_s
        self._draining = False
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # ``on_started`` runs once the app's lifespan has started and the server listens:
        # the process entrypoint freezes its start-up heap there (#12, startup_heap.py).
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._drain_s <= 0:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._app_state.draining = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving yet: nothing to drain
            super().handle_exit(sig, frame)
            return

        def finish() -> None:
            uvicorn.Server.handle_exit(self, sig, frame)

        loop.call_soon_threadsafe(loop.call_later, self._drain_s, finish)


def serve_draining(
    app: Any,
    config: uvicorn.Config,
    *,
    drain_s: float,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run ``app`` (whose ``state`` gets ``draining``) until SIGTERM/SIGINT, then drain;
    ``on_started`` is called once it has started."""
    server = DrainingServer(config, app_state=app.state, drain_s=drain_s, on_started=on_started)
    server.run()
