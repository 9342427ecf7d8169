"""What the tamper tests share (tests/integration/audit/tamper/, ADR-0006, issue 6 "Tamper"):
a 1,000-entry ledger, the three ways it is verified, tampers made behind the ledger's back and
undone. Split from one module (#12) so that xdist's loadfile scheduling can spread them."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import asyncpg

from branchline_audit.adapters.segments import ProcessSegmentVerifiers
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.context import AuditContext
from branchline_audit.application.verifying import verify_ledger, verify_ledger_apart
from branchline_audit.domain.canonical import (
    stored_event,
)
from branchline_audit.domain.verification import LedgerVerdict
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    behind_the_ledgers_back,
    random_events,
    superuser,
)

SIZE = 1000
TRIALS = 90


SEGMENTS = 3
"""With the ``segments`` path: 1..333, 334..666, 667.. (a tamper at 333, 334, 666 or 667 is
at a boundary)."""
VERIFY_PATH = {"path": "one pass"}


async def verify(settings: BranchlineSettings, audit: AuditContext) -> LedgerVerdict:
    if VERIFY_PATH["path"] == "one pass":
        return await verify_by(audit, None)
    if VERIFY_PATH["path"] == "apart":
        return await verify_ledger_apart(
            audit.ledger,
            audit.checkpoints,
            verifier=audit.signer.verifier(),
            origin=audit.origin,
            segments=segment_verifiers(settings),
        )
    return await verify_by(audit, segment_verifiers(settings))


def segment_verifiers(settings: BranchlineSettings) -> ProcessSegmentVerifiers:
    """Segment verifiers of every entry range, in processes of their own (#12)."""
    return ProcessSegmentVerifiers(
        settings.audit_database_url,
        settings.audit_db_writer_role,
        processes=SEGMENTS,
        min_entries=1,
    )


async def verify_by(audit: AuditContext, segments: ProcessSegmentVerifiers | None) -> LedgerVerdict:
    return await verify_ledger(
        audit.ledger,
        audit.checkpoints,
        verifier=audit.signer.verifier(),
        origin=audit.origin,
        segments=segments,
    )


async def build(settings: BranchlineSettings) -> None:
    async with audit_context(settings) as audit:
        events = random_events(SIZE, random.Random(6))
        await append_in_batches(audit.ledger, events[:500], now=T0)
        await checkpoint_now(audit)
        await append_in_batches(audit.ledger, events[500:], now=T0 + timedelta(seconds=1))
        await checkpoint_now(audit)
    # Positions 1..500 as entries appended before migration 006 hold them (the event in its
    # column too); 501..1000 as they are appended now (the event only inside the bytes, #12):
    # every test below meets both.
    await behind_the_ledgers_back(settings, FILL_EVENT_COLUMN + " WHERE position <= 500")


FILL_EVENT_COLUMN = "UPDATE audit_ledger SET event = audit_entry_event(canonical, position)"
EVENT = "coalesce(event, audit_entry_event(canonical, position))"
"""The event as stored: its column, or (since migration 006) inside the canonical bytes."""


def event_of(row: asyncpg.Record) -> Any:
    if row["event"] is not None:
        return json.loads(row["event"])
    return stored_event(bytes(row["canonical"]), row["position"])


Built = tuple[BranchlineSettings, AuditContext]


PRISTINE = ("audit_ledger", "audit_checkpoints")
"""The tables the shared ledger's tests alter, kept as built (``pristine_<table>``)."""


async def keep_pristine(settings: BranchlineSettings) -> None:
    async with superuser(settings) as conn:
        for table in PRISTINE:
            await conn.execute(f"CREATE TABLE pristine_{table} AS SELECT * FROM {table}")


async def restore_pristine(settings: BranchlineSettings) -> None:
    """Put the shared ledger back as built, whatever was done to it, in one transaction."""
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        for table in PRISTINE:
            await conn.execute(f"DELETE FROM {table}")
            await conn.execute(f"INSERT INTO {table} SELECT * FROM pristine_{table}")


def flip_char(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    replacement = "x" if text[i] != "x" else "y"
    return text[:i] + replacement + text[i + 1 :]


def alter_json_string(event: Any, rng: random.Random) -> Any:
    """Change one character of one string somewhere in the event."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, str) and value:
                paths.append((node, key))
            elif isinstance(value, dict | list):
                walk(value)

    walk(event)
    node, key = rng.choice(paths)
    node[key] = flip_char(node[key], rng)
    return event


Tamper = Callable[[asyncpg.Record, random.Random], tuple[str, list[Any]]]


def by_column(column: str) -> Tamper:
    def tamper(row: asyncpg.Record, rng: random.Random) -> tuple[str, list[Any]]:
        value = row[column]
        if column == "event":
            # Where the entry stores its event only in its bytes, a column is added that
            # differs from them.
            new: Any = json.dumps(alter_json_string(event_of(row), rng))
            return "UPDATE audit_ledger SET event = $1::jsonb WHERE position = $2", [new]
        if column in ("prev_hash", "hash", "canonical"):
            raw = bytearray(value)
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            new = bytes(raw)
        elif column in ("occurred_at", "appended_at"):
            new = value + timedelta(microseconds=1)
        elif column == "pruned_at":
            new = T0
        elif column == "event_id":
            text = str(value)
            i = rng.choice([i for i, ch in enumerate(text) if ch != "-"])
            new = text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1 :]
            return f"UPDATE audit_ledger SET {column} = $1::uuid WHERE position = $2", [new]
        elif column == "position":
            new = value + 10_000_000
        else:
            new = flip_char(value, rng)
        return f"UPDATE audit_ledger SET {column} = $1 WHERE position = $2", [new]

    return tamper


COLUMNS = (
    "position",
    "event_id",
    "event",
    "event_type",
    "client_id",
    "actor_id",
    "branch_id",
    "occurred_at",
    "appended_at",
    "prev_hash",
    "hash",
    "pruned_at",
    "canonical",
)


async def row_at(settings: BranchlineSettings, position: int) -> asyncpg.Record:
    async with superuser(settings) as conn:
        row = await conn.fetchrow("SELECT * FROM audit_ledger WHERE position = $1", position)
    assert row is not None
    return row


async def restore(settings: BranchlineSettings, *rows: asyncpg.Record) -> None:
    """Put the rows back exactly, in one transaction: whatever holds their positions (or a
    position moved away, or one of their event ids) is deleted, then they are re-inserted."""
    positions = [r["position"] for r in rows]
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "DELETE FROM audit_ledger WHERE position = ANY($1::bigint[]) "
            "OR position = ANY($2::bigint[]) OR event_id = ANY($3::uuid[])",
            positions,
            [p + 10_000_000 for p in positions],
            [r["event_id"] for r in rows],
        )
        for row in rows:
            columns = list(row.keys())
            placeholders = ", ".join(f"${i + 1}" for i in range(len(columns)))
            await conn.execute(
                f"INSERT INTO audit_ledger ({', '.join(columns)}) VALUES ({placeholders})",
                *[row[c] for c in columns],
            )


@contextlib.asynccontextmanager
async def tampered(settings: BranchlineSettings, *rows: asyncpg.Record) -> AsyncIterator[None]:
    """Tampers with ``rows``' entries made inside are undone however the block ends (an error,
    a failed assert, a cancellation or a timeout raised in the test's coroutine), the tamper's
    own statements included: the rows are put back in a ``finally``."""
    try:
        yield
    finally:
        await restore(settings, *rows)
