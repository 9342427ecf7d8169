"""Verifying ledger segments in processes of their own (#12, docs/audit.md "Verify").

Each segment's process opens its own connection (nothing is inherited: the processes come
from a fork server, started clean, never forked from a process with an event loop or a
pool), reads its position range as the sequential verifier reads the ledger
(:func:`branchline_audit.adapters.scan.scan_rows`) and checks every row with
:class:`~branchline_audit.domain.verification.SegmentAuditor`; the parent joins the results
(:func:`branchline_audit.application.verifying.verify_ledger`).

The fork server imports this module and each process starts from it, so it imports only what
a segment's read and check need (asyncpg, orjson, the verifier's domain modules): not the
ledger's adapter, the event catalogue or the settings, about half a second of CPU at each
command's start (#12, docs/performance.md; ``tests/unit/audit/test_audit_segment_imports.py``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import select
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, ForkServerProcess, set_spawning_popen
from multiprocessing.process import BaseProcess
from typing import Any

from branchline_audit.adapters.database import role_pool
from branchline_audit.adapters.scan import scan_rows
from branchline_audit.domain.verification import Segment, SegmentAuditor, SegmentResult

__all__ = [
    "AUTOMATIC_MAX_PROCESSES",
    "ProcessSegmentVerifiers",
    "default_processes",
    "verify_segment",
    "verifying_context",
]

logger = logging.getLogger(__name__)

AUTOMATIC_MAX_PROCESSES = 8
"""The automatic choice's processes at most: each opens up to two connections of its own, so
a many-core host does not take a PostgreSQL's connections (100 by default) for one verify."""


