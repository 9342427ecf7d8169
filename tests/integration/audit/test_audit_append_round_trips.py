"""The ledger's append in five round trips (#12): ``BEGIN`` with the lock, the read before the
COPY, the COPY, the new Merkle nodes and source positions as one statement of bound values
(no value in its text, house rule, Round 29; before, they went with ``COMMIT`` in one simple
query, their digits and hex pasted in the text), ``COMMIT``; no reset query when its
connection returns to the pool. Still one transaction: a failure at any of them leaves
nothing."""

from __future__ import annotations

import collections
import random
import uuid
from typing import Any

import asyncpg
import pytest

from branchline_audit.application.context import AuditContext
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.domain.subtrees import build_subtrees, subtree_work
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    append_in_batches,
    audit_context,
    quick_settings,
    random_events,
    superuser,
)


class Sent(collections.Counter[str]):
    """Statements sent, by their first words (one round trip each), and their texts."""

    texts: list[str]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Every statement the pools' connections send, by its first words (one round trip each)."""
    counter = Sent()
    counter.texts = []
    for name in ("execute", "fetch", "fetchrow", "fetchval", "copy_records_to_table"):
        original = getattr(asyncpg.Connection, name)

        def counted(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            counter[" ".join(str(args[0]).split()[:3])] += 1
            counter.texts.append(str(args[0]))
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, name, counted)
    return counter


async def _stored_nodes(audit: AuditContext) -> dict[tuple[int, int], bytes]:
    rows = await audit.ledger.pool.fetch("SELECT level, node_index, hash FROM audit_merkle_nodes")
    return {(r["level"], r["node_index"]): bytes(r["hash"]) for r in rows}


async def _recomputed_nodes(audit: AuditContext) -> dict[tuple[int, int], bytes]:
    hashes = [e.entry.hash async for e in audit.ledger.scan_stored()]
    nodes = build_subtrees(subtree_work(len(hashes), {}), dict(enumerate(hashes)), {})
    return {(level, index): value for level, index, value in nodes}


async def _verified(audit: AuditContext, entries: int) -> None:
    verdict = await verify_ledger(
        audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
    )
    assert verdict.ok, verdict
    assert verdict.entries == entries
    assert await _stored_nodes(audit) == await _recomputed_nodes(audit)


async def test_an_append_is_five_round_trips_and_its_release_none(
    settings: BranchlineSettings, sent: Sent
) -> None:
    rng = random.Random(4)
    async with audit_context(quick_settings(settings)) as audit:
        first = random_events(3, rng)
        await audit.ledger.append(first, now=T0)  # the pool's connection opened
        sent.clear()
        assert await audit.ledger.append(random_events(40, rng, start=3), now=T0) == 40
        assert sum(sent.values()) == 5, sent
        assert sent["BEGIN; SELECT pg_advisory_xact_lock(119182731994482)"] == 1
        assert sent["audit_ledger"] == 1
        assert sent["WITH nodes AS"] == 1  # 43 entries: two new nodes
        assert sent["COMMIT"] == 1
        assert not any("RESET" in s or "unlock_all" in s for s in sent), sent
        # Duplicates only: BEGIN with the lock, the read, COMMIT.
        sent.clear()
        assert await audit.ledger.append(first, now=T0) == 0
        assert sum(sent.values()) == 3, sent
        await _verified(audit, 43)


