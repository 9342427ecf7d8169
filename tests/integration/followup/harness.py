"""Helpers of the followup integration tests: realistic recorded events, producing them to the
intake topic, the running worker and API, snapshots of the read models."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from branchline_followup.bootstrap import create_app, prepare_database, running_worker
from branchline_shared.console.web import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from branchline_shared.events.envelope import Channel, RecordedEvent
from branchline_shared.http.auth import Role
from branchline_shared.kafka.consuming import RawMessage
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.kafka.wire import encode_event, event_headers
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.events import recorded_event
from tests.support.stack import serve

VOLATILE_COLUMNS = frozenset({"applied_at", "updated_at", "applied_seq"})


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class History:
    """Builds a client's events as intake records them (stream per client, versions in order)."""

    branch_id: str = "BR-001"
    versions: dict[str, int] = field(default_factory=dict)
    events: list[RecordedEvent] = field(default_factory=list)

    def add(
        self,
        event_type: str,
        client_id: str,
        at: datetime,
        data: dict[str, Any],
        *,
        channel: Channel | None = Channel.WALK_IN,
        branch_id: str | None = None,
    ) -> RecordedEvent:
        version = self.versions.get(client_id, 0) + 1
        self.versions[client_id] = version
        event = recorded_event(
            event_type,
            data,
            at=at,
            client_id=client_id,
            version=version,
            branch_id=branch_id or self.branch_id,
            channel=channel,
        )
        self.events.append(event)
        return event

    def registered(self, client_id: str, at: datetime, rm_id: str = "rm-7") -> RecordedEvent:
        return self.add(
            "client.registered", client_id, at, {"client_type": "individual", "rm_id": rm_id}
        )

    def visit(self, client_id: str, visit_id: str, at: datetime) -> RecordedEvent:
        """A full reception journey (D-01); returns its visit.closed."""
        self.add("visit.arrived", client_id, at, {"visit_id": visit_id, "ticket": "A017"})
        self.add(
            "visit.needs_confirmed",
            client_id,
            at + timedelta(minutes=2),
            {"visit_id": visit_id, "category": "deposit"},
        )
        self.add(
            "visit.guidance_given", client_id, at + timedelta(minutes=3), {"visit_id": visit_id}
        )
        self.add(
            "visit.business_handled",
            client_id,
            at + timedelta(minutes=20),
            {
                "visit_id": visit_id,
                "counter": "W3",
                "started_at": (at + timedelta(minutes=8)).isoformat(),
                "ended_at": (at + timedelta(minutes=20)).isoformat(),
            },
        )
        self.add(
            "visit.next_steps_explained",
            client_id,
            at + timedelta(minutes=21),
            {"visit_id": visit_id},
        )
        return self.add(
            "visit.closed",
            client_id,
            at + timedelta(minutes=22),
            {"visit_id": visit_id, "outcome": "normal"},
        )


def wire(event: RecordedEvent) -> bytes:
    return event.model_dump_json().encode()


def relayed(events: list[RecordedEvent], topic: str = "intake.events") -> list[RawMessage]:
    """The messages the worker takes for ``events``, as intake's relay publishes them to
    partition 0: offsets from 0, each with its headers and the store position offset + 1."""
    return [
        RawMessage(
            topic,
            0,
            offset,
            e.subject_id.encode(),
            encode_event(e.model_dump(mode="json")),
            event_headers(e, offset + 1),
        )
        for offset, e in enumerate(events)
    ]