def default_processes() -> int:
    """One process per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def verify_segment(
    database_url: str, role: str, segment: Segment, checkpoint_sizes: frozenset[int]
) -> SegmentResult:
    """Runs in a verifying process: one segment, read and checked there."""
    return asyncio.run(_read_and_verify(database_url, role, segment, checkpoint_sizes))


async def _read_and_verify(
    database_url: str, role: str, segment: Segment, checkpoint_sizes: frozenset[int]
) -> SegmentResult:
    pool = await role_pool(database_url, role, min_size=1, max_size=2)
    try:
        auditor = SegmentAuditor(segment, checkpoint_sizes)
        rows = scan_rows(pool, after_position=segment.low, through=segment.high)
        async for page in rows:
            auditor.feed_rows(page)
        return auditor.result()
    finally:
        await pool.close()


class _PopenWithoutMain(popen_forkserver.Popen):
    """A fork server's process that does not import the parent's main module: multiprocessing
    imports it again in every process it starts (for a ``python -m`` parent), which cost a
    verifying process about as much CPU as its whole segment (the benchmark's harness, #12);
    the verifying function lives in this module and needs nothing from it. Otherwise
    :meth:`popen_forkserver.Popen._launch` as it stands in Python 3.11."""

    def _launch(self, process_obj: Any) -> None:
        prep_data = {
            key: value
            for key, value in spawn.get_preparation_data(process_obj._name).items()
            if key not in ("init_main_from_name", "init_main_from_path")
        }
        buf = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(
            self,
            util.close_fds,  # type: ignore[attr-defined]
            (_parent_w, self.sentinel),
        )
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _VerifyingProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _PopenWithoutMain(process_obj)


class _VerifyingContext(ForkServerContext):
    Process = _VerifyingProcess


_LAUNCH_RESTATED_FROM = (3, 11)
"""The Python whose fork-server launch :class:`_PopenWithoutMain` restates."""


def verifying_context() -> ForkServerContext:
    """The verifying processes' fork server: started without the parent's main module on the
    Python whose launch :class:`_PopenWithoutMain` restates; on any other, the standard one (a
    private part of ``multiprocessing`` may differ there; each process then imports the main
    module again, which costs start-up time, never the verdict)."""
    if sys.version_info[:2] == _LAUNCH_RESTATED_FROM:
        return _VerifyingContext()
    return ForkServerContext()


class ProcessSegmentVerifiers:
    """:class:`~branchline_audit.application.ports.SegmentVerifiers` on processes of a fork
    server; ``processes`` 0 means one per core."""

    def __init__(
        self, database_url: str, role: str, *, processes: int = 0, min_entries: int = 100_000
    ) -> None:
        self._database_url = database_url
        self._role = role
        self._processes = processes or default_processes()
        self._min_entries = min_entries

    @classmethod
    def configured(
        cls, database_url: str, role: str, *, processes: int, min_entries: int
    ) -> ProcessSegmentVerifiers:
        """As ``BRANCHLINE_AUDIT_VERIFY_PROCESSES`` says (#12, docs/audit.md "Verifying in
        parallel"): ``0``, the default, is the automatic choice, one process per core (at most
        :data:`AUTOMATIC_MAX_PROCESSES`) for a ledger of at least ``min_entries`` entries
        (``BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES``), one pass below; ``1`` one pass
        whatever the size; ``N`` N processes whatever the size (forced)."""
        if processes == 0:
            automatic = min(default_processes(), AUTOMATIC_MAX_PROCESSES)
            return cls(database_url, role, processes=automatic, min_entries=min_entries)
        return cls(database_url, role, processes=processes, min_entries=1)

    @property
    def processes(self) -> int:
        return self._processes

    @property
    def min_entries(self) -> int:
        return self._min_entries

    async def verify(
        self, segments: Sequence[Segment], checkpoint_sizes: frozenset[int]
    ) -> list[SegmentResult]:
        # In a thread: starting the fork server (a new interpreter importing this module)
        # and each process blocks, and meanwhile the caller verifies a segment itself.
        return await asyncio.to_thread(self._verify, list(segments), checkpoint_sizes)

    def _verify(
        self, segments: list[Segment], checkpoint_sizes: frozenset[int]
    ) -> list[SegmentResult]:
        if not segments:
            return []
        context = verifying_context()
        # The fork server, a new interpreter started once per parent, imports this module
        # once; each process forked from it starts with asyncpg and the verifier imported,
        # and with no loop, pool or connection (nothing of the parent's).
        context.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(max_workers=len(segments), mp_context=context) as executor:
            futures = [
                executor.submit(
                    verify_segment, self._database_url, self._role, segment, checkpoint_sizes
                )
                for segment in segments
            ]
            return [future.result() for future in futures]

    async def verify_apart(
        self, segments: Sequence[Segment], checkpoint_sizes: frozenset[int]
    ) -> list[SegmentResult | None]:
        """Every segment in a process of its own, none here: the API's verify, which must
        not hold its event loop (#12, docs/audit.md "The API's verify"). None for a segment
        whose process could not start, failed or died (the caller verifies it again).
        Cancelled (the client went away), the processes are killed and reaped before this
        returns."""
        apart = _Apart()
        try:
            await asyncio.to_thread(
                apart.start, self._database_url, self._role, list(segments), checkpoint_sizes
            )
            return [
                await asyncio.to_thread(_received, apart.running[i][1])
                if i in apart.running
                else None
                for i in range(len(segments))
            ]
        finally:
            # Shielded: a second cancel must not leave a process running or unreaped.
            await asyncio.shield(asyncio.to_thread(apart.stop))


def _segment_process(
    sink: Any,
    database_url: str,
    role: str,
    segment: Segment,
    checkpoint_sizes: frozenset[int],
    api: int | None = None,
    lifeline: Connection | None = None,
) -> None:
    """A verifying process of :meth:`ProcessSegmentVerifiers.verify_apart`: its result, or
    None when it failed (the parent then verifies the range itself), sent through ``sink``.
    ``api``: the pid of the API process that asked for it, ``lifeline``: the read end of a
    pipe whose only write end that process holds (None: not watched)."""
    _end_with(api, lifeline)
    try:
        result: SegmentResult | None = verify_segment(database_url, role, segment, checkpoint_sizes)
    except Exception:
        logger.exception("verifying positions after %d failed", segment.low)
        result = None
    try:
        sink.send(result)
    finally:
        sink.close()


def _end_with(
    api: int | None, lifeline: Connection | None = None, *, pidfds: bool | None = None
) -> None:
    """Ends this process once the API process ``api`` has ended: one killed mid-verify
    (SIGKILL, the OOM killer) runs no clean-up, and its verifying processes would otherwise
    read on to the end of their ranges, for nobody, beside the next verify its freed slot lets
    start (docs/audit.md "The API's verify"). Neither a parent-death signal (the parent is the
    fork server, which lives as long as any process it forked holds its pipe) nor the result's
    pipe (only written at the end) would say it: a thread waits on the API process's pidfd
    (Linux 5.3+) and on ``lifeline``, a pipe nobody writes whose only write end the API
    process holds, so that it reads end-of-file once that process has ended, on any POSIX
    system, pidfds or not (``pidfds``: whether to use them, by default where they exist). An
    API process already gone ends this one at once."""
    watched: list[int] = []
    if pidfds is None:
        pidfds = hasattr(os, "pidfd_open")
    if api is not None and pidfds:
        try:
            watched.append(os.pidfd_open(api))
        except ProcessLookupError:
            os._exit(1)
        except OSError:  # refused (a seccomp filter, a kernel without them): the lifeline
            pass
    if lifeline is not None:
        watched.append(os.dup(lifeline.fileno()))  # the watch's own, however long it lives
    if watched:
        threading.Thread(target=_exit_when_readable, args=(watched,), daemon=True).start()


def _exit_when_readable(fds: list[int]) -> None:
    # A pidfd is readable once its process has ended, the lifeline at end-of-file.
    select.select(fds, [], [])
    os._exit(1)


class _Apart:
    """The processes of one :meth:`ProcessSegmentVerifiers.verify_apart`, started in a thread
    (starting the fork server and each process blocks) and stopped from the event loop: the
    lock makes a stop either see a process or keep it from starting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._lifeline: Connection | None = None
        self.running: dict[int, tuple[BaseProcess, Connection]] = {}
        """By the segment's index: the processes started (one that could not start is
        missing: its segment is verified by the caller)."""

    def start(
        self,
        database_url: str,
        role: str,
        segments: Sequence[Segment],
        checkpoint_sizes: frozenset[int],
    ) -> None:
        context = verifying_context()
        context.set_forkserver_preload([__name__])
        api = os.getpid()
        with self._lock:
            if self._stopped:
                return
            # Only this process holds the write end (never written; not inherited: the fork
            # server gets the read end alone), closed by stop() or this process's death.
            lifeline, self._lifeline = context.Pipe(duplex=False)
        try:
            self._start(context, database_url, role, segments, checkpoint_sizes, api, lifeline)
        finally:
            lifeline.close()  # each process has its own copy

    def _start(
        self,
        context: ForkServerContext,
        database_url: str,
        role: str,
        segments: Sequence[Segment],
        checkpoint_sizes: frozenset[int],
        api: int,
        lifeline: Connection,
    ) -> None:
        for index, segment in enumerate(segments):
            with self._lock:
                if self._stopped:
                    return
                receiving, sending = context.Pipe(duplex=False)
                process = context.Process(
                    target=_segment_process,
                    args=(sending, database_url, role, segment, checkpoint_sizes, api, lifeline),
                    daemon=True,
                )
                try:
                    process.start()
                except Exception:
                    logger.exception("a verifying process did not start; the caller verifies")
                    receiving.close()
                    continue
                finally:
                    sending.close()  # the process has its own copy: its end alone says EOF
                self.running[index] = (process, receiving)

    def stop(self) -> None:
        """Kills every process still running (its connections close with it; a kill, not a
        terminate, also ends a stopped or stuck one) and reaps them all."""
        with self._lock:
            self._stopped = True
        for process, _ in self.running.values():
            if process.is_alive():
                process.kill()
        for process, receiving in self.running.values():
            process.join()
            receiving.close()
        if self._lifeline is not None:
            self._lifeline.close()


def _received(receiving: Connection) -> SegmentResult | None:
    try:
        result: SegmentResult | None = receiving.recv()
    except (EOFError, OSError):
        logger.warning("a verifying process ended without its result; the caller verifies")
        return None
    if result is None:
        logger.warning("a verifying process failed; the caller verifies its range")
    return result
