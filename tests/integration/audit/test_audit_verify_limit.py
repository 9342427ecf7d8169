"""The API's verify limit holds across audit API processes on one database (#12): two real
API processes (``branchline run audit-api``, as a deployment with two replicas runs them),
a verify running in one refuses one in the other; the slot is free again when the verify
ends, and when its API process is killed mid-verify (the lock lives with its connection;
its verifying process dies with it).

The verifying process (the API process's grandchild, a child of its fork server) is stopped
with SIGSTOP once it runs, so the verify is certainly still running while the test looks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_audit.adapters.verify_slots import VERIFY_LOCK_CLASS, PostgresVerifySlots
from branchline_shared.embedded.ports import free_port
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    VERIFY_ENTRIES,
    audit_context,
    copy_ledger,
    quick_settings,
)
from tests.integration.audit.test_audit_verify_api import _tcp_ports
from tests.support.processes import process_env
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ENTRIES = VERIFY_ENTRIES
"""The entries of ``verify_ledger`` (conftest), each test's copy of which it serves."""


def _api_env(settings: BranchlineSettings, port: int) -> dict[str, str]:
    env = process_env(
        settings,
        "data_dir",
        "audit_database_url",
        "kafka_bootstrap",
        "topic_namespace",
        "jwt_secret",
        "audit_verify_processes",
        "audit_checkpoint_every_entries",
        "audit_checkpoint_interval_s",
    )
    env["BRANCHLINE_AUDIT_PORT"] = str(port)
    return env


class _Api:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def verifying_pids(self) -> list[int]:
        """The API process's grandchildren: its fork server's children, the verifying
        processes (its other child, multiprocessing's resource tracker, starts none)."""
        children = _children_of(self.process.pid)
        return [g for c in children for g in _children_of(c)]


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@contextlib.asynccontextmanager
async def _two_apis(
    settings: BranchlineSettings, tmp_path: Path, verify_ledger: str
) -> AsyncIterator[list[_Api]]:
    async with _apis(settings, tmp_path, verify_ledger, ("a", "b")) as apis:
        yield apis


