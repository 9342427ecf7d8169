"""A rebuild's main phase in N processes (``branchline rebuild followup --processes N``, #12).

The rebuilding process (:func:`~..application.rebuild.rebuild_read_models`) opens the fresh
schema, reads the log as always and routes each message (:func:`~..rebuild_routes.route_of`:
the envelope's type and client, as parsed once for the topic order) to the process of its
client, or to every process (the shelf's and staff events); each of N spawned processes
attaches to the same schema with a connection of its own and applies its share in batches,
in log order, exactly as the one-process rebuild's main phase does
(:func:`~..application.rebuild.apply_share`). Their keys are disjoint (a client's rows are its
process's; the rows of no client are the shared writer's), so they never wait on each other's
rows.

When every process has committed its last batch the rebuilding process goes on alone (the
indexes, the catch-up rounds, the swap), reading back what the processes wrote. A process that
fails (an error, an exit, a kill) fails the load: the others are terminated, the rebuild raises
and drops its schema, as a one-process rebuild that fails does; nothing is swapped in.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.rebuild import (
    LoadResult,
    Placed,
    Progress,
    Replayed,
    apply_share,
)
from branchline_followup.application.rebuild_routes import route_of_envelope
from branchline_shared.settings import FollowupSettings

QUEUE_DEPTH = 4
"""Batches waiting for a process at most (the reader waits beyond: bounded memory)."""

POLL_S = 0.5
"""How often a wait on a queue looks whether the other side is still there."""


class PartitionFailed(RuntimeError):
    """A process of a partitioned rebuild failed: nothing was swapped, the schema is dropped."""


@dataclass(frozen=True)
class _Message:
    """A replayed message as sent to a process (:class:`~..application.rebuild.Replayed`)."""

    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    from_store: bool


@dataclass(frozen=True)
class _Share:
    settings: FollowupSettings
    """What the process's policy is made from (a policy holds mapping proxies: not sent)."""
    schema: str
    part: int
    parts: int


class ProcessPartitions:
    """:class:`~..application.rebuild.PartitionedLoad` by ``processes`` spawned processes."""

    def __init__(self, settings: FollowupSettings, processes: int, batch_size: int = 500) -> None:
        if processes < 2:
            raise ValueError("a partitioned load needs 2 processes or more")
        self._settings = settings
        self._parts = processes
        self._batch_size = batch_size

    async def load(
        self, schema: str, messages: AsyncIterator[Placed], on_progress: Progress | None
    ) -> LoadResult:
        context = mp.get_context("spawn")  # no copy of this process's connections and loop
        results: Queue[tuple[Any, ...]] = context.Queue()
        inboxes: list[Queue[list[_Message] | None]] = [
            context.Queue(maxsize=QUEUE_DEPTH) for _ in range(self._parts)
        ]
        processes = [
            context.Process(
                target=run_share,
                args=(
                    _Share(self._settings, schema, part, self._parts),
                    inboxes[part],
                    results,
                    os.getpid(),
                ),
                name=f"rebuild-share-{part}",
                daemon=True,
            )
            for part in range(self._parts)
        ]
        for process in processes:
            process.start()
        try:
            shared = await self._route(messages, inboxes, processes, results, on_progress)
            return await self._results(results, processes, shared)
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                await asyncio.to_thread(process.join)

    async def _route(
        self,
        messages: AsyncIterator[Placed],
        inboxes: list[Queue[list[_Message] | None]],
        processes: Sequence[BaseProcess],
        results: Queue[tuple[Any, ...]],
        on_progress: Progress | None,
    ) -> int:
        """Every message to its process (or to all); returns how many went to all."""
        parts = self._parts
        pending: list[list[_Message]] = [[] for _ in range(parts)]
        shared = 0
        routed = 0
        async for message, envelope in messages:
            sent = _Message(message.value, tuple(message.headers), message.from_store)
            part = route_of_envelope(envelope, parts)  # parsed once, for the order (#12)
            if part is None:
                shared += 1
                for batch in pending:
                    batch.append(sent)
            else:
                pending[part].append(sent)
            routed += 1
            for j, batch in enumerate(pending):
                if len(batch) >= self._batch_size:
                    await _put(inboxes[j], batch, processes, results)
                    pending[j] = []
            if on_progress is not None and routed >= self._batch_size:
                on_progress(routed)
                routed = 0
        for j, batch in enumerate(pending):
            if batch:
                await _put(inboxes[j], batch, processes, results)
            await _put(inboxes[j], None, processes, results)
        if on_progress is not None and routed:
            on_progress(routed)
        return shared

    async def _results(
        self, results: Queue[tuple[Any, ...]], processes: Sequence[BaseProcess], shared: int
    ) -> LoadResult:
        applied = skipped = written = 0
        for _ in processes:
            outcome = await _get(results, processes)
            if outcome[0] != "done":
                raise PartitionFailed(_report(outcome))
            _, _, its_applied, its_skipped, its_written = outcome
            applied += its_applied
            skipped += its_skipped
            written += its_written
        # the events of no client were applied by every process: counted once
        return LoadResult(
            applied=applied - (self._parts - 1) * shared, skipped=skipped, written=written
        )


