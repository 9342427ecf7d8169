"""A followup worker process whose Faust stop never returns (argv[1]: ``await`` - it waits
forever; ``block`` - it blocks the event loop's thread on the consumer thread, as mode's own
join does). Started by a test with the settings in its environment; prints ``started`` once
running and ``stopped <worker threads left>`` once its stop came back, then exits."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import faust

from branchline_followup.bootstrap import running_worker
from branchline_shared.settings import FollowupSettings


async def hangs(self: faust.App) -> None:
    await asyncio.Event().wait()


async def blocks(self: faust.App) -> None:
    thread: Any = getattr(self, "_consumer")._thread._thread  # noqa: B009
    thread.is_stopped.wait()
    thread.join()


async def main(how: str) -> None:
    async with running_worker(FollowupSettings()):
        faust.App.stop = hangs if how == "await" else blocks  # type: ignore[method-assign]
        print("started", flush=True)
    left = [t.name for t in threading.enumerate() if type(t).__name__ == "WorkerThread"]
    print("stopped", len(left), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
