"""Sockets a test module left open on an event loop, named with the test that opened them.

The suite runs every test on one session-wide event loop. A connection a test opens and never
closes stays registered with that loop until the session ends; only then is its transport
collected, and its ``ResourceWarning`` ("unclosed transport") fails the run at pytest's final
garbage collection, naming neither test nor connection. This records which test created
each socket transport and, when a module's tests and fixtures are done, fails on the ones
still open, with the test, the peer and where it was opened.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
import weakref
from asyncio import selector_events
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient

_PROJECT_DIRS = ("/tests/", "/services/", "/shared/", "/bench/", "/cli/")


@dataclass(frozen=True)
class Opened:
    nodeid: str
    where: tuple[str, ...]
    transport: weakref.ref[Any]


_opened: dict[int, Opened] = {}
_current = "<no test>"
_installed = False


def current_test(nodeid: str) -> None:
    global _current
    _current = nodeid


def _project_frames() -> tuple[str, ...]:
    frames = traceback.extract_stack(limit=40)[:-2]
    return tuple(
        f"{f.filename}:{f.lineno} in {f.name}"
        for f in frames
        if any(d in f.filename for d in _PROJECT_DIRS) and "open_sockets" not in f.filename
    )[-6:]


_MADE_AT = "_branchline_made_at"


def _where() -> tuple[str, ...]:
    """Where the socket is being opened: the project's frames, or, when a library's own task
    opens it (an aiokafka client's metadata or sender task: no project frame on its stack),
    the task and where the project made the client whose task it is."""
    ours = _project_frames()
    if ours:
        return ours
    task = asyncio.current_task() if _loop_running() else None
    named = (f"task {task.get_name()}: {task.get_coro()!r}",) if task is not None else ()
    frame = sys._getframe(1)
    while frame is not None:
        made_at = getattr(frame.f_locals.get("self"), _MADE_AT, None)
        if made_at:
            return (*named, f"by {type(frame.f_locals['self']).__name__} made at", *made_at)
        frame = frame.f_back  # type: ignore[assignment]
    return named


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def install() -> None:
    """Wraps the selector loop's transports (TCP and Unix sockets) to record their creator."""
    global _installed
    if _installed:
        return
    _installed = True
    original = selector_events._SelectorTransport.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        key = id(self)
        _opened[key] = Opened(
            _current, _where(), weakref.ref(self, lambda _: _opened.pop(key, None))
        )

    selector_events._SelectorTransport.__init__ = init  # type: ignore[method-assign]
    client_init = AIOKafkaClient.__init__

    def stamped(self: Any, *args: Any, **kwargs: Any) -> None:
        client_init(self, *args, **kwargs)
        setattr(self, _MADE_AT, _project_frames())

    AIOKafkaClient.__init__ = stamped  # type: ignore[method-assign]


def _is_open(transport: Any) -> bool:
    return (
        transport is not None
        and getattr(transport, "_sock", None) is not None
        and (not transport.is_closing())
    )


def left_open(nodeids: set[str]) -> list[str]:
    """One line per transport a test of ``nodeids`` created that is still open (forgotten
    once reported, so a module is blamed for its own sockets only)."""
    found = []
    for key, opened in list(_opened.items()):
        if opened.nodeid not in nodeids:
            continue
        transport = opened.transport()
        if _is_open(transport):
            peer = transport.get_extra_info("peername")
            where = "\n      ".join(opened.where) or "(no project frame)"
            found.append(f"{opened.nodeid}: a socket to {peer} left open, opened at\n      {where}")
        _opened.pop(key, None)
    return found