async def test_a_failed_commit_statement_leaves_nothing_and_the_connection_serves_on(
    settings: BranchlineSettings,
) -> None:
    """The Merkle nodes go before ``COMMIT``, in the transaction: when their insert fails (the
    writer's grant taken away meanwhile), neither the entries, their source positions nor
    any node is kept, and every connection of the pool appends next."""
    s = quick_settings(settings)
    rng = random.Random(5)
    async with audit_context(s) as audit:
        await append_in_batches(audit.ledger, random_events(10, rng), now=T0)
        batch = random_events(20, rng, start=10)
        positions = {
            uuid.UUID(e["event_id"]): SourcePosition("intake", 100 + i) for i, e in enumerate(batch)
        }
        writer = s.audit_db_writer_role
        async with superuser(s) as conn:
            await conn.execute(f"REVOKE INSERT ON audit_merkle_nodes FROM {writer}")
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await audit.ledger.append(batch, now=T0, positions=positions)
        finally:
            async with superuser(s) as conn:
                await conn.execute(f"GRANT INSERT ON audit_merkle_nodes TO {writer}")
        async with superuser(s) as conn:
            assert await conn.fetchval("SELECT count(*) FROM audit_ledger") == 10
            assert await conn.fetchval("SELECT count(*) FROM audit_source_positions") == 0
            assert await conn.fetchval("SELECT count(*) FROM audit_merkle_nodes") == 0
        # The same batch again, and every connection of the pool after it.
        assert await audit.ledger.append(batch, now=T0, positions=positions) == 20
        for i in range(4):
            more = random_events(3, rng, start=100 + 3 * i)
            assert await audit.ledger.append(more, now=T0) == 3
        async with superuser(s) as conn:
            stored = await conn.fetch(
                "SELECT source, global_position, event_id, position FROM audit_source_positions "
                "ORDER BY position"
            )
        assert [tuple(r) for r in stored] == [
            ("intake", 100 + i, uuid.UUID(e["event_id"]), 11 + i) for i, e in enumerate(batch)
        ]
        await _verified(audit, 42)


async def test_a_released_connection_keeps_its_role_and_no_open_transaction(
    settings: BranchlineSettings,
) -> None:
    """Without the reset query a pool's connection is still the writer, and a transaction
    left open (an append's caller cancelled half-way) is rolled back on release."""
    s = quick_settings(settings)
    async with audit_context(s) as audit:
        pool = audit.ledger.pool
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute(
                "INSERT INTO audit_restricted_clients (client_id, state, since, source_event_id) "
                "VALUES ('C-9', 'restricted', now(), gen_random_uuid())"
            )
        for _ in range(4):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT current_user") == s.audit_db_writer_role
                assert await conn.fetchval("SELECT count(*) FROM audit_restricted_clients") == 0
                assert not conn.is_in_transaction()


async def test_source_positions_go_bound_as_one_bound_statement_kept_them(
    settings: BranchlineSettings, sent: Sent
) -> None:
    """The consumer's append (events of two stores, one store position claimed twice in the
    batch, one event already stored) records the same rows as the bound ``unnest`` did:
    each new entry's position once, the first claim of a store position kept; five round
    trips, and no statement's text carries a value of the append (an event id, a store's
    name, a position, a node's hash: bound, house rule 5, Round 29; before, the nodes and
    positions were pasted into the text as digits and hex)."""
    rng = random.Random(6)
    async with audit_context(quick_settings(settings)) as audit:
        old = random_events(5, rng)
        await audit.ledger.append(
            old, now=T0, positions={uuid.UUID(old[0]["event_id"]): SourcePosition("intake", 1)}
        )
        batch = [old[0], *random_events(30, rng, start=5)]
        stores = ["intake", "followup", "it's \\ é"]
        at = {
            uuid.UUID(e["event_id"]): SourcePosition(stores[i % 3], 10 + i // 3)
            for i, e in enumerate(batch)
        }
        claimed_twice = uuid.UUID(batch[7]["event_id"])
        at[claimed_twice] = at[uuid.UUID(batch[4]["event_id"])]  # intake 11, claimed by 4 first
        sent.clear()
        assert await audit.ledger.append(batch, now=T0, positions=at) == 30
        round_trips, texts = sum(sent.values()), list(sent.texts)
        nodes = await _stored_nodes(audit)
        values = [
            *(uuid.UUID(e["event_id"]).hex for e in batch),
            *(store.encode().hex() for store in stores),
            *(bytes(h).hex() for h in nodes.values()),
            "intake",
            "followup",
        ]
        assert nodes, "35 entries complete nodes"
        for text in texts:
            assert not [v for v in values if v in text.replace("-", "")], text
        assert round_trips == 5, sent
        async with superuser(settings) as conn:
            stored = await conn.fetch(
                "SELECT source, global_position, event_id, position FROM audit_source_positions "
                "ORDER BY position"
            )
        expected = [("intake", 1, uuid.UUID(old[0]["event_id"]), 1)] + [
            (
                at[uuid.UUID(e["event_id"])].source,
                at[uuid.UUID(e["event_id"])].global_position,
                uuid.UUID(e["event_id"]),
                5 + i,
            )
            for i, e in enumerate(batch[1:], start=1)
            if uuid.UUID(e["event_id"]) != claimed_twice
        ]
        assert [tuple(r) for r in stored] == expected
        await _verified(audit, 35)
