"""Several intake processes on one port (docs/performance.md), sharing one socket or with a
socket each (``SO_REUSEPORT``): every request is answered, exactly one process publishes the
outbox, and the whole group stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from branchline_shared.embedded.ports import free_port
from branchline_shared.eventstore.relay import RELAY_LOCK_KEY
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.stack import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _running(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def _event(i: int) -> dict[str, object]:
    return {
        "type": "client.registered",
        "occurred_at": datetime.now(UTC).isoformat(),
        "client_id": f"C-P{i}",
        "branch_id": "BR-001",
        "channel": "walk_in",
        "actor": {"id": "staff-17", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-7"},
    }


def _listening_sockets(port: int) -> int:
    """Listening TCP sockets on ``port`` (a socket shared by several processes counts once)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1
        for fields in (line.split() for line in lines)
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
    )


@pytest.mark.parametrize("reuse_port", [False, True], ids=["shared-socket", "reuse-port"])
async def test_two_intake_processes_share_the_port_and_one_relay(
    settings: BranchlineSettings, tokens: TokenFactory, reuse_port: bool
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "BRANCHLINE_DATA_DIR": str(settings.data_dir),
        "BRANCHLINE_INTAKE_DATABASE_URL": settings.intake_database_url,
        "BRANCHLINE_KEYS_DATABASE_URL": settings.keys_database_url,
        "BRANCHLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BRANCHLINE_TOPIC_NAMESPACE": settings.topic_namespace,
        "BRANCHLINE_JWT_SECRET": settings.resolved_jwt_secret(),
        "BRANCHLINE_INTAKE_PORT": str(port),
        "BRANCHLINE_INTAKE_PROCESSES": "2",
        # One socket for both, or one each with SO_REUSEPORT (the kernel spreads connections).
        "BRANCHLINE_INTAKE_REUSE_PORT": str(reuse_port).lower(),
        # No poll within the test's deadlines: only wake-ups (NOTIFY across processes) publish.
        "BRANCHLINE_RELAY_POLL_INTERVAL_S": "60",
        "BRANCHLINE_LOG_LEVEL": "WARNING",
    }
    parent = subprocess.Popen(  # noqa: ASYNC220 - the component under test
        [sys.executable, "-m", "branchline_cli.main", "run", "intake-api"], env=env
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers=tokens.headers(Role.BRANCH_SYSTEM),
            timeout=10,
        ) as client:

            async def ready() -> bool:
                assert parent.poll() is None, "intake exited"
                try:
                    answers = [(await client.get("/readyz")).status_code for _ in range(4)]
                except httpx.TransportError:
                    return False
                return answers == [200] * 4 and len(_children(parent.pid)) == 2

            await eventually(ready, within=60, interval=0.3)
            assert _listening_sockets(port) == (2 if reuse_port else 1)
            answers = await asyncio.gather(
                *(client.post("/v1/events", json=_event(i)) for i in range(40))
            )
            assert [a.status_code for a in answers] == [202] * 40
            conn = await asyncpg.connect(settings.intake_database_url)
            try:

                async def one_relay() -> bool:
                    holders = await conn.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND objid = $1",
                        RELAY_LOCK_KEY & 0xFFFFFFFF,
                    )
                    assert holders <= 1, holders
                    return bool(holders == 1)

                # Each process's relay takes the lock in the background once the process
                # serves (its own connection): ready does not mean taken yet, on a loaded
                # machine not even after the posts. Never two.
                await eventually(one_relay, within=30, interval=0.05)

                async def published() -> bool:
                    return not await conn.fetchval(
                        "SELECT count(*) FROM es_outbox WHERE published_at IS NULL"
                    )

                # Commits in the process without the lock wake the relay too (NOTIFY):
                # everything is published long before its 60 s poll would run.
                await eventually(published, within=30, interval=0.05)
            finally:
                await conn.close()
        children = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
        assert not [c for c in children if _running(c)]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
