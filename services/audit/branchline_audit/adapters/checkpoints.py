"""Stored checkpoints (table ``audit_checkpoints``, insert-only like the ledger)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

from branchline_audit.adapters.altered import WRITTEN_TIME
from branchline_audit.application.ports import NoteSigner
from branchline_audit.domain.merkle import EMPTY_ROOT
from branchline_audit.domain.verification import RefusalHint, StoredCheckpoint

log = logging.getLogger(__name__)

CHECKPOINT_LOCK_KEY = 0x636B7074  # "ckpt"
_APPEND_TIME = (
    f"CASE WHEN {WRITTEN_TIME.format('appended_at')} THEN appended_at "
    "ELSE '0001-01-01 00:00:00+00' END"
)
"""An entry's append time, one no append writes as long past (:meth:`unsigned_since`)."""
_HINT_REFUSED = (asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)
"""What a refusal hint's read or write may meet and go on without (a role not granted the
table by an operator's grants, a read-only server): the refusal halves, as without a hint."""


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(
        tree_size=row["tree_size"], root_hash=bytes(row["root_hash"]), note=row["note"]
    )


class PostgresCheckpoints:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def latest(self) -> StoredCheckpoint | None:
        row = await self._pool.fetchrow(
            "SELECT tree_size, root_hash, note FROM audit_checkpoints "
            "ORDER BY tree_size DESC LIMIT 1"
        )
        return None if row is None else _checkpoint(row)

    async def at(self, tree_size: int) -> StoredCheckpoint | None:
        row = await self._pool.fetchrow(
            "SELECT tree_size, root_hash, note FROM audit_checkpoints WHERE tree_size = $1",
            tree_size,
        )
        return None if row is None else _checkpoint(row)

    async def all(self) -> list[StoredCheckpoint]:
        rows = await self._pool.fetch(
            "SELECT tree_size, root_hash, note FROM audit_checkpoints ORDER BY tree_size"
        )
        return [_checkpoint(r) for r in rows]

    async def sizes_below(self, tree_size: int) -> list[int]:
        """The sizes of the non-empty checkpoints below ``tree_size``, ascending: only the
        sizes, which is all a refusal's halving needs (not every note, #12)."""
        rows = await self._pool.fetch(
            "SELECT tree_size FROM audit_checkpoints WHERE tree_size > 0 AND tree_size < $1 "
            "ORDER BY tree_size",
            tree_size,
        )
        return [int(r["tree_size"]) for r in rows]

    async def from_to(self, low: int, high: int) -> list[StoredCheckpoint]:
        """The non-empty checkpoints from size ``low`` to ``high`` (both included), ascending,
        at most three: what a refusal's kept pair needs to know that no checkpoint came or
        went around it, with the notes its proofs open (#12, Rounds 34-35)."""
        rows = await self._pool.fetch(
            "SELECT tree_size, root_hash, note FROM audit_checkpoints "
            "WHERE tree_size > 0 AND tree_size BETWEEN $1 AND $2 ORDER BY tree_size LIMIT 3",
            low,
            high,
        )
        return [_checkpoint(r) for r in rows]

    async def refusal_hint(self, tree_size: int) -> RefusalHint | None:
        """The latest stored hint of where a refusal located a rewrite whose failing
        checkpoint is at or below ``tree_size`` (migration 010, #12, Round 36), or None. Only
        a place to check first: the caller proves it again. A role refused the table (an
        operator's grants without it) reads none (:data:`_HINT_REFUSED`)."""
        try:
            row = await self._pool.fetchrow(
                "SELECT held_size, failing_size FROM audit_refusal_hints "
                "WHERE failing_size <= $1 ORDER BY hint_id DESC LIMIT 1",
                tree_size,
            )
        except _HINT_REFUSED as error:
            log.warning("audit refusal hints not read: %s", error)
            return None
        if row is None:
            return None
        held = row["held_size"]
        return RefusalHint(
            held=None if held is None else int(held), failing=int(row["failing_size"])
        )

    async def record_refusal_hint(
        self, tree_size: int, hint: RefusalHint, *, now: datetime
    ) -> None:
        """Store where a refusal at ``tree_size`` located the rewrite (a pair that moves is a
        new row, never an update). The table's trigger (migration 011, Round 37) deletes, in
        the same statement, the older hints it supersedes (failing at or above its failing
        checkpoint: :meth:`refusal_hint` would never read them again) and all but the 16
        latest left: a cache, bounded. Refused (:data:`_HINT_REFUSED`), nothing is recorded
        (a warning): the hint only saves a later process's time."""
        try:
            await self._pool.execute(
                "INSERT INTO audit_refusal_hints (refused_size, held_size, failing_size, "
                "recorded_at) VALUES ($1, $2, $3, $4)",
                tree_size,
                hint.held,
                hint.failing,
                now,
            )
        except _HINT_REFUSED as error:
            log.warning("audit refusal hint not recorded: %s", error)

    async def unsigned_since(self) -> tuple[int, int, datetime | None]:
        """``(latest checkpoint size, ledger size, appended_at of the first unsigned entry)``;
        an append time no append writes (altered behind the ledger's back) counts as long past,
        so the entries are signed at once (a checkpoint signs their hashes, which that column
        does not change) and the checkpointer goes on (#12)."""
        row = await self._pool.fetchrow(
            f"""
            WITH latest AS (SELECT coalesce(max(tree_size), 0) AS size FROM audit_checkpoints)
            SELECT latest.size AS signed,
                   (SELECT coalesce(max(position), 0) FROM audit_ledger) AS size,
                   (SELECT {_APPEND_TIME} FROM audit_ledger WHERE position = latest.size + 1)
                       AS first_unsigned
            FROM latest
            """  # noqa: S608 - a fixed condition
        )
        assert row is not None
        return int(row["signed"]), int(row["size"]), row["first_unsigned"]

    async def create(
        self,
        sign: NoteSigner,
        range_root: Callable[[Any, int], Any],
        *,
        now: datetime,
    ) -> StoredCheckpoint:
        """Sign and store a checkpoint at the ledger's current size (or return the one there).

        ``range_root(conn, size)`` is awaited for the root over ``size`` leaves.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CHECKPOINT_LOCK_KEY)
            size = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM audit_ledger"))
            existing = await conn.fetchrow(
                "SELECT tree_size, root_hash, note FROM audit_checkpoints WHERE tree_size = $1",
                size,
            )
            if existing is not None:
                return _checkpoint(existing)
            root: bytes = EMPTY_ROOT if size == 0 else await range_root(conn, size)
            note = sign(size, root)
            await conn.execute(
                "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) "
                "VALUES ($1, $2, $3, $4)",
                size,
                root,
                note,
                now,
            )
            return StoredCheckpoint(tree_size=size, root_hash=root, note=note)
