"""Where a test's coroutines wait, printed shortly before pytest-timeout fails it.

pytest-timeout's own dump shows threads only; in an asyncio suite the main thread is always
the event loop's ``select``, which says nothing. This walks every task of a running loop
down its chain of awaits (coroutine → the coroutine or future it awaits) and prints it to
stderr, which pytest reports with the failed test.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Iterator
from types import CoroutineType, FrameType, GeneratorType
from typing import Any

LEAD_S = 10.0  # how long before the timeout the report is printed


def await_chain(awaitable: Any) -> Iterator[str]:
    """One line per frame of a coroutine's awaits, then what the innermost one waits on."""
    seen = 0
    while awaitable is not None and seen < 64:
        seen += 1
        frame: FrameType | None = getattr(awaitable, "cr_frame", None) or getattr(
            awaitable, "gi_frame", None
        )
        if frame is None:
            yield f"    waits on {awaitable!r:.300}"
            return
        yield f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        if isinstance(awaitable, CoroutineType):
            awaitable = awaitable.cr_await
        elif isinstance(awaitable, GeneratorType):
            awaitable = awaitable.gi_yieldfrom
        else:
            awaitable = getattr(awaitable, "cr_await", None)


def running_loops() -> list[asyncio.AbstractEventLoop]:
    return [
        o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()
    ]


def report(title: str) -> str:
    lines = [f"==== asyncio tasks shortly before the timeout: {title}"]
    for loop in running_loops():
        for task in list(asyncio.all_tasks(loop)):
            lines.append(f"  task {task.get_name()} ({'done' if task.done() else 'pending'})")
            lines.extend(await_chain(task.get_coro()))
    return "\n".join(lines) + "\n"


def arm(title: str, timeout_s: float) -> threading.Timer | None:
    """Print :func:`report` to stderr ``LEAD_S`` before ``timeout_s`` (None: no timeout)."""
    if timeout_s <= 2 * LEAD_S:
        return None

    def print_report() -> None:
        try:
            os.write(2, report(title).encode(errors="replace"))
        except Exception as exc:  # a diagnostic must never fail a test itself
            os.write(2, f"hang report failed: {exc!r}\n".encode())

    timer = threading.Timer(timeout_s - LEAD_S, print_report)
    timer.daemon = True
    timer.start()
    return timer
