"""The PostgreSQL ledger: appends under one lock so positions are gap-free and each entry's
``prev_hash`` is the hash of the entry before it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from branchline_audit.domain.canonical import (
    GENESIS_PREV_HASH,
    ChainEntry,
    entry_hash,
    format_appended_at,
)

LEDGER_LOCK_KEY = 0x6C6564676572  # "ledger"


@dataclass(frozen=True)
class LedgerFilters:
    client_id: str | None = None
    actor_id: str | None = None
    branch_id: str | None = None
    type: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None

    def where(self, first_param: int) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("client_id", self.client_id),
            ("actor_id", self.actor_id),
            ("branch_id", self.branch_id),
            ("event_type", self.type),
        ):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${first_param + len(params) - 1}")
        if self.occurred_from is not None:
            params.append(self.occurred_from)
            clauses.append(f"occurred_at >= ${first_param + len(params) - 1}")
        if self.occurred_to is not None:
            params.append(self.occurred_to)
            clauses.append(f"occurred_at < ${first_param + len(params) - 1}")
        return (" AND ".join(clauses) or "true"), params


def _entry(row: asyncpg.Record) -> ChainEntry:
    return ChainEntry(
        position=row["position"],
        event=row["event"],
        appended_at=format_appended_at(row["appended_at"]),
        prev_hash=bytes(row["prev_hash"]),
        hash=bytes(row["hash"]),
    )


class PostgresLedger:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def append(self, events: Sequence[dict[str, Any]], *, now: datetime) -> int:
        """Append events (envelope dicts) not yet in the ledger; returns how many were new.

        Duplicates (by event id, within the batch or already stored) are skipped: Kafka may
        deliver an event more than once, the ledger holds it once.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
            ids = [e["event_id"] for e in events]
            stored = {
                str(r["event_id"])
                for r in await conn.fetch(
                    "SELECT event_id FROM audit_ledger WHERE event_id = ANY($1::uuid[])", ids
                )
            }
            head = await conn.fetchrow(
                "SELECT position, hash FROM audit_ledger ORDER BY position DESC LIMIT 1"
            )
            position = head["position"] if head else 0
            prev = bytes(head["hash"]) if head else GENESIS_PREV_HASH
            appended_at = format_appended_at(now)
            rows: list[tuple[Any, ...]] = []
            for event in events:
                if event["event_id"] in stored:
                    continue
                stored.add(event["event_id"])
                position += 1
                digest = entry_hash(prev, position, event, appended_at)
                actor = event.get("actor") or {}
                rows.append(
                    (
                        position,
                        event["event_id"],
                        event,
                        event["type"],
                        event.get("client_id"),
                        actor.get("id"),
                        event.get("branch_id"),
                        datetime.fromisoformat(event["occurred_at"])
                        if event.get("occurred_at")
                        else None,
                        now,
                        prev,
                        digest,
                    )
                )
                prev = digest
            if rows:
                columns = list(zip(*rows, strict=True))
                await conn.execute(
                    """
                    INSERT INTO audit_ledger (position, event_id, event, event_type, client_id,
                                              actor_id, branch_id, occurred_at, appended_at,
                                              prev_hash, hash)
                    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::jsonb[], $4::text[],
                                         $5::text[], $6::text[], $7::text[],
                                         $8::timestamptz[], $9::timestamptz[], $10::bytea[],
                                         $11::bytea[])
                    """,
                    *[list(c) for c in columns],
                )
            return len(rows)

    async def entries(
        self, filters: LedgerFilters, *, after_position: int, limit: int
    ) -> list[ChainEntry]:
        where, params = filters.where(3)
        rows = await self._pool.fetch(
            f"SELECT position, event, appended_at, prev_hash, hash FROM audit_ledger "  # noqa: S608 - clauses are built from fixed column names
            f"WHERE position > $1 AND {where} ORDER BY position LIMIT $2",
            after_position,
            limit,
            *params,
        )
        return [_entry(r) for r in rows]

    async def scan(self, *, page_size: int = 2000) -> AsyncIterator[ChainEntry]:
        """Every entry in ledger order, page by page (constant memory)."""
        after = 0
        while True:
            page = await self.entries(LedgerFilters(), after_position=after, limit=page_size)
            for entry in page:
                yield entry
            if len(page) < page_size:
                return
            after = page[-1].position

    async def size(self) -> int:
        return int(await self._pool.fetchval("SELECT coalesce(max(position), 0) FROM audit_ledger"))
