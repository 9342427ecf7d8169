"""Background tasks of a process, bound to a block: started on entry, cancelled on exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

CANCEL_AGAIN_S = 1.0
CANCEL_WITHIN_S = 30.0


async def cancel_and_wait(
    task: asyncio.Task[Any],
    *,
    again_s: float = CANCEL_AGAIN_S,
    within_s: float = CANCEL_WITHIN_S,
) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again every ``again_s``.

    One cancel can be lost: Python 3.11's ``asyncio.wait_for`` returns a result that arrives
    with the cancel and drops the cancel (fixed in 3.12), and a library may turn the
    ``CancelledError`` into an error of its own that a retry loop takes as transient. The
    task then runs on, and a stop that awaits it waits for ever (a CI run hung on such a
    stop). Past ``within_s`` it is logged and left: a stop must go on to release the rest.
    An error the task ended with is raised, as awaiting it would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.critical("a background task survives its cancellation", extra={"task": task})
            return
        task.cancel()
        await asyncio.wait([task], timeout=min(again_s, remaining))
    if not task.cancelled():
        task.result()


async def unless_set(work: Awaitable[T], event: asyncio.Event) -> asyncio.Future[T]:
    """``work`` run until it ends or ``event`` is set, whichever comes first; in the second
    case it is cancelled and waited for. The ended future is returned: ``cancelled()`` tells
    which came first (a dead letter given up at a stop, a start cut short by a stop)."""
    doing = asyncio.ensure_future(work)
    interrupted = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait([doing, interrupted], return_when=asyncio.FIRST_COMPLETED)
    finally:
        interrupted.cancel()
        if not doing.done():
            doing.cancel()
            await asyncio.wait([doing])
    return doing


@contextlib.asynccontextmanager
async def running_task(
    work: Coroutine[Any, Any, T], *, name: str
) -> AsyncIterator[asyncio.Task[T]]:
    """Run ``work`` as a task for the block; on exit it is cancelled and awaited, so an exit
    stack stops it before what it uses (entered earlier) is closed."""
    task = asyncio.create_task(work, name=name)
    try:
        yield task
    finally:
        await cancel_and_wait(task)