def _report(outcome: tuple[Any, ...]) -> str:
    if outcome[0] == "done":  # cannot be, before the end was sent
        return f"rebuild process {outcome[1]} ended early"
    _, part, text = outcome
    return f"rebuild process {part} failed (nothing swapped, its schema dropped):\n{text}"


def _failed(processes: Sequence[BaseProcess]) -> BaseProcess | None:
    return next((p for p in processes if p.exitcode not in (None, 0)), None)


async def _put(
    inbox: Queue[list[_Message] | None],
    batch: list[_Message] | None,
    processes: Sequence[BaseProcess],
    results: Queue[tuple[Any, ...]],
) -> None:
    def put() -> bool:
        while True:
            try:
                inbox.put(batch, timeout=POLL_S)
                return True
            except queue.Full:
                if _failed(processes) is not None:
                    return False

    if not await asyncio.to_thread(put):  # a process ended: no use reading on
        raise PartitionFailed(_report(await _get(results, processes)))


async def _get(
    results: Queue[tuple[Any, ...]], processes: Sequence[BaseProcess]
) -> tuple[Any, ...]:
    def get() -> tuple[Any, ...]:
        while True:
            try:
                return results.get(timeout=POLL_S)
            except queue.Empty:
                failed = _failed(processes)
                if failed is not None and results.empty():
                    return ("failed", failed.name, f"exited with code {failed.exitcode}")

    return await asyncio.to_thread(get)


def run_share(
    share: _Share,
    inbox: Queue[list[_Message] | None],
    results: Queue[tuple[Any, ...]],
    parent: int,
) -> None:
    """A spawned process's body: its share applied, its counts (or its failure) reported."""
    try:
        applied, skipped, written = asyncio.run(_apply(share, inbox, parent))
    except BaseException:
        results.put(("failed", share.part, traceback.format_exc()))
        raise SystemExit(1) from None
    results.put(("done", share.part, applied, skipped, written))


async def _apply(
    share: _Share, inbox: Queue[list[_Message] | None], parent: int
) -> tuple[int, int, int]:
    target = PostgresRebuildTarget(
        None, share.settings.followup_database_url, part=share.part, parts=share.parts
    )
    await target.attach(share.schema)

    def take() -> list[_Message] | None:
        while True:
            try:
                return inbox.get(timeout=POLL_S)
            except queue.Empty:
                if os.getppid() != parent:
                    raise PartitionFailed("the rebuilding process ended") from None

    async def batches() -> AsyncIterator[list[Replayed]]:
        while (batch := await asyncio.to_thread(take)) is not None:
            yield list(batch)

    try:
        applied, skipped = await apply_share(
            target, batches(), policy_from_settings(share.settings), settle_heap=True
        )
        return applied, skipped, target.written
    finally:
        await target.close()
