"""A database fault mid-request is a 503 ``unavailable`` problem with ``Retry-After``, never a
500, and nothing of the request is stored (docs/reliability.md, "A database fault", #12):
the request's statement cancelled (``pg_cancel_backend``, as a ``statement_timeout`` does)
or its backend terminated (``pg_terminate_backend``, as a server shutdown does) while it waits
on a lock the test holds. The pool then serves the next request. Until Round 23 both reached
the caller as a 500 ``internal``.

The app's backend is found as the one the test's lock blocks (``pg_blocking_pids``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from branchline_audit.adapters.ledger import LEDGER_LOCK_KEY
from branchline_audit.bootstrap import create_app as create_audit_app
from branchline_followup.bootstrap import create_app as create_followup_app
from branchline_intake.bootstrap import create_app
from branchline_shared.console.web import SESSION_COOKIE
from branchline_shared.eventstore.postgres import PostgresUnitOfWork
from branchline_shared.http.auth import Role
from branchline_shared.http.problems import PROBLEM_JSON
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.followup.harness import followup_db
from tests.support.events import registration_body
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

_NOW = datetime.now(UTC).replace(microsecond=0)
ENDS = {"cancelled": "pg_cancel_backend", "terminated": "pg_terminate_backend"}


def registration(client_id: str, event_id: uuid.UUID) -> dict[str, Any]:
    return registration_body(client_id, event_id, _NOW)


@pytest.fixture
async def intake(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[str]:
    async with serve(create_app(settings)) as url:
        yield url


async def blocked_by(watcher: asyncpg.Connection[Any], holder: int) -> int:
    """The backend that waits on a lock ``holder`` holds (bounded by the caller's timeout)."""
    while True:
        pid = await watcher.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
            holder,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.02)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    assert body["type"] == "https://branchline.dev/problems/unavailable"
    assert "nothing was stored" in body["detail"]


@pytest.mark.parametrize("path", ["single", "batch"])
@pytest.mark.parametrize("end", sorted(ENDS))
async def test_a_write_whose_backend_is_cut_answers_503_and_stores_nothing(
    intake: str, settings: BranchlineSettings, tokens: TokenFactory, end: str, path: str
) -> None:
    client_id = f"C-{uuid.uuid4().hex[:8]}"
    event_id = uuid.uuid4()
    event = registration(client_id, event_id)
    holder = await asyncpg.connect(settings.intake_database_url)
    watcher = await asyncpg.connect(settings.intake_database_url)
    async with httpx.AsyncClient(
        base_url=intake, headers=tokens.headers(Role.BRANCH_SYSTEM, branch="BR-001"), timeout=30
    ) as client:

        async def send() -> httpx.Response:
            if path == "single":
                return await client.post("/v1/events", json=event)
            return await client.post("/v1/events:batch", json={"events": [event]})

        try:
            transaction = holder.transaction()
            await transaction.start()
            await PostgresUnitOfWork(holder).lock_streams([f"client-{client_id}"])
            task = asyncio.ensure_future(send())
            waiting = await asyncio.wait_for(blocked_by(watcher, holder.get_server_pid()), 20)
            assert await watcher.fetchval(f"SELECT {ENDS[end]}($1)", waiting)
            response = await asyncio.wait_for(task, 30)
            await transaction.rollback()
            assert_unavailable(response)
            stored = await watcher.fetchval(
                "SELECT (SELECT count(*) FROM es_events WHERE event_id = $1) "
                "+ (SELECT count(*) FROM es_outbox WHERE event_id = $1)",
                event_id,
            )
            assert stored == 0  # neither the event nor its outbox row: nothing half-written
            again = await send()  # the pool recovers; the same event is stored, once
            assert again.status_code in (200, 202), again.text
            if path == "batch":
                assert again.json()["results"][0]["status"] == 202, again.text
            assert (
                await watcher.fetchval(
                    "SELECT count(*) FROM es_events WHERE event_id = $1", event_id
                )
                == 1
            )
        finally:
            await holder.close()
            await watcher.close()


