"""How the intake processes split a measure's connections, and each one's CPU per request
(docs/performance.md, Round 31, "split", #12).

The stack runs two intake API processes (``BRANCHLINE_INTAKE_PROCESSES``): with the shared
listening socket (the default) whichever wakes first accepts a new connection, so the 64
connections of a measure split 47/17 one time and 32/32 the next, and the split moves intake's
CPU per event by as much as the gaps between two codes (Round 30, "claimcost"). Every line of
``make bench`` that posts to intake records the split beside its figures, read from ``/proc``
(each process's established sockets on the intake port): no product change, nothing sent to
the stack. A closed-loop measure's connections each send the same number of requests, so the
split is also each process's share of the requests, and each process's CPU over its own
requests is kept too (``cpu_ms_by_process``); the one that holds the relay lock also
publishes every event to Kafka, so its figure is the higher.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.loadgen import RawHttpClient
from bench.stack import BenchStack, child_pids, process_cpu_seconds

SPLIT = "_split_"
"""``figures[f"{key}{SPLIT}{i}"]``: the connections intake process ``i`` (by pid order) held
during measure ``key``."""

CPU_BY_PROCESS = "_cpu_ms_by_process_"
"""``figures[f"{key}{CPU_BY_PROCESS}{i}"]``: process ``i``'s CPU (ms) per request it served."""


def serving_pids(stack: BenchStack) -> list[int]:
    """The intake processes that serve requests, in pid order: the forked children of the
    component's process, or that process itself when it serves alone."""
    parents = stack.pids.get("intake-api", [])
    return sorted(c for pid in parents for c in child_pids(pid)) or sorted(parents)


