"""``branchline rebuild followup --processes N`` (#12): PostgreSQL places a client where Python
does (a re-rating keeps to its process's holders), and a process that fails fails the rebuild
whole: its schema is dropped, nothing is swapped in. (The read models it builds equal the live
ones: ``test_followup_order.py``, ``test_a_history_rebuilt_in_several_processes_...``.)"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from branchline_followup.adapters.partitioned_rebuild import PartitionFailed, ProcessPartitions
from branchline_followup.adapters.pg_schemas import with_search_path
from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.rebuild import rebuild_read_models
from branchline_followup.application.rebuild_routes import partition_of, partition_predicate
from branchline_followup.bootstrap import prepare_database
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import snapshot
from tests.integration.followup.test_followup_order import (
    SourceOrder,
    _context,
    apply_all,
    history,
)
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(infra, tmp_path, followup_supervisors={"rm-7": "sup-1"})


async def test_postgresql_places_every_client_where_python_does(
    settings: BranchlineSettings,
) -> None:
    clients = [f"C-{n:05d}" for n in range(300)] + ["#staff/rm-1", "客户-7", "C-ß"]
    await prepare_database(settings)
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        for parts in (2, 3, 7):
            placed = await conn.fetch(
                "SELECT c, array_agg(p ORDER BY p) FROM unnest($1::text[]) AS c, "
                "generate_series(0, $2 - 1) AS p WHERE "
                + partition_predicate("c", "$2", "p")
                + " GROUP BY c",
                clients,
                parts,
            )
            assert {r[0]: r[1] for r in placed} == {c: [partition_of(c, parts)] for c in clients}
    finally:
        await conn.close()


async def test_a_process_that_fails_fails_the_rebuild_and_drops_its_schema(
    settings: BranchlineSettings,
) -> None:
    events = history(4, seed=11)
    async with _context(settings) as context:
        await apply_all(context, events)
    public = with_search_path(settings.followup_database_url, "public")
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        live = await snapshot(conn)
        admin = await open_pool(public, min_size=1, max_size=2)
        # the processes cannot reach the database (the rebuilding process can)
        unreachable = settings.model_copy(
            update={"followup_database_url": "postgresql://nobody@127.0.0.1:9/nothing"}
        )
        try:
            with pytest.raises(PartitionFailed, match="rebuild process"):
                await rebuild_read_models(
                    target=PostgresRebuildTarget(admin, settings.followup_database_url),
                    source=SourceOrder(events, public),
                    policy=policy_from_settings(settings),
                    partitioned=ProcessPartitions(unreachable, 2, 50),
                )
        finally:
            await admin.close()
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'fu_rebuild_%'"
        )
        assert left == 0  # nothing half-built is left, nothing was swapped in
        assert await snapshot(conn) == live
    finally:
        await conn.close()