def followup_client(url: str, tokens: TokenFactory, where: str) -> httpx.AsyncClient:
    """A supervisor's client: the API's bearer token, or a signed-in console session."""
    if where == "api":
        headers = tokens.headers(Role.SUPERVISOR, sub="sup-1")
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)
    client = httpx.AsyncClient(
        base_url=url, headers={"accept-language": "en"}, timeout=30, follow_redirects=False
    )
    client.cookies.set(f"{SESSION_COOKIE}_followup", tokens.token(Role.SUPERVISOR, sub="sup-1"))
    return client


@pytest.mark.parametrize(
    ("where", "path"), [("api", "/v1/followups"), ("console", "/console/team")]
)
async def test_the_followup_service_answers_a_cancelled_read_the_same_way(
    settings: BranchlineSettings, tokens: TokenFactory, where: str, path: str
) -> None:
    """The API with the same problem; the console with a page a person reads, 503 and
    ``Retry-After`` as well (before: problem+json 500 on both)."""
    async with followup_db(settings) as holder:
        watcher = await asyncpg.connect(settings.followup_database_url)
        try:
            async with (
                serve(create_followup_app(settings)) as url,
                followup_client(url, tokens, where) as client,
            ):
                transaction = holder.transaction()
                await transaction.start()
                await holder.execute("LOCK TABLE fu_tasks IN ACCESS EXCLUSIVE MODE")
                task = asyncio.ensure_future(client.get(path))
                waiting = await asyncio.wait_for(blocked_by(watcher, holder.get_server_pid()), 20)
                assert await watcher.fetchval("SELECT pg_cancel_backend($1)", waiting)
                response = await asyncio.wait_for(task, 30)
                await transaction.rollback()
                if where == "api":
                    assert_unavailable(response)
                else:
                    assert response.status_code == 503, response.text
                    assert response.headers["content-type"].startswith("text/html")
                    assert int(response.headers["retry-after"]) > 0
                    assert "Temporarily unavailable" in response.text
                again = await client.get(path)
                assert again.status_code == 200, again.text
        finally:
            await watcher.close()


def audit_client(url: str, tokens: TokenFactory, where: str) -> httpx.AsyncClient:
    """An auditor's client: the API's bearer token, or a signed-in console session."""
    if where == "api":
        headers = tokens.headers(Role.AUDITOR, sub="auditor-1")
        return httpx.AsyncClient(base_url=url, headers=headers, timeout=30)
    client = httpx.AsyncClient(
        base_url=url, headers={"accept-language": "en"}, timeout=30, follow_redirects=False
    )
    client.cookies.set(f"{SESSION_COOKIE}_audit", tokens.token(Role.AUDITOR, sub="auditor-1"))
    return client