async def produce_events(settings: BranchlineSettings, events: list[RecordedEvent]) -> None:
    """Straight to the intake topic, batched (what intake's relay would publish)."""
    topic = declare_topics(settings).intake_events.name
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=wire(e), key=e.subject_id.encode()) for e in events
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def followup_db(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Connection[Any]]:
    await prepare_database(settings)
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def followup_api(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[ApiClients]:
    async with serve(create_app(settings)) as url:
        clients = ApiClients(url, tokens)
        try:
            yield clients
        finally:
            await clients.close()


class ApiClients:
    def __init__(self, url: str, tokens: TokenFactory) -> None:
        self.url = url
        self._tokens = tokens
        self._clients: list[httpx.AsyncClient] = []

    def as_(self, role: Role, sub: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.url, headers=self._tokens.headers(role, sub=sub), timeout=30
        )
        self._clients.append(client)
        return client

    def console_as(self, role: Role, sub: str) -> httpx.AsyncClient:
        """A signed-in console session (English): the token in the session cookie, a CSRF
        pair, no bearer header."""
        client = self.as_(role, sub)
        client.headers.pop("Authorization")
        client.cookies.set(f"{SESSION_COOKIE}_followup", self._tokens.token(role, sub=sub))
        client.cookies.set(CSRF_COOKIE, "csrf-1")
        client.headers[CSRF_HEADER] = "csrf-1"
        client.headers["accept-language"] = "en"
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


__all__ = ["History", "running_worker"]


async def snapshot(
    conn: asyncpg.Connection[Any], schema: str = "fu_read"
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table of ``schema``, sorted, without bookkeeping times."""
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
    )
    result: dict[str, list[tuple[Any, ...]]] = {}
    for t in tables:
        name = t["tablename"]
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            schema,
            name,
        )
        keep = [c["column_name"] for c in columns if c["column_name"] not in VOLATILE_COLUMNS]
        rows = await conn.fetch(f'SELECT {", ".join(keep)} FROM {schema}."{name}"')
        result[name] = sorted((tuple(r) for r in rows), key=repr)
    return result


class _TimeCursor:
    """Moves a client's clock forward by random steps."""

    def __init__(self, start: datetime, step: timedelta, rng: Any) -> None:
        self.t = start
        self.step = step
        self.rng = rng

    def later(self) -> datetime:
        self.t += self.step * self.rng.uniform(0.2, 1.0)
        return self.t

    def skip(self, steps: float) -> None:
        self.t += self.step * steps


def generate_history(clients: int, *, end: datetime, span: timedelta, seed: int = 5) -> History:
    """A realistic history of ``clients`` clients (about 15 events each) between ``end - span``
    and ``end``: registration, identity, risk assessment, reception journeys, appointments,
    consultations (some online ones never answered: their 30 s clock runs out), product sales,
    complaints through their closed loop, surveys."""
    import random

    rng = random.Random(seed)
    history = History()
    scores = ("attitude", "professionalism", "response_speed", "risk_management", "convenience")
    for n in range(clients):
        cid = f"C-{n:05d}"
        rm = f"rm-{n % 7}"
        cursor = _TimeCursor(
            end - span + timedelta(seconds=rng.randrange(int(span.total_seconds() * 0.3))),
            span / 40,
            rng,
        )
        later = cursor.later

        branch = f"BR-00{n % 3}"
        history.branch_id = branch
        history.registered(cid, cursor.t, rm_id=rm)
        history.add(
            "client.identity_verified",
            cid,
            later(),
            {"method": "networked_id_check", "document_type": "resident_id"},
        )
        history.add("client.risk_assessed", cid, later(), {"level": f"C{rng.randint(1, 5)}"})
        history.visit(cid, f"V-{n}-1", later())
        cursor.skip(0.6)
        if rng.random() < 0.5:
            history.add(
                "feedback.survey_answered",
                cid,
                later(),
                {"visit_id": f"V-{n}-1", "scores": {s: rng.randint(40, 100) for s in scores}},
            )
        if rng.random() < 0.4:
            history.add(
                "product.sold",
                cid,
                later(),
                {
                    "product_id": f"P-{rng.randint(1, 9)}",
                    "amount": str(rng.randint(1, 90) * 100_000),
                },
            )
        kind = rng.random()
        if kind < 0.3:
            online = rng.random() < 0.3
            history.add(
                "consultation.opened",
                cid,
                later(),
                {
                    "consultation_id": f"Q-{n}",
                    "channel": "online" if online else "phone",
                    "question": "s",
                },
                channel=None,
            )
            if not online or rng.random() < 0.5:
                history.add(
                    "consultation.answered",
                    cid,
                    later(),
                    {"consultation_id": f"Q-{n}", "answer": "s"},
                )
        elif kind < 0.55:
            slot = end + timedelta(days=rng.randint(2, 9))
            history.add(
                "appointment.booked",
                cid,
                later(),
                {
                    "appointment_id": f"A-{n}",
                    "slot_start": slot.isoformat(),
                    "purpose": "review",
                    "staff_id": rm,
                },
            )
            if rng.random() < 0.3:
                history.add("appointment.cancelled", cid, later(), {"appointment_id": f"A-{n}"})
        if rng.random() < 0.35:
            complaint = {"complaint_id": f"K-{n}"}
            history.add(
                "complaint.received",
                cid,
                later(),
                {
                    **complaint,
                    "severity": rng.choice(["general", "important", "urgent"]),
                    "summary": "s",
                },
            )
            if rng.random() < 0.7:
                history.add("complaint.acknowledged", cid, later(), {**complaint, "owner_id": rm})
                if rng.random() < 0.6:
                    history.add(
                        "complaint.resolved", cid, later(), {**complaint, "resolution": "s"}
                    )
                    history.add(
                        "complaint.confirmed_by_client",
                        cid,
                        later(),
                        {**complaint, "satisfied": True},
                    )
                    history.add("complaint.closed", cid, later(), complaint)
        if rng.random() < 0.5:
            history.visit(cid, f"V-{n}-2", later())
    return history
