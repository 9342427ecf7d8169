"""A running verify's slot is kept, or its loss seen, and an API process stopped cleanly leaves
no verify behind (#12, docs/audit.md "The API's verify"): the lock's session turns off the
server's idle timeouts (it sits idle while its verify runs); a slot lost anyway (its session
ended, or not the session the lock was taken on, as behind a pooler in transaction mode)
stops the verify with a problem instead of letting it run on beside the next one; a SIGTERM
mid-verify ends its verifying processes and frees the slot.

The verifying process is stopped with SIGSTOP once it runs (as test_audit_verify_limit.py),
so the verify is certainly still running while the test looks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_audit.adapters.verify_slots import (
    VERIFY_LOCK_CLASS,
    PostgresVerifySlots,
    slot_lost,
)
from branchline_audit.application.ports import VerifySlotLost
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    audit_context,
    quick_settings,
)
from tests.integration.audit.test_audit_verify_limit import (
    _apis,
    _ended,
    _stopped_verifying_process,
    _verify_locks,
)
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def _parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _lock_holders(settings: BranchlineSettings) -> list[int]:
    conn = await asyncpg.connect(settings.audit_database_url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 "
            "AND objsubid = 2 AND granted",
            VERIFY_LOCK_CLASS,
        )
        return [int(r["pid"]) for r in rows]
    finally:
        await conn.close()


async def _terminate(settings: BranchlineSettings, pid: int) -> None:
    conn = await asyncpg.connect(settings.audit_database_url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def _session_ended(admin: asyncpg.Connection[Any], pid: int) -> bool:
    return not await admin.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid)


async def test_a_held_slot_outlives_the_servers_idle_session_timeout(
    settings: BranchlineSettings,
) -> None:
    async with audit_context(settings):  # the database exists
        pass
    admin = await asyncpg.connect(settings.audit_database_url)
    database = _ident(await admin.fetchval("SELECT current_database()"))
    try:
        for name in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            await admin.execute(f"ALTER DATABASE {database} SET {name} = '1s'")
        # No slot check within the test: a check is a query, and the session is not idle.
        slots = PostgresVerifySlots(settings.audit_database_url, 1, check_every=600)
        async with slots.held() as held:
            assert held
            # The timeout is in force: an ordinary session, idle from the same moment as the
            # lock's, is ended by it (waited for, not slept: 1-2 s).
            plain = await asyncpg.connect(settings.audit_database_url)
            try:
                plain_pid = plain.get_server_pid()
                await eventually(lambda: _session_ended(admin, plain_pid), within=30, interval=0.1)
                with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
                    await plain.fetchval("SELECT 1")
            finally:
                plain.terminate()
            # A verify running, its lock's session idle: past the timeout that ended the
            # other, and a second more, it holds the slot.
            await asyncio.sleep(1)
            assert await _verify_locks(settings) == [0]
            async with slots.held() as second:
                assert not second
        assert await _verify_locks(settings) == []
    finally:
        for name in ("idle_session_timeout", "idle_in_transaction_session_timeout"):
            await admin.execute(f"ALTER DATABASE {database} RESET {name}")
        await admin.close()


async def test_a_slot_lost_while_held_stops_the_block(settings: BranchlineSettings) -> None:
    async with audit_context(settings):
        pass
    slots = PostgresVerifySlots(settings.audit_database_url, 1, check_every=0.1)
    entered = asyncio.Event()

    async def verify() -> None:
        async with slots.held() as held:
            assert held
            entered.set()
            await asyncio.Event().wait()  # a verify that would run on

    task = asyncio.ensure_future(verify())
    await asyncio.wait_for(entered.wait(), 30)
    [holder] = await _lock_holders(settings)
    await _terminate(settings, holder)  # an operator, a failover, an idle timeout
    with pytest.raises(VerifySlotLost, match="connection was lost"):
        await asyncio.wait_for(task, 30)
    assert slots.held_here == 0
    assert await _verify_locks(settings) == []
    async with slots.held() as again:  # taken anew
        assert again


async def test_a_slot_lost_while_its_connection_closes_late_stops_the_block(
    settings: BranchlineSettings,
) -> None:
    """The server ends the lock's session with a FATAL error, then closes the socket; asyncpg
    reads the two apart (under load, an event-loop turn or more). A check sent between them
    failed with asyncpg's InternalClientError (the protocol left its idle state on the
    unasked error), which the check did not count as a lost connection: the watcher died of
    it and the block ran on unwatched (a CI flake of the test above). The proxy passes the
    server's close on a second late, so every check in that second is sent in the gap."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.proxy import cuttable

    async with audit_context(settings):
        pass
    target = urlsplit(settings.audit_database_url)
    async with cuttable(
        target.hostname or "127.0.0.1", target.port or 5432, close_late=1.0
    ) as proxy:
        via_proxy = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))
        slots = PostgresVerifySlots(via_proxy, 1, check_every=0.05)
        entered = asyncio.Event()

        async def verify() -> None:
            async with slots.held() as held:
                assert held
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.ensure_future(verify())
        async with asyncio.timeout(30):
            await entered.wait()
        [holder] = await _lock_holders(settings)
        await _terminate(settings, holder)
        with pytest.raises(VerifySlotLost, match="connection was lost"):
            async with asyncio.timeout(30):
                await task
        assert slots.held_here == 0
        assert await _verify_locks(settings) == []


