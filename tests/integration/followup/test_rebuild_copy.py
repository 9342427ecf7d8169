"""The rebuild's applied record, timeline and journal rows written by COPY (#12 round 21): the
same read models as the ``INSERT … ON CONFLICT DO NOTHING`` they replace, and a copy that
collides (a key already there, or twice in the rows) keeps what that insert kept."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from branchline_followup.adapters import rebuild_target
from branchline_followup.adapters.rebuild_target import (
    APPLIED_COPY,
    JOURNAL_COPY,
    binary_jsonb,
    copy_rows,
)
from tests.integration.followup.harness import followup_db, snapshot
from tests.integration.followup.test_rebuild_apply import generated, run_rebuild
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COPIED = {"fu_applied_events", "fu_client_timeline", "fu_client_events"}


async def test_the_rebuild_copies_its_applied_timeline_and_journal_rows_with_the_same_result(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(infra, tmp_path)
    events = generated()
    async with followup_db(settings) as db:
        copied: list[str] = []
        real_copy = asyncpg.Connection.copy_records_to_table

        async def copy_records_to_table(self: Any, table: str, **kwargs: Any) -> Any:
            copied.append(table)
            return await real_copy(self, table, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", copy_records_to_table)
        await run_rebuild(settings, events, store=events)
        by_copy = await snapshot(db)
        monkeypatch.undo()
        assert set(copied) == COPIED

        async def inserted(conn: Any, copy: Any, rows: list[tuple[Any, ...]]) -> None:
            await conn.executemany(copy.insert, rows)  # the statements they replace

        monkeypatch.setattr(rebuild_target, "copy_rows", inserted)
        await run_rebuild(settings, events, store=events)
        assert await snapshot(db) == by_copy
    assert all(by_copy[t] for t in COPIED)


async def test_a_copy_that_collides_keeps_what_the_insert_kept(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path)
    first, second = uuid.uuid4(), uuid.uuid4()
    envelope = {"event_id": str(first), "amount": "12.50", "nested": {"ok": True}}
    async with followup_db(settings):
        conn = await asyncpg.connect(settings.followup_database_url)
        try:
            await binary_jsonb(conn)
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute("SET LOCAL search_path TO fu_read")
                await copy_rows(conn, APPLIED_COPY, [(first, "a.first", "intake", 1)])
                # one already there, one twice: the first of each key kept, as ON CONFLICT did
                await copy_rows(
                    conn,
                    APPLIED_COPY,
                    [
                        (first, "a.again", "intake", 1),
                        (second, "b.first", "intake", 2),
                        (second, "b.again", "intake", 2),
                    ],
                )
                rows = await conn.fetch(
                    "SELECT event_id, type FROM fu_applied_events WHERE event_id = ANY($1)",
                    [first, second],
                )
                assert sorted((r[0], r[1]) for r in rows) == sorted(
                    [(first, "a.first"), (second, "b.first")]
                )
                journal = (first, "C-1", "intake", 1, 1_700_000_000_000, envelope)
                await copy_rows(conn, JOURNAL_COPY, [journal])
                text = await conn.fetchval(
                    "SELECT envelope::text FROM fu_client_events WHERE event_id = $1", first
                )
                assert orjson.loads(text) == envelope
                assert (
                    await conn.fetchval(
                        "SELECT envelope FROM fu_client_events WHERE event_id = $1", first
                    )
                    == envelope
                )
            finally:
                await tx.rollback()
        finally:
            await conn.close()
