"""The PostgreSQL side of the read use cases' port (``application/ports.py`` ``PageReads``):
the SQL of :mod:`.queries` and :mod:`.service_loop_queries` on a pool."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from branchline_followup.adapters import queries
from branchline_followup.adapters import service_loop_queries as loop
from branchline_shared.postgres.pool import PgPool


class PostgresPageReads:
    def __init__(self, pool: PgPool) -> None:
        self._pool = pool

    async def quality_records(
        self, *, branch_id: str | None, rm_id: str | None, start: datetime, end: datetime
    ) -> queries.QualityRecords:
        return await queries.quality_records(
            self._pool, branch_id=branch_id, rm_id=rm_id, start=start, end=end
        )

    async def improvement_records(
        self, *, branch_id: str | None, rm_id: str | None, start: datetime, end: datetime
    ) -> loop.ImprovementRecords:
        return await loop.improvement_records(
            self._pool, branch_id=branch_id, rm_id=rm_id, start=start, end=end
        )

    async def statistics_records(
        self, *, branch_ids: list[str] | None, start: datetime, end: datetime
    ) -> list[dict[str, Any]]:
        return await loop.statistics_records(
            self._pool, branch_ids=branch_ids, start=start, end=end
        )

    async def client_service_loop(self, client_id: str) -> dict[str, Any]:
        return await loop.client_service_loop(self._pool, client_id)
