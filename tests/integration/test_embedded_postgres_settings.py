"""The embedded PostgreSQL's start settings (#12)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import asyncpg
import pytest

from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.postgres import MAX_WAL_SIZE, SHARED_BUFFERS, EmbeddedPostgres
from tests.support.stack import env_override, runtime_dir

pytestmark = pytest.mark.integration


async def test_checkpoints_are_not_requested_every_gigabyte_of_wal(postgres_admin_url: str) -> None:
    """~15 MB/s of WAL at ~1,000 events/s: with the default 1GB a checkpoint every ~35 s, each
    followed by full-page writes (docs/performance.md, Round 10)."""
    if env_override("BRANCHLINE_TEST_DATABASE_URL"):
        pytest.skip("the suite runs against a PostgreSQL it did not start")
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        assert await conn.fetchval("SHOW max_wal_size") == MAX_WAL_SIZE == "4GB"
    finally:
        await conn.close()


async def test_the_page_cache_holds_the_steady_load_s_indexes(postgres_admin_url: str) -> None:
    """At the default 128 MB the benchmark's backends evicted 22,000-71,000 pages and read up to
    133,000 back per 20 s of steady load by the third repetition (docs/performance.md, Round
    13)."""
    if env_override("BRANCHLINE_TEST_DATABASE_URL"):
        pytest.skip("the suite runs against a PostgreSQL it did not start")
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        assert await conn.fetchval("SHOW shared_buffers") == SHARED_BUFFERS == "1GB"
    finally:
        await conn.close()


def test_a_server_stops_after_a_folder_above_it_was_made_private(tmp_path: Path) -> None:
    """Run as root, the server runs as its own system user; pytest makes its temporary root
    private again when another session starts (0700), and `pg_ctl stop`, run as that user,
    then failed ("could not access directory"), leaving the server running."""
    above = Path(tempfile.mkdtemp(prefix="pg-stop-", dir=runtime_dir()))
    server = EmbeddedPostgres(above / "server", free_port())
    server.start()
    try:
        assert server.is_running()
        above.chmod(0o700)
        server.stop()
        assert not server.is_running()
    finally:
        if server.is_running():
            server.stop(mode="immediate")
        shutil.rmtree(above, ignore_errors=True)
