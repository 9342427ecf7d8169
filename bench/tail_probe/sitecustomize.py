"""A timing probe that ``bench.probe_post_tail`` loads into the intake API processes (this
folder first on ``PYTHONPATH``; Python imports ``sitecustomize`` at start-up). Nothing in the
product imports it.

In a process whose command line names ``intake-api`` it records, on the monotonic clock the
load generator also reads (``time.perf_counter``, CLOCK_MONOTONIC on Linux, one clock for every
process of the machine): every collection of the garbage collector (generation, start, end),
every stall of the event loop longer than ``BENCH_TAIL_SLOW_MS`` (a task sleeping 1 ms woke
that much late: uvloop's handles cannot be wrapped to say what ran), every group commit's
write (events, start, end, requests still queued) and every outbox-relay round (rows, start,
end). SIGUSR2 writes
them to ``<BENCH_TAIL_DIR>/<pid>.json`` and starts a new record.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

_clock = time.perf_counter
_records: dict[str, list[Any]] = {"gc": [], "slow": [], "groups": [], "relay": []}
_gc_started = [0.0]
_patched = [False]
_watching: list[Any] = []
_slow_s = [0.002]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = _clock()
    else:
        _records["gc"].append((_gc_started[0], _clock(), info["generation"], info["collected"]))


async def _watch_loop(slow_s: float) -> None:
    cpu = time.thread_time
    while True:
        started, used = _clock(), cpu()
        await asyncio.sleep(0.001)
        ended = _clock()
        if ended - started > slow_s:  # with the CPU this thread had meanwhile
            _records["slow"].append((started, ended, cpu() - used))


def _patch_application() -> None:
    group_commit = sys.modules.get("branchline_intake.application.group_commit")
    relay = sys.modules.get("branchline_shared.eventstore.relay")
    # A module is in sys.modules while it is still being imported: wait for its class.
    committer = getattr(group_commit, "GroupCommitter", None)
    outbox_relay = getattr(relay, "OutboxRelay", None)
    if committer is None or outbox_relay is None:
        return
    _patched[0] = True
    write = committer._write
    publish_once = outbox_relay.publish_once

    async def timed_write(self: Any, group: list[Any]) -> None:
        if not _watching:
            _watching.append(asyncio.get_running_loop().create_task(_watch_loop(_slow_s[0])))
        started = _clock()
        try:
            await write(self, group)
        finally:
            size = sum(len(waiting.items) for waiting in group)
            _records["groups"].append((started, _clock(), size, len(self._queue)))

    async def timed_publish(self: Any) -> int:
        producer = self._producer
        if not hasattr(producer, "_tail_probe"):
            send = producer.send
            producer._tail_probe = []

            async def timed_send(*args: Any, **kwargs: Any) -> Any:
                begun = _clock()
                try:
                    return await send(*args, **kwargs)
                finally:
                    producer._tail_probe.append((begun, _clock(), time.thread_time()))

            producer.send = timed_send
        producer._tail_probe.clear()
        started, cpu = _clock(), time.thread_time()
        rows = -1
        try:
            rows = int(await publish_once(self))
            return rows
        finally:
            sends = producer._tail_probe
            # From the round's start to its last send: the rows read, encoded and handed to
            # the producer, with the CPU this thread spent meanwhile.
            until, cpu_until = (sends[-1][1], sends[-1][2]) if sends else (started, cpu)
            _records["relay"].append((started, _clock(), rows, until - started, cpu_until - cpu))

    committer._write = timed_write
    outbox_relay.publish_once = timed_publish


def _install() -> None:
    _slow_s[0] = float(os.environ.get("BENCH_TAIL_SLOW_MS", "2")) / 1000

    def patch_when_imported() -> None:
        while not _patched[0]:
            _patch_application()
            time.sleep(0.05)

    def start_patching() -> None:
        threading.Thread(target=patch_when_imported, daemon=True).start()

    start_patching()
    os.register_at_fork(after_in_child=start_patching)  # a forked child has no threads
    gc.callbacks.append(_on_gc)
    folder = Path(os.environ["BENCH_TAIL_DIR"])

    def dump(*_: object) -> None:
        taken = {name: list(values) for name, values in _records.items()}
        for values in _records.values():
            values.clear()
        taken["pid"] = os.getpid()  # type: ignore[assignment]
        taken["threshold"] = gc.get_threshold()  # type: ignore[assignment]
        target = folder / f"{os.getpid()}.json"
        target.with_suffix(".tmp").write_text(json.dumps(taken))
        target.with_suffix(".tmp").rename(target)

    signal.signal(signal.SIGUSR2, dump)


if "intake-api" in sys.argv and os.environ.get("BENCH_TAIL_DIR"):
    _install()