@contextlib.asynccontextmanager
async def _apis(
    settings: BranchlineSettings,
    tmp_path: Path,
    verify_ledger: str,
    names: tuple[str, ...],
    env: dict[str, str] | None = None,
) -> AsyncIterator[list[_Api]]:
    """Real API processes (``env``: more of their environment), one per name, on a copy of
    ``verify_ledger`` (conftest: :data:`ENTRIES` entries, appended once)."""
    await copy_ledger(settings, verify_ledger)
    async with audit_context(settings):  # migrated and provisioned before the processes start
        pass
    apis: list[_Api] = []
    try:
        for name in names:
            port = free_port()
            log = tmp_path / f"audit-api-{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(  # noqa: ASYNC220 - a start, then only signals
                    [sys.executable, "-m", "branchline_cli.main", "run", "audit-api"],
                    env=_api_env(settings, port) | (env or {}),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            apis.append(_Api(process, f"http://127.0.0.1:{port}", log))
        for api in apis:
            async with httpx.AsyncClient(base_url=api.url, timeout=5) as client:

                async def ready(client: httpx.AsyncClient = client, api: _Api = api) -> bool:
                    assert api.process.poll() is None, api.log.read_text(errors="replace")
                    try:
                        return (await client.get("/readyz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await eventually(ready, within=90, interval=0.2)
        yield apis
    finally:
        for api in apis:
            for pid in api.verifying_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if api.process.poll() is None:
                api.process.kill()
            await asyncio.to_thread(api.process.wait, 30)


def _ended(pid: int) -> bool:
    """Whether ``pid`` has ended (gone, or a zombie not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


async def _stopped_verifying_process(api: _Api, *, connected: bool = False) -> int:
    """The verify's process in ``api``, once it runs (``connected``: once it has a connection
    to PostgreSQL, so past its start), stopped where it stands."""

    async def running() -> int | None:
        for pid in api.verifying_pids():
            if not connected or _tcp_ports(pid):
                return pid
        return None

    pid = await eventually(running, within=30, interval=0.002)
    os.kill(pid, signal.SIGSTOP)
    return pid


async def _verify_locks(settings: BranchlineSettings) -> list[int]:
    """The slots held, by their number."""
    conn = await asyncpg.connect(settings.audit_database_url)
    try:
        rows = await conn.fetch(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
            "AND objsubid = 2 AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            VERIFY_LOCK_CLASS,
        )
        return sorted(int(r["objid"]) for r in rows)
    finally:
        await conn.close()


async def test_a_verify_in_one_api_process_refuses_one_in_another_until_it_ends(
    settings: BranchlineSettings, tokens: TokenFactory, tmp_path: Path, verify_ledger: str
) -> None:
    s = quick_settings(settings, audit_verify_processes=1)
    headers = tokens.headers(Role.AUDITOR, sub="auditor-1")
    async with (
        _two_apis(s, tmp_path, verify_ledger) as (a, b),
        httpx.AsyncClient(base_url=a.url, timeout=60, headers=headers) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=60, headers=headers) as on_b,
    ):
        verifying = asyncio.ensure_future(on_a.get("/v1/audit/verify"))
        worker = await _stopped_verifying_process(a)
        try:
            refused = await asyncio.wait_for(on_b.get("/v1/audit/verify"), 10)
            assert refused.status_code == 429, refused.text
            assert await _verify_locks(s) == [0]
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert int(refused.headers["retry-after"]) > 0
            problem: dict[str, Any] = refused.json()
            assert problem["type"].endswith("too-many-verifies")
            assert "1 verify runs at a time per audit deployment" in problem["detail"]
            assert b.verifying_pids() == []  # refused before any process started
            # And in the verifying process itself, as before.
            again = await asyncio.wait_for(on_a.get("/v1/audit/verify"), 10)
            assert again.status_code == 429
            # Both still answer their other requests.
            assert (await on_b.get("/v1/audit/entries?limit=1")).status_code == 200
            assert (await on_a.get("/v1/audit/entries?limit=1")).status_code == 200
            assert not verifying.done()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        first = await verifying
        assert first.status_code == 200
        assert first.json()["ok"] is True
        # The slot is free once the verify has ended: the other process's verify runs.
        assert await _verify_locks(s) == []
        second = await on_b.get("/v1/audit/verify")
        assert second.status_code == 200
        assert second.json()["ok"] is True
        assert second.json()["entries"] >= ENTRIES + 1


async def test_an_api_process_killed_mid_verify_frees_the_slot(
    settings: BranchlineSettings, tokens: TokenFactory, tmp_path: Path, verify_ledger: str
) -> None:
    s = quick_settings(settings, audit_verify_processes=1)
    headers = tokens.headers(Role.AUDITOR, sub="auditor-1")
    async with (
        _two_apis(s, tmp_path, verify_ledger) as (a, b),
        httpx.AsyncClient(base_url=b.url, timeout=60, headers=headers) as on_b,
    ):
        async with httpx.AsyncClient(base_url=a.url, timeout=60, headers=headers) as on_a:
            verifying = asyncio.ensure_future(on_a.get("/v1/audit/verify"))
            worker = await _stopped_verifying_process(a, connected=True)
            assert (await on_b.get("/v1/audit/verify")).status_code == 429
            a.process.kill()  # no clean-up runs in it: its connections just close
            await asyncio.to_thread(a.process.wait, 30)
            with contextlib.suppress(httpx.HTTPError):
                await verifying

        async def freed() -> bool:
            return await _verify_locks(s) == []

        await eventually(freed, within=15, interval=0.05)

        # Its verifying process did not outlive it (it watches the API process): no second
        # verify reads on beside the next one. Stopped, it ends once continued.
        os.kill(worker, signal.SIGCONT)

        async def ended() -> bool:
            return _ended(worker)

        await eventually(ended, within=15, interval=0.05)
        after = await on_b.get("/v1/audit/verify")
        assert after.status_code == 200
        assert after.json()["ok"] is True


async def test_the_slots_are_a_count_across_connections_and_freed_however_a_block_ends(
    settings: BranchlineSettings,
) -> None:
    async with audit_context(settings):  # the database exists
        pass
    here = PostgresVerifySlots(settings.audit_database_url, 2)
    elsewhere = PostgresVerifySlots(settings.audit_database_url, 2)  # another process's
    async with here.held() as first:
        assert first
        async with elsewhere.held() as second:
            assert second
            assert await _verify_locks(settings) == [0, 1]
            async with elsewhere.held() as third, here.held() as fourth:
                assert not third
                assert not fourth
        assert await _verify_locks(settings) == [0]
        # This process holds one of two: it still asks the database for the other.
        async with here.held() as again:
            assert again
            # ...and holds both now: refused without asking.
            assert here.held_here == 2
            async with here.held() as fifth:
                assert not fifth
    assert await _verify_locks(settings) == []

    # A block that raises or is cancelled frees its slot.
    async def fail() -> None:
        async with here.held() as held:
            assert held
            raise RuntimeError("the verify failed")

    with pytest.raises(RuntimeError):
        await fail()
    assert await _verify_locks(settings) == []
    entered = asyncio.Event()

    async def hold() -> None:
        async with here.held() as held:
            assert held
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(hold())
    await entered.wait()
    assert await _verify_locks(settings) == [0]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await _verify_locks(settings) == []
    assert here.held_here == 0
    # The holder is named where an operator looks.
    async with here.held():
        conn = await asyncpg.connect(settings.audit_database_url)
        try:
            names = await conn.fetch(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objsubid = 2",
                VERIFY_LOCK_CLASS,
            )
        finally:
            await conn.close()
        assert [r["application_name"] for r in names] == ["branchline-audit-verify"]
