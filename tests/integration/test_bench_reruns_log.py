"""The benchmark counts intake's reruns in its server's log (#12): a server started with the
benchmark's log line prefix names each error's database, so a lock timeout and a deadlock in
one database are counted for it and not for another."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import pytest
from bench.branchline_measures import Reruns, log_offset, reruns_in_log
from bench.stack import LOG_LINE_PREFIX

from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.postgres import EmbeddedPostgres
from tests.support.stack import runtime_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _lock_timeout(url: str) -> None:
    holder, waiter = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await holder.execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE")
        with pytest.raises(asyncpg.LockNotAvailableError):
            await waiter.execute(
                "BEGIN; SET LOCAL lock_timeout = '50ms'; SELECT * FROM t WHERE id = 1 FOR UPDATE"
            )
    finally:
        await holder.close()
        await waiter.close()


async def _deadlock(url: str) -> None:
    first, second = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await first.execute("BEGIN; SELECT * FROM t WHERE id = 1 FOR UPDATE")
        await second.execute("BEGIN; SELECT * FROM t WHERE id = 2 FOR UPDATE")
        waits = [
            asyncio.ensure_future(first.execute("SELECT * FROM t WHERE id = 2 FOR UPDATE")),
            asyncio.ensure_future(second.execute("SELECT * FROM t WHERE id = 1 FOR UPDATE")),
        ]
        done = await asyncio.gather(*waits, return_exceptions=True)
        broken = [r for r in done if isinstance(r, asyncpg.DeadlockDetectedError)]
        assert len(broken) == 1, done
    finally:
        await first.close()
        await second.close()


async def test_a_lock_timeout_and_a_deadlock_are_counted_for_their_database() -> None:
    above = Path(tempfile.mkdtemp(prefix="pg-reruns-", dir=runtime_dir()))
    server = EmbeddedPostgres(
        above / "server",
        free_port(),
        extra_settings={"log_line_prefix": LOG_LINE_PREFIX, "deadlock_timeout": "100ms"},
    )
    await asyncio.to_thread(server.start)
    try:
        names = [f"reruns_{uuid.uuid4().hex[:8]}", f"other_{uuid.uuid4().hex[:8]}"]
        admin = await asyncpg.connect(server.url())
        try:
            for name in names:
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        for name in names:
            conn = await asyncpg.connect(server.url(name))
            try:
                await conn.execute(
                    "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2)"
                )
            finally:
                await conn.close()
        await _lock_timeout(server.url(names[1]))  # before the measure: not counted
        offset = log_offset(server.log_file)
        await _lock_timeout(server.url(names[0]))
        await _deadlock(server.url(names[0]))
        await _lock_timeout(server.url(names[1]))
        assert reruns_in_log(server.log_file, offset, names[0]) == Reruns(1, 1)
        assert reruns_in_log(server.log_file, offset, names[1]) == Reruns(1, 0)
        assert reruns_in_log(server.log_file, 0, names[1]) == Reruns(2, 0)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(server.stop)
        shutil.rmtree(above, ignore_errors=True)