@pytest.mark.parametrize(
    ("where", "path", "end"),
    [
        ("api", "/v1/audit/entries", "cancelled"),
        ("api", "/v1/audit/entries", "terminated"),
        ("console", "/console/trail?purpose=review", "cancelled"),
    ],
)
async def test_the_audit_service_answers_a_read_whose_backend_is_cut_the_same_way(
    settings: BranchlineSettings, tokens: TokenFactory, where: str, path: str, end: str
) -> None:
    """An audit read records itself in the ledger first (D-11): that append waits on the
    ledger's append lock, which the test holds, and is cancelled or its backend terminated.
    The API answers the shared problem, the console its page, 503 with ``Retry-After``; the
    read's record is not stored (nothing half-written), and the same read then succeeds (#12:
    before, only the shared handler's unit test spoke for the audit service)."""
    async with serve(create_audit_app(settings)) as url, audit_client(url, tokens, where) as client:
        holder = await asyncpg.connect(settings.audit_database_url)
        watcher = await asyncpg.connect(settings.audit_database_url)
        try:
            reads_before = await audit_reads(watcher)
            transaction = holder.transaction()
            await transaction.start()
            # the ledger's append lock (what every append waits for), not its table: the
            # checkpointer's reads must not be the backend found waiting
            await holder.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_LOCK_KEY)
            task = asyncio.ensure_future(client.get(path))
            waiting = await asyncio.wait_for(blocked_by(watcher, holder.get_server_pid()), 20)
            assert await watcher.fetchval(f"SELECT {ENDS[end]}($1)", waiting)
            response = await asyncio.wait_for(task, 30)
            await transaction.rollback()
            if where == "api":
                assert_unavailable(response)
            else:
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("text/html")
                assert int(response.headers["retry-after"]) > 0
                assert "Temporarily unavailable" in response.text
            assert await audit_reads(watcher) == reads_before  # the read's record not stored
            again = await client.get(path)
            assert again.status_code == 200, again.text
            assert await audit_reads(watcher) == reads_before + 1
        finally:
            await holder.close()
            await watcher.close()


async def audit_reads(conn: asyncpg.Connection[Any]) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM audit_ledger WHERE event_type = 'audit.read'")
    )


@pytest.mark.parametrize("path", ["single", "batch"])
async def test_a_write_on_a_pooled_connection_whose_session_was_ended_answers_503(
    settings: BranchlineSettings, tokens: TokenFactory, path: str
) -> None:
    """PostgreSQL ends an idle pooled connection's session (a restart, an idle session
    timeout): its FATAL error reaches asyncpg before its close does (here a proxy holds the
    close back until both requests are answered). A request that took the connection in
    between failed with asyncpg's ``InternalClientError``, which no fault list named: a 500
    (#12). Now it is the lost connection it is: 503 ``unavailable``, nothing stored; asyncpg
    aborted the connection with the error, so the pool (of one) does not hand it out again,
    and the same request, sent again before the close came, is stored once on a fresh
    connection."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.proxy import cuttable, end_sessions_behind

    target = urlsplit(settings.intake_database_url)
    async with cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        netloc = f"{target.username}@127.0.0.1:{proxy.port}"
        via_proxy = settings.model_copy(
            update={
                "intake_database_url": urlunsplit(target._replace(netloc=netloc)),
                "db_pool_min": 1,
                "db_pool_max": 1,  # one pooled connection: the next request gets it or a new one
                "relay_enabled": False,  # nothing but the requests takes it
            }
        )
        async with (
            serve(create_app(via_proxy)) as url,
            httpx.AsyncClient(
                base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=30
            ) as client,
        ):

            async def send(client_id: str, event_id: uuid.UUID) -> httpx.Response:
                event = registration(client_id, event_id)
                if path == "single":
                    return await client.post("/v1/events", json=event)
                return await client.post("/v1/events:batch", json={"events": [event]})

            first = await send(f"C-{uuid.uuid4().hex[:8]}", uuid.uuid4())
            assert first.status_code in (200, 202), first.text
            with proxy.holding_closes():  # until both requests are answered, however late
                await end_sessions_behind(proxy, settings.intake_database_url)
                passed = proxy.closes_passed
                event_id = uuid.uuid4()
                client_id = f"C-{uuid.uuid4().hex[:8]}"
                refused = await send(client_id, event_id)
                assert_unavailable(refused)
                again = await send(client_id, event_id)
                assert again.status_code in (200, 202), again.text
                if path == "batch":
                    assert again.json()["results"][0]["status"] == 202, again.text
                # answered before the ended connection's close reached the app: in the gap
                assert proxy.closes_passed == passed
        watcher = await asyncpg.connect(settings.intake_database_url)
        try:
            stored = await watcher.fetchval(
                "SELECT count(*) FROM es_events WHERE event_id = $1", event_id
            )
        finally:
            await watcher.close()
        assert stored == 1
