"""Stopping an HTTP service without dropping work (SIGTERM from an orchestrator, Ctrl-C).

1. ``/readyz`` answers 503 ``draining`` at once, while requests are still served for
   ``drain_s``: a load balancer that polls readiness stops sending new requests first;
2. then uvicorn's own graceful shutdown: no new connections, in-flight requests finish (up to
   ``timeout_graceful_shutdown``);
3. then the app's lifespan ends: the outbox relay publishes what is committed and not yet
   published before it stops, pools and producers close.

A second signal during the drain stops at once (as uvicorn does on a second Ctrl-C).

A signal while the app's lifespan is still starting (a slow broker or database) cuts the
start short: nothing is served yet, so there is nothing to drain; the start is cancelled, what
it opened is closed as it unwinds, and the process stops (#12). Either way a stop the process
was asked for and carried out ends with exit code 0, as the workers' does: uvicorn re-raises
the signal instead (exit -15, shown as 143), which Kubernetes reports as an ``Error`` and a
``restart: on-failure`` policy takes for a crash (docs/reliability.md, "Graceful shutdown").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.lifespan.on import LifespanOn, LifespanSendMessage

from branchline_shared import stop_signals


def is_draining(state: Any) -> bool:
    return bool(getattr(state, "draining", False))


class _CuttableLifespan(LifespanOn):
    """uvicorn's lifespan, whose start-up a stop signal can cancel (#12)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._main: asyncio.Task[None] | None = None
        self._task: asyncio.Task[Any] | None = None  # the app's lifespan, once it runs
        self._cut_asked = False
        self.cut = False
        """The start-up ended by unwinding on our cancellation (not by a failure)."""

    def cut_short(self) -> None:
        # once started (or failed) the stop is an ordinary one: the lifespan's end closes it
        if self.startup_event.is_set():
            return
        self._cut_asked = True
        if self._task is not None:  # else it cancels itself as it begins (``main``)
            self._task.cancel()

    async def startup(self) -> None:
        # uvicorn 0.54's LifespanOn.startup, but a start cut short is logged as a stop, not
        # as "Application startup failed" at error level
        self.logger.info("Waiting for application startup.")
        self._main = asyncio.get_running_loop().create_task(self.main())  # a hard reference
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.cut:
            self.logger.info("Application startup cut short by a stop signal.")
            self.should_exit = True
        elif self.startup_failed or (self.error_occurred and self.config.lifespan == "on"):
            self.logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application startup complete.")

    async def main(self) -> None:
        self._task = task = asyncio.current_task()
        if self._cut_asked and task is not None:  # asked before the app's start began
            task.cancel()
        await super().main()

    async def send(self, message: LifespanSendMessage) -> None:
        # Starlette reports an unwound start as a failure with its traceback; ours is a stop.
        if (
            message["type"] == "lifespan.startup.failed"
            and self._cut_asked
            and isinstance(sys.exception(), asyncio.CancelledError)
        ):
            self.cut = True
            message = {"type": "lifespan.startup.failed", "message": ""}
        await super().send(message)


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

    @property
    def cut_short(self) -> bool:
        """A stop signal ended the start before the server listened (a stop, not a failure)."""
        lifespan = getattr(self, "lifespan", None)
        return isinstance(lifespan, _CuttableLifespan) and lifespan.cut

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if type(self.lifespan) is LifespanOn:  # lifespan "on" or "auto"
            self.lifespan = _CuttableLifespan(self.config)
        try:
            await super().startup(sockets=sockets)
        except SystemExit:
            if not self.cut_short:  # a failed start still exits 3
                raise
            return  # not started: ``_serve`` goes neither to its loop nor to a shutdown
        # ``on_started`` runs once the app's lifespan has started and the server listens:
        # the process entrypoint freezes its start-up heap there (#12, startup_heap.py).
        if self.started and self._on_started is not None:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            # a stop signal that came while the process imported or built its app (held,
            # ``stop_signals``) reaches ``handle_exit`` now: the start is cut short (#12)
            stop_signals.hand_over()
            yield
            # A stop carried out is a success: exit 0, not the re-raised signal (see above).
            self._captured_signals.clear()

    def _cut_start(self) -> None:
        # looked up on the loop: by then ``startup`` has put the cuttable lifespan in place
        lifespan = getattr(self, "lifespan", None)
        if isinstance(lifespan, _CuttableLifespan):
            lifespan.cut_short()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.started and not self._draining:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                # Still starting: nothing served, nothing to drain; stop the start now (#12).
                self._draining = True  # a second signal goes to uvicorn (a forced exit)
                super().handle_exit(sig, frame)
                loop.call_soon_threadsafe(self._cut_start)
                return
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
