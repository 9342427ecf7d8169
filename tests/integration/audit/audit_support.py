"""Helpers of the audit integration tests: ledgers built by direct batch appends (fast),
superuser access that bypasses the trigger, events in the envelope of the wire."""

from __future__ import annotations

import contextlib
import hashlib
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx

from branchline_audit.adapters.database import open_role_pool, prepare_database
from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.application.context import AuditContext
from branchline_audit.bootstrap import audit_context as built_context
from branchline_shared.clock import FixedClock
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.stack import Infra, make_settings
from tests.support.templates import copy_database

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
TYPES = (
    "visit.arrived",
    "visit.needs_confirmed",
    "client.personal_data_recorded",
    "rule.violation_refused",
    "followup.task_created",
    "complaint.received",
)


def event(
    n: int,
    *,
    event_type: str = "visit.arrived",
    client_id: str = "C-1",
    branch_id: str = "BR-001",
    actor_id: str = "staff-17",
    data: dict[str, Any] | None = None,
    event_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """An envelope as the consumer stores it (RecordedEvent.model_dump(mode="json"))."""
    occurred = (T0 + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
    if data is None:
        if event_type == "client.personal_data_recorded":
            data = {"fields": {"name": f"Wang {n}", "phone": "+86 138 0000 0000"}}
        elif event_type == "complaint.received":
            data = {"complaint_id": f"K-{n}", "severity": "general", "summary": "my phone is X"}
        else:
            data = {"visit_id": f"V-{n}", "note": f"n{n}"}
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "type": event_type,
        "schema_version": 1,
        "occurred_at": occurred,
        "recorded_at": occurred,
        "source": "followup" if event_type.startswith("followup.") else "intake",
        "actor": {"id": actor_id, "role": "teller"},
        "client_id": client_id,
        "branch_id": branch_id,
        "channel": "walk_in",
        "stream_id": f"client-{client_id}",
        "stream_version": n,
        "correlation_id": None,
        "causation_id": None,
        "data": data,
    }


def lifecycle_event(
    n: int, event_type: str, *, client_id: str, at: datetime, branch_id: str = "BR-001"
) -> dict[str, Any]:
    """``client.account_closed`` / ``client.account_reopened`` that occurred at ``at``."""
    data = {"reason": "relocation" if event_type.endswith("closed") else "client_request"}
    envelope = event(n, event_type=event_type, client_id=client_id, branch_id=branch_id, data=data)
    moment = at.isoformat().replace("+00:00", "Z")
    return {**envelope, "occurred_at": moment, "recorded_at": moment}


def random_events(
    count: int,
    rng: random.Random,
    start: int = 0,
    *,
    types: Sequence[str] = TYPES,
    clients: int = 20,
    branches: int = 3,
    actors: int = 5,
) -> list[dict[str, Any]]:
    """``count`` events from position ``start``, of ``types`` and as many clients, branches and
    actors as given (few by default: a filter's value is common)."""
    return [
        event(
            start + i,
            event_type=rng.choice(types),
            client_id=f"C-{rng.randrange(clients)}",
            branch_id=f"BR-{rng.randrange(branches)}",
            actor_id=f"staff-{rng.randrange(actors)}",
        )
        for i in range(count)
    ]


def quick_settings(settings: BranchlineSettings, **overrides: Any) -> BranchlineSettings:
    values = {"audit_checkpoint_every_entries": 10**9, "audit_checkpoint_interval_s": 3600.0}
    values.update(overrides)
    return settings.model_copy(update=values)


@contextlib.asynccontextmanager
async def audit_context(
    settings: BranchlineSettings, *, clock: FixedClock | None = None, role: str | None = None
) -> AsyncIterator[AuditContext]:
    """A prepared audit database and the context the API would build (writer role)."""
    async with audit_context_on(settings, clock=clock, role=role) as (audit, _):
        yield audit


@contextlib.asynccontextmanager
async def audit_context_on(
    settings: BranchlineSettings,
    *,
    clock: FixedClock | None = None,
    role: str | None = None,
    connections: int = 4,
) -> AsyncIterator[tuple[AuditContext, asyncpg.Pool[Any]]]:
    """:func:`audit_context` and its pool of at most ``connections``, for a test that must
    hold one of them."""
    await prepare_database(settings)
    pool = await open_role_pool(
        settings, role or settings.audit_db_writer_role, max_size=connections
    )
    try:
        yield built_context(settings, pool, clock or FixedClock(T0)), pool
    finally:
        await pool.close()


async def append_in_batches(
    ledger: PostgresLedger, events: Sequence[dict[str, Any]], *, now: datetime, batch: int = 500
) -> None:
    for i in range(0, len(events), batch):
        await ledger.append(list(events[i : i + batch]), now=now)


@contextlib.asynccontextmanager
async def superuser(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Connection[Any]]:
    """The login of the test server (a superuser): what an attacker with DBA rights has."""
    conn = await asyncpg.connect(settings.audit_database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def behind_the_ledgers_back(settings: BranchlineSettings, sql: str, *args: Any) -> None:
    """Run ``sql`` as a superuser with triggers off (session_replication_role = replica)."""
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql, *args)


UNWRITTEN_TIMES = ("infinity", "-infinity", "10000-01-01 00:00:00+00", "0001-12-31 23:59:59+00 BC")
"""Times PostgreSQL stores that no append writes (a row altered behind the ledger's back):
asyncpg reads the infinities as naive extremes and refuses the years past 9999."""


VERIFY_ENTRIES = 30_000
"""The verify tests' ledger (conftest's ``verify_ledger``): enough that a verifying process is
seen running before it has finished, about 0.2 s of checking on a quiet machine, so a test's
2 ms look-ups find it on a loaded CI machine too."""


async def filled_ledger(
    infra: Infra, data_dir: Path, events: Sequence[dict[str, Any]], *, analyze: bool = False
) -> str:
    """The name of a prepared audit database holding ``events`` (appended at :data:`T0`;
    ``analyze``: its statistics taken, a copy keeps them), to be copied by
    :func:`copy_ledger`: a module fills it once (a 30,000-entry fill took 1-6 s of each verify
    test's setup, #12). Nothing stays connected to it."""
    s = quick_settings(make_settings(infra, data_dir))
    async with audit_context(s) as audit:
        await append_in_batches(audit.ledger, events, now=T0)
    if analyze:
        async with superuser(s) as conn:
            await conn.execute("ANALYZE audit_ledger")
    return urlsplit(s.audit_database_url).path.lstrip("/")


async def copy_ledger(settings: BranchlineSettings, filled: str) -> None:
    """The test's own audit database, a copy of ``filled`` (its entries and its settings):
    what a test appends or alters no other test sees."""
    await copy_database(settings.audit_database_url, filled)


@dataclass
class AuditorTrail:
    """An audit API served for a test, read as an auditor: by bearer token (``get``) or by the
    console's session cookie (``page``)."""

    client: httpx.AsyncClient
    audit: AuditContext
    settings: BranchlineSettings
    tokens: TokenFactory

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(
            path, params=params, headers=self.tokens.headers(Role.AUDITOR, sub="auditor-1")
        )

    async def page(self, path: str, **params: Any) -> httpx.Response:
        session = {"Cookie": f"bl_session_audit={self.tokens.token(Role.AUDITOR, sub='a-1')}"}
        return await self.client.get(path, params=params, headers=session)


def names_the_entry(response: httpx.Response, position: int, names: str) -> None:
    """A clear refusal of an entry altered behind the ledger's back: 409 problem+json of the
    ledger-integrity type naming the entry, what differs (``names``) and the rule (D-11)."""
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/ledger-integrity"), body
    assert body["rule"] == "D-11", body
    assert f"position {position} was altered" in body["detail"], body
    assert names in body["detail"], body


def positions(response: httpx.Response) -> list[int]:
    """The positions of a page of the trail (200)."""
    assert response.status_code == 200, response.text
    return [e["position"] for e in response.json()["entries"]]


RowRewrite = Callable[[asyncpg.Record], tuple[bytes, str | None]]
"""An entry's new canonical bytes and event column (None where it keeps its event only in its
bytes), from its stored row (``position``, ``event``, ``appended_at``, ``prev_hash``,
``canonical``)."""


async def rechain(settings: BranchlineSettings, position: int, rewrite: RowRewrite) -> None:
    """Every entry from ``position`` on rewritten by ``rewrite``, its hash and the next one's
    link recomputed, as a superuser with the triggers off: each entry then holds by itself and
    every link holds; only the signed checkpoints disagree."""
    async with superuser(settings) as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        rows = await conn.fetch(
            "SELECT position, event, appended_at, prev_hash, canonical FROM audit_ledger "
            "WHERE position >= $1 ORDER BY position",
            position,
        )
        prev = bytes(rows[0]["prev_hash"])
        for row in rows:
            canonical, event = rewrite(row)
            digest = hashlib.sha256(prev + canonical).digest()
            await conn.execute(
                "UPDATE audit_ledger SET event = $1::jsonb, prev_hash = $2, canonical = $3, "
                "hash = $4 WHERE position = $5",
                event,
                prev,
                canonical,
                digest,
                row["position"],
            )
            prev = digest


async def rewrite_rechaining(
    settings: BranchlineSettings, position: int, before: bytes | None = None, after: bytes = b""
) -> None:
    """Rewrite the note of the entry at ``position`` (``n<position>``) in its canonical bytes
    (``before`` replaced by ``after`` where given) and :func:`rechain` from it."""
    if before is None:
        before, after = f'"note":"n{position}"'.encode(), b'"note":"rewritten"'

    def rewrite(row: asyncpg.Record) -> tuple[bytes, str | None]:
        canonical = bytes(row["canonical"])
        if row["position"] == position:
            assert before in canonical, canonical
            canonical = canonical.replace(before, after)
        return canonical, row["event"]

    await rechain(settings, position, rewrite)
