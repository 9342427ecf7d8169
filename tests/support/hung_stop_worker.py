"""A followup worker process whose consumer never finishes stopping (argv[1]: ``batch`` - the
batch in hand never finishes; ``leave`` - the consumer's own stop, leaving its group, never
returns). Started by a test with the settings in its environment; prints ``started`` once its
batch is in hand (``batch``) or once running (``leave``), and ``stopped`` once its stop came
back, then exits (the test checks that it does: no thread of its consumer keeps it alive)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from branchline_followup.bootstrap import running_worker
from branchline_followup.entrypoints import worker
from branchline_shared.kafka.consuming import BatchConsumer
from branchline_shared.settings import FollowupSettings
from tests.integration.followup.harness import History, produce_events


async def forever(*_: Any, **__: Any) -> None:
    await asyncio.Event().wait()


async def main(how: str) -> None:
    settings = FollowupSettings()
    entered = asyncio.Event()

    async def batch_never_finishes(*_: Any, **__: Any) -> None:
        entered.set()
        await forever()

    if how == "leave":
        create = BatchConsumer._consumer

        def never_leaves(self: BatchConsumer) -> Any:
            consumer = create(self)
            consumer.stop = forever  # the worker's consumer only
            return consumer

        BatchConsumer._consumer = never_leaves  # type: ignore[method-assign]
    async with running_worker(settings):
        if how == "batch":
            worker.handle_batch = batch_never_finishes  # type: ignore[assignment]
            history = History()
            history.registered("C-HUNG-1", datetime(2026, 11, 1, tzinfo=UTC))
            await produce_events(settings, history.events)  # type: ignore[arg-type]
            await asyncio.wait_for(entered.wait(), 60)
        print("started", flush=True)
    print("stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