async def test_a_session_other_than_the_one_the_lock_was_taken_on_is_a_lost_slot(
    settings: BranchlineSettings,
) -> None:
    """Behind a pooler in transaction mode one client connection reaches several server
    sessions: here two connections stand for the server sessions it would take turns on."""
    async with audit_context(settings):
        pass
    taken_on = await asyncpg.connect(settings.audit_database_url)
    later_on = await asyncpg.connect(settings.audit_database_url)
    try:
        assert await taken_on.fetchval("SELECT pg_try_advisory_lock($1, 0)", VERIFY_LOCK_CLASS)
        pid = await taken_on.fetchval("SELECT pg_backend_pid()")
        assert await slot_lost(taken_on, 0, pid) is None
        moved = await slot_lost(later_on, 0, pid)
        assert moved is not None
        assert "transaction mode" in moved
        not_held = await slot_lost(taken_on, 1, pid)
        assert not_held is not None
        assert "no longer held" in not_held
    finally:
        await taken_on.close()
        await later_on.close()
    gone = await slot_lost(taken_on, 0, pid)
    assert gone is not None
    assert "connection was lost" in gone


async def test_an_api_verify_whose_slot_is_lost_ends_with_a_problem(
    settings: BranchlineSettings, tokens: TokenFactory, tmp_path: Path, verify_ledger: str
) -> None:
    s = quick_settings(settings, audit_verify_processes=1)
    headers = tokens.headers(Role.AUDITOR, sub="auditor-1")
    async with (
        _apis(s, tmp_path, verify_ledger, ("a",)) as (a,),
        httpx.AsyncClient(base_url=a.url, timeout=60, headers=headers) as on_a,
    ):
        verifying = asyncio.ensure_future(on_a.get("/v1/audit/verify"))
        worker = await _stopped_verifying_process(a, connected=True)
        try:
            [holder] = await _lock_holders(s)
            await _terminate(s, holder)
            stopped = await asyncio.wait_for(verifying, 60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        assert stopped.status_code == 503, stopped.text
        assert stopped.headers["content-type"].startswith("application/problem+json")
        problem: dict[str, Any] = stopped.json()
        assert problem["type"].endswith("verify-slot-lost")
        assert int(stopped.headers["retry-after"]) > 0
        assert _ended(worker)  # stopped with the verify, before the answer
        assert await _verify_locks(s) == []
        after = await on_a.get("/v1/audit/verify")
        assert after.status_code == 200
        assert after.json()["ok"] is True


async def test_an_api_process_stopped_by_sigterm_mid_verify_leaves_no_verify(
    settings: BranchlineSettings, tokens: TokenFactory, tmp_path: Path, verify_ledger: str
) -> None:
    s = quick_settings(settings, audit_verify_processes=1)
    headers = tokens.headers(Role.AUDITOR, sub="auditor-1")
    # The verify in flight is held stopped: its request is cut at the requests' shutdown
    # timeout (10 s by default, the whole of this test's wait before).
    drain = {"BRANCHLINE_SHUTDOWN_DRAIN_S": "0.5", "BRANCHLINE_SHUTDOWN_REQUESTS_TIMEOUT_S": "1"}
    async with (
        _apis(s, tmp_path, verify_ledger, ("a", "b"), env=drain) as (a, b),
        httpx.AsyncClient(base_url=b.url, timeout=60, headers=headers) as on_b,
    ):
        async with httpx.AsyncClient(base_url=a.url, timeout=90, headers=headers) as on_a:
            verifying = asyncio.ensure_future(on_a.get("/v1/audit/verify"))
            worker = await _stopped_verifying_process(a, connected=True)
            fork_server = _parent_of(worker)
            assert fork_server != a.process.pid
            assert (await on_b.get("/v1/audit/verify")).status_code == 429
            a.process.send_signal(signal.SIGTERM)  # an orchestrator's stop
            # A stop carried out exits 0 (docs/reliability.md), not by the signal again.
            stopped = await asyncio.to_thread(a.process.wait, 90)
            assert stopped == 0, a.log.read_text(errors="replace")
            assert "Application shutdown complete" in a.log.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                await verifying
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGCONT)  # as a running one, if it was left

        async def nothing_left() -> bool:
            return _ended(worker) and _ended(fork_server) and await _verify_locks(s) == []

        await eventually(nothing_left, within=30, interval=0.05)
        after = await on_b.get("/v1/audit/verify")
        assert after.status_code == 200
        assert after.json()["ok"] is True
