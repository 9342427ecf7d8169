"""Background tasks of a process, bound to a block: started on entry, cancelled on exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


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
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