def _established_to(port: int) -> dict[str, int]:
    """Established connections whose local port is ``port``: socket inode -> remote port
    (``/proc/net/tcp`` and ``tcp6``)."""
    remote_of: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                remote_of[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    return remote_of


def _socket_inodes(pid: int) -> list[str]:
    """The inodes of the sockets ``pid`` holds open (``/proc/PID/fd``); none if it is gone."""
    inodes: list[str] = []
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.append(target[8:-1])
    return inodes


def connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """Established connections to ``port`` that each process holds (its sockets' inodes in
    ``/proc/PID/fd`` matched with ``/proc/net/tcp``)."""
    established = _established_to(port)
    return {pid: sum(i in established for i in _socket_inodes(pid)) for pid in pids}


def serving_process_of_clients(pids: list[int], port: int) -> dict[int, int]:
    """Client port -> the process that accepted that client's connection to ``port``: the
    server side's socket (local port ``port``, remote port the client's) found in the
    process's ``/proc/PID/fd``."""
    remote_of = _established_to(port)
    return {remote_of[i]: pid for pid in pids for i in _socket_inodes(pid) if i in remote_of}


async def balanced_clients(
    pids: list[int], port: int, token: str, connections: int = 64, attempts: int = 2048
) -> list[RawHttpClient]:
    """``connections`` connections to ``port``, the same number accepted by each of ``pids``
    (the load tool sees which process accepted each one, ``serving_process_of_clients``):
    connections are opened until every process holds its share, the surplus closed. In
    process order, a block each (connection ``c``'s token is ``c % tokens``: each process
    then gets every token equally). Raises when ``attempts`` connections did not do it."""
    if connections % len(pids):
        raise ValueError(f"{connections} connections do not split evenly over {len(pids)}")
    share = connections // len(pids)
    kept: dict[int, list[RawHttpClient]] = {pid: [] for pid in pids}
    spare: list[RawHttpClient] = []
    tried = 0
    try:
        while any(len(held) < share for held in kept.values()):
            if tried >= attempts:
                raise RuntimeError(
                    f"{tried} connections did not split evenly: {[len(kept[pid]) for pid in pids]}"
                )
            missing = sum(share - len(held) for held in kept.values() if len(held) < share)
            batch = [RawHttpClient("127.0.0.1", port, token) for _ in range(missing)]
            for client in batch:
                await client.__aenter__()
                spare.append(client)
            tried += missing
            by_port = {c.writer.get_extra_info("sockname")[1]: c for c in batch}
            served: dict[int, int] = {}
            for _ in range(200):  # until each is accepted (a busy process takes a while)
                served = serving_process_of_clients(pids, port)
                if all(p in served for p in by_port):
                    break
                await asyncio.sleep(0.01)
            for client_port, client in by_port.items():
                pid = served.get(client_port)
                if pid is not None and len(kept[pid]) < share:
                    kept[pid].append(client)
                    spare.remove(client)
    except BaseException:
        spare.extend(c for held in kept.values() for c in held)
        raise
    finally:
        for client in spare:
            await client.__aexit__()
    return [client for pid in pids for client in kept[pid]]


class ConnectionSplit:
    """Watches the intake processes while a measure runs: the most connections seen at once
    per process (sampled every 20 ms until ``wanted`` are seen, or the measure ends) and each
    process's CPU over the measure.

        async with ConnectionSplit(stack, wanted=64) as split:
            latencies = await single_posts(...)
        split.record(figures, "bl_single", requests=p.singles)
    """

    def __init__(self, stack: BenchStack, wanted: int = 64) -> None:
        self.pids = serving_pids(stack)
        self.port = stack.settings.intake_port
        self.wanted = wanted
        self.held: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ConnectionSplit:
        self.cpu_s = {pid: process_cpu_seconds(pid) for pid in self.pids}
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.cpu_s = {pid: process_cpu_seconds(pid) - self.cpu_s[pid] for pid in self.pids}
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        # a loaded machine may not have run the sampler since the last connection came: one
        # more look while those still open are open
        self._look()

    def _look(self) -> None:
        counts = connections_by_process(self.pids, self.port)
        if sum(counts.values()) > sum(self.held.values()):
            self.held = counts

    async def _sample(self) -> None:
        while sum(self.held.values()) < self.wanted:
            self._look()
            await asyncio.sleep(0.02)

    @property
    def split(self) -> list[int]:
        """Connections per intake process, in pid order."""
        return [self.held.get(pid, 0) for pid in self.pids]

    def cpu_ms_by_process(self, requests: int) -> list[float | None]:
        """Each process's CPU (ms) per request it served, when ``requests`` were sent equally
        over the connections (a closed loop); None for a process that served none."""
        total = sum(self.split)
        return [
            1000 * self.cpu_s[pid] / (requests * n / total) if n and total else None
            for pid, n in zip(self.pids, self.split, strict=True)
        ]

    def record(self, figures: dict[str, float], key: str, requests: int | None = None) -> None:
        """The split (and with ``requests``, each process's CPU per request) under ``key``."""
        for i, n in enumerate(self.split):
            figures[f"{key}{SPLIT}{i}"] = n
        if requests:
            for i, ms in enumerate(self.cpu_ms_by_process(requests)):
                if ms is not None:
                    figures[f"{key}{CPU_BY_PROCESS}{i}"] = ms


def _indexed(run: dict[str, float], prefix: str) -> dict[int, float]:
    return {
        int(name[len(prefix) :]): value
        for name, value in run.items()
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    }


def split_entries(runs: list[dict[str, float]], key: str) -> dict[str, Any]:
    """For ``result['measures'][key]``: ``split``, per run, the connections of each intake
    process ([n_a, n_b]); ``cpu_ms_by_process``, per run, each one's CPU per request it served
    (null for one that served none). Nothing when the measure recorded no split."""
    entries: dict[str, Any] = {}
    measured = [run for run in runs if key in run]
    splits = [_indexed(run, key + SPLIT) for run in measured]
    if any(splits):
        entries["split"] = [[int(s[i]) for i in sorted(s)] for s in splits]
    cpus = [
        (_indexed(run, key + CPU_BY_PROCESS), len(s))
        for run, s in zip(measured, splits, strict=True)
    ]
    if any(c for c, _ in cpus):
        entries["cpu_ms_by_process"] = [[c.get(i) for i in range(n)] for c, n in cpus]
    return entries


def split_text(entry: dict[str, Any]) -> str:
    """The split of every run of a line, as the table shows it: ``40/24, 32/32``."""
    return ", ".join("/".join(str(n) for n in s) for s in entry.get("split", []))
