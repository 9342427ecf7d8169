"""``GET /v1/audit/verify`` over real HTTP, beside the API's other requests (#12): the
chain is checked in a process apart from the serving event loop, one verify at a time, a
client that goes away stops it, a verifying process that dies has its range verified again.

Each test stops the verifying process (SIGSTOP) once it has started, so the verify is
certainly still running while the test looks (no race with a fast verify)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_audit.bootstrap import create_app
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    VERIFY_ENTRIES,
    copy_ledger,
    quick_settings,
)
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ENTRIES = VERIFY_ENTRIES
"""The entries of ``verify_ledger`` (conftest), each test's copy of which it serves."""


@contextlib.asynccontextmanager
async def _served(
    settings: BranchlineSettings, tokens: TokenFactory, verify_ledger: str
) -> AsyncIterator[tuple[str, dict[str, str]]]:
    s = quick_settings(settings, audit_verify_processes=1)
    await copy_ledger(s, verify_ledger)
    async with serve(create_app(s)) as url:
        yield url, tokens.headers(Role.AUDITOR, sub="auditor-1")


async def _verifying_process(*, connected: bool = False) -> BaseProcess:
    """The verify's process, once it runs (``connected``: once it has a connection to
    PostgreSQL), stopped where it stands."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in multiprocessing.active_children():
            if "Verifying" in type(child).__name__:
                assert child.pid is not None
                if connected and not _tcp_ports(child.pid):
                    continue
                os.kill(child.pid, signal.SIGSTOP)
                return child
        await asyncio.sleep(0.002)
    raise AssertionError("no verifying process started")


async def _stopped_with_a_backend(settings: BranchlineSettings) -> tuple[BaseProcess, set[int]]:
    """The verify's process, stopped once PostgreSQL lists a backend for one of its
    connections. A socket is in /proc as soon as TCP connects, before the process has sent
    its startup packet: stopped there, it has no backend yet (and gets none while stopped),
    so it is let go on a little and stopped again."""
    worker = await _verifying_process(connected=True)
    assert worker.pid is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ports = _tcp_ports(worker.pid)
        assert ports, "the verifying process has no connection to PostgreSQL"
        for _ in range(20):  # a started backend shows within ms, even while its client waits
            if await _backends_on(settings, ports) >= 1:
                return worker, ports
            await asyncio.sleep(0.01)
        _cont(worker)
        await asyncio.sleep(0.005)
        os.kill(worker.pid, signal.SIGSTOP)
    raise AssertionError("the verifying process's connection never reached a backend")


def _tcp_ports(pid: int) -> set[int]:
    """The local TCP ports of ``pid``'s sockets (its connections to PostgreSQL)."""
    inodes = set()
    with contextlib.suppress(OSError):  # it may have ended meanwhile
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def _backends_on(settings: BranchlineSettings, ports: set[int]) -> int:
    conn = await asyncpg.connect(settings.audit_database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE client_port = ANY($1::int[])",
            sorted(ports),
        )
        return count
    finally:
        await conn.close()


def _gone(process: BaseProcess) -> Awaitable[bool]:
    """Whether ``process`` has ended and been reaped (no /proc entry left)."""

    async def gone() -> bool:
        return not os.path.exists(f"/proc/{process.pid}")  # noqa: ASYNC240 (procfs: instant)

    return gone()


async def _no_backends_on(settings: BranchlineSettings, ports: set[int]) -> bool:
    return await _backends_on(settings, ports) == 0


async def _eventually(check: Callable[[], Awaitable[bool]], seconds: float = 15) -> bool:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return True
        await asyncio.sleep(0.05)
    return await check()


def _cont(process: BaseProcess) -> None:
    assert process.pid is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGCONT)


async def test_other_requests_are_answered_while_a_verify_runs_and_a_second_is_refused(
    settings: BranchlineSettings, tokens: TokenFactory, verify_ledger: str
) -> None:
    async with (
        _served(settings, tokens, verify_ledger) as (url, headers),
        httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client,
    ):
        verifying = asyncio.ensure_future(client.get("/v1/audit/verify"))
        worker = await _verifying_process()
        try:
            # The verify cannot end while its process is stopped: these are answered beside it.
            entries = await asyncio.wait_for(client.get("/v1/audit/entries?limit=1"), 10)
            assert entries.status_code == 200
            key = await asyncio.wait_for(client.get("/v1/audit/public-key"), 10)
            assert key.status_code == 200

            second = await asyncio.wait_for(client.get("/v1/audit/verify"), 10)
            assert second.status_code == 429
            assert second.headers["content-type"].startswith("application/problem+json")
            assert int(second.headers["retry-after"]) > 0
            problem: dict[str, Any] = second.json()
            assert problem["type"].endswith("too-many-verifies")
            assert "1 verify runs at a time" in problem["detail"]
            assert not verifying.done()
        finally:
            _cont(worker)
        response = await verifying
        assert response.status_code == 200
        body = response.json()
        assert body["ok"] is True
        assert body["entries"] >= ENTRIES + 1  # and the reads recorded meanwhile
        # The slot is given back: the next verify runs.
        assert (await client.get("/v1/audit/verify")).json()["ok"] is True


async def test_a_client_that_goes_away_stops_the_verify(
    settings: BranchlineSettings, tokens: TokenFactory, verify_ledger: str
) -> None:
    async with _served(settings, tokens, verify_ledger) as (url, headers):
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as leaving:
            verifying = asyncio.ensure_future(leaving.get("/v1/audit/verify"))
            worker, ports = await _stopped_with_a_backend(settings)
            verifying.cancel()  # the client goes away: its connection is closed
            with contextlib.suppress(asyncio.CancelledError):
                await verifying
        assert await _eventually(lambda: _gone(worker)), "the verifying process still runs"
        assert await _eventually(lambda: _no_backends_on(settings, ports)), (
            "its connections were not released"
        )
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
            after = await client.get("/v1/audit/verify")
        assert after.status_code == 200  # the slot was given back
        assert after.json()["ok"] is True


async def test_a_verifying_process_that_dies_has_its_range_verified_again(
    settings: BranchlineSettings, tokens: TokenFactory, verify_ledger: str
) -> None:
    async with (
        _served(settings, tokens, verify_ledger) as (url, headers),
        httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client,
    ):
        verifying = asyncio.ensure_future(client.get("/v1/audit/verify"))
        worker = await _verifying_process()
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        response = await verifying
        assert response.status_code == 200
        body = response.json()
        assert body["ok"] is True
        assert body["entries"] >= ENTRIES + 1
        assert body["first_bad_position"] is None
